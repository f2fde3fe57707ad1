"""The one topic archiver: Kafka records into the Parquet archive, at least once, nothing lost.

:class:`TopicArchiver` holds consumed records and flushes them; both ``huracan archive``
(:func:`archive_topic`, a bounded read of the topic's partitions) and the worker's archive
agent (:mod:`huracan.agents.archive_agent`, a member of its own consumer group) drive it.
A flush (:meth:`TopicArchiver.flush`):

1. decodes the held records; one that does not decode, or whose coin is not a valid directory
   name, is set aside for the dead-letter topic (the serde's reason, or ``schema_reason``);
   a transient serde failure (Schema Registry down) fails the flush;
2. writes the rest with one :meth:`~huracan.storage.archive_files.ArchiveWriter.write_table`
   call (atomic files, merged and de-duplicated on ``event_id``). A write that fails is retried
   after each of ``write_retry_delays``; then, with ``dead_letter_write_failures``, the batch is
   written coin by coin and the rows of the coins that still fail are dead-lettered with reason
   ``archive_write_failed``, else the writer's error is raised;
3. produces the dead letters and waits until the broker has every one;
4. commits, per partition, the offset after the last record of the flush.

A crash before (4) re-reads the records; the merge keeps one row per ``event_id`` and dead
letters carry deterministic ids, so the files come out the same. A flush that cannot finish
raises :class:`ArchiveFlushError` and keeps its records held; a commit refused because the
group moved on (rebalance) leaves the records to the partitions' next owner. The clients come
from :mod:`huracan.streams.clients`; the only wall-clock read is the dead letters'
``failed_at`` (injectable).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from huracan.config import HuracanConfig
from huracan.storage.archive_errors import ArchiveError, ArchiveSchemaError, TopicReadError
from huracan.storage.archive_files import DEFAULT_ROW_GROUP_SIZE, ArchivedFile, ArchiveWriter
from huracan.storage.archive_paths import check_coin
from huracan.storage.archive_schema import records_to_table
from huracan.streams.bounded_reader import (
    BoundedReader,
    ConsumerFactory,
    ProducerFactory,
    _kafka_error_text,
    topic_partitions,
    topic_watermarks,
)
from huracan.streams.clients import make_consumer, make_producer
from huracan.streams.dead_letter import (
    DEAD_LETTER_EVENT_TYPE,
    dead_letter_from_message,
    encode_dead_letter,
    reason_code,
)
from huracan.streams.errors import SerdeError, UnknownEventType
from huracan.streams.serde import SchemaCatalog, Serde, make_serde

log = logging.getLogger("huracan.storage.archiver")

#: DeadLetter reason of a record whose file could not be written after the retries
REASON_WRITE_FAILED: Final = "archive_write_failed"
#: commit errors after which the records are left to the partition's next owner
_LOST_GENERATION: Final = frozenset(
    {
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError._ASSIGNMENT_LOST,
        KafkaError._NO_OFFSET,
    }
)


class ArchiveFlushError(TopicReadError):
    """A flush could not finish (dead letters undelivered, commit refused, registry down);
    its records stay held and uncommitted."""


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What one flush did: ``records`` taken, ``added`` new rows, ``duplicates`` records whose
    ``event_id`` was archived already, ``dead_letters`` sent (their reasons in
    ``dead_letter_reasons``), the ``files`` written, the offsets ``committed`` (next to read,
    per partition; empty when the commit was left to the partitions' next owner) and how long
    it took. After a failed write attempt the rows it managed to write before failing count as
    ``duplicates`` (the writer reports nothing for a call that raised); ``added + duplicates``
    is exact."""

    records: int
    added: int
    duplicates: int
    dead_letters: int
    files: tuple[ArchivedFile, ...]
    committed: Mapping[int, int]
    seconds: float
    dead_letter_reasons: tuple[str, ...] = ()


_Failure = tuple[int, BaseException, str | None]


def _wall_clock_us() -> int:
    return time.time_ns() // 1000


def default_archiver_group(config: HuracanConfig, event_type: str) -> str:
    """``<topic_prefix>.archiver.<event_type>``: the archiver's default consumer group."""
    return f"{config.kafka.topic_prefix}.archiver.{event_type}"


class TopicArchiver:
    """Archives the records of one topic that its driver hands it (steps in the module doc).

    The driver reads the topic with :attr:`consumer` (set by the driver; commits go through
    it), appends each record to :attr:`held` and calls :meth:`flush`. ``role`` names the
    clients (``<client_id_prefix>-<role>``), ``dead_letter_consumer`` the DeadLetter's
    ``consumer`` field (default: the group id), ``schema_reason`` the DeadLetter reason of a
    record that does not fit the archive (default: the error's own reason code).
    ``producer_factory`` builds the dead-letter producer from its config dict (tests pass
    fakes). Not thread-safe: one thread drives one archiver.

    Raises :class:`~huracan.storage.archive_errors.ArchiveSchemaError` for an event type that
    has no topic or cannot be archived.
    """

    def __init__(
        self,
        cfg: HuracanConfig,
        event_type: str = "MarketTick",
        *,
        root: str | Path,
        group_id: str,
        role: str,
        row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
        serde: Serde | None = None,
        producer_factory: ProducerFactory | None = None,
        dead_letter_consumer: str | None = None,
        schema_reason: str | None = None,
        write_retry_delays: Sequence[float] = (),
        dead_letter_write_failures: bool = False,
        clock_us: Callable[[], int] = _wall_clock_us,
        sleep: Callable[[float], None] = time.sleep,
        delivery_timeout_s: float = 30.0,
    ) -> None:
        schemas = SchemaCatalog.from_config(cfg)
        try:
            self.topic = schemas.topic_for(event_type)
            self.dead_letter_topic = schemas.topic_for(DEAD_LETTER_EVENT_TYPE)
        except UnknownEventType as exc:
            raise ArchiveSchemaError(str(exc)) from None
        self.writer = ArchiveWriter(
            root, event_type, catalog=schemas, row_group_size=row_group_size
        )
        self.cfg = cfg
        self.event_type = event_type
        self.group_id = group_id
        self.role = role
        self.serde = serde if serde is not None else make_serde(cfg, catalog=schemas)
        self.consumer: Any = None
        self.held: list[Any] = []
        self._producer_factory = producer_factory
        self._producer: Any = None
        self._delivery_errors: list[str] = []
        self._dead_letter_consumer = dead_letter_consumer or group_id
        self._schema_reason = schema_reason
        self._write_retry_delays = tuple(write_retry_delays)
        self._dead_letter_write_failures = dead_letter_write_failures
        self._clock_us = clock_us
        self._sleep = sleep
        self._delivery_timeout_s = delivery_timeout_s

    # ----------------------------------------------------------------------- hooks
    def _on_error(self, error: str) -> None:
        """Called with the exception type name of each failed write attempt (for metrics)."""

    def _drop_held(self) -> None:
        self.held = []

    # ----------------------------------------------------------------------- flushing
    def flush(self) -> FlushResult | None:
        """Archive the held records and commit them (steps in the module docstring).

        Returns None when nothing was held. Raises :class:`ArchiveFlushError` when the dead
        letters could not be delivered, the registry is down or the commit failed, and the
        writer's error when a write fails without ``dead_letter_write_failures``; the records
        then stay held (the files written meanwhile are harmless: a retry merges the same rows
        into them).
        """
        if not self.held:
            return None
        t0 = time.perf_counter()
        batch = self.held
        # 1. decode
        table, positions, rows, failed = self._prepare(batch)
        # 2. write (retried, then coin by coin)
        files: list[ArchivedFile] = []
        if table is not None and positions is not None:
            files, write_failed = self._write(table, positions, rows)
            failed += write_failed
        # 3. dead letters, delivered before anything is committed
        if failed:
            self._send_dead_letters([(batch[i], exc, reason) for i, exc, reason in failed])
        # 4. commit
        committed = self._commit(batch)
        seconds = time.perf_counter() - t0
        added = sum(f.added for f in files)
        written = (table.num_rows if table is not None else 0) - sum(
            1 for _, _, reason in failed if reason == REASON_WRITE_FAILED
        )
        result = FlushResult(
            records=len(batch), added=added, duplicates=max(written - added, 0),
            dead_letters=len(failed), files=tuple(files), committed=committed, seconds=seconds,
            dead_letter_reasons=tuple(reason or reason_code(exc) for _, exc, reason in failed),
        )  # fmt: skip
        self._drop_held()
        return result

    def _prepare(
        self, batch: Sequence[Any]
    ) -> tuple[pa.Table | None, pa.Table | None, list[int], list[_Failure]]:
        """The held records as a table of the writer's schema, its positions, the batch index
        of each row, and the records that cannot be archived."""
        records: list[dict[str, Any]] = []
        rows: list[int] = []
        failed: list[_Failure] = []
        for i, msg in enumerate(batch):
            try:
                record = self.serde.decode(msg.value(), expected=self.event_type)
                check_coin(record.get("coin"))
            except SerdeError as exc:
                if exc.transient:
                    raise ArchiveFlushError(
                        f"decoding {self.topic}:{msg.partition()}:{msg.offset()} needs the "
                        f"Schema Registry: {exc}"
                    ) from exc
                failed.append((i, exc, None))
                continue
            except ArchiveSchemaError as exc:
                failed.append((i, exc, self._schema_reason))
                continue
            records.append(record)
            rows.append(i)
        kind = self.writer.kind
        try:
            table = records_to_table(records, kind) if records else None
        except ArchiveSchemaError:
            # find the records that do not fit, one by one (rare: they decoded with the schema)
            keep = []
            for j, record in enumerate(records):
                try:
                    records_to_table([record], kind)
                except ArchiveSchemaError as exc:
                    failed.append((rows[j], exc, self._schema_reason))
                else:
                    keep.append(j)
            records, rows = [records[j] for j in keep], [rows[j] for j in keep]
            table = records_to_table(records, kind) if records else None
        if table is None:
            return None, None, [], failed
        positions = pa.table(
            {
                "partition": pa.array([batch[i].partition() for i in rows], pa.int32()),
                "offset": pa.array([batch[i].offset() for i in rows], pa.int64()),
            }
        )
        return table, positions, rows, failed

    def _write(
        self, table: pa.Table, positions: pa.Table, rows: list[int]
    ) -> tuple[list[ArchivedFile], list[_Failure]]:
        """Write the batch; after the retries, coin by coin (or raise); the rows of the failed
        coins returned."""
        for attempt in range(len(self._write_retry_delays) + 1):
            try:
                files = self.writer.write_table(table, source_topic=self.topic, positions=positions)
                return files, []
            except (ArchiveError, OSError) as exc:
                if not self._dead_letter_write_failures and attempt == len(
                    self._write_retry_delays
                ):
                    raise
                self._on_error(type(exc).__name__)
                log.warning(
                    "archive %s: write of %d rows failed (attempt %d): %s",
                    self.topic, table.num_rows, attempt + 1, exc,
                )  # fmt: skip
                if attempt < len(self._write_retry_delays):
                    self._sleep(self._write_retry_delays[attempt])
        return self._write_by_coin(table, positions, rows)

    def _write_by_coin(
        self, table: pa.Table, positions: pa.Table, rows: list[int]
    ) -> tuple[list[ArchivedFile], list[_Failure]]:
        """Each coin on its own, so one bad file or folder costs only its coin's rows."""
        files: list[ArchivedFile] = []
        failed: list[_Failure] = []
        coins = table.column("coin")
        for coin in pc.unique(coins).to_pylist():
            mask = pc.equal(coins, coin)
            try:
                files += self.writer.write_table(
                    table.filter(mask), source_topic=self.topic, positions=positions.filter(mask)
                )
            except (ArchiveError, OSError) as exc:
                self._on_error(type(exc).__name__)
                indices = pc.indices_nonzero(mask).to_pylist()
                log.error("archive %s: %d rows of %s dead-lettered: %s",
                          self.topic, len(indices), coin, exc)  # fmt: skip
                failed += [(rows[k], exc, REASON_WRITE_FAILED) for k in indices]
        return files, failed

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._delivery_errors.append(str(err))

    def _send_dead_letters(self, items: Sequence[tuple[Any, BaseException, str | None]]) -> None:
        if self._producer is None:
            self._producer = make_producer(
                self.cfg, f"{self.role}-dead-letter", factory=self._producer_factory
            )
        self._delivery_errors = []
        failed_at_us = self._clock_us()
        try:
            for msg, exc, reason in items:
                event = dead_letter_from_message(
                    msg,
                    exc,
                    consumer=self._dead_letter_consumer,
                    failed_at_us=failed_at_us,
                    reason=reason,
                )
                key, value = encode_dead_letter(self.serde, event)
                self._producer.produce(
                    self.dead_letter_topic, key=key, value=value, on_delivery=self._on_delivery
                )
                self._producer.poll(0)
            remaining = self._producer.flush(self._delivery_timeout_s)
        except (KafkaException, BufferError) as exc:
            raise ArchiveFlushError(f"dead letters to {self.dead_letter_topic}: {exc}") from exc
        if remaining or self._delivery_errors:
            raise ArchiveFlushError(
                f"{remaining} dead letters to {self.dead_letter_topic} undelivered, errors: "
                f"{self._delivery_errors[:3]}; offsets not committed"
            )

    def _commit(self, batch: Sequence[Any]) -> dict[int, int]:
        """Commit the offset after each partition's last record; ``{}`` when the group has
        moved on (the partitions' next owner reads the records again)."""
        next_offsets: dict[int, int] = {}
        for msg in batch:
            p, o = msg.partition(), msg.offset()
            if o + 1 > next_offsets.get(p, -1):
                next_offsets[p] = o + 1
        offsets = [KafkaTopicPartition(self.topic, p, o) for p, o in sorted(next_offsets.items())]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() in _LOST_GENERATION:
                log.warning("archive %s: commit left to the next owner: %s", self.topic, err)
                return {}
            raise ArchiveFlushError(
                f"cannot commit the offsets of group {self.group_id!r}: {_kafka_error_text(exc)}"
            ) from exc
        return next_offsets

    def close_producer(self, timeout_s: float = 5.0) -> None:
        """Let the dead-letter producer deliver what it holds (up to ``timeout_s``)."""
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.flush(timeout_s)


# --- the bounded run of ``huracan archive`` ---------------------------------------------------


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
    3. consume (``read_committed``) in batches of ``batch_size`` into a
       :class:`TopicArchiver`;
    4. every ``flush_rows`` records, every ``flush_interval_s`` and at the end: flush it
       (decode, dead-letter what cannot be archived — counted, never dropped — write the
       files, wait until every dead letter is acknowledged, and only then commit the offsets
       after the last record consumed; a write failure raises, nothing is retried);
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
    group = group_id or default_archiver_group(config, topic_event_type)
    run = TopicArchiver(
        config,
        topic_event_type,
        root=root,
        group_id=group,
        role=f"archiver-{topic_event_type}",
        row_group_size=row_group_size,
        serde=serde,
        producer_factory=producer_factory,
        clock_us=clock_us,
        delivery_timeout_s=idle_timeout_s,
    )
    topic = run.topic
    consumer = make_consumer(
        config,
        f"archiver-{topic_event_type}",
        group_id=group,
        overrides={
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        },
        factory=consumer_factory,
    )
    run.consumer = consumer
    consumed = 0
    first_last: dict[int, tuple[int, int]] = {}
    results: list[FlushResult] = []
    reader: BoundedReader | None = None

    def flush() -> None:
        result = run.flush()
        if result is not None:
            results.append(result)

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
                p, off = int(msg.partition()), int(msg.offset())
                consumed += 1
                first = first_last.get(p)
                first_last[p] = (first[0], off) if first else (off, off)
                run.held.append(msg)
            if len(run.held) >= flush_rows or (
                run.held and time.monotonic() - last_flush >= flush_interval_s
            ):
                flush()
                last_flush = time.monotonic()
        flush()
        return _report(run, Path(root), results, consumed, first_last, ends or {}, reader.done)
    finally:
        # 5. close
        run.close_producer()
        if reader is not None:
            reader.close()
        else:
            with contextlib.suppress(Exception):
                consumer.close()


def _report(
    run: TopicArchiver,
    root: Path,
    results: Sequence[FlushResult],
    consumed: int,
    first_last: Mapping[int, tuple[int, int]],
    ends: Mapping[int, int],
    complete: bool,
) -> ArchiveReport:
    files: dict[Path, ArchivedFile] = {}
    committed: dict[int, int] = {}
    for result in results:
        committed.update(result.committed)
        for f in result.files:
            prior = files.get(f.path)
            added = f.added + (prior.added if prior is not None else 0)
            files[f.path] = ArchivedFile(f.path, f.coin, f.day, f.rows, added)
    added_total = sum(f.added for f in files.values())
    dead = sum(r.dead_letters for r in results)
    return ArchiveReport(
        topic=run.topic,
        event_type=run.event_type,
        root=root,
        group_id=run.group_id,
        files=tuple(sorted(files.values(), key=lambda f: (f.coin, f.day))),
        consumed=consumed,
        archived=added_total,
        duplicates=consumed - dead - added_total,
        dead_letters=dead,
        offsets=dict(sorted(first_last.items())),
        committed=dict(sorted(committed.items())),
        end_offsets=dict(sorted(ends.items())),
        complete=complete,
    )


__all__ = [
    "REASON_WRITE_FAILED",
    "ArchiveFlushError",
    "ArchiveReport",
    "FlushResult",
    "TopicArchiver",
    "archive_topic",
    "default_archiver_group",
]
