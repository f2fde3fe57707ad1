"""DeadLetter events: a record that failed, kept whole with where it came from and why.

Every consumer that cannot decode or process a record builds one of these, writes it to the
dead-letter topic (key = the original key) and goes on; nothing is dropped. The functions here
are pure: the caller passes the failure time (its injected clock), and the event id is derived
from (consumer, topic, partition, offset), so dead-lettering the same record again after a
crash produces the same id and a de-duplicating sink keeps one copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

from huracan.streams.errors import SerdeError
from huracan.streams.serde import Serde

#: the event type of the dead-letter topic
DEAD_LETTER_EVENT_TYPE: Final = "DeadLetter"
#: ``reason`` of a record whose processing (not decoding) failed
PROCESSING_ERROR: Final = "processing_error"
#: longer error messages are cut to this many characters
MAX_ERROR_MESSAGE_CHARS: Final = 4096

BytesLike = bytes | bytearray | memoryview | str
Header = tuple[str | bytes, BytesLike | None]


def dead_letter_event_id(consumer: str, topic: str, partition: int, offset: int) -> str:
    """The deterministic event id of the DeadLetter for one consumed record."""
    return f"dead-letter:{consumer}:{topic}:{partition}:{offset}"


def reason_code(error: BaseException) -> str:
    """A :class:`SerdeError`'s reason code, an error's own ``dead_letter_reason`` (e.g.
    ``unknown_coin``), else ``"processing_error"``."""
    if isinstance(error, SerdeError):
        return error.reason
    own = getattr(error, "dead_letter_reason", None)
    return own if isinstance(own, str) and own else PROCESSING_ERROR


def _to_bytes(value: BytesLike | None) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def _message(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:  # noqa: BLE001 - a broken __str__ must not stop dead-lettering
        text = object.__repr__(error)
    if len(text) > MAX_ERROR_MESSAGE_CHARS:
        text = text[: MAX_ERROR_MESSAGE_CHARS - 15] + "… [truncated]"
    return text


def build_dead_letter(
    *,
    value: BytesLike | None,
    topic: str,
    partition: int,
    offset: int,
    key: BytesLike | None,
    error: BaseException,
    consumer: str,
    failed_at_us: int,
    headers: Iterable[Header] | None = None,
    source_timestamp_ms: int | None = None,
    attempts: int = 1,
    reason: str | None = None,
    causation_id: str | None = None,
) -> dict[str, Any]:
    """The DeadLetter event (a dict of the DeadLetter schema) for one failed record.

    ``value``/``key`` are kept byte for byte (``str`` is stored as UTF-8, ``None`` stays
    null); ``failed_at_us`` is the caller's clock in epoch microseconds; ``source_timestamp_ms``
    the record's Kafka timestamp in ms (None when it had none). ``reason`` defaults to
    :func:`reason_code` of ``error``. ``causation_id`` may name the failed event's
    ``event_id`` when it could be decoded. ``correlation_id`` is the record's coordinates
    ``<topic>:<partition>:<offset>``. Never raises for any ``error``.
    """
    coordinates = f"{topic}:{partition}:{offset}"
    error_type = type(error)
    return {
        "event_id": dead_letter_event_id(consumer, topic, partition, offset),
        "correlation_id": coordinates,
        "causation_id": causation_id,
        "original_value": _to_bytes(value),
        "original_key": _to_bytes(key),
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "source_timestamp": None if source_timestamp_ms is None else source_timestamp_ms * 1000,
        "headers": [
            {
                "key": k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k),
                "value": _to_bytes(v),
            }
            for k, v in (headers or ())
        ],
        "error_type": f"{error_type.__module__}.{error_type.__qualname__}",
        "reason": reason or reason_code(error),
        "error_message": _message(error),
        "failed_at": failed_at_us,
        "consumer": consumer,
        "attempts": attempts,
    }


def encode_dead_letter(serde: Serde, event: Mapping[str, Any]) -> tuple[bytes | None, bytes]:
    """``(key, value)`` to produce to the dead-letter topic for ``event``.

    The key is the original record's key, so a coin's failures stay in one partition. Raises
    :class:`SerdeError` only if ``event`` was not built by :func:`build_dead_letter` correctly
    (e.g. a non-int partition).
    """
    key: bytes | None = event.get("original_key")
    return key, serde.encode(DEAD_LETTER_EVENT_TYPE, event)


class ConsumedMessage(Protocol):
    """The accessors of :class:`confluent_kafka.Message` used here."""

    def value(self) -> Any: ...
    def key(self) -> Any: ...
    def topic(self) -> Any: ...
    def partition(self) -> Any: ...
    def offset(self) -> Any: ...
    def headers(self) -> Any: ...
    def timestamp(self) -> Any: ...


def dead_letter_from_message(
    message: ConsumedMessage,
    error: BaseException,
    *,
    consumer: str,
    failed_at_us: int,
    attempts: int = 1,
    reason: str | None = None,
) -> dict[str, Any]:
    """:func:`build_dead_letter` for a consumed :class:`confluent_kafka.Message`."""
    ts_type, ts = message.timestamp()
    return build_dead_letter(
        value=message.value(),
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        key=message.key(),
        error=error,
        consumer=consumer,
        failed_at_us=failed_at_us,
        headers=message.headers(),
        source_timestamp_ms=ts if ts_type else None,
        attempts=attempts,
        reason=reason,
    )
