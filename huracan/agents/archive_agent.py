"""The archive agent: the worker writes market data (and executions, decisions) to Parquet.

Enabled by ``storage.archive.enabled``. :func:`build_archive_agents` registers an
:class:`ArchiveService` on the Faust app; for the life of the worker it runs one
:class:`TopicArchiver` per topic in ``storage.archive.topics`` (``market-data``, ``executions``,
``risk-decisions``), each in a thread of its own, writing ``<root>/<coin>/YYYYMMDD.parquet``
(``<root>/_executions/…``, ``<root>/_risk_decisions/…``) with
:class:`~huracan.storage.archive.ArchiveWriter`: atomic files, merged and de-duplicated on
``event_id``, the source partitions and offset intervals in each file's metadata.
:func:`run_archivers` runs the same archivers in the foreground, for an archive process of its
own (``huracan archive --follow``).

**Its own consumer group, not a Faust agent.** Each archiver is a plain Kafka consumer in group
``<topic_prefix>.archive-agent.<EventType>``: the workers' archivers share the partitions among
themselves, and neither they nor the pipeline wait for each other. The first version was a
second Faust agent on market-data, and Faust does deliver every record to both agents (the
conductor counts one reference per channel and a record is committed only when every channel
acknowledged it): with it every tick was archived once and the decisions stayed the engine's.
But stopping such a worker hung: Faust suspends the flow, clears the channels' queues and then
waits, without a time limit, until every record a stream has seen is acknowledged or garbage.
A record cleared from one agent's queue while the other agent still holds it is neither, so the
worker hung until it was killed — 3 of 3 runs with a backlog (about 200 market-data records at
refcount 1), on the committed pipeline as on the one being changed, and a rebalance runs the same
wait. The agent also made the pipeline's commits wait for archive flushes. A group of its own has
none of this; the price is a second read of the topic.

**At least once, nothing lost, nothing twice.** Offsets are committed by hand, and only after a
flush has made its records durable. A flush (:meth:`TopicArchiver.flush`):

1. decodes the held records; one that does not decode, or whose coin is not a valid directory
   name, is set aside for the dead-letter topic (the serde's reason, or ``archive_schema``);
2. writes the rest with one :meth:`~huracan.storage.archive.ArchiveWriter.write_table` call —
   each touched (coin, day) file is read, merged, written to a temporary file, fsynced and
   renamed. A write that fails (disk full, an unreadable existing file) is retried twice (after
   1 s and 3 s); then the batch is written coin by coin, and the records of the coins that still
   fail are dead-lettered with reason ``archive_write_failed`` (bytes, topic, partition and
   offset are in the dead letter; the topic still holds them for a later ``huracan archive``);
3. produces the dead letters and waits until the broker has every one;
4. commits, per partition, the offset after the last record of the flush.

A crash before (4) re-reads the records; the merge keeps one row per ``event_id``, so the files
come out the same. If (3) or (4) fails (broker down) the records stay held and the flush is tried
again every 5 s. When partitions are taken away (a rebalance, another worker joining), the held
records are flushed first; when the group has already lost them, they are dropped unflushed and
their next owner reads them again. Dead letters are counted in
``huracan_dead_letters_total{agent="archive"}``.

**When it flushes.** Once ``flush_rows`` records are held, or once the oldest has been held
``flush_seconds``, and when the worker stops. Files show new rows only then.

**Write cost.** A day file is rewritten whole by every flush that touches it, and it grows all
day: summed over coins that is about ``ingest × 43,200 / flush_interval`` rows rewritten per
second on average (the flush interval is ``flush_seconds``, or ``flush_rows / ingest`` when that
is shorter). On the 2-core development machine the writer rewrites about 1.2 M rows/s
(``ArchiveWriter`` with 2 threads, files of 10k-150k rows). With the defaults
(``flush_seconds`` 300, ``flush_rows`` 100,000):

=================================  ==============  =====================  ==================
ingest                             flush interval  rewrite (avg rows/s)   share of 1.2 M/s
=================================  ==============  =====================  ==================
100 ticks/s (400 coins, 1 per 4 s)  300 s           14 k                   1 %
400 ticks/s (400 coins, 1 per s)    300 s           58 k                   5 %
1,000 ticks/s                      100 s (rows)    432 k                  36 %
=================================  ==============  =====================  ==================

Above about 1,000 ticks/s raise ``flush_rows`` with ``flush_seconds`` (memory: the held records,
a few hundred bytes each) or archive in batches with ``huracan archive`` every hour or so.
``huracan_archive_flush_seconds`` and ``huracan_archive_rows_total`` show the cost live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition
from mode import Service
from prometheus_client import Counter, Gauge, Histogram

from huracan.config import ConfigError, HuracanConfig
from huracan.observability import metrics
from huracan.storage.archive import ArchivedFile, ArchiveWriter, check_coin, records_to_table
from huracan.storage.archive_errors import ArchiveError, ArchiveSchemaError
from huracan.streams.dead_letter import (
    dead_letter_from_message,
    encode_dead_letter,
    reason_code,
)
from huracan.streams.errors import SerdeError, UnknownEventType
from huracan.streams.serde import SchemaCatalog, Serde, make_serde
from huracan.streams.topics import TopicCatalog, topic_name

log = logging.getLogger(__name__)

#: the DeadLetter ``consumer`` and the ``agent`` label of the metrics
AGENT: Final = "archive"
#: DeadLetter reason of a record whose coin or fields do not fit the archive
REASON_SCHEMA: Final = "archive_schema"
#: DeadLetter reason of a record whose file could not be written after the retries
REASON_WRITE_FAILED: Final = "archive_write_failed"
#: waits between the attempts of a failing write (then coin by coin, then dead letters)
WRITE_RETRY_DELAYS_S: Final = (1.0, 3.0)
#: wait before trying again a flush that could not finish (dead letters or commit failed)
FLUSH_RETRY_DELAY_S: Final = 5.0
#: the group drops an archiver that stopped heartbeating after this long (librdkafka sends the
#: heartbeats from its own thread, so a busy worker does not miss them; a killed one is
#: replaced 10 s later instead of librdkafka's default 45 s)
SESSION_TIMEOUT_MS: Final = 10_000
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

ARCHIVE_ROWS = Counter(
    "huracan_archive_rows_total", "Rows the archive agent added to the archive", ["topic"]
)
ARCHIVE_DUPLICATES = Counter(
    "huracan_archive_duplicates_total",
    "Records the archive agent found archived already (read again after a restart)",
    ["topic"],
)
ARCHIVE_FLUSH_SECONDS = Histogram(
    "huracan_archive_flush_seconds",
    "One archive flush: decode, rewrite the touched day files, dead letters, commit",
    ["topic"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
ARCHIVE_FILES = Counter(
    "huracan_archive_files_written_total", "Day files (re)written by the archive agent", ["topic"]
)
ARCHIVE_ERRORS = Counter(
    "huracan_archive_errors_total",
    "Failed archive writes, flushes and consumer calls, by exception type",
    ["topic", "error"],
)
ARCHIVE_HELD = Gauge(
    "huracan_archive_held_records", "Records read and not yet archived and committed", ["topic"]
)


class ArchiveFlushError(Exception):
    """A flush could not finish (dead letters undelivered, commit refused, registry down);
    its records stay held and uncommitted."""


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What one flush did: ``records`` taken, ``added`` new rows, ``duplicates`` records whose
    ``event_id`` was archived already, ``dead_letters`` sent, the ``files`` written, the
    offsets ``committed`` (next to read, per partition; empty when the commit was left to the
    partitions' next owner) and how long it took. After a failed write attempt the rows it
    managed to write before failing count as ``duplicates`` (the writer reports nothing for a
    call that raised); ``added + duplicates`` is exact."""

    records: int
    added: int
    duplicates: int
    dead_letters: int
    files: tuple[ArchivedFile, ...]
    committed: Mapping[int, int]
    seconds: float


def archive_group(cfg: HuracanConfig, event_type: str) -> str:
    """``<topic_prefix>.archive-agent.<event_type>``: the archive agent's consumer group
    (apart from ``huracan archive``'s, so a batch run and the agent never share offsets)."""
    return f"{cfg.kafka.topic_prefix}.archive-agent.{event_type}"


def archive_topics(cfg: HuracanConfig) -> dict[str, str]:
    """``{topic name: event type}`` of the topics ``storage.archive.topics`` names.

    Raises :class:`ConfigError` naming ``storage.archive.topics`` for a topic whose events
    cannot be archived (no ``coin``, ``ts`` or ``event_id``).
    """
    catalog = TopicCatalog.from_config(cfg)
    schemas = SchemaCatalog.from_config(cfg)
    out: dict[str, str] = {}
    for suffix in cfg.storage.archive.topics:
        try:
            spec = catalog.by_name(topic_name(cfg.kafka.topic_prefix, suffix))
            ArchiveWriter(cfg.storage.archive.root, spec.event_type, catalog=schemas)
        except (UnknownEventType, ArchiveSchemaError) as exc:
            raise ConfigError(
                f"storage.archive.topics: {suffix!r} cannot be archived: {exc}"
            ) from None
        out[spec.name] = spec.event_type
    return out


_Failure = tuple[int, BaseException, str | None]


class TopicArchiver:
    """Archives one topic as it grows, as a member of its own consumer group.

    :meth:`run` consumes until ``stop()`` is true, holding records and flushing them as the
    module docstring says; it never raises for broker, disk or record trouble (it logs, counts
    and retries), only when the consumer cannot be built at all. Not thread-safe: one thread
    runs one archiver. ``consumer_factory``/``producer_factory`` build the Kafka clients from
    a librdkafka config dict (tests pass fakes); ``sleep`` waits between retries.
    """

    def __init__(
        self,
        cfg: HuracanConfig,
        event_type: str = "MarketTick",
        *,
        root: str | Path | None = None,
        group_id: str | None = None,
        flush_rows: int | None = None,
        flush_seconds: float | None = None,
        row_group_size: int | None = None,
        serde: Serde | None = None,
        consumer_factory: Callable[[dict[str, Any]], Any] = Consumer,
        producer_factory: Callable[[dict[str, Any]], Any] = Producer,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        write_retry_delays: Sequence[float] = WRITE_RETRY_DELAYS_S,
        retry_delay_s: float = FLUSH_RETRY_DELAY_S,
        poll_timeout_s: float = 0.5,
        delivery_timeout_s: float = 30.0,
    ) -> None:
        """Raises :class:`ConfigError` for an event type without a topic or that cannot be
        archived, :class:`ValueError` for a non-positive ``flush_rows``/``flush_seconds``."""
        arch = cfg.storage.archive
        self.flush_rows = arch.flush_rows if flush_rows is None else flush_rows
        self.flush_seconds = arch.flush_seconds if flush_seconds is None else flush_seconds
        if self.flush_rows < 1 or self.flush_seconds <= 0:
            raise ValueError(
                f"flush_rows must be >= 1 and flush_seconds > 0, got {self.flush_rows}, "
                f"{self.flush_seconds}"
            )
        schemas = SchemaCatalog.from_config(cfg)
        catalog = TopicCatalog.from_config(cfg)
        try:
            self.topic = catalog.for_event_type(event_type).name
            self.dead_letter_topic = catalog.for_event_type("DeadLetter").name
            self.writer = ArchiveWriter(
                root if root is not None else arch.root,
                event_type,
                catalog=schemas,
                row_group_size=row_group_size or arch.row_group_size,
            )
        except (UnknownEventType, ArchiveSchemaError) as exc:
            raise ConfigError(f"storage.archive: cannot archive {event_type}: {exc}") from None
        self.event_type = event_type
        self.group_id = group_id or archive_group(cfg, event_type)
        self.bootstrap = cfg.kafka.bootstrap_servers
        self.serde = serde if serde is not None else make_serde(cfg, catalog=schemas)
        self._consumer_factory = consumer_factory
        self._producer_factory = producer_factory
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._write_retry_delays = tuple(write_retry_delays)
        self._retry_delay_s = retry_delay_s
        self._poll_timeout_s = poll_timeout_s
        self._delivery_timeout_s = delivery_timeout_s
        self.consumer: Any = None
        self._producer: Any = None
        self._delivery_errors: list[str] = []
        self.held: list[Any] = []
        self._oldest: float | None = None
        #: the last 100 flushes, oldest first
        self.results: deque[FlushResult] = deque(maxlen=100)
        self._held_gauge = ARCHIVE_HELD.labels(topic=self.topic)
        self._errors = ARCHIVE_ERRORS
        self._records_in = metrics.RECORDS_IN.labels(agent=AGENT, topic=self.topic)

    # ----------------------------------------------------------------------- the loop
    def consumer_config(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap,
            "group.id": self.group_id,
            "client.id": f"huracan-archive-agent-{self.event_type}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": SESSION_TIMEOUT_MS,
        }

    def run(self, stop: Callable[[], bool]) -> None:
        """Consume and archive until ``stop()`` returns true; then flush, commit and leave."""
        self.consumer = self._consumer_factory(self.consumer_config())
        try:
            self.consumer.subscribe([self.topic], on_revoke=self._on_revoke, on_lost=self._on_lost)
            while not stop():
                self.poll()
                if self.due():
                    self.flush_until_done(stop)
            self.flush_until_done(lambda: True)
        finally:
            with contextlib.suppress(Exception):
                self.consumer.close()
            if self._producer is not None:
                with contextlib.suppress(Exception):
                    self._producer.flush(5)
            self._held_gauge.dec(len(self.held))
            self.held = []

    def poll(self) -> int:
        """Read what the broker has (waiting up to the poll timeout); returns records held."""
        try:
            batch = self.consumer.consume(
                num_messages=max(1, min(5_000, self.flush_rows)), timeout=self._poll_timeout_s
            )
        except KafkaException as exc:
            self._errors.labels(topic=self.topic, error="consume").inc()
            log.warning("archive %s: consume failed: %s", self.topic, exc)
            self._sleep(self._poll_timeout_s)
            return 0
        taken = 0
        for msg in batch:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    self._errors.labels(topic=self.topic, error=err.name()).inc()
                    log.warning("archive %s: %s", self.topic, err)
                continue
            if not self.held:
                self._oldest = self._clock()
            self.held.append(msg)
            taken += 1
        if taken:
            self._records_in.inc(taken)
            self._held_gauge.inc(taken)
        return taken

    def due(self) -> bool:
        """True when the held records should be flushed now."""
        if not self.held:
            return False
        if len(self.held) >= self.flush_rows:
            return True
        return self._oldest is not None and self._clock() - self._oldest >= self.flush_seconds

    def flush_until_done(self, stop: Callable[[], bool]) -> FlushResult | None:
        """:meth:`flush`, tried again every ``retry_delay_s`` while it fails, until ``stop()``
        (then the records stay uncommitted, to be read again)."""
        while True:
            try:
                return self.flush()
            except ArchiveFlushError as exc:
                self._errors.labels(
                    topic=self.topic, error=type(exc.__cause__ or exc).__name__
                ).inc()
                log.error(
                    "archive %s: flush of %d records failed: %s", self.topic, len(self.held), exc
                )
                if stop():
                    return None
                self._sleep(self._retry_delay_s)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        """Partitions are moving to another archiver: flush before they go (one try)."""
        if not self.held:
            return
        try:
            self.flush()
        except ArchiveFlushError as exc:
            log.warning(
                "archive %s: %d records left to the next owner of their partitions: %s",
                self.topic, len(self.held), exc,
            )  # fmt: skip
            self._drop_held()

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        """The group took the partitions already: their next owner reads the records again."""
        log.warning("archive %s: partitions lost, %d records left to their next owner",
                    self.topic, len(self.held))  # fmt: skip
        self._drop_held()

    def _drop_held(self) -> None:
        self._held_gauge.dec(len(self.held))
        self.held, self._oldest = [], None

    # ----------------------------------------------------------------------- flushing
    def flush(self) -> FlushResult | None:
        """Archive the held records and commit them (steps in the module docstring).

        Returns None when nothing was held. Raises :class:`ArchiveFlushError` when the dead
        letters could not be delivered, the registry is down or the commit failed; the
        records then stay held (the files written meanwhile are harmless: a retry merges the
        same rows into them).
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
        )  # fmt: skip
        ARCHIVE_FLUSH_SECONDS.labels(topic=self.topic).observe(seconds)
        ARCHIVE_ROWS.labels(topic=self.topic).inc(added)
        ARCHIVE_DUPLICATES.labels(topic=self.topic).inc(result.duplicates)
        ARCHIVE_FILES.labels(topic=self.topic).inc(sum(1 for f in files if f.added))
        for _, exc, reason in failed:
            metrics.DEAD_LETTERS.labels(agent=AGENT, reason=reason or reason_code(exc)).inc()
        self.results.append(result)
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
                    raise ArchiveFlushError(f"decoding needs the Schema Registry: {exc}") from exc
                failed.append((i, exc, None))
                continue
            except ArchiveSchemaError as exc:
                failed.append((i, exc, REASON_SCHEMA))
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
                    failed.append((rows[j], exc, REASON_SCHEMA))
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
        """Write the batch; after the retries, coin by coin; the rows of failed coins returned."""
        for attempt in range(len(self._write_retry_delays) + 1):
            try:
                files = self.writer.write_table(table, source_topic=self.topic, positions=positions)
                return files, []
            except (ArchiveError, OSError) as exc:
                self._errors.labels(topic=self.topic, error=type(exc).__name__).inc()
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
                self._errors.labels(topic=self.topic, error=type(exc).__name__).inc()
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
            self._producer = self._producer_factory(
                {
                    "bootstrap.servers": self.bootstrap,
                    "enable.idempotence": True,
                    "acks": "all",
                    "client.id": f"huracan-archive-agent-{self.event_type}-dead-letter",
                }
            )
        self._delivery_errors = []
        failed_at_us = int(self._wall_clock() * 1e6)
        try:
            for msg, exc, reason in items:
                event = dead_letter_from_message(
                    msg, exc, consumer=AGENT, failed_at_us=failed_at_us, reason=reason
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
                f"{self._delivery_errors[:3]}"
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
            raise ArchiveFlushError(f"commit of {self.group_id}: {exc}") from exc
        return next_offsets


# ------------------------------------------------------------------------------ running them


class ArchiveService(Service):
    """Runs the configured :class:`TopicArchiver`\\ s in threads while the app runs.

    Built for one config by :func:`build_archive_agents` (``config`` is set on a subclass);
    stopping it asks every archiver to flush, commit and leave its group, and waits up to
    ``stop_timeout_s`` for them.
    """

    config: ClassVar[HuracanConfig]
    stop_timeout_s: ClassVar[float] = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.archivers = [
            TopicArchiver(self.config, event_type)
            for event_type in archive_topics(self.config).values()
        ]
        self._stop_requested = threading.Event()
        self._threads: list[threading.Thread] = []

    async def on_start(self) -> None:
        for archiver in self.archivers:
            thread = threading.Thread(
                target=_run_logged,
                args=(archiver, self._stop_requested.is_set),
                name=f"huracan-archive-{archiver.event_type}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        log.info(
            "archive agent: %s -> %s",
            ", ".join(a.topic for a in self.archivers),
            Path(self.config.storage.archive.root).resolve(),
        )

    async def on_stop(self) -> None:
        self._stop_requested.set()
        await asyncio.to_thread(_join_all, self._threads, self.stop_timeout_s)


def _run_logged(archiver: TopicArchiver, stop: Callable[[], bool]) -> None:
    """:meth:`TopicArchiver.run`, started again after 5 s when it crashes (a bug)."""
    while not stop():
        try:
            archiver.run(stop)
        except Exception:  # an archiver bug must not stop the others (logged with its traceback)
            ARCHIVE_ERRORS.labels(topic=archiver.topic, error="crash").inc()
            log.exception("archive %s crashed; restarting in 5 s", archiver.topic)
            deadline = time.monotonic() + FLUSH_RETRY_DELAY_S
            while not stop() and time.monotonic() < deadline:
                time.sleep(0.1)


def _join_all(threads: Sequence[threading.Thread], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.error("archive thread %s did not stop within %.0f s", thread.name, timeout_s)


def build_archive_agents(app: Any, cfg: HuracanConfig) -> type[ArchiveService] | None:
    """Register the archive agent on ``app`` when ``storage.archive.enabled`` (else None).

    Returns the :class:`ArchiveService` subclass registered (Faust starts it once the worker
    is ready). Raises :class:`ConfigError` for a topic that cannot be archived.
    """
    if not cfg.storage.archive.enabled:
        return None
    archive_topics(cfg)  # fail at start, naming the key
    service: type[ArchiveService] = type(
        "HuracanArchiveService", (ArchiveService,), {"config": cfg}
    )
    app.service(service)
    return service


def run_archivers(
    cfg: HuracanConfig,
    stop: Callable[[], bool],
    *,
    archivers: Sequence[TopicArchiver] | None = None,
) -> list[TopicArchiver]:
    """Run the configured archivers (or ``archivers``) in threads until ``stop()``; then let
    each flush, commit and leave its group. For an archive process of its own
    (``huracan archive --follow``); returns the archivers (their ``results``)."""
    chosen = (
        list(archivers)
        if archivers is not None
        else [TopicArchiver(cfg, event_type) for event_type in archive_topics(cfg).values()]
    )
    threads = [
        threading.Thread(target=_run_logged, args=(a, stop), name=f"huracan-archive-{a.event_type}")
        for a in chosen
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return chosen


__all__ = [
    "ARCHIVE_DUPLICATES",
    "ARCHIVE_FLUSH_SECONDS",
    "ARCHIVE_ROWS",
    "ArchiveFlushError",
    "ArchiveService",
    "FlushResult",
    "TopicArchiver",
    "archive_group",
    "archive_topics",
    "build_archive_agents",
    "run_archivers",
]
