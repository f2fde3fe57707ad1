"""The bus's value objects: :class:`StreamType`, :class:`Message`, :class:`DeadLetter`, and the
payload codec every adapter shares.

Wire format (all adapters): one UTF-8 JSON object per entry, the *payload*::

    {"v": 1, "stream": "market-data", "coin": "BTC", "ts": 1735689600.0,
     "event_id": "9f0c…", "correlation_id": null, "causation_id": null, "data": {...}}

Redis and the in-memory bus store it in the entry field ``payload``; Kafka stores it as the
record value (the key is the coin). A payload that is not such an object — not UTF-8, not JSON,
a missing or mistyped field, or a ``coin``/``stream`` that does not match where it was read — is
*malformed*: subscribers move it to the dead-letter stream instead of yielding it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import time
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from huracan.bus.errors import MalformedMessageError, MessageEncodeError

#: payload format version written in ``"v"``
PAYLOAD_VERSION = 1
#: the Redis / in-memory entry field holding the payload
PAYLOAD_FIELD = "payload"


class StreamType(enum.StrEnum):
    """The streams of the catalog (docs/architecture.md, "Topics"), one per kind of event.

    The value names the stream: Redis key ``{prefix}:{value}:{coin}``, Kafka topic
    ``{prefix}.bus.{value}``. The dead-letter stream is not a member: it has no coin and is read
    with :meth:`MessageBus.read_dead_letters`.
    """

    MARKET_DATA = "market-data"
    FEATURES = "features"
    SIGNALS = "signals"
    COST_UPDATES = "cost-updates"
    TRADE_REQUESTS = "trade-requests"
    RISK_DECISIONS = "risk-decisions"
    EXECUTIONS = "executions"
    CONTROL = "control"


def _new_event_id() -> str:
    return uuid.uuid4().hex


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """One event on the bus. Immutable; ``data`` must be JSON-encodable (see :func:`encode`).

    - ``event_id`` identifies the event itself and survives redelivery and dead-lettering:
      consumers de-duplicate on it (delivery is at least once).
    - ``message_id`` is the bus's id of the stored entry (Redis stream id, ``partition-offset``
      for Kafka). It is ``None`` on a message you build, and set on every delivered message; the
      same id is returned by :meth:`MessageBus.publish`.
    - ``delivery_count`` is how many times the entry has been delivered to the consumer group,
      this delivery included (1 on first delivery). ``0`` on a message you build; ``None`` where
      the adapter cannot know (Kafka keeps no per-record delivery count).
    """

    stream_type: StreamType
    coin: str
    data: Mapping[str, Any]
    timestamp: float = dataclasses.field(default_factory=time.time)
    message_id: str | None = None
    event_id: str = dataclasses.field(default_factory=_new_event_id)
    correlation_id: str | None = None
    causation_id: str | None = None
    delivery_count: int | None = 0

    def __post_init__(self) -> None:
        if not isinstance(self.stream_type, StreamType):
            object.__setattr__(self, "stream_type", StreamType(self.stream_type))
        if not isinstance(self.coin, str) or not self.coin:
            raise ValueError(f"coin must be a non-empty string, got {self.coin!r}")
        if not isinstance(self.data, Mapping):
            raise TypeError(f"data must be a mapping, got {type(self.data).__name__}")


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    """An entry moved to the dead-letter stream, with everything needed to inspect or replay it.

    ``fields`` are the original entry's fields as stored (Redis/in-memory field name -> bytes;
    for Kafka ``{"key": ..., "value": ...}``), so nothing is lost even when the payload could
    not be decoded.
    """

    dead_letter_id: str
    source: str
    message_id: str
    reason: str
    fields: Mapping[str, bytes]
    group: str | None = None
    consumer: str | None = None
    delivery_count: int | None = None
    dead_lettered_at: float | None = None


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):  # pydantic models
        return model_dump(mode="json")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON-encodable")


_encoder = json.JSONEncoder(separators=(",", ":"), default=_json_default)


def encode(message: Message) -> bytes:
    """The payload bytes of ``message``.

    Dataclasses and pydantic models in ``data`` become objects, enums their values, datetimes
    ISO strings, Decimals strings (they come back as those plain values).

    Raises :class:`MessageEncodeError` when a value cannot be represented.
    """
    payload = {
        "v": PAYLOAD_VERSION,
        "stream": message.stream_type.value,
        "coin": message.coin,
        "ts": message.timestamp,
        "event_id": message.event_id,
        "correlation_id": message.correlation_id,
        "causation_id": message.causation_id,
        "data": message.data if isinstance(message.data, dict) else dict(message.data),
    }
    try:
        return _encoder.encode(payload).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise MessageEncodeError(
            f"cannot encode message for {message.stream_type.value}/{message.coin}: {exc}"
        ) from exc


def decode(
    raw: bytes | None,
    *,
    stream_type: StreamType,
    coin: str | None,
    message_id: str,
    delivery_count: int | None,
) -> Message:
    """Decode payload bytes read from ``stream_type`` (and ``coin``, when the stream is per coin).

    Raises :class:`MalformedMessageError` with a one-line reason when ``raw`` is not a valid
    payload for that stream.
    """
    if raw is None:
        raise MalformedMessageError(f"entry has no {PAYLOAD_FIELD!r} field")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedMessageError(f"payload is not UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedMessageError(f"payload is a JSON {type(obj).__name__}, not an object")
    if obj.get("v") != PAYLOAD_VERSION:
        raise MalformedMessageError(f"unsupported payload version {obj.get('v')!r}")
    data = obj.get("data")
    if not isinstance(data, dict):
        raise MalformedMessageError("payload field 'data' is missing or not an object")
    ts = obj.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise MalformedMessageError("payload field 'ts' is missing or not a number")
    event_id = obj.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise MalformedMessageError("payload field 'event_id' is missing or not a string")
    payload_coin = obj.get("coin")
    if not isinstance(payload_coin, str) or not payload_coin:
        raise MalformedMessageError("payload field 'coin' is missing or not a string")
    if coin is not None and payload_coin != coin:
        raise MalformedMessageError(f"payload coin {payload_coin!r} read from the {coin} stream")
    if obj.get("stream") != stream_type.value:
        raise MalformedMessageError(
            f"payload stream {obj.get('stream')!r} read from the {stream_type.value} stream"
        )
    correlation_id = obj.get("correlation_id")
    causation_id = obj.get("causation_id")
    return Message(
        stream_type=stream_type,
        coin=payload_coin,
        data=data,
        timestamp=float(ts),
        message_id=message_id,
        event_id=event_id,
        correlation_id=correlation_id if isinstance(correlation_id, str) else None,
        causation_id=causation_id if isinstance(causation_id, str) else None,
        delivery_count=delivery_count,
    )
