"""Avro serde for the event topics: a schema catalog and two wire framings, both via fastavro.

Framings (chosen by :func:`make_serde` from ``kafka.schema_registry_url``):

* **single-object** (:class:`SingleObjectSerde`, no registry): the Avro spec's single-object
  encoding, ``C3 01`` + the writer schema's 8-byte little-endian CRC-64-AVRO (Rabin)
  fingerprint of its parsing canonical form + the Avro binary body. The fingerprint is looked
  up among the packaged schemas, current and historical.
* **Confluent** (:class:`ConfluentSerde`, with a Schema Registry): ``00`` + the 4-byte
  big-endian schema id + the body, the format Kafka UI and Confluent's deserializers read.
  Schemas are registered under ``<topic>-value`` (TopicNameStrategy); ids are cached both ways,
  so the registry is asked once per (event type, topic) when encoding and once per unknown id
  when decoding.

Records are plain dicts, as fastavro reads and writes them. Timestamps (``timestamp-micros``
in the schemas) are encoded from ``int`` microseconds since the epoch (UTC) or an aware
``datetime``, and always decode as ``int`` microseconds: cheaper than building datetimes and
exactly what replays compare. Enum fields are strings.

Schema evolution and versioning:

* the namespace carries the major version (``io.huracan.events.v1``); inside it, schemas only
  change in ways Avro resolves in both directions: add a field *with a default*, add an enum
  symbol (every enum has ``UNKNOWN`` as its ``default``, so a reader that predates a symbol
  reads ``UNKNOWN`` instead of failing), or widen a type Avro promotes. Anything else is a new
  namespace ``...v2`` and new topics;
* each schema file has an integer ``version`` attribute, bumped on every change; before a
  change, the old file is kept as ``<name>.v<N>.avsc`` beside the current ``<name>.avsc``, so
  records written by older producers keep decoding (into the current shape) from their
  fingerprint;
* decoding always yields the *current* (reader) schema's shape; fields a writer lacked get
  their defaults.

Enums vs strings: enums validate on encode (a typo'd direction never reaches the log) and cost
one byte; the ``UNKNOWN`` default keeps them forward compatible. Open-ended codes (risk
``reason_code``) are strings so new codes need no schema change.

Errors: anything wrong with a record — on encode or decode — raises
:class:`~huracan.streams.errors.SerdeError` with a stable ``reason``; nothing else escapes.
"""

from __future__ import annotations

import copy
import io
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

import fastavro
from fastavro.read import SchemaResolutionError
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from huracan.config import HuracanConfig, KafkaConfig
from huracan.streams import errors as e
from huracan.streams.errors import SchemaCatalogError, SerdeError, UnknownEventType
from huracan.streams.topics import TOPIC_DEFINITIONS, TopicCatalog

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import Schema

#: first two bytes of an Avro single-object encoded record
SINGLE_OBJECT_MAGIC: Final = b"\xc3\x01"
SINGLE_OBJECT_HEADER_SIZE: Final = 10
#: first byte of a Confluent wire-format record
CONFLUENT_MAGIC: Final = b"\x00"
CONFLUENT_HEADER_SIZE: Final = 5
#: the schemas shipped with the package
PACKAGED_SCHEMA_DIR: Final = Path(__file__).resolve().parent.parent / "schemas"

_HISTORY_FILE = re.compile(r"^(?P<stem>[a-z0-9_]+)\.v(?P<version>[0-9]+)\.avsc$")
_CURRENT_FILE = re.compile(r"^(?P<stem>[a-z0-9_]+)\.avsc$")
_TIME_LOGICAL_TYPES: Final = frozenset(
    {
        "timestamp-millis",
        "timestamp-micros",
        "timestamp-nanos",
        "local-timestamp-millis",
        "local-timestamp-micros",
        "local-timestamp-nanos",
        "date",
        "time-millis",
        "time-micros",
    }
)
_BYTES_TYPES: Final = (bytes, bytearray, memoryview)


def crc64_avro(canonical_form: str) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO (Rabin) fingerprint of a parsing canonical form."""
    return bytes.fromhex(_fastavro_fingerprint(canonical_form, "CRC-64-AVRO"))


def seconds_to_micros(seconds: float) -> int:
    """Epoch seconds (the core's time unit) to the schemas' ``timestamp-micros`` value."""
    return round(seconds * 1_000_000)


def micros_to_seconds(micros: int) -> float:
    """A decoded ``timestamp-micros`` value to epoch seconds (the core's time unit)."""
    return micros / 1_000_000


def _strip_time_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _strip_time_logical_types(v) for k, v in node.items()}
        if out.get("logicalType") in _TIME_LOGICAL_TYPES:
            del out["logicalType"]
        return out
    if isinstance(node, list):
        return [_strip_time_logical_types(v) for v in node]
    return node


@dataclass(frozen=True, eq=False, slots=True)
class EventSchema:
    """One version of one event type's schema, parsed once.

    ``parsed`` (with logical types) is what records are written with; ``wire`` (time logical
    types removed, same binary encoding) is what they are read with, so timestamps decode as
    ints. ``fingerprint`` is the 8-byte little-endian CRC-64-AVRO of ``canonical_form``.
    """

    event_type: str
    full_name: str
    version: int
    schema: Mapping[str, Any]
    schema_str: str
    canonical_form: str
    fingerprint: bytes
    parsed: Any
    wire: Any

    @property
    def field_names(self) -> list[str]:
        return [f["name"] for f in self.schema["fields"]]

    @classmethod
    def from_json(cls, schema: Mapping[str, Any] | str, *, source: str = "<schema>") -> EventSchema:
        """Parse an Avro record schema (dict or JSON text).

        Raises :class:`SchemaCatalogError` naming ``source`` when it is not valid JSON, not a
        valid Avro schema, not a record, or has a ``version`` that is not an integer >= 1.
        """
        try:
            raw = json.loads(schema) if isinstance(schema, str) else copy.deepcopy(dict(schema))
        except (TypeError, ValueError) as exc:
            raise SchemaCatalogError(f"{source}: not JSON: {exc}") from None
        if not isinstance(raw, dict) or raw.get("type") != "record" or "name" not in raw:
            raise SchemaCatalogError(f"{source}: not an Avro record schema")
        version = raw.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise SchemaCatalogError(
                f"{source}: 'version' must be an integer >= 1, got {version!r}"
            )
        try:
            parsed = fastavro.parse_schema(copy.deepcopy(raw))
            wire = fastavro.parse_schema(_strip_time_logical_types(raw))
            canonical = to_parsing_canonical_form(raw)
        except Exception as exc:  # noqa: BLE001 - any parse failure means a bad schema file
            raise SchemaCatalogError(f"{source}: invalid Avro schema: {exc}") from None
        name = str(raw["name"])
        namespace = raw.get("namespace")
        full_name = name if "." in name or not namespace else f"{namespace}.{name}"
        return cls(
            event_type=full_name.rsplit(".", 1)[-1],
            full_name=full_name,
            version=version,
            schema=raw,
            schema_str=json.dumps(raw, separators=(",", ":")),
            canonical_form=canonical,
            fingerprint=crc64_avro(canonical),
            parsed=parsed,
            wire=wire,
        )

    @classmethod
    def from_file(cls, path: Path) -> EventSchema:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SchemaCatalogError(f"cannot read schema file {path}: {exc}") from None
        return cls.from_json(text, source=str(path))


class _ReadPlan(NamedTuple):
    event_type: str
    writer: Any
    reader: Any  # None when the writer is the current schema
    version: int


class DecodedEvent(NamedTuple):
    """A decoded record with its event type and the writer schema's version."""

    event_type: str
    record: dict[str, Any]
    writer_version: int


class SchemaCatalog:
    """Event type ↔ schema (current and historical versions) ↔ fingerprint ↔ topic.

    Immutable once built. ``current`` schemas are what is written and what every record is
    read into; ``history`` schemas are older writer versions kept only for decoding.
    """

    def __init__(
        self,
        current: Iterable[EventSchema],
        history: Iterable[EventSchema] = (),
        topics: TopicCatalog | None = None,
    ) -> None:
        """Raises :class:`SchemaCatalogError` on duplicate event types or fingerprints, or a
        historical schema whose event type has no current schema or whose version is not
        older than the current one."""
        self._current: dict[str, EventSchema] = {}
        self._by_full_name: dict[str, EventSchema] = {}
        for s in current:
            if s.event_type in self._current:
                raise SchemaCatalogError(f"event type {s.event_type} has two current schemas")
            self._current[s.event_type] = s
            self._by_full_name[s.full_name] = s
        self._versions: dict[str, list[EventSchema]] = {t: [s] for t, s in self._current.items()}
        self._by_fingerprint: dict[bytes, EventSchema] = {}
        self._plans: dict[bytes, _ReadPlan] = {}
        for s in [*self._current.values(), *history]:
            reader = self._current.get(s.event_type)
            if reader is None or reader.full_name != s.full_name:
                raise SchemaCatalogError(
                    f"historical schema {s.full_name} v{s.version} has no current schema"
                )
            if s is not reader:
                if s.version >= reader.version:
                    raise SchemaCatalogError(
                        f"historical schema {s.full_name} v{s.version} is not older than the "
                        f"current v{reader.version}"
                    )
                self._versions[s.event_type].append(s)
            known = self._by_fingerprint.get(s.fingerprint)
            if known is not None:
                if known.full_name == s.full_name:
                    continue  # a version that changed only docs: same canonical form
                raise SchemaCatalogError(
                    f"fingerprint collision between {known.full_name} and {s.full_name}"
                )
            self._by_fingerprint[s.fingerprint] = s
            self._plans[s.fingerprint] = _ReadPlan(
                s.event_type, s.wire, None if s is reader else reader.wire, s.version
            )
        for versions in self._versions.values():
            versions.sort(key=lambda v: v.version)
        self._topics = topics if topics is not None else TopicCatalog.from_config(KafkaConfig())

    @classmethod
    def load(
        cls,
        directory: str | Path | None = None,
        *,
        topics: TopicCatalog | None = None,
        require_all_topics: bool = True,
    ) -> SchemaCatalog:
        """Load ``<name>.avsc`` (current) and ``<name>.v<N>.avsc`` (history) from ``directory``.

        ``directory`` defaults to the packaged schemas, ``topics`` to the default-prefix topic
        catalog. With ``require_all_topics`` every topic's event type must have a schema.
        Raises :class:`SchemaCatalogError` naming the file or the missing event type.
        """
        root = Path(directory) if directory is not None else PACKAGED_SCHEMA_DIR
        if not root.is_dir():
            raise SchemaCatalogError(f"schema directory {root} does not exist")
        current: list[EventSchema] = []
        history: list[EventSchema] = []
        for path in sorted(root.iterdir()):
            if m := _HISTORY_FILE.match(path.name):
                s = EventSchema.from_file(path)
                if s.version != int(m["version"]):
                    raise SchemaCatalogError(
                        f"{path}: file name says v{m['version']}, schema says v{s.version}"
                    )
                history.append(s)
            elif _CURRENT_FILE.match(path.name):
                current.append(EventSchema.from_file(path))
        catalog = cls(current, history, topics)
        if require_all_topics:
            missing = [
                d.event_type for d in TOPIC_DEFINITIONS if d.event_type not in catalog._current
            ]
            if missing:
                raise SchemaCatalogError(f"{root}: no schema for event types {missing}")
        return catalog

    @classmethod
    def from_config(cls, config: HuracanConfig) -> SchemaCatalog:
        """The packaged schemas with the topics of ``config.kafka`` (its prefix)."""
        return cls.load(topics=TopicCatalog.from_config(config))

    @property
    def event_types(self) -> list[str]:
        return list(self._current)

    @property
    def topics(self) -> TopicCatalog:
        return self._topics

    def schema(self, event_type: str) -> EventSchema:
        """The current schema of ``event_type``; raises :class:`UnknownEventType`."""
        try:
            return self._current[event_type]
        except KeyError:
            raise UnknownEventType(
                f"unknown event type {event_type!r}; known: {sorted(self._current)}"
            ) from None

    def versions(self, event_type: str) -> list[EventSchema]:
        """Every known version of ``event_type``, oldest first (the last is current)."""
        self.schema(event_type)
        return list(self._versions[event_type])

    def by_fingerprint(self, fingerprint: bytes) -> EventSchema | None:
        return self._by_fingerprint.get(bytes(fingerprint))

    def by_full_name(self, full_name: str) -> EventSchema | None:
        """The current schema whose record full name is ``full_name``."""
        return self._by_full_name.get(full_name)

    def topic_for(self, event_type: str) -> str:
        """The topic carrying ``event_type``; raises :class:`UnknownEventType`."""
        return self._topics.for_event_type(event_type).name

    def event_type_for_topic(self, topic: str) -> str:
        """The event type carried by ``topic``; raises :class:`UnknownEventType`."""
        return self._topics.by_name(topic).event_type

    def _plan(self, fingerprint: bytes) -> _ReadPlan | None:
        return self._plans.get(fingerprint)


# --- serde ------------------------------------------------------------------------------------


def _read_body(plan: _ReadPlan, data: Any, offset: int) -> dict[str, Any]:
    """Decode the Avro body at ``data[offset:]`` with ``plan``; only SerdeError escapes."""
    buf = io.BytesIO(data)
    buf.seek(offset)
    try:
        record: dict[str, Any] = fastavro.schemaless_reader(  # type: ignore[assignment]
            buf, plan.writer, plan.reader
        )
    except EOFError:
        raise SerdeError(
            e.TRUNCATED, f"{plan.event_type} body ends early", event_type=plan.event_type
        ) from None
    except SchemaResolutionError as exc:
        raise SerdeError(
            e.INCOMPATIBLE_SCHEMA,
            f"{plan.event_type} v{plan.version} cannot be read as the current schema: {exc}",
            event_type=plan.event_type,
        ) from None
    except Exception as exc:  # noqa: BLE001 - the contract: only SerdeError leaves decode
        if isinstance(exc, IndexError) and buf.tell() >= len(data):
            # fastavro's C reader fails a varint cut short with IndexError, not EOFError
            raise SerdeError(
                e.TRUNCATED, f"{plan.event_type} body ends early", event_type=plan.event_type
            ) from None
        raise SerdeError(
            e.MALFORMED,
            f"{plan.event_type} body is not valid Avro: {type(exc).__name__}: {exc}",
            event_type=plan.event_type,
        ) from None
    if buf.tell() != len(data):
        raise SerdeError(
            e.MALFORMED,
            f"{plan.event_type} body has {len(data) - buf.tell()} trailing bytes",
            event_type=plan.event_type,
        )
    return record


def _check_bytes(data: Any) -> None:
    if data is None:
        raise SerdeError(e.EMPTY, "value is None (a tombstone is not an event)")
    if not isinstance(data, _BYTES_TYPES):
        raise SerdeError(e.NOT_BYTES, f"value is {type(data).__name__}, not bytes")
    if len(data) == 0:
        raise SerdeError(e.EMPTY, "value has zero bytes")


class Serde(ABC):
    """Encodes event dicts to framed Avro bytes and back. Thread-safe; no I/O except the
    Schema Registry calls of :class:`ConfluentSerde` on cache misses.

    Every method raises only :class:`SerdeError` for a bad record or event type.
    """

    #: ``"single-object"`` or ``"confluent"``
    framing: str = ""

    def __init__(self, catalog: SchemaCatalog) -> None:
        self._catalog = catalog

    @property
    def catalog(self) -> SchemaCatalog:
        return self._catalog

    @abstractmethod
    def _header(self, event_type: str, topic: str | None) -> bytes:
        """The framing header for ``event_type`` (raises SerdeError)."""

    @abstractmethod
    def _plan_for(self, data: Any) -> tuple[_ReadPlan, int]:
        """The read plan and body offset for framed ``data`` (raises SerdeError)."""

    def _writer(self, event_type: str) -> Any:
        try:
            return self._catalog.schema(event_type).parsed
        except UnknownEventType as exc:
            raise SerdeError(e.UNKNOWN_EVENT_TYPE, str(exc), event_type=event_type) from None

    def encode(
        self, event_type: str, record: Mapping[str, Any], *, topic: str | None = None
    ) -> bytes:
        """Frame and encode ``record`` as the current schema of ``event_type``.

        ``topic`` matters only to the Confluent framing (subject ``<topic>-value``; default:
        the catalog's topic of the event type). Missing fields with a default take it; a
        missing field without one, a value of the wrong type, an unknown enum symbol or a
        field the schema does not have raise ``SerdeError("schema_violation")``.
        """
        header = self._header(event_type, topic)
        schema = self._writer(event_type)
        buf = io.BytesIO()
        buf.write(header)
        try:
            fastavro.schemaless_writer(buf, schema, record, strict_allow_default=True)
        except Exception as exc:  # noqa: BLE001 - the contract: only SerdeError leaves encode
            raise SerdeError(
                e.SCHEMA_VIOLATION,
                f"{event_type} record does not match its schema: {type(exc).__name__}: {exc}",
                event_type=event_type,
            ) from None
        return buf.getvalue()

    def encode_many(
        self,
        event_type: str,
        records: Iterable[Mapping[str, Any]],
        *,
        topic: str | None = None,
    ) -> list[bytes]:
        """:meth:`encode` each record; raises on the first bad one."""
        header = self._header(event_type, topic)
        schema = self._writer(event_type)
        out: list[bytes] = []
        writer = fastavro.schemaless_writer
        for record in records:
            buf = io.BytesIO()
            buf.write(header)
            try:
                writer(buf, schema, record, strict_allow_default=True)
            except Exception as exc:  # noqa: BLE001 - the contract: only SerdeError escapes
                raise SerdeError(
                    e.SCHEMA_VIOLATION,
                    f"{event_type} record #{len(out)} does not match its schema: "
                    f"{type(exc).__name__}: {exc}",
                    event_type=event_type,
                ) from None
            out.append(buf.getvalue())
        return out

    def decode_event(self, data: Any, expected: str | None = None) -> DecodedEvent:
        """Decode framed bytes into the current schema of the writer's event type.

        With ``expected``, a record of another event type raises
        ``SerdeError("unexpected_event_type")`` before its body is read.
        """
        _check_bytes(data)
        plan, offset = self._plan_for(data)
        if expected is not None and plan.event_type != expected:
            raise SerdeError(
                e.UNEXPECTED_EVENT_TYPE,
                f"expected {expected}, got {plan.event_type}",
                event_type=plan.event_type,
            )
        return DecodedEvent(plan.event_type, _read_body(plan, data, offset), plan.version)

    def decode(self, data: Any, expected: str | None = None) -> dict[str, Any]:
        """:meth:`decode_event`, returning only the record (the fast path)."""
        _check_bytes(data)
        plan, offset = self._plan_for(data)
        if expected is not None and plan.event_type != expected:
            raise SerdeError(
                e.UNEXPECTED_EVENT_TYPE,
                f"expected {expected}, got {plan.event_type}",
                event_type=plan.event_type,
            )
        return _read_body(plan, data, offset)

    def decode_many(
        self, values: Iterable[Any], expected: str | None = None
    ) -> list[dict[str, Any] | SerdeError]:
        """Decode a batch; a bad value yields its :class:`SerdeError` in its place (not raised),
        so the caller can dead-letter it and keep the rest."""
        out: list[dict[str, Any] | SerdeError] = []
        for value in values:
            try:
                out.append(self.decode(value, expected))
            except SerdeError as exc:
                out.append(exc)
        return out


class SingleObjectSerde(Serde):
    """Avro single-object encoding with the catalog's schemas; needs no registry."""

    framing = "single-object"

    def __init__(self, catalog: SchemaCatalog) -> None:
        super().__init__(catalog)
        self._headers = {
            t: SINGLE_OBJECT_MAGIC + catalog.schema(t).fingerprint for t in catalog.event_types
        }
        self._plans = catalog._plans

    def decode(self, data: Any, expected: str | None = None) -> dict[str, Any]:
        # fast path for the common case; anything unusual takes the checked path of Serde
        if type(data) is bytes and data[:2] == SINGLE_OBJECT_MAGIC:
            plan = self._plans.get(data[2:SINGLE_OBJECT_HEADER_SIZE])
            if plan is not None and (expected is None or expected == plan.event_type):
                return _read_body(plan, data, SINGLE_OBJECT_HEADER_SIZE)
        return super().decode(data, expected)

    def _header(self, event_type: str, topic: str | None) -> bytes:
        try:
            return self._headers[event_type]
        except KeyError:
            raise SerdeError(
                e.UNKNOWN_EVENT_TYPE,
                f"unknown event type {event_type!r}; known: {sorted(self._headers)}",
                event_type=event_type,
            ) from None

    def _plan_for(self, data: Any) -> tuple[_ReadPlan, int]:
        if data[:2] != SINGLE_OBJECT_MAGIC:
            if len(data) < 2 and data[0] == SINGLE_OBJECT_MAGIC[0]:
                raise SerdeError(e.TRUNCATED, "single-object header ends after 1 byte")
            raise SerdeError(e.BAD_MAGIC, f"expected C3 01, got {bytes(data[:2]).hex(' ').upper()}")
        if len(data) < SINGLE_OBJECT_HEADER_SIZE:
            raise SerdeError(e.TRUNCATED, f"single-object header ends after {len(data)} bytes")
        fp = bytes(data[2:SINGLE_OBJECT_HEADER_SIZE])
        plan = self._catalog._plan(fp)
        if plan is None:
            raise SerdeError(e.UNKNOWN_FINGERPRINT, f"no known schema has fingerprint {fp.hex()}")
        return plan, SINGLE_OBJECT_HEADER_SIZE


class SchemaRegistryClientLike(Protocol):
    """The part of :class:`confluent_kafka.schema_registry.SchemaRegistryClient` the serde uses."""

    def register_schema(self, subject_name: str, schema: Schema) -> int: ...

    def lookup_schema(self, subject_name: str, schema: Schema) -> Any: ...

    def get_schema(self, schema_id: int) -> Schema: ...


def _registry_failure(exc: Exception, what: str, event_type: str | None) -> SerdeError:
    """Map a registry client exception to a SerdeError (404 unknown, 409 incompatible)."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    if isinstance(exc, SchemaRegistryError):
        if exc.http_status_code == 404:
            return SerdeError(e.UNKNOWN_SCHEMA_ID, f"{what}: {exc}", event_type=event_type)
        if exc.http_status_code in (409, 422):
            return SerdeError(e.INCOMPATIBLE_SCHEMA, f"{what}: {exc}", event_type=event_type)
    return SerdeError(
        e.REGISTRY_UNAVAILABLE, f"{what}: {type(exc).__name__}: {exc}", event_type=event_type
    )


class ConfluentSerde(Serde):
    """The Confluent wire format (``00`` + 4-byte big-endian schema id) with a Schema Registry.

    ``auto_register`` (default) registers the current schema under ``<topic>-value`` on first
    use (idempotent at the registry); without it the schema must already be registered there.
    Registry failures raise ``SerdeError`` with reason ``unknown_schema_id`` (404),
    ``incompatible_schema`` (409/422) or ``registry_unavailable`` (anything else; transient).
    """

    framing = "confluent"

    def __init__(
        self,
        catalog: SchemaCatalog,
        client: SchemaRegistryClientLike,
        *,
        auto_register: bool = True,
    ) -> None:
        super().__init__(catalog)
        self._client = client
        self._auto_register = auto_register
        self._headers: dict[tuple[str, str | None], bytes] = {}
        self._id_plans: dict[int, _ReadPlan] = {}

    @property
    def client(self) -> SchemaRegistryClientLike:
        return self._client

    def schema_id(self, event_type: str, topic: str | None = None) -> int:
        """The registry id of ``event_type``'s current schema under ``<topic>-value``.

        Punctuation types (a topic's second event type, e.g. ``Watermark``) are registered under
        their record name instead (RecordNameStrategy), so they never share a subject with the
        topic's own value schema."""
        return int.from_bytes(self._header(event_type, topic)[1:], "big")

    def _header(self, event_type: str, topic: str | None) -> bytes:
        header = self._headers.get((event_type, topic))
        if header is not None:
            return header
        from confluent_kafka.schema_registry import Schema

        try:
            schema = self._catalog.schema(event_type)
            home = self._catalog.topics.for_event_type(event_type)
            if event_type in home.punctuation:
                subject = schema.full_name
            else:
                subject = f"{topic or home.name}-value"
        except UnknownEventType as exc:
            raise SerdeError(e.UNKNOWN_EVENT_TYPE, str(exc), event_type=event_type) from None
        candidate = Schema(schema.schema_str, "AVRO")
        try:
            if self._auto_register:
                schema_id = int(self._client.register_schema(subject, candidate))
            else:
                schema_id = int(self._client.lookup_schema(subject, candidate).schema_id)
        except Exception as exc:  # noqa: BLE001 - the contract: only SerdeError escapes
            action = "register" if self._auto_register else "look up"
            raise _registry_failure(
                exc, f"cannot {action} {event_type} under subject {subject}", event_type
            ) from None
        header = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
        self._headers[(event_type, topic)] = header
        self._id_plans.setdefault(
            schema_id, _ReadPlan(event_type, schema.wire, None, schema.version)
        )
        return header

    def _plan_for(self, data: Any) -> tuple[_ReadPlan, int]:
        if data[0] != 0:
            raise SerdeError(e.BAD_MAGIC, f"expected 00, got {bytes(data[:1]).hex().upper()}")
        if len(data) < CONFLUENT_HEADER_SIZE:
            raise SerdeError(e.TRUNCATED, f"Confluent header ends after {len(data)} bytes")
        schema_id = int.from_bytes(data[1:CONFLUENT_HEADER_SIZE], "big")
        plan = self._id_plans.get(schema_id)
        if plan is None:
            plan = self._fetch_plan(schema_id)
        return plan, CONFLUENT_HEADER_SIZE

    def _fetch_plan(self, schema_id: int) -> _ReadPlan:
        try:
            registered = self._client.get_schema(schema_id)
        except Exception as exc:  # noqa: BLE001 - the contract: only SerdeError escapes
            raise _registry_failure(exc, f"schema id {schema_id}", None) from None
        if (registered.schema_type or "AVRO") != "AVRO" or not registered.schema_str:
            raise SerdeError(
                e.UNKNOWN_EVENT_TYPE, f"schema id {schema_id} is {registered.schema_type}, not Avro"
            )
        try:
            writer = EventSchema.from_json(registered.schema_str, source=f"schema id {schema_id}")
        except SchemaCatalogError as exc:
            raise SerdeError(e.UNKNOWN_EVENT_TYPE, str(exc)) from None
        reader = self._catalog.by_full_name(writer.full_name)
        if reader is None:
            raise SerdeError(
                e.UNKNOWN_EVENT_TYPE,
                f"schema id {schema_id} is {writer.full_name}, not an event type of the catalog",
            )
        same = writer.fingerprint == reader.fingerprint
        plan = _ReadPlan(
            reader.event_type, writer.wire, None if same else reader.wire, writer.version
        )
        self._id_plans[schema_id] = plan
        return plan


def make_serde(
    config: HuracanConfig,
    *,
    catalog: SchemaCatalog | None = None,
    registry_client: SchemaRegistryClientLike | None = None,
) -> Serde:
    """The serde ``config`` asks for: Confluent framing when ``kafka.schema_registry_url`` is
    set (a ``mock://`` URL gives confluent-kafka's in-memory registry), else single-object.

    ``catalog`` defaults to the packaged schemas with ``config``'s topic prefix;
    ``registry_client`` overrides the client built from the URL. Opens no connection.
    """
    catalog = catalog if catalog is not None else SchemaCatalog.from_config(config)
    url = config.kafka.schema_registry_url
    if registry_client is None and not url:
        return SingleObjectSerde(catalog)
    if registry_client is None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        registry_client = SchemaRegistryClient.new_client({"url": url})
    return ConfluentSerde(catalog, registry_client)


__all__: Sequence[str] = (
    "CONFLUENT_MAGIC",
    "PACKAGED_SCHEMA_DIR",
    "SINGLE_OBJECT_MAGIC",
    "ConfluentSerde",
    "DecodedEvent",
    "EventSchema",
    "SchemaCatalog",
    "SchemaRegistryClientLike",
    "Serde",
    "SingleObjectSerde",
    "crc64_avro",
    "make_serde",
    "micros_to_seconds",
    "seconds_to_micros",
)
