"""Errors of :mod:`huracan.streams`.

Every error raised by the streams package derives from :class:`StreamsError`. The serde raises
exactly one class for every bad record, :class:`SerdeError`, whose :attr:`SerdeError.reason` is
one of the stable codes below, so an agent can route it without parsing a message::

    try:
        record = serde.decode(msg.value())
    except SerdeError as exc:
        if exc.transient:          # the registry is down: retry, do not dead-letter
            raise
        dead_letter(msg, exc)      # exc.reason goes into the DeadLetter event
"""

from __future__ import annotations

from typing import Final

#: the value is ``None`` or zero bytes (a tombstone is not an event)
EMPTY: Final = "empty"
#: the value is not ``bytes``/``bytearray``/``memoryview``
NOT_BYTES: Final = "not_bytes"
#: the first bytes are not the framing's magic (``C3 01`` single-object, ``00`` Confluent)
BAD_MAGIC: Final = "bad_magic"
#: the header or the Avro body ends before it should
TRUNCATED: Final = "truncated"
#: a single-object header names a schema fingerprint the catalog does not know
UNKNOWN_FINGERPRINT: Final = "unknown_fingerprint"
#: a Confluent header names a schema id the registry does not know
UNKNOWN_SCHEMA_ID: Final = "unknown_schema_id"
#: the writer schema is known but is not one of the catalog's event types
UNKNOWN_EVENT_TYPE: Final = "unknown_event_type"
#: the body is not valid Avro for its writer schema (bad UTF-8, union/enum index, trailing bytes)
MALFORMED: Final = "malformed"
#: the writer schema cannot be resolved to the reader schema (an incompatible change)
INCOMPATIBLE_SCHEMA: Final = "incompatible_schema"
#: the record decoded fine but is not the event type the caller expected
UNEXPECTED_EVENT_TYPE: Final = "unexpected_event_type"
#: encode: the record does not match its schema (missing field, wrong type, unknown field…)
SCHEMA_VIOLATION: Final = "schema_violation"
#: the Schema Registry could not be reached or answered with a server error (transient)
REGISTRY_UNAVAILABLE: Final = "registry_unavailable"

#: every reason code :class:`SerdeError` may carry
SERDE_REASONS: Final = frozenset(
    {
        EMPTY,
        NOT_BYTES,
        BAD_MAGIC,
        TRUNCATED,
        UNKNOWN_FINGERPRINT,
        UNKNOWN_SCHEMA_ID,
        UNKNOWN_EVENT_TYPE,
        MALFORMED,
        INCOMPATIBLE_SCHEMA,
        UNEXPECTED_EVENT_TYPE,
        SCHEMA_VIOLATION,
        REGISTRY_UNAVAILABLE,
    }
)


class StreamsError(Exception):
    """Base class of every error raised by :mod:`huracan.streams`."""


class SerdeError(StreamsError, ValueError):
    """A record could not be encoded or decoded.

    ``reason`` is one of :data:`SERDE_REASONS`; ``event_type`` names the event type when it is
    known. ``transient`` is true only for ``registry_unavailable``: the bytes may be fine and
    the call should be retried later, not dead-lettered. Every other reason is a property of
    the record itself and is permanent.
    """

    def __init__(self, reason: str, message: str, *, event_type: str | None = None) -> None:
        if reason not in SERDE_REASONS:
            raise ValueError(f"unknown SerdeError reason {reason!r}")
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.event_type = event_type

    @property
    def transient(self) -> bool:
        return self.reason == REGISTRY_UNAVAILABLE

    def __reduce__(self) -> tuple[object, ...]:
        message = str(self).partition(": ")[2]
        return (_rebuild_serde_error, (self.reason, message, self.event_type))


def _rebuild_serde_error(reason: str, message: str, event_type: str | None) -> SerdeError:
    return SerdeError(reason, message, event_type=event_type)


class SchemaCatalogError(StreamsError):
    """The packaged (or given) schema files are missing, unparsable or inconsistent.

    Raised when a :class:`~huracan.streams.serde.SchemaCatalog` is built, and when a caller asks
    for an event type or topic that the catalog does not have (then it is also a
    :class:`LookupError` via :class:`UnknownEventType`).
    """


class UnknownEventType(SchemaCatalogError, LookupError):
    """The event type or topic is not in the catalog; the message lists the known ones."""


class TopicAdminError(StreamsError):
    """Creating or inspecting the topic catalog on the broker failed.

    The message names the topic (when one is at fault) and the broker's error.
    """
