"""History readers: the events of one type, in event-time order, from the archive or a topic.

Two sources, one shape: every reader yields event dicts exactly as
:meth:`huracan.streams.serde.Serde.decode` returns them (timestamps as int epoch
microseconds, enums as strings, nulls as ``None``), so a replay feeds the domain core the same
values whether it reads Parquet or Kafka.

Order:

* ``merge=False`` (default): coin by coin, each coin in event-time order — ``(ts, seq)`` for
  ticks, ``(ts, event_id)`` otherwise (the archive) or log order (a topic, which is event-time
  order when the producer wrote each coin in order; the engine's producers do);
* ``merge=True``: one stream in ``(ts, coin, seq)`` order (``event_id`` instead of ``seq``
  for event types without one). The archive merges day by day (all coins of one UTC day in
  memory at a time); a topic is merged across partitions with a k-way merge that assumes each
  partition is in event-time order.

Time bounds are half open, ``start <= ts < end``, given as aware datetimes or int epoch
microseconds, and always applied to the decoded ``ts``.

Errors (all :class:`~huracan.storage.archive_errors.ArchiveError`): a missing root
(``ArchiveNotFound``), a coin never archived (``UnknownCoin``), a range without data
(``NoDataInRange``: raised when the call is made if no file or offset is in range, else when
iteration ends without yielding anything), an unreadable file (``ArchiveFileCorrupt``,
naming it), Kafka failures (``TopicReadError``, ``TopicReadTimeout``), a record that does
not decode with no ``on_error`` handler (``UndecodableRecord``).
"""

from __future__ import annotations

import contextlib
import heapq
import math
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import TopicPartition as KafkaTopicPartition

from huracan.config import HuracanConfig
from huracan.storage.archive_errors import (
    ArchiveNotFound,
    ArchiveSchemaError,
    NoDataInRange,
    TopicReadError,
    UndecodableRecord,
    UnknownCoin,
)
from huracan.storage.archive_files import read_archive_file
from huracan.storage.archive_paths import COIN_PATTERN, day_of, kind_dir, parse_file_name, to_micros
from huracan.storage.archive_schema import ArchiveKind, archive_kind
from huracan.streams.bounded_reader import (
    BoundedReader,
    ConsumerFactory,
    retry_kafka,
    topic_partitions,
    topic_watermarks,
)
from huracan.streams.clients import make_consumer
from huracan.streams.errors import SerdeError, UnknownEventType
from huracan.streams.serde import SchemaCatalog, Serde, make_serde

TimeBound = datetime | int | None
#: rows converted to dicts per slice (bounds the transient list memory)
ROW_SLICE: Final = 65_536
_T = TypeVar("_T")
_R = TypeVar("_R")


def _iso(us: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)).isoformat()


def _range_text(start_us: int | None, end_us: int | None) -> str:
    lo = _iso(start_us) if start_us is not None else "the beginning"
    hi = _iso(end_us) if end_us is not None else "the end"
    return f"[{lo}, {hi})"


# --- rows ---------------------------------------------------------------------------------------


@cache
def _row_builder(names: tuple[str, ...]) -> Callable[[list[list[Any]]], list[dict[str, Any]]]:
    """A function turning column lists into row dicts, as fast as CPython allows.

    A dict display in a comprehension is about twice as fast as ``dict(zip(names, row))``;
    it is compiled once per column set. ``names`` are Avro field names, which the Avro spec
    restricts to ``[A-Za-z_][A-Za-z0-9_]*``, so the generated source is safe (checked).
    """
    for n in names:
        if not n.isidentifier():
            raise ArchiveSchemaError(f"column name {n!r} is not an identifier")
    args = ", ".join(f"_{i}" for i in range(len(names))) + ("," if len(names) == 1 else "")
    body = ", ".join(f"{n!r}: _{i}" for i, n in enumerate(names))
    source = f"lambda cols: [{{{body}}} for {args} in zip(*cols)]"
    builder: Callable[[list[list[Any]]], list[dict[str, Any]]] = eval(  # noqa: S307 - see above
        compile(source, "<huracan.storage.history rows>", "eval"), {"zip": zip}
    )
    return builder


def table_to_events(table: pa.Table, kind: ArchiveKind) -> Iterator[dict[str, Any]]:
    """The rows of an archive table as event dicts (timestamps as int microseconds)."""
    names = tuple(table.column_names)
    build = _row_builder(names)
    for offset in range(0, table.num_rows, ROW_SLICE):
        part = table.slice(offset, ROW_SLICE)
        cols = []
        for name, col in zip(names, part.columns, strict=True):
            if name in kind.timestamp_fields:
                col = col.cast(pa.int64())
            cols.append(col.to_pylist())
        yield from build(cols)


# --- prefetching file reads ---------------------------------------------------------------------


def _prefetch(fn: Callable[[_T], _R], items: Sequence[_T], workers: int) -> Iterator[_R]:
    """``map(fn, items)`` with up to ``2 * workers`` calls running ahead in threads, in order.

    pyarrow releases the GIL while it reads and decodes, so small files read in parallel.
    Closing the iterator cancels what has not started.
    """
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="huracan-archive-read")
    window: deque[Future[_R]] = deque()
    it = iter(items)
    try:
        for item in it:
            window.append(pool.submit(fn, item))
            if len(window) >= 2 * workers:
                break
        while window:
            result = window.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                window.append(pool.submit(fn, nxt))
            yield result
    finally:
        for f in window:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


# --- the archive --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArchiveFileRef:
    """One archive file selected for a read."""

    coin: str
    day: date
    path: Path


def _as_coins(coins: str | Iterable[str] | None) -> list[str] | None:
    if coins is None:
        return None
    if isinstance(coins, str):
        return [coins]
    return list(dict.fromkeys(coins))


class ArchiveReader:
    """Reads one event type of the archive under ``root`` (layout in :mod:`.archive`).

    Cheap to build (it only checks that ``root`` exists); every read lists the files again,
    so files archived meanwhile are seen. ``workers`` threads read files ahead (default: the
    CPU count, at most 8).
    """

    def __init__(
        self,
        root: str | Path,
        event_type: str = "MarketTick",
        *,
        catalog: SchemaCatalog | None = None,
        workers: int | None = None,
    ) -> None:
        """Raises :class:`ArchiveNotFound` when ``root`` is not a directory and
        :class:`ArchiveSchemaError` for an event type that cannot be archived."""
        self.root = Path(root)
        if not self.root.is_dir():
            raise ArchiveNotFound(self.root)
        self.kind = archive_kind(event_type, catalog)
        self.directory = kind_dir(self.root, event_type)
        self.workers = workers if workers is not None else min(8, os.cpu_count() or 1)

    @property
    def event_type(self) -> str:
        return self.kind.event_type

    def coins(self) -> list[str]:
        """Every coin with a folder for this event type, sorted."""
        if not self.directory.is_dir():
            return []
        return sorted(
            e.name for e in os.scandir(self.directory) if e.is_dir() and COIN_PATTERN.match(e.name)
        )

    def days(self, coin: str) -> list[date]:
        """The days archived for ``coin``, oldest first; :class:`UnknownCoin` if none."""
        folder = self.directory / coin
        if not COIN_PATTERN.match(coin) or not folder.is_dir():
            raise UnknownCoin([coin], self.coins(), self.event_type)
        return sorted(d for e in os.scandir(folder) if (d := parse_file_name(e.name)) is not None)

    def files(
        self,
        coins: str | Iterable[str] | None = None,
        start: TimeBound = None,
        end: TimeBound = None,
    ) -> list[ArchiveFileRef]:
        """The files that may hold events of ``coins`` (all when None) in ``[start, end)``,
        coin by coin (in the order given, else sorted), each coin's days in order.

        Raises :class:`UnknownCoin` for coins without a folder, :class:`NoDataInRange` when no
        file's day meets the range (or the range is empty).
        """
        start_us, end_us = to_micros(start, "start"), to_micros(end, "end")
        if start_us is not None and end_us is not None and start_us >= end_us:
            raise NoDataInRange(
                f"empty time range {_range_text(start_us, end_us)}: start is not before end"
            )
        known = self.coins()
        wanted = _as_coins(coins)
        if wanted is None:
            if not known:
                raise NoDataInRange(f"the archive {self.root} holds no {self.event_type} data")
            wanted = known
        else:
            known_set = set(known)
            unknown = [c for c in wanted if c not in known_set]
            if unknown:
                raise UnknownCoin(unknown, known, self.event_type)
        first_day = day_of(start_us) if start_us is not None else None
        last_day = day_of(end_us - 1) if end_us is not None else None
        out = []
        for coin in wanted:
            for day in self.days(coin):
                if (first_day is None or day >= first_day) and (
                    last_day is None or day <= last_day
                ):
                    out.append(
                        ArchiveFileRef(coin, day, self.directory / coin / f"{day:%Y%m%d}.parquet")
                    )
        if not out:
            raise NoDataInRange(
                f"no {self.event_type} data for {_coins_text(wanted)} in "
                f"{_range_text(start_us, end_us)} under {self.root}"
            )
        return out

    def tables(
        self,
        coins: str | Iterable[str] | None = None,
        start: TimeBound = None,
        end: TimeBound = None,
        *,
        merge: bool = False,
        columns: Sequence[str] | None = None,
    ) -> Iterator[pa.Table]:
        """The events as Arrow tables (``ts`` as ``timestamp[us, tz=UTC]``).

        ``merge=False``: one table per (coin, day) file, coin by coin. ``merge=True``: one
        table per UTC day with every coin, sorted by ``(ts, coin, seq|event_id)``.
        ``columns`` selects columns (default all). Empty tables are skipped. The checks of
        :meth:`files` run when this is called; :class:`NoDataInRange` is raised at the end
        of the iteration when the files held no row in range.
        """
        refs = self.files(coins, start, end)
        start_us, end_us = to_micros(start, "start"), to_micros(end, "end")
        if columns is not None:
            bad = [c for c in columns if c not in self.kind.arrow.names]
            if bad:
                raise ArchiveSchemaError(f"{self.event_type} has no columns {bad}")
        return self._tables(refs, start_us, end_us, merge, columns)

    def _read(self, ref: ArchiveFileRef, start_us: int | None, end_us: int | None) -> pa.Table:
        try:
            return read_archive_file(ref.path, self.kind, start_us=start_us, end_us=end_us)
        except FileNotFoundError:  # removed since listed
            return self.kind.arrow.empty_table()

    def _tables(
        self,
        refs: list[ArchiveFileRef],
        start_us: int | None,
        end_us: int | None,
        merge: bool,
        columns: Sequence[str] | None,
    ) -> Iterator[pa.Table]:
        rows = 0

        def read(ref: ArchiveFileRef) -> pa.Table:
            return self._read(ref, start_us, end_us)

        if not merge:
            for table in _prefetch(read, refs, self.workers):
                if table.num_rows:
                    rows += table.num_rows
                    yield table if columns is None else table.select(list(columns))
        else:
            by_day: dict[date, list[ArchiveFileRef]] = {}
            for ref in refs:
                by_day.setdefault(ref.day, []).append(ref)
            order = [(k, "ascending") for k in self.kind.merge_key]
            for day in sorted(by_day):
                parts = [t for t in _prefetch(read, by_day[day], self.workers) if t.num_rows]
                if not parts:
                    continue
                table = pa.concat_tables(parts)
                table = table.take(pc.sort_indices(table, sort_keys=order))
                rows += table.num_rows
                yield table if columns is None else table.select(list(columns))
        if rows == 0:
            coins = sorted({r.coin for r in refs})
            raise NoDataInRange(
                f"no {self.event_type} event of {_coins_text(coins)} in "
                f"{_range_text(start_us, end_us)} under {self.root}"
            )

    def table(
        self,
        coins: str | Iterable[str] | None = None,
        start: TimeBound = None,
        end: TimeBound = None,
        *,
        merge: bool = False,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """All of :meth:`tables` in one table (mind the memory for long ranges)."""
        return pa.concat_tables(list(self.tables(coins, start, end, merge=merge, columns=columns)))

    def events(
        self,
        coins: str | Iterable[str] | None = None,
        start: TimeBound = None,
        end: TimeBound = None,
        *,
        merge: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """The events as dicts, shaped like the serde's output (see the module docstring)."""
        tables = self.tables(coins, start, end, merge=merge)
        return self._events(tables)

    def _events(self, tables: Iterator[pa.Table]) -> Iterator[dict[str, Any]]:
        kind = self.kind
        for table in tables:
            yield from table_to_events(table, kind)


def _coins_text(coins: Sequence[str]) -> str:
    if len(coins) > 10:
        return f"{len(coins)} coins"
    return "coin(s) " + ", ".join(coins)


def read_archive(
    root: str | Path,
    coins: str | Iterable[str] | None = None,
    start: TimeBound = None,
    end: TimeBound = None,
    event_type: str = "MarketTick",
    *,
    merge: bool = False,
    catalog: SchemaCatalog | None = None,
) -> Iterator[dict[str, Any]]:
    """The archived events of ``event_type`` for ``coins`` (all when None) with
    ``start <= ts < end``, as dicts; per coin in event-time order, or globally by
    ``(ts, coin, seq)`` with ``merge=True``.

    Raises, when called: :class:`ArchiveNotFound`, :class:`UnknownCoin`,
    :class:`NoDataInRange` (no file in range); while iterating: :class:`ArchiveFileCorrupt`
    naming the file, :class:`NoDataInRange` (files, but no event in range).
    """
    return ArchiveReader(root, event_type, catalog=catalog).events(coins, start, end, merge=merge)


def read_archive_tables(
    root: str | Path,
    coins: str | Iterable[str] | None = None,
    start: TimeBound = None,
    end: TimeBound = None,
    event_type: str = "MarketTick",
    *,
    merge: bool = False,
    columns: Sequence[str] | None = None,
    catalog: SchemaCatalog | None = None,
) -> Iterator[pa.Table]:
    """:func:`read_archive` as Arrow tables (see :meth:`ArchiveReader.tables`)."""
    reader = ArchiveReader(root, event_type, catalog=catalog)
    return reader.tables(coins, start, end, merge=merge, columns=columns)


def read_archive_table(
    root: str | Path,
    coins: str | Iterable[str] | None = None,
    start: TimeBound = None,
    end: TimeBound = None,
    event_type: str = "MarketTick",
    *,
    merge: bool = False,
    columns: Sequence[str] | None = None,
    catalog: SchemaCatalog | None = None,
) -> pa.Table:
    """:func:`read_archive_tables` concatenated into one table."""
    reader = ArchiveReader(root, event_type, catalog=catalog)
    return reader.table(coins, start, end, merge=merge, columns=columns)


# --- a topic ------------------------------------------------------------------------------------


class _PartitionMerger:
    """k-way merge of per-partition streams that are each sorted by ``key``.

    A record is released only when every partition that may still deliver records has one
    buffered (or has finished), so the output is globally sorted.
    """

    def __init__(self, partitions: Iterable[int], key: Callable[[dict[str, Any]], Any]) -> None:
        self._key = key
        self._buffers: dict[int, deque[dict[str, Any]]] = {p: deque() for p in partitions}
        self._open = set(self._buffers)
        self._starved = set(self._buffers)  # open partitions with nothing buffered
        self._heap: list[tuple[Any, int]] = []

    def push(self, partition: int, record: dict[str, Any]) -> None:
        buf = self._buffers[partition]
        buf.append(record)
        if len(buf) == 1:
            heapq.heappush(self._heap, (self._key(record), partition))
            self._starved.discard(partition)

    def finish(self, partition: int) -> None:
        self._open.discard(partition)
        self._starved.discard(partition)

    def drain(self) -> Iterator[dict[str, Any]]:
        heap, buffers = self._heap, self._buffers
        while heap and not self._starved:
            _, p = heapq.heappop(heap)
            buf = buffers[p]
            record = buf.popleft()
            if buf:
                heapq.heappush(heap, (self._key(buf[0]), p))
            elif p in self._open:
                self._starved.add(p)
            yield record


def _resolve_topic(catalog: SchemaCatalog, source: str) -> tuple[str, str]:
    """``(topic, event_type)`` of an event type or a catalog topic name."""
    if source in catalog.event_types:
        return catalog.topic_for(source), source
    try:
        return source, catalog.event_type_for_topic(source)
    except UnknownEventType:
        raise ArchiveSchemaError(
            f"{source!r} is neither an event type ({sorted(catalog.event_types)}) nor a topic "
            f"of the catalog ({catalog.topics.names})"
        ) from None


OnError = Callable[[Any, SerdeError], None]


class TopicEvents(Iterator[dict[str, Any]]):
    """The iterator :func:`read_topic` returns: event dicts, plus the bounds it reads.

    ``ranges`` maps each partition read to ``(start_offset, end_offset)`` (end exclusive),
    fixed when :func:`read_topic` was called. Close it (or use ``with``) to release the
    consumer early; it closes itself when exhausted.
    """

    def __init__(
        self,
        topic: str,
        event_type: str,
        ranges: Mapping[int, tuple[int, int]],
        generator: Iterator[dict[str, Any]],
        reader: BoundedReader,
    ) -> None:
        self.topic = topic
        self.event_type = event_type
        self.ranges = dict(ranges)
        self._gen = generator
        self._reader = reader
        self._closed = False

    def __iter__(self) -> TopicEvents:
        return self

    def __next__(self) -> dict[str, Any]:
        try:
            return next(self._gen)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                close = getattr(self._gen, "close", None)
                if close is not None:
                    close()
            self._reader.close()

    def __enter__(self) -> TopicEvents:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def read_topic(
    config: HuracanConfig,
    source: str = "MarketTick",
    *,
    start_offsets: Mapping[int, int] | None = None,
    end_offsets: Mapping[int, int] | None = None,
    start_time: TimeBound = None,
    end_time: TimeBound = None,
    coins: str | Iterable[str] | None = None,
    merge: bool = False,
    seek_by_record_time: bool = True,
    on_error: OnError | None = None,
    serde: Serde | None = None,
    batch_size: int = 5_000,
    idle_timeout_s: float = 30.0,
    consumer_factory: ConsumerFactory | None = None,
) -> TopicEvents:
    """The events of a topic (``source``: an event type or a catalog topic name), bounded.

    Steps, all done before this returns:

    1. capture every partition's watermarks; the read never goes past the high watermark
       captured now, so it ends even while producers keep writing;
    2. start offsets: ``start_offsets`` (only the partitions it names; clamped to the
       watermarks) or every partition's low watermark; end offsets: ``end_offsets``
       (exclusive) or the high watermark, whichever is lower;
    3. with ``start_time``/``end_time`` and ``seek_by_record_time``, narrow each partition
       with ``offsets_for_times``: the first offset whose Kafka record timestamp is at or
       after ``floor(start/1000)`` ms, and the first at or after ``ceil(end/1000)`` ms.
       Kafka record timestamps are producer create times; the engine's producers set them
       to the event ``ts`` in ms (``produce(..., timestamp=ts // 1000)``), which makes the
       seek exact. For topics written otherwise pass ``seek_by_record_time=False``: the
       whole offset range is scanned. In both cases only events with
       ``start_time <= ts < end_time`` (decoded ``ts``) are yielded;
    4. raise :class:`NoDataInRange` if no partition has an offset in range.

    Iterating then consumes (``read_committed``) and yields decoded dicts — per partition in
    log order, or merged by ``(ts, coin, seq)`` with ``merge=True`` — filtered by ``coins``.
    A record that fails to decode is passed to ``on_error(message, error)`` and skipped, or
    raises :class:`UndecodableRecord` without a handler. :class:`TopicReadTimeout` if the end
    is not reached after ``idle_timeout_s`` without progress; :class:`NoDataInRange` at the
    end if nothing matched. Nothing is committed: this consumer has a throwaway group id.
    """
    catalog = SchemaCatalog.from_config(config)
    topic, event_type = _resolve_topic(catalog, source)
    serde = serde if serde is not None else make_serde(config, catalog=catalog)
    start_us, end_us = to_micros(start_time, "start_time"), to_micros(end_time, "end_time")
    if start_us is not None and end_us is not None and start_us >= end_us:
        raise NoDataInRange(f"empty time range {_range_text(start_us, end_us)}")
    wanted = _as_coins(coins)
    fields = catalog.schema(event_type).field_names
    if (start_us is not None or end_us is not None) and "ts" not in fields:
        raise ArchiveSchemaError(f"{event_type} has no 'ts' field to bound by time")
    if wanted is not None and "coin" not in fields:
        raise ArchiveSchemaError(f"{event_type} has no 'coin' field to filter by")
    consumer = make_consumer(
        config,
        f"reader-{event_type}",
        group_id=f"huracan-reader-{uuid.uuid4().hex[:12]}",
        overrides={
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        },
        factory=consumer_factory,
    )
    try:
        # 1. watermarks
        partitions = topic_partitions(consumer, topic, idle_timeout_s)
        if start_offsets is not None:
            missing = sorted(set(start_offsets) - set(partitions))
            if missing:
                raise TopicReadError(f"topic {topic!r} has no partitions {missing}")
            partitions = sorted(start_offsets)
        marks = topic_watermarks(consumer, topic, partitions, idle_timeout_s)
        # 2. offsets
        starts = {
            p: lo if start_offsets is None else min(max(int(start_offsets[p]), lo), hi)
            for p, (lo, hi) in marks.items()
        }
        ends = {
            p: hi if end_offsets is None or p not in end_offsets else min(int(end_offsets[p]), hi)
            for p, (_, hi) in marks.items()
        }
        # 3. seek by record time
        if seek_by_record_time and (start_us is not None or end_us is not None):
            if start_us is not None:
                found = _offsets_for_times(
                    consumer, topic, partitions, start_us // 1000, idle_timeout_s
                )
                starts = {p: max(starts[p], found.get(p, ends[p])) for p in partitions}
            if end_us is not None:
                found = _offsets_for_times(
                    consumer, topic, partitions, math.ceil(end_us / 1000), idle_timeout_s
                )
                ends = {p: min(ends[p], found.get(p, ends[p])) for p in partitions}
        # 4. anything to read?
        ranges = {p: (starts[p], ends[p]) for p in partitions if starts[p] < ends[p]}
        if not ranges:
            raise NoDataInRange(
                f"{topic!r} has no record in range (watermarks {marks}, from {starts} to "
                f"{ends}, time {_range_text(start_us, end_us)})"
            )
        reader = BoundedReader(
            consumer,
            topic,
            {p: s for p, (s, _) in ranges.items()},
            {p: e for p, (_, e) in ranges.items()},
            batch_size=batch_size,
            idle_timeout_s=idle_timeout_s,
        )
    except BaseException:
        with contextlib.suppress(Exception):
            consumer.close()
        raise
    kind = _topic_kind(event_type, catalog)
    gen = _topic_events(
        reader,
        serde,
        event_type,
        kind,
        start_us,
        end_us,
        None if wanted is None else set(wanted),
        merge,
        on_error,
        ranges,
    )
    return TopicEvents(topic, event_type, ranges, gen, reader)


def _topic_kind(event_type: str, catalog: SchemaCatalog) -> ArchiveKind | None:
    try:
        return archive_kind(event_type, catalog)
    except ArchiveSchemaError:
        return None  # an event type without coin/ts: readable, not mergeable


def _offsets_for_times(
    consumer: Any, topic: str, partitions: Sequence[int], ms: int, timeout_s: float
) -> dict[int, int]:
    """First offset with a record timestamp >= ``ms`` per partition; partitions without
    one are left out (the caller treats them as "at the end")."""
    found = retry_kafka(
        lambda: consumer.offsets_for_times(
            [KafkaTopicPartition(topic, p, ms) for p in partitions], timeout=timeout_s
        ),
        f"offsets_for_times on {topic!r}",
        timeout_s,
    )
    return {
        tp.partition: int(tp.offset) for tp in found if tp.offset is not None and tp.offset >= 0
    }


def _topic_events(
    reader: BoundedReader,
    serde: Serde,
    event_type: str,
    kind: ArchiveKind | None,
    start_us: int | None,
    end_us: int | None,
    coins: set[str] | None,
    merge: bool,
    on_error: OnError | None,
    ranges: Mapping[int, tuple[int, int]],
) -> Iterator[dict[str, Any]]:
    merger: _PartitionMerger | None = None
    if merge:
        if kind is None:
            raise ArchiveSchemaError(f"{event_type} has no coin/ts fields to merge by")
        key_fields = kind.merge_key

        def key(record: dict[str, Any]) -> tuple[Any, ...]:
            return tuple(record[f] for f in key_fields)

        merger = _PartitionMerger(ranges, key)
    coin_keys = None if coins is None else {c.encode() for c in coins}
    bounded = start_us is not None or end_us is not None
    yielded = 0
    finished: set[int] = set()
    decode = serde.decode
    while not reader.done:
        batch = reader.poll()
        for msg in batch:
            if coin_keys is not None:
                k = msg.key()
                if k is not None and k not in coin_keys:
                    continue
            try:
                record = decode(msg.value(), event_type)
            except SerdeError as exc:
                if on_error is None:
                    raise UndecodableRecord(
                        msg.topic(), msg.partition(), msg.offset(), exc.reason, str(exc)
                    ) from None
                on_error(msg, exc)
                continue
            if bounded:
                ts: int = record["ts"]
                if (start_us is not None and ts < start_us) or (
                    end_us is not None and ts >= end_us
                ):
                    continue
            if coins is not None and record.get("coin") not in coins:
                continue
            if merger is None:
                yielded += 1
                yield record
            else:
                merger.push(msg.partition(), record)
        if merger is not None:
            for p in ranges:
                if p not in finished and p not in reader.pending:
                    finished.add(p)
                    merger.finish(p)
            for record in merger.drain():
                yielded += 1
                yield record
    if yielded == 0:
        raise NoDataInRange(
            f"no {event_type} event on {reader.topic!r} in offsets "
            f"{dict(ranges)} matches time {_range_text(start_us, end_us)}"
            + ("" if coins is None else f" and {_coins_text(sorted(coins))}")
        )


__all__ = [
    "ArchiveFileRef",
    "ArchiveReader",
    "TopicEvents",
    "read_archive",
    "read_archive_table",
    "read_archive_tables",
    "read_topic",
    "table_to_events",
]
