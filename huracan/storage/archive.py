"""The Parquet archive of the event log: one file per coin and UTC day, written atomically.

Layout (``root`` is any directory)::

    <root>/<coin>/YYYYMMDD.parquet                      MarketTick (the spec's data/<coin>/…)
    <root>/_executions/<coin>/YYYYMMDD.parquet          Execution
    <root>/_risk_decisions/<coin>/YYYYMMDD.parquet      RiskDecision
    <root>/_<snake_case event type>/<coin>/…            any other event type with coin and ts

The day is the UTC date of the event's ``ts``. Coin directories never start with ``_`` (a coin
must match :data:`COIN_PATTERN`), so the ``_<kind>`` folders cannot collide with a coin.
Files whose name starts with ``.`` are temporary files of a writer (or left by one that
crashed) and are ignored by the readers.

Each file:

* has an explicit Arrow schema derived from the event's Avro schema (:func:`arrow_schema`):
  ``timestamp-micros`` longs → ``timestamp[us, tz=UTC]``, ``double`` → float64, ``long`` →
  int64, ``int`` → int32, ``string`` and enums → string, ``boolean`` → bool, ``bytes`` →
  binary, records → struct, arrays → list; a union with ``null`` makes the column nullable,
  every other column is ``not null``;
* is sorted by ``(ts, seq)`` for ticks and ``(ts, event_id)`` for the others, holds each
  ``event_id`` once, is split into row groups of ``row_group_size`` rows (zstd, statistics on,
  so ``ts`` range filters skip row groups), and declares its sort order in the footer;
* carries Parquet key-value metadata (see :class:`ArchiveFileMetadata`): event type, Avro
  schema full name, version, fingerprint and text, coin, day, rows, ts range, sort key, the
  source topics with, per partition, the offset intervals its rows came from, and the writer's
  format version. Every value is a string; the structured ones are JSON.

It is plain Parquet: ``pyarrow.parquet.read_table``, DuckDB (``select * from 'f.parquet'``),
Polars (``pl.read_parquet``) and pandas read it as is.

Writing (:class:`ArchiveWriter`) is atomic and idempotent. For each (coin, day) it takes an
exclusive ``flock`` on the coin directory, reads the existing file if any, unions the rows,
keeps the first row of each ``event_id`` (the existing one), sorts, writes a temporary file in
the same directory, fsyncs it, ``os.replace``-s it over the final name and fsyncs the
directory. A crash leaves either the old file or the new one under the final name, never a
partial one; re-archiving the same log after a crash changes nothing.

:func:`archive_topic` drains a topic into the archive and commits the consumer offsets only
after the files (and the dead letters) are durable. The directory lock makes concurrent
writers on one machine safe; on a shared network file system where ``flock`` is not honoured,
run one archiver per root. Stale ``.*.tmp`` files can be deleted once no writer runs.

The writer is an adapter, not part of the domain core: it reads no clock and decides nothing;
the only wall-clock read is the dead letters' ``failed_at`` (injectable: ``clock_us``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Final, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from huracan.config import HuracanConfig
from huracan.storage.archive_errors import (
    ArchiveError,
    ArchiveFileCorrupt,
    ArchiveSchemaError,
    ArchiveWriteError,
    TopicReadError,
    TopicReadTimeout,
)
from huracan.streams.dead_letter import (
    DEAD_LETTER_EVENT_TYPE,
    dead_letter_from_message,
    encode_dead_letter,
)
from huracan.streams.errors import SerdeError, UnknownEventType
from huracan.streams.serde import EventSchema, SchemaCatalog, Serde, make_serde

#: version of the file layout and metadata written here; bumped on an incompatible change
FORMAT_VERSION: Final = 1
#: key-value metadata keys all start with this
METADATA_PREFIX: Final = "huracan."
#: default rows per Parquet row group
DEFAULT_ROW_GROUP_SIZE: Final = 64 * 1024
#: what a coin (a directory name) may look like
COIN_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,63}$")
#: event types with a fixed folder; others get ``_<snake_case>``
KIND_FOLDERS: Final[Mapping[str, str]] = {
    "MarketTick": "",
    "Execution": "_executions",
    "RiskDecision": "_risk_decisions",
}
FILE_SUFFIX: Final = ".parquet"
DAY_US: Final = 86_400_000_000
_T = TypeVar("_T")
_DAY_FILE = re.compile(r"^(?P<day>[0-9]{8})\.parquet$")
_EPOCH_DAY = date(1970, 1, 1)


# --- event kinds and the Arrow schema ---------------------------------------------------------


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


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def kind_folder(event_type: str) -> str:
    """The folder of ``event_type`` under the root: ``""`` for MarketTick, else ``_<kind>``."""
    folder = KIND_FOLDERS.get(event_type)
    return folder if folder is not None else f"_{_snake(event_type)}"


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


# --- paths and days ---------------------------------------------------------------------------


def day_of(ts_us: int) -> date:
    """The UTC date of an epoch-microsecond timestamp."""
    return _EPOCH_DAY + timedelta(days=ts_us // DAY_US)


def day_start_us(day: date) -> int:
    """Epoch microseconds of ``day`` 00:00:00 UTC."""
    return (day - _EPOCH_DAY).days * DAY_US


def file_name(day: date) -> str:
    return f"{day:%Y%m%d}{FILE_SUFFIX}"


def parse_file_name(name: str) -> date | None:
    """The day of an archive file name ``YYYYMMDD.parquet``; None for any other name."""
    m = _DAY_FILE.match(name)
    if m is None:
        return None
    try:
        return datetime.strptime(m["day"], "%Y%m%d").replace(tzinfo=UTC).date()
    except ValueError:
        return None


def check_coin(coin: object) -> str:
    """``coin`` if it is a safe directory name (:data:`COIN_PATTERN`), else
    :class:`ArchiveSchemaError`."""
    if not isinstance(coin, str) or not COIN_PATTERN.match(coin) or ".." in coin:
        raise ArchiveSchemaError(f"coin {coin!r} is not a valid archive directory name")
    return coin


def kind_dir(root: str | Path, event_type: str) -> Path:
    """The folder holding ``event_type``'s coin folders under ``root``."""
    folder = kind_folder(event_type)
    return Path(root) / folder if folder else Path(root)


def archive_path(root: str | Path, event_type: str, coin: str, day: date) -> Path:
    """``<root>[/_<kind>]/<coin>/YYYYMMDD.parquet``."""
    return kind_dir(root, event_type) / check_coin(coin) / file_name(day)


def to_micros(value: datetime | int | None, what: str = "time") -> int | None:
    """An aware datetime or int epoch microseconds as int microseconds (None stays None).

    Raises :class:`ArchiveSchemaError` for a naive datetime (ambiguous) or another type.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ArchiveSchemaError(f"{what} {value!r} is a naive datetime; give it a timezone")
        delta = value - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ArchiveSchemaError(f"{what} must be a datetime or int microseconds, got {value!r}")


# --- metadata ---------------------------------------------------------------------------------

#: ``{topic: {partition: ((first, last), …)}}`` — offset intervals, inclusive
SourceOffsets = dict[str, dict[int, tuple[tuple[int, int], ...]]]


def _writer_id() -> str:
    try:
        version = importlib_metadata.version("huracan")
    except importlib_metadata.PackageNotFoundError:
        version = "unknown"
    return f"huracan-archive/{FORMAT_VERSION} (huracan {version})"


def merge_intervals(intervals: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sorted, disjoint inclusive intervals; overlapping or adjacent ones are joined."""
    out: list[list[int]] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def merge_sources(a: SourceOffsets, b: SourceOffsets) -> SourceOffsets:
    """The union of two source-offset maps (intervals merged per topic and partition)."""
    out: SourceOffsets = {}
    for src in (a, b):
        for topic, parts in src.items():
            dest = out.setdefault(topic, {})
            for p, intervals in parts.items():
                dest[p] = merge_intervals([*dest.get(p, ()), *intervals])
    return {t: dict(sorted(parts.items())) for t, parts in sorted(out.items())}


@dataclass(frozen=True, slots=True)
class ArchiveFileMetadata:
    """The key-value metadata of an archive file (``huracan.*`` keys of the Parquet footer).

    ``sources`` maps each source topic to, per partition, the inclusive offset intervals the
    file's rows were consumed from (an interval may also contain offsets of other coins and
    days, which live in other files). Files written without a topic have no sources.
    """

    format_version: int
    writer: str
    event_type: str
    schema_full_name: str
    schema_version: int
    schema_fingerprint: str
    coin: str
    day: date
    rows: int
    ts_min: int
    ts_max: int
    sort_key: tuple[str, ...]
    sources: SourceOffsets = field(default_factory=dict)

    @property
    def source_topics(self) -> list[str]:
        return list(self.sources)

    def to_kv(self, schema: EventSchema) -> dict[str, str]:
        p = METADATA_PREFIX
        return {
            f"{p}format_version": str(self.format_version),
            f"{p}writer": self.writer,
            f"{p}event_type": self.event_type,
            f"{p}schema.full_name": self.schema_full_name,
            f"{p}schema.version": str(self.schema_version),
            f"{p}schema.fingerprint": self.schema_fingerprint,
            f"{p}schema.avro": schema.schema_str,
            f"{p}coin": self.coin,
            f"{p}day": self.day.isoformat(),
            f"{p}rows": str(self.rows),
            f"{p}ts_min": str(self.ts_min),
            f"{p}ts_max": str(self.ts_max),
            f"{p}sort_key": ",".join(self.sort_key),
            f"{p}source_topics": json.dumps(list(self.sources)),
            f"{p}source_offsets": json.dumps(
                {
                    t: {str(part): [list(i) for i in iv] for part, iv in parts.items()}
                    for t, parts in self.sources.items()
                },
                separators=(",", ":"),
            ),
        }

    @classmethod
    def from_kv(cls, kv: Mapping[bytes, bytes] | None, path: Path) -> ArchiveFileMetadata:
        """Parse the footer metadata; raises :class:`ArchiveFileCorrupt` naming ``path``."""
        p = METADATA_PREFIX
        raw = {
            k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
            for k, v in (kv or {}).items()
        }
        try:
            offsets = json.loads(raw.get(f"{p}source_offsets", "{}"))
            sources: SourceOffsets = {
                str(t): {
                    int(part): tuple((int(lo), int(hi)) for lo, hi in iv)
                    for part, iv in parts.items()
                }
                for t, parts in offsets.items()
            }
            return cls(
                format_version=int(raw[f"{p}format_version"]),
                writer=raw.get(f"{p}writer", ""),
                event_type=raw[f"{p}event_type"],
                schema_full_name=raw[f"{p}schema.full_name"],
                schema_version=int(raw[f"{p}schema.version"]),
                schema_fingerprint=raw[f"{p}schema.fingerprint"],
                coin=raw[f"{p}coin"],
                day=date.fromisoformat(raw[f"{p}day"]),
                rows=int(raw[f"{p}rows"]),
                ts_min=int(raw[f"{p}ts_min"]),
                ts_max=int(raw[f"{p}ts_max"]),
                sort_key=tuple(raw[f"{p}sort_key"].split(",")),
                sources=sources,
            )
        except KeyError as exc:
            raise ArchiveFileCorrupt(path, f"metadata key {exc.args[0]} is missing") from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise ArchiveFileCorrupt(path, f"metadata is malformed: {exc}") from None


def _open_parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ArchiveFileCorrupt(path, f"{type(exc).__name__}: {exc}") from None


def read_metadata(path: str | Path) -> ArchiveFileMetadata:
    """The archive metadata of one file; raises :class:`ArchiveFileCorrupt` naming it."""
    p = Path(path)
    pf = _open_parquet(p)
    try:
        return ArchiveFileMetadata.from_kv(pf.metadata.metadata, p)
    finally:
        pf.close()


# --- reading one file -------------------------------------------------------------------------


def _conform(table: pa.Table, kind: ArchiveKind, path: Path) -> pa.Table:
    """``table`` with exactly ``kind.arrow``'s columns, in order, without schema metadata.

    A column an older file lacks gets its Avro default; a column of another type is cast when
    the cast is safe. Raises :class:`ArchiveFileCorrupt` otherwise.
    """
    target = kind.arrow
    if table.schema.equals(target, check_metadata=False):
        return table.replace_schema_metadata(None)
    columns = []
    n = table.num_rows
    for f in target:
        if f.name in table.column_names:
            col = table.column(f.name)
            if not col.type.equals(f.type):
                try:
                    col = col.cast(f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                    raise ArchiveFileCorrupt(
                        path, f"column {f.name!r} is {col.type}, expected {f.type}: {exc}"
                    ) from None
        elif f.name in kind.defaults:
            try:
                col = pa.array([kind.defaults[f.name]] * n, type=f.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise ArchiveFileCorrupt(path, f"column {f.name!r} missing: {exc}") from None
        else:
            raise ArchiveFileCorrupt(path, f"column {f.name!r} is missing and has no default")
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=target)


def _check_event_type(meta: Mapping[bytes, bytes] | None, kind: ArchiveKind, path: Path) -> None:
    found = (meta or {}).get(f"{METADATA_PREFIX}event_type".encode())
    if found is None:
        raise ArchiveFileCorrupt(path, "no huracan archive metadata in the footer")
    if found.decode("utf-8", "replace") != kind.event_type:
        raise ArchiveFileCorrupt(
            path, f"holds {found.decode('utf-8', 'replace')} events, not {kind.event_type}"
        )


def read_archive_file(
    path: str | Path,
    kind: ArchiveKind,
    *,
    start_us: int | None = None,
    end_us: int | None = None,
    columns: Sequence[str] | None = None,
    use_threads: bool = False,
) -> pa.Table:
    """The rows of one archive file with ``start_us <= ts < end_us``, in file order.

    Only the row groups whose ``ts`` statistics overlap the range are read. The table has
    ``kind.arrow``'s schema (or just ``columns``). Raises :class:`ArchiveFileCorrupt` naming
    the file for anything unreadable, and :class:`FileNotFoundError` when it is missing.
    """
    p = Path(path)
    pf = _open_parquet(p)
    try:
        md = pf.metadata
        _check_event_type(md.metadata, kind, p)
        groups = list(range(md.num_row_groups))
        if start_us is not None or end_us is not None:
            ts_index = pf.schema_arrow.get_field_index("ts")
            if ts_index < 0:
                raise ArchiveFileCorrupt(p, "column 'ts' is missing")
            kept = []
            for g in groups:
                stats = md.row_group(g).column(ts_index).statistics
                if stats is not None and stats.has_min_max:
                    lo, hi = stats.min_raw, stats.max_raw
                    if (start_us is not None and hi < start_us) or (
                        end_us is not None and lo >= end_us
                    ):
                        continue
                kept.append(g)
            groups = kept
        if not groups:
            table = kind.arrow.empty_table()
        else:
            table = _conform(pf.read_row_groups(groups, use_threads=use_threads), kind, p)
        if table.num_rows and (start_us is not None or end_us is not None):
            ts = table.column("ts").cast(pa.int64())
            mask = None
            if start_us is not None:
                mask = pc.greater_equal(ts, start_us)
            if end_us is not None:
                upper = pc.less(ts, end_us)
                mask = upper if mask is None else pc.and_(mask, upper)
            table = table.filter(mask)
    except ArchiveFileCorrupt:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ArchiveFileCorrupt(p, f"{type(exc).__name__}: {exc}") from None
    finally:
        pf.close()
    if columns is not None:
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise ArchiveSchemaError(f"{kind.event_type} has no columns {missing}")
        table = table.select(list(columns))
    return table


# --- writing ----------------------------------------------------------------------------------


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


def _dedup_sort(table: pa.Table, kind: ArchiveKind) -> pa.Table:
    """First row of each event_id (earlier rows win), sorted by ``kind.sort_key``."""
    if table.num_rows > 1 and pc.count_distinct(table.column("event_id")).as_py() < len(table):
        indexed = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
        firsts = indexed.group_by("event_id", use_threads=False).aggregate([("__row", "min")])
        table = table.take(firsts.column("__row_min"))
    order = pc.sort_indices(table, sort_keys=[(k, "ascending") for k in kind.sort_key])
    return table.take(order)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _dir_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on a directory (serialises writers of one coin)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@dataclass(frozen=True, slots=True)
class ArchivedFile:
    """One file written: its path, coin, day, ``rows`` in it after the write and the rows the
    write ``added`` (new event ids; the rest of the input were duplicates)."""

    path: Path
    coin: str
    day: date
    rows: int
    added: int


class ArchiveWriter:
    """Writes events of one type into the archive under ``root`` (layout in the module doc).

    ``row_group_size`` rows per Parquet row group; ``compression`` any codec pyarrow knows
    (zstd by default; DuckDB, Polars and pandas read it). Thread-safe and process-safe for
    one machine (a ``flock`` per coin directory serialises read-merge-write).
    """

    def __init__(
        self,
        root: str | Path,
        event_type: str = "MarketTick",
        *,
        catalog: SchemaCatalog | None = None,
        row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
        compression: str = "zstd",
        workers: int | None = None,
    ) -> None:
        """Raises :class:`ArchiveSchemaError` for an event type that cannot be archived and
        :class:`ValueError` for a ``row_group_size`` below 1.

        ``workers``: threads writing files of one call in parallel (default: CPU count, at
        most 4; 1 writes them one by one)."""
        if row_group_size < 1:
            raise ValueError(f"row_group_size must be >= 1, got {row_group_size}")
        self.workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        self.root = Path(root)
        self.kind = archive_kind(event_type, catalog)
        self.row_group_size = row_group_size
        self.compression = compression
        self._writer = _writer_id()
        names = self.kind.arrow.names
        self._sorting = [pq.SortingColumn(names.index(k)) for k in self.kind.sort_key]

    @property
    def event_type(self) -> str:
        return self.kind.event_type

    def path_for(self, coin: str, day: date) -> Path:
        return archive_path(self.root, self.kind.event_type, coin, day)

    def write(
        self,
        records: Iterable[Mapping[str, Any]],
        *,
        source_topic: str | None = None,
        offsets: Sequence[tuple[int, int]] | None = None,
    ) -> list[ArchivedFile]:
        """Archive ``records`` (event dicts of this writer's type), merging into existing files.

        ``offsets``, parallel to ``records``, gives each record's ``(partition, offset)`` in
        ``source_topic``; the files' metadata then records the intervals covered. Returns one
        :class:`ArchivedFile` per (coin, day) touched, sorted by coin then day. Raises
        :class:`ArchiveSchemaError` before writing anything if a record does not fit the
        schema, :class:`ArchiveFileCorrupt` (that file untouched) when an existing file cannot
        be read, :class:`ArchiveWriteError` when the disk write fails.
        """
        items = records if isinstance(records, Sequence) else list(records)
        if offsets is not None and len(offsets) != len(items):
            raise ValueError(f"{len(offsets)} offsets for {len(items)} records")
        if not items:
            return []
        table = records_to_table(items, self.kind)
        positions = None
        if offsets is not None:
            positions = pa.table(
                {
                    "partition": pa.array([int(p) for p, _ in offsets], pa.int32()),
                    "offset": pa.array([int(o) for _, o in offsets], pa.int64()),
                }
            )
        return self.write_table(table, source_topic=source_topic, positions=positions)

    def write_table(
        self,
        table: pa.Table,
        *,
        source_topic: str | None = None,
        positions: pa.Table | None = None,
    ) -> list[ArchivedFile]:
        """:meth:`write` for a table of this writer's Arrow schema (the batch path).

        ``positions`` (columns ``partition`` int32, ``offset`` int64, one row per row of
        ``table``) locates each row in ``source_topic``.
        """
        if not table.schema.equals(self.kind.arrow, check_metadata=False):
            try:
                table = table.select(self.kind.arrow.names).cast(self.kind.arrow)
            except (KeyError, pa.ArrowException) as exc:
                raise ArchiveSchemaError(
                    f"table does not match the {self.kind.event_type} schema: {exc}"
                ) from None
        if table.num_rows == 0:
            return []
        for coin in pc.unique(table.column("coin")).to_pylist():
            check_coin(coin)
        if pc.count_distinct(table.column("event_id")).as_py() < table.num_rows:
            # duplicates inside the input: keep the first of each event_id
            indexed = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
            firsts = indexed.group_by("event_id", use_threads=False).aggregate([("__row", "min")])
            keep = pc.sort_indices(firsts.column("__row_min"))
            rows_kept = firsts.column("__row_min").take(keep)
            table = table.take(rows_kept)
            if positions is not None:
                positions = positions.take(rows_kept)
        days = pc.cast(table.column("ts"), pa.date32())
        work = table.append_column("__day", days).append_column(
            "__row", pa.array(range(table.num_rows), pa.int64())
        )
        work = work.take(
            pc.sort_indices(
                work,
                sort_keys=[
                    ("coin", "ascending"),
                    ("__day", "ascending"),
                    *[(k, "ascending") for k in self.kind.sort_key],
                    ("__row", "ascending"),
                ],
            )
        )
        groups = work.group_by(["coin", "__day"], use_threads=False).aggregate([("__row", "count")])
        jobs: list[tuple[str, date, pa.Table, SourceOffsets]] = []
        start = 0
        for coin, day, count in zip(
            groups.column("coin").to_pylist(),
            groups.column("__day").to_pylist(),
            groups.column("__row_count").to_pylist(),
            strict=True,
        ):
            chunk = work.slice(start, count)
            start += count
            sources: SourceOffsets = {}
            if source_topic is not None and positions is not None:
                pos = positions.take(chunk.column("__row"))
                ranges = pos.group_by("partition", use_threads=False).aggregate(
                    [("offset", "min"), ("offset", "max")]
                )
                sources = {
                    source_topic: {
                        int(p): ((int(lo), int(hi)),)
                        for p, lo, hi in sorted(
                            zip(
                                ranges.column("partition").to_pylist(),
                                ranges.column("offset_min").to_pylist(),
                                ranges.column("offset_max").to_pylist(),
                                strict=True,
                            )
                        )
                    }
                }
            elif source_topic is not None:
                sources = {source_topic: {}}
            jobs.append((coin, day, chunk.drop_columns(["__day", "__row"]), sources))
        if self.workers <= 1 or len(jobs) <= 1:
            return [self._write_file(*job) for job in jobs]
        # files are independent (each atomic): write them in parallel; pyarrow's encoder and
        # fsync release the GIL. Every write finishes before the first error is raised.
        with ThreadPoolExecutor(self.workers, thread_name_prefix="huracan-archive") as pool:
            futures = [pool.submit(self._write_file, *job) for job in jobs]
        return [f.result() for f in futures]

    def _write_file(
        self, coin: str, day: date, rows: pa.Table, sources: SourceOffsets
    ) -> ArchivedFile:
        """Merge ``rows`` into the (coin, day) file; the steps are in the module docstring."""
        path = self.path_for(coin, day)
        directory = path.parent
        try:
            if not directory.is_dir():
                directory.mkdir(parents=True, exist_ok=True)
                _fsync_dir(directory.parent)
        except OSError as exc:
            raise ArchiveWriteError(path, f"cannot create {directory}: {exc}") from None
        with _dir_lock(directory):
            existing_rows = 0
            old: ArchiveFileMetadata | None = None
            if path.exists():
                # 1. read what is there (refuse to touch a file that cannot be read)
                existing = read_archive_file(path, self.kind, use_threads=False)
                old = read_metadata(path)
                existing_rows = existing.num_rows
                sources = merge_sources(old.sources, sources)
                rows = pa.concat_tables([existing, rows])
            # 2. union, de-duplicate on event_id (existing rows win), sort
            merged = rows if old is None else _dedup_sort(rows, self.kind)
            ts = merged.column("ts").cast(pa.int64())
            meta = ArchiveFileMetadata(
                format_version=FORMAT_VERSION,
                writer=self._writer,
                event_type=self.kind.event_type,
                schema_full_name=self.kind.schema.full_name,
                schema_version=self.kind.schema.version,
                schema_fingerprint=self.kind.schema.fingerprint.hex(),
                coin=coin,
                day=day,
                rows=merged.num_rows,
                ts_min=int(ts[0].as_py()),
                ts_max=int(ts[-1].as_py()),
                sort_key=self.kind.sort_key,
                sources=sources,
            )
            if existing_rows and merged.num_rows == existing_rows and old == meta:
                # nothing new (a re-archive): leave the file as it is
                return ArchivedFile(path, coin, day, merged.num_rows, 0)
            # 3. write a temporary file, fsync, rename over the final name, fsync the folder
            self._write_atomic(path, merged.replace_schema_metadata(meta.to_kv(self.kind.schema)))
        return ArchivedFile(path, coin, day, merged.num_rows, merged.num_rows - existing_rows)

    def _write_atomic(self, path: Path, table: pa.Table) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "xb") as fh:
                pq.write_table(
                    table,
                    fh,
                    row_group_size=self.row_group_size,
                    compression=self.compression,
                    write_statistics=True,
                    sorting_columns=self._sorting,
                )
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except (OSError, pa.ArrowException) as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise ArchiveWriteError(path, f"{type(exc).__name__}: {exc}") from None
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
        try:
            _fsync_dir(path.parent)
        except OSError as exc:
            raise ArchiveWriteError(path, f"cannot fsync {path.parent}: {exc}") from None


def write_events(
    root: str | Path,
    records: Iterable[Mapping[str, Any]],
    event_type: str = "MarketTick",
    *,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
) -> list[ArchivedFile]:
    """One-shot :meth:`ArchiveWriter.write` (no source offsets)."""
    return ArchiveWriter(root, event_type, row_group_size=row_group_size).write(records)


# --- reading a topic within bounds ------------------------------------------------------------

ConsumerFactory = Callable[[dict[str, Any]], Any]
ProducerFactory = Callable[[dict[str, Any]], Any]

_FATAL_CODES: Final = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
    }
)


def _kafka_error_text(exc: KafkaException) -> str:
    return str(exc.args[0] if exc.args else exc)


def topic_partitions(consumer: Any, topic: str, timeout_s: float) -> list[int]:
    """The partition ids of ``topic``; raises :class:`TopicReadError` when it is missing."""
    try:
        md = consumer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        raise TopicReadError(
            f"cannot read metadata of {topic!r}: {_kafka_error_text(exc)}"
        ) from None
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        detail = t.error if t is not None and t.error is not None else "no such topic"
        raise TopicReadError(f"topic {topic!r} is not readable: {detail}")
    return sorted(int(p) for p in t.partitions)


_RETRIABLE_CODES: Final = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,  # a topic created a moment ago
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError.REQUEST_TIMED_OUT,
    }
)


def retry_kafka(call: Callable[[], _T], what: str, timeout_s: float) -> _T:
    """``call()``, retried every 0.1 s while it fails with a transient Kafka error (no leader
    yet for a new topic, a broker restart) for up to ``timeout_s``; then or on any other
    error :class:`TopicReadError` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            transient = isinstance(err, KafkaError) and (
                err.retriable() or err.code() in _RETRIABLE_CODES
            )
            if not transient or time.monotonic() >= deadline:
                raise TopicReadError(f"{what}: {_kafka_error_text(exc)}") from None
        time.sleep(0.1)


def topic_watermarks(
    consumer: Any, topic: str, partitions: Iterable[int], timeout_s: float
) -> dict[int, tuple[int, int]]:
    """``{partition: (low, high)}`` asked of the broker now (not cached)."""
    out: dict[int, tuple[int, int]] = {}
    for p in partitions:
        lo, hi = retry_kafka(
            lambda p=p: consumer.get_watermark_offsets(  # type: ignore[misc]
                KafkaTopicPartition(topic, p), timeout=timeout_s, cached=False
            ),
            f"cannot read the watermarks of {topic}[{p}]",
            timeout_s,
        )
        out[p] = (int(lo), int(hi))
    return out


class BoundedReader:
    """Consumes partitions of one topic from start offsets up to end offsets (exclusive).

    ``ends`` are captured by the caller before reading (normally the high watermarks), so
    a read is bounded even while producers keep writing; ``ends=None`` reads without end.
    :meth:`poll` returns the data records of one ``consume`` call (only offsets below the
    end), possibly none; :attr:`done` turns true once every partition reached its end — by a
    record at ``end - 1``, a partition-EOF event, or a position at or past the end (a tail
    of transaction markers has no record to deliver). A partition that makes no progress
    for ``idle_timeout_s`` while unfinished raises :class:`TopicReadTimeout`; it never hangs.
    """

    def __init__(
        self,
        consumer: Any,
        topic: str,
        starts: Mapping[int, int],
        ends: Mapping[int, int] | None = None,
        *,
        batch_size: int = 5_000,
        idle_timeout_s: float = 30.0,
        poll_timeout_s: float = 0.5,
    ) -> None:
        self._consumer = consumer
        self.topic = topic
        self.starts = dict(starts)
        self.ends = dict(ends) if ends is not None else None
        self._batch_size = batch_size
        self._idle_timeout_s = idle_timeout_s
        self._poll_timeout_s = poll_timeout_s
        self._pending = {
            p for p, o in self.starts.items() if self.ends is None or o < self.ends.get(p, 0)
        }
        self._last_progress = time.monotonic()
        if self._pending:
            try:
                consumer.assign(
                    [KafkaTopicPartition(topic, p, self.starts[p]) for p in sorted(self._pending)]
                )
            except KafkaException as exc:
                raise TopicReadError(f"cannot assign {topic!r}: {_kafka_error_text(exc)}") from None

    @property
    def pending(self) -> frozenset[int]:
        return frozenset(self._pending)

    @property
    def done(self) -> bool:
        return self.ends is not None and not self._pending

    def _finish(self, partition: int) -> None:
        if partition in self._pending:
            self._pending.discard(partition)
            self._last_progress = time.monotonic()
            with contextlib.suppress(KafkaException):
                self._consumer.pause([KafkaTopicPartition(self.topic, partition)])

    def positions(self, partitions: Iterable[int]) -> dict[int, int]:
        """The consumer's next offset of each partition (-1001 when it has none yet)."""
        tps = [KafkaTopicPartition(self.topic, p) for p in partitions]
        if not tps:
            return {}
        try:
            return {tp.partition: tp.offset for tp in self._consumer.position(tps)}
        except KafkaException:
            return {}

    def poll(self) -> list[Any]:
        """The data records of one consume call, oldest first per partition."""
        if self.done:
            return []
        ends = self.ends
        try:
            messages = self._consumer.consume(
                num_messages=self._batch_size, timeout=self._poll_timeout_s
            )
        except KafkaException as exc:
            raise TopicReadError(f"consuming {self.topic!r}: {_kafka_error_text(exc)}") from None
        out: list[Any] = []
        for msg in messages:
            err = msg.error()
            p = msg.partition()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    if ends is not None and msg.offset() >= ends.get(p, 0):
                        self._finish(p)
                    continue
                if err.fatal() or err.code() in _FATAL_CODES:
                    raise TopicReadError(f"consuming {self.topic!r}: {err}")
                continue  # transient (broker restart, rebalance of leaders): librdkafka retries
            off = msg.offset()
            if ends is not None:
                end = ends.get(p, 0)
                if off >= end:
                    self._finish(p)
                    continue
                if off >= end - 1:
                    self._finish(p)
            out.append(msg)
        if out:
            self._last_progress = time.monotonic()
        if ends is not None and self._pending:
            for p, at in self.positions(self._pending).items():
                if at >= ends.get(p, 0):
                    self._finish(p)
            if self._pending and time.monotonic() - self._last_progress > self._idle_timeout_s:
                at_now = self.positions(self._pending)
                raise TopicReadTimeout(
                    self.topic,
                    {p: (at_now.get(p, -1), ends.get(p, 0)) for p in self._pending},
                    self._idle_timeout_s,
                )
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._consumer.close()


# --- archiving a topic ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArchiveReport:
    """What :func:`archive_topic` did.

    ``files``: every file touched (``rows`` = rows in it afterwards, ``added`` = rows this run
    added). ``consumed``: records read; ``archived``: new rows written; ``duplicates``: decoded
    records that were archived already (a re-run after a crash); ``dead_letters``: records
    sent to the dead-letter topic. ``offsets``: per partition, the first and last offset
    consumed; ``committed``: the offsets committed for ``group_id`` (the next to read);
    ``end_offsets``: the high watermarks captured at the start (empty without ``until_end``);
    ``complete``: every partition reached its end offset.
    """

    topic: str
    event_type: str
    root: Path
    group_id: str
    files: tuple[ArchivedFile, ...]
    consumed: int
    archived: int
    duplicates: int
    dead_letters: int
    offsets: Mapping[int, tuple[int, int]]
    committed: Mapping[int, int]
    end_offsets: Mapping[int, int]
    complete: bool

    @property
    def rows_per_file(self) -> dict[Path, int]:
        return {f.path: f.rows for f in self.files}

    @property
    def files_written(self) -> int:
        return len(self.files)


def _wall_clock_us() -> int:
    return time.time_ns() // 1000


def default_archiver_group(config: HuracanConfig, event_type: str) -> str:
    """``<topic_prefix>.archiver.<event_type>``: the archiver's default consumer group."""
    return f"{config.kafka.topic_prefix}.archiver.{event_type}"


class _TopicArchiver:
    """The state of one :func:`archive_topic` run (see its docstring for the steps)."""

    def __init__(
        self,
        *,
        topic: str,
        dead_letter_topic: str,
        event_type: str,
        group: str,
        bootstrap: str,
        serde: Serde,
        writer: ArchiveWriter,
        consumer: Any,
        producer_factory: ProducerFactory,
        clock_us: Callable[[], int],
        delivery_timeout_s: float,
    ) -> None:
        self.topic = topic
        self.dead_letter_topic = dead_letter_topic
        self.event_type = event_type
        self.group = group
        self.bootstrap = bootstrap
        self.serde = serde
        self.writer = writer
        self.consumer = consumer
        self.producer_factory = producer_factory
        self.producer: Any = None
        self.clock_us = clock_us
        self.delivery_timeout_s = delivery_timeout_s
        self.dl_errors: list[str] = []
        self.files: dict[Path, ArchivedFile] = {}
        self.consumed = 0
        self.dead = 0
        self.first_last: dict[int, tuple[int, int]] = {}
        self.committed: dict[int, int] = {}
        self.buffer: list[dict[str, Any]] = []
        self.buffer_partitions: list[int] = []
        self.buffer_offsets: list[int] = []
        self.uncommitted: dict[int, int] = {}

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.dl_errors.append(str(err))

    def take(self, msg: Any) -> None:
        """Buffer one consumed record, or dead-letter it when it cannot be archived."""
        p, off = int(msg.partition()), int(msg.offset())
        self.consumed += 1
        first = self.first_last.get(p)
        self.first_last[p] = (first[0], off) if first else (off, off)
        self.uncommitted[p] = off + 1
        try:
            record = self.serde.decode(msg.value(), expected=self.event_type)
            check_coin(record.get("coin"))
        except (SerdeError, ArchiveSchemaError) as exc:
            if isinstance(exc, SerdeError) and exc.transient:
                raise TopicReadError(
                    f"decoding {self.topic}:{p}:{off} needs the Schema Registry: {exc}"
                ) from None
            self._dead_letter(msg, exc)
            return
        self.buffer.append(record)
        self.buffer_partitions.append(p)
        self.buffer_offsets.append(off)

    def _dead_letter(self, msg: Any, exc: Exception) -> None:
        if self.producer is None:
            self.producer = self.producer_factory(
                {
                    "bootstrap.servers": self.bootstrap,
                    "enable.idempotence": True,
                    "acks": "all",
                    "client.id": f"huracan-archiver-{self.event_type}-dead-letter",
                }
            )
        event = dead_letter_from_message(
            msg, exc, consumer=self.group, failed_at_us=self.clock_us()
        )
        key, value = encode_dead_letter(self.serde, event)
        self.producer.produce(
            self.dead_letter_topic, key=key, value=value, on_delivery=self._on_delivery
        )
        self.producer.poll(0)
        self.dead += 1

    def flush(self) -> None:
        """Files first, then every dead letter acknowledged, then the offsets committed."""
        if self.buffer:
            table = records_to_table(self.buffer, self.writer.kind)
            positions = pa.table(
                {
                    "partition": pa.array(self.buffer_partitions, pa.int32()),
                    "offset": pa.array(self.buffer_offsets, pa.int64()),
                }
            )
            for f in self.writer.write_table(table, source_topic=self.topic, positions=positions):
                prior = self.files.get(f.path)
                added = f.added + (prior.added if prior is not None else 0)
                self.files[f.path] = ArchivedFile(f.path, f.coin, f.day, f.rows, added)
        written = len(self.buffer)
        self.buffer, self.buffer_partitions, self.buffer_offsets = [], [], []
        if self.producer is not None:
            remaining = self.producer.flush(self.delivery_timeout_s)
            if remaining or self.dl_errors:
                raise TopicReadError(
                    f"dead letters to {self.dead_letter_topic!r} not delivered ({remaining} "
                    f"pending, errors: {self.dl_errors[:3]}); offsets not committed"
                )
        if self.uncommitted:
            offsets = [KafkaTopicPartition(self.topic, p, o) for p, o in self.uncommitted.items()]
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                raise TopicReadError(
                    f"cannot commit the offsets of group {self.group!r} after archiving "
                    f"{written} records: {_kafka_error_text(exc)}"
                ) from None
            self.committed.update(self.uncommitted)
            self.uncommitted.clear()

    def close(self) -> None:
        if self.producer is not None:
            with contextlib.suppress(Exception):
                self.producer.flush(5)

    def report(self, root: Path, ends: Mapping[int, int], complete: bool) -> ArchiveReport:
        added = sum(f.added for f in self.files.values())
        return ArchiveReport(
            topic=self.topic,
            event_type=self.event_type,
            root=root,
            group_id=self.group,
            files=tuple(sorted(self.files.values(), key=lambda f: (f.coin, f.day))),
            consumed=self.consumed,
            archived=added,
            duplicates=self.consumed - self.dead - added,
            dead_letters=self.dead,
            offsets=dict(sorted(self.first_last.items())),
            committed=dict(sorted(self.committed.items())),
            end_offsets=dict(sorted(ends.items())),
            complete=complete,
        )


def archive_topic(
    config: HuracanConfig,
    *,
    topic_event_type: str = "MarketTick",
    root: str | Path,
    from_beginning: bool = True,
    until_end: bool = True,
    group_id: str | None = None,
    batch_size: int = 5_000,
    flush_rows: int = 250_000,
    flush_interval_s: float = 10.0,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    idle_timeout_s: float = 30.0,
    stop: Callable[[], bool] | None = None,
    serde: Serde | None = None,
    clock_us: Callable[[], int] = _wall_clock_us,
    consumer_factory: ConsumerFactory | None = None,
    producer_factory: ProducerFactory | None = None,
) -> ArchiveReport:
    """Archive the topic carrying ``topic_event_type`` into ``root``: at least once, idempotent.

    Steps:

    1. resolve the topic and the dead-letter topic from ``config`` (its prefix), the serde
       (:func:`~huracan.streams.serde.make_serde`) and an :class:`ArchiveWriter`;
    2. capture every partition's watermarks; start at the low watermark (``from_beginning``)
       or at ``group_id``'s committed offset (the low watermark where none is committed or it
       was deleted by retention); with ``until_end`` stop at the high watermarks captured
       now, else run until ``stop()`` returns true;
    3. consume (``read_committed``) in batches of ``batch_size`` and decode each record; one
       that fails to decode, or whose coin is not a valid directory name, becomes a
       DeadLetter (original bytes, coordinates, reason) produced to the dead-letter topic —
       counted, never dropped. A transient serde failure (Schema Registry down) raises;
    4. every ``flush_rows`` records, every ``flush_interval_s`` and at the end: write the
       files (atomic, merged, de-duplicated), wait until every dead letter is acknowledged,
       and only then commit the offsets after the last record consumed;
    5. close the clients and report.

    A crash anywhere re-reads from the last commit; files de-duplicate on ``event_id`` and
    dead letters carry deterministic ids, so re-running changes nothing. Run one archiver per
    group at a time. ``group_id`` defaults to :func:`default_archiver_group`.

    Raises :class:`TopicReadError` (topic missing, broker errors, undeliverable dead letters,
    failed commit), :class:`~huracan.storage.archive_errors.TopicReadTimeout` (no progress for
    ``idle_timeout_s`` before the end) and the writer's errors; whatever was flushed before
    stays archived and committed.
    """
    # 1. topics, serde, writer
    catalog = SchemaCatalog.from_config(config)
    try:
        topic = catalog.topic_for(topic_event_type)
        dead_letter_topic = catalog.topic_for(DEAD_LETTER_EVENT_TYPE)
    except UnknownEventType as exc:
        raise ArchiveSchemaError(str(exc)) from None
    writer = ArchiveWriter(root, topic_event_type, catalog=catalog, row_group_size=row_group_size)
    group = group_id or default_archiver_group(config, topic_event_type)
    consumer = (consumer_factory or Consumer)(
        {
            "bootstrap.servers": config.kafka.bootstrap_servers,
            "group.id": group,
            "client.id": f"huracan-archiver-{topic_event_type}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    run = _TopicArchiver(
        topic=topic,
        dead_letter_topic=dead_letter_topic,
        event_type=topic_event_type,
        group=group,
        bootstrap=config.kafka.bootstrap_servers,
        serde=serde if serde is not None else make_serde(config, catalog=catalog),
        writer=writer,
        consumer=consumer,
        producer_factory=producer_factory or Producer,
        clock_us=clock_us,
        delivery_timeout_s=idle_timeout_s,
    )
    reader: BoundedReader | None = None
    try:
        # 2. watermarks, start and end offsets
        partitions = topic_partitions(consumer, topic, idle_timeout_s)
        marks = topic_watermarks(consumer, topic, partitions, idle_timeout_s)
        starts = {p: lo for p, (lo, _) in marks.items()}
        if not from_beginning:
            try:
                found = consumer.committed(
                    [KafkaTopicPartition(topic, p) for p in partitions], timeout=idle_timeout_s
                )
            except KafkaException as exc:
                raise TopicReadError(
                    f"cannot read the committed offsets of group {group!r}: "
                    f"{_kafka_error_text(exc)}"
                ) from None
            for tp in found:
                if tp.offset is not None and tp.offset >= 0:
                    starts[tp.partition] = max(int(tp.offset), marks[tp.partition][0])
        ends = {p: hi for p, (_, hi) in marks.items()} if until_end else None
        reader = BoundedReader(
            consumer, topic, starts, ends, batch_size=batch_size, idle_timeout_s=idle_timeout_s
        )
        # 3. consume, 4. flush
        last_flush = time.monotonic()
        while not reader.done and not (ends is None and stop is not None and stop()):
            for msg in reader.poll():
                run.take(msg)
            if len(run.buffer) >= flush_rows or (
                run.buffer and time.monotonic() - last_flush >= flush_interval_s
            ):
                run.flush()
                last_flush = time.monotonic()
        run.flush()
        return run.report(Path(root), ends or {}, reader.done)
    finally:
        # 5. close
        run.close()
        if reader is not None:
            reader.close()
        else:
            with contextlib.suppress(Exception):
                consumer.close()


__all__ = [
    "COIN_PATTERN",
    "DEFAULT_ROW_GROUP_SIZE",
    "FORMAT_VERSION",
    "KIND_FOLDERS",
    "ArchiveError",
    "ArchiveFileMetadata",
    "ArchiveKind",
    "ArchiveReport",
    "ArchiveWriter",
    "ArchivedFile",
    "BoundedReader",
    "archive_kind",
    "archive_path",
    "archive_topic",
    "arrow_schema",
    "day_of",
    "default_archiver_group",
    "kind_dir",
    "kind_folder",
    "read_archive_file",
    "read_metadata",
    "records_to_table",
    "retry_kafka",
    "topic_partitions",
    "topic_watermarks",
    "write_events",
]
