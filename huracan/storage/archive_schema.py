"""Each archivable event type's Arrow schema, derived from its Avro schema.

:func:`arrow_schema` maps ``timestamp-micros`` longs → ``timestamp[us, tz=UTC]``, ``double`` →
float64, ``long`` → int64, ``int`` → int32, ``string`` and enums → string, ``boolean`` → bool,
``bytes`` → binary, records → struct, arrays → list; a union with ``null`` makes the column
nullable, every other column is ``not null``. :class:`ArchiveKind` is what the archive knows of
one event type (schema, folder, sort key ``(ts, seq)`` or ``(ts, event_id)``, defaults, enum
symbols); :func:`records_to_table` turns decoded events into a table of that schema. An event
type without a ``coin`` string, a ``ts`` timestamp or an ``event_id`` cannot be archived
(:class:`~huracan.storage.archive_errors.ArchiveSchemaError`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from huracan.storage.archive_errors import (
    ArchiveSchemaError,
)
from huracan.storage.archive_paths import kind_folder
from huracan.streams.errors import UnknownEventType
from huracan.streams.serde import EventSchema, SchemaCatalog


def _avro_to_arrow(avro_type: Any, where: str) -> tuple[pa.DataType, bool]:
    """``(arrow type, nullable)`` of an Avro type; raises :class:`ArchiveSchemaError`."""
    if isinstance(avro_type, list):
        branches = [b for b in avro_type if b != "null"]
        if len(branches) != 1:
            raise ArchiveSchemaError(f"{where}: union {avro_type} has no Arrow equivalent")
        inner, _ = _avro_to_arrow(branches[0], where)
        return inner, len(branches) != len(avro_type)
    if isinstance(avro_type, dict):
        kind = avro_type.get("type")
        logical = avro_type.get("logicalType")
        if kind == "long" and logical == "timestamp-micros":
            return pa.timestamp("us", tz="UTC"), False
        if kind == "long" and logical == "timestamp-millis":
            return pa.timestamp("ms", tz="UTC"), False
        if kind == "enum":
            return pa.string(), False
        if kind == "array":
            item, item_nullable = _avro_to_arrow(avro_type["items"], f"{where}[]")
            return pa.list_(pa.field("item", item, nullable=item_nullable)), False
        if kind == "record":
            fields = []
            for f in avro_type["fields"]:
                t, nullable = _avro_to_arrow(f["type"], f"{where}.{f['name']}")
                fields.append(pa.field(f["name"], t, nullable=nullable))
            return pa.struct(fields), False
        if isinstance(kind, str | list | dict):
            return _avro_to_arrow(kind, where)
    primitives: dict[str, pa.DataType] = {
        "string": pa.string(),
        "long": pa.int64(),
        "int": pa.int32(),
        "double": pa.float64(),
        "float": pa.float32(),
        "boolean": pa.bool_(),
        "bytes": pa.binary(),
    }
    if isinstance(avro_type, str) and avro_type in primitives:
        return primitives[avro_type], False
    raise ArchiveSchemaError(f"{where}: Avro type {avro_type!r} has no Arrow equivalent")


def arrow_schema(schema: EventSchema) -> pa.Schema:
    """The explicit Arrow schema of an Avro record schema (mapping in the module docstring).

    Raises :class:`ArchiveSchemaError` for an Avro type without an Arrow equivalent (a union
    of two non-null types, a map, a fixed).
    """
    fields = []
    for f in schema.schema["fields"]:
        t, nullable = _avro_to_arrow(f["type"], f"{schema.event_type}.{f['name']}")
        fields.append(pa.field(f["name"], t, nullable=nullable))
    return pa.schema(fields)


@dataclass(frozen=True, eq=False, slots=True)
class ArchiveKind:
    """What the archive needs to know about one event type (built by :func:`archive_kind`)."""

    event_type: str
    schema: EventSchema
    arrow: pa.Schema
    folder: str
    #: the in-file sort key, e.g. ``("ts", "seq")``
    sort_key: tuple[str, ...]
    #: top-level timestamp columns (read back as int microseconds)
    timestamp_fields: frozenset[str]
    #: Avro defaults of the fields that have one (used for columns an older file lacks)
    defaults: Mapping[str, Any]
    #: symbols of each enum column
    enums: Mapping[str, frozenset[str]]

    @property
    def tie_breaker(self) -> str:
        return self.sort_key[1]

    @property
    def merge_key(self) -> tuple[str, ...]:
        """The cross-coin order: ``(ts, coin, seq)`` or ``(ts, coin, event_id)``."""
        return ("ts", "coin", self.tie_breaker)


def _enum_symbols(avro_type: Any) -> frozenset[str] | None:
    if isinstance(avro_type, list):
        for b in avro_type:
            found = _enum_symbols(b)
            if found is not None:
                return found
        return None
    if isinstance(avro_type, dict) and avro_type.get("type") == "enum":
        return frozenset(avro_type["symbols"])
    return None


def make_kind(schema: EventSchema) -> ArchiveKind:
    """The :class:`ArchiveKind` of ``schema``; raises :class:`ArchiveSchemaError` when the
    event type has no ``coin`` string or ``ts`` timestamp field (it cannot be archived)."""
    arrow = arrow_schema(schema)
    names = arrow.names
    if "coin" not in names or arrow.field("coin").type != pa.string():
        raise ArchiveSchemaError(f"{schema.event_type} has no 'coin' string field to archive by")
    if "ts" not in names or not pa.types.is_timestamp(arrow.field("ts").type):
        raise ArchiveSchemaError(f"{schema.event_type} has no 'ts' timestamp field to archive by")
    if "event_id" not in names:
        raise ArchiveSchemaError(f"{schema.event_type} has no 'event_id' field to de-duplicate")
    tie = "seq" if "seq" in names and pa.types.is_integer(arrow.field("seq").type) else "event_id"
    enums: dict[str, frozenset[str]] = {}
    for f in schema.schema["fields"]:
        symbols = _enum_symbols(f["type"])
        if symbols is not None:
            enums[f["name"]] = symbols
    return ArchiveKind(
        event_type=schema.event_type,
        schema=schema,
        arrow=arrow,
        folder=kind_folder(schema.event_type),
        sort_key=("ts", tie),
        timestamp_fields=frozenset(f.name for f in arrow if pa.types.is_timestamp(f.type)),
        defaults={f["name"]: f["default"] for f in schema.schema["fields"] if "default" in f},
        enums=enums,
    )


@cache
def _packaged_catalog() -> SchemaCatalog:
    return SchemaCatalog.load()


@cache
def _packaged_kind(event_type: str) -> ArchiveKind:
    try:
        schema = _packaged_catalog().schema(event_type)
    except UnknownEventType as exc:
        raise ArchiveSchemaError(str(exc)) from None
    return make_kind(schema)


def archive_kind(event_type: str, catalog: SchemaCatalog | None = None) -> ArchiveKind:
    """The archive kind of ``event_type`` in ``catalog`` (default: the packaged schemas).

    Raises :class:`ArchiveSchemaError` for an unknown or unarchivable event type.
    """
    if catalog is None:
        return _packaged_kind(event_type)
    try:
        return make_kind(catalog.schema(event_type))
    except UnknownEventType as exc:
        raise ArchiveSchemaError(str(exc)) from None


def records_to_table(records: Sequence[Mapping[str, Any]], kind: ArchiveKind) -> pa.Table:
    """Event dicts (as the serde decodes them) as a table of ``kind.arrow``.

    A missing field takes its Avro default; timestamps may be int microseconds or aware
    datetimes. Raises :class:`ArchiveSchemaError` naming the field for a missing required
    field, a value of the wrong type, a null in a non-null column or an unknown enum symbol.
    """
    arrays = []
    for f in kind.arrow:
        name = f.name
        try:
            values = [r[name] for r in records]
        except KeyError:
            if name not in kind.defaults:
                bad = next(i for i, r in enumerate(records) if name not in r)
                raise ArchiveSchemaError(
                    f"{kind.event_type} record #{bad} has no field {name!r}"
                ) from None
            default = kind.defaults[name]
            values = [r.get(name, default) for r in records]
        try:
            array = pa.array(values, type=f.type)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raise ArchiveSchemaError(
                f"{kind.event_type} field {name!r}: {type(exc).__name__}: {exc}"
            ) from None
        if not f.nullable and array.null_count:
            raise ArchiveSchemaError(f"{kind.event_type} field {name!r} is null but not nullable")
        symbols = kind.enums.get(name)
        if symbols is not None and len(array):
            unknown = set(pc.unique(array).to_pylist()) - symbols - {None}
            if unknown:
                raise ArchiveSchemaError(
                    f"{kind.event_type} field {name!r} has unknown symbols {sorted(unknown)}"
                )
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=kind.arrow)
