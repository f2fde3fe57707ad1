"""Archiving a topic: a bounded (or followed) read of a Kafka topic into the Parquet archive.

:func:`archive_topic` drains a topic into the archive and commits the consumer offsets only
after the files (and the dead letters) are durable: at least once, and idempotent because
files de-duplicate on ``event_id`` and dead letters carry deterministic ids. The clients come
from :mod:`huracan.streams.clients`; the only wall-clock read is the dead letters'
``failed_at`` (injectable: ``clock_us``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from confluent_kafka import KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from huracan.config import HuracanConfig
from huracan.storage.archive_errors import (
    ArchiveSchemaError,
    TopicReadError,
)
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
)
from huracan.streams.errors import SerdeError, UnknownEventType
from huracan.streams.serde import SchemaCatalog, Serde, make_serde


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
        serde: Serde,
        writer: ArchiveWriter,
        consumer: Any,
        new_producer: Callable[[], Any],
        clock_us: Callable[[], int],
        delivery_timeout_s: float,
    ) -> None:
        self.topic = topic
        self.dead_letter_topic = dead_letter_topic
        self.event_type = event_type
        self.group = group
        self.serde = serde
        self.writer = writer
        self.consumer = consumer
        self.new_producer = new_producer
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
            self.producer = self.new_producer()
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
    run = _TopicArchiver(
        topic=topic,
        dead_letter_topic=dead_letter_topic,
        event_type=topic_event_type,
        group=group,
        serde=serde if serde is not None else make_serde(config, catalog=catalog),
        writer=writer,
        consumer=consumer,
        new_producer=lambda: make_producer(
            config, f"archiver-{topic_event_type}-dead-letter", factory=producer_factory
        ),
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
