"""Reading and writing archive files: one Parquet file per (event type, coin, UTC day).

Each file is sorted by :attr:`~huracan.storage.archive_schema.ArchiveKind.sort_key`, holds each
``event_id`` once, is split into row groups of ``row_group_size`` rows (zstd, statistics on, so
``ts`` range filters skip row groups), declares its sort order in the footer and carries the
metadata of :mod:`huracan.storage.archive_metadata`. It is plain Parquet: pyarrow, DuckDB,
Polars and pandas read it as is.

Writing (:class:`ArchiveWriter`) is atomic and idempotent. For each (coin, day) it takes an
exclusive ``flock`` on the coin directory, reads the existing file if any, unions the rows,
keeps the first row of each ``event_id`` (the existing one), sorts, writes a temporary file in
the same directory, fsyncs it, ``os.replace``-s it over the final name and fsyncs the
directory. A crash leaves either the old file or the new one under the final name, never a
partial one; writing the same events again changes nothing. The directory lock makes
concurrent writers on one machine safe; on a shared network file system where ``flock`` is not
honoured, run one writer per root. Stale ``.*.tmp`` files can be deleted once no writer runs.

:func:`read_archive_file` reads one file back within a time range, skipping row groups by
their ``ts`` statistics. The writer reads no clock and decides nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from huracan.storage.archive_errors import (
    ArchiveFileCorrupt,
    ArchiveSchemaError,
    ArchiveWriteError,
)
from huracan.storage.archive_metadata import (
    FORMAT_VERSION,
    METADATA_PREFIX,
    ArchiveFileMetadata,
    SourceOffsets,
    _open_parquet,
    _writer_id,
    merge_sources,
    read_metadata,
)
from huracan.storage.archive_paths import archive_path, check_coin
from huracan.storage.archive_schema import ArchiveKind, archive_kind, records_to_table
from huracan.streams.serde import SchemaCatalog

#: default rows per Parquet row group
DEFAULT_ROW_GROUP_SIZE: Final = 64 * 1024


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
