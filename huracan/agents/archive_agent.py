"""The archive agent: the worker writes market data (and executions, decisions) to Parquet.

Enabled by ``storage.archive.enabled``. :func:`build_archive_agents` registers an
:class:`ArchiveService` on the Faust app; for the life of the worker it runs one
:class:`TopicArchiver` per topic in ``storage.archive.topics`` (``market-data``, ``executions``,
``risk-decisions``), each in a thread of its own, writing ``<root>/<coin>/YYYYMMDD.parquet``
(``<root>/_executions/…``, ``<root>/_risk_decisions/…``). :func:`run_archivers` runs the same
archivers in the foreground, for an archive process of its own.

:class:`TopicArchiver` is a thin shell over the one topic archiver of
:mod:`huracan.storage.archiver` (the same flush as ``huracan archive``: decode, write,
dead-letter, commit). The shell adds what a long-running group member needs:

* **Its own consumer group**, ``<topic_prefix>.archive-agent.<EventType>``, not a Faust agent:
  the workers' archivers share the partitions among themselves, and neither they nor the
  pipeline wait for each other (why not a Faust agent: docs/decisions/0003-storage-and-archiver.md).
* **When it flushes**: once ``flush_rows`` records are held, or once the oldest has been held
  ``flush_seconds``, and when the worker stops. Files show new rows only then.
* **Failures never stop it**: a failing write is retried twice (after 1 s and 3 s), then the
  batch is written coin by coin and the rows of the coins that still fail are dead-lettered
  with reason ``archive_write_failed``; a flush whose dead letters or commit fail (broker down)
  keeps its records and is tried again every 5 s. Records that do not fit the archive are
  dead-lettered with reason ``archive_schema``.
* **Rebalances**: when partitions are taken away the held records are flushed first; when the
  group has already lost them, they are dropped unflushed and their next owner reads them
  again.
* **Metrics**: ``huracan_archive_*`` and ``huracan_dead_letters_total{agent="archive"}``.

**Write cost.** A day file is rewritten whole by every flush that touches it: summed over coins
about ``ingest × 43,200 / flush_interval`` rows rewritten per second on average (the flush
interval is ``flush_seconds``, or ``flush_rows / ingest`` when that is shorter). Above about
1,000 ticks/s raise ``flush_rows`` with ``flush_seconds`` or archive in batches with
``huracan archive``; the measured figures are in the decision record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

from confluent_kafka import KafkaError, KafkaException
from mode import Service
from prometheus_client import Counter, Gauge, Histogram

from huracan.config import ConfigError, HuracanConfig
from huracan.observability import metrics
from huracan.storage.archive_errors import ArchiveSchemaError
from huracan.storage.archive_files import ArchiveWriter
from huracan.storage.archiver import (
    REASON_WRITE_FAILED,
    ArchiveFlushError,
    FlushResult,
)
from huracan.storage.archiver import TopicArchiver as _SharedTopicArchiver
from huracan.streams import clients
from huracan.streams.errors import UnknownEventType
from huracan.streams.serde import SchemaCatalog, Serde
from huracan.streams.topics import TopicCatalog, topic_name

log = logging.getLogger(__name__)

#: the DeadLetter ``consumer`` and the ``agent`` label of the metrics
AGENT: Final = "archive"
#: DeadLetter reason of a record whose coin or fields do not fit the archive
REASON_SCHEMA: Final = "archive_schema"
#: waits between the attempts of a failing write (then coin by coin, then dead letters)
WRITE_RETRY_DELAYS_S: Final = (1.0, 3.0)
#: wait before trying again a flush that could not finish (dead letters or commit failed)
FLUSH_RETRY_DELAY_S: Final = 5.0
#: the group drops an archiver that stopped heartbeating after this long (librdkafka sends the
#: heartbeats from its own thread, so a busy worker does not miss them; a killed one is
#: replaced 10 s later instead of librdkafka's default 45 s)
SESSION_TIMEOUT_MS: Final = 10_000
_CONSUMER_OVERRIDES: Final = {
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "session.timeout.ms": SESSION_TIMEOUT_MS,
}

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


class TopicArchiver(_SharedTopicArchiver):
    """Archives one topic as it grows, as a member of its own consumer group.

    :meth:`run` consumes until ``stop()`` is true, holding records and flushing them as the
    module docstring says; it never raises for broker, disk or record trouble (it logs, counts
    and retries), only when the consumer cannot be built at all. Not thread-safe: one thread
    runs one archiver. ``consumer_factory``/``producer_factory`` build the Kafka clients from
    the config dicts of :mod:`huracan.streams.clients` (tests pass fakes); ``sleep`` waits
    between retries.
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
        consumer_factory: Callable[[dict[str, Any]], Any] | None = None,
        producer_factory: Callable[[dict[str, Any]], Any] | None = None,
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
        try:
            super().__init__(
                cfg,
                event_type,
                root=root if root is not None else arch.root,
                group_id=group_id or archive_group(cfg, event_type),
                role=f"archive-agent-{event_type}",
                row_group_size=row_group_size or arch.row_group_size,
                serde=serde,
                producer_factory=producer_factory,
                dead_letter_consumer=AGENT,
                schema_reason=REASON_SCHEMA,
                write_retry_delays=write_retry_delays,
                dead_letter_write_failures=True,
                clock_us=lambda: int(wall_clock() * 1e6),
                sleep=sleep,
                delivery_timeout_s=delivery_timeout_s,
            )
        except ArchiveSchemaError as exc:
            raise ConfigError(f"storage.archive: cannot archive {event_type}: {exc}") from None
        self._consumer_factory = consumer_factory
        self._clock = clock
        self._retry_delay_s = retry_delay_s
        self._poll_timeout_s = poll_timeout_s
        self._oldest: float | None = None
        #: the last 100 flushes, oldest first
        self.results: deque[FlushResult] = deque(maxlen=100)
        self._held_gauge = ARCHIVE_HELD.labels(topic=self.topic)
        self._errors = ARCHIVE_ERRORS
        self._records_in = metrics.RECORDS_IN.labels(agent=AGENT, topic=self.topic)

    # ----------------------------------------------------------------------- the loop
    def consumer_config(self) -> dict[str, Any]:
        """The group member's librdkafka config (from :mod:`huracan.streams.clients`)."""
        return clients.consumer_config(
            self.cfg, self.role, group_id=self.group_id, overrides=_CONSUMER_OVERRIDES
        )

    def run(self, stop: Callable[[], bool]) -> None:
        """Consume and archive until ``stop()`` returns true; then flush, commit and leave."""
        self.consumer = clients.make_consumer(
            self.cfg,
            self.role,
            group_id=self.group_id,
            overrides=_CONSUMER_OVERRIDES,
            factory=self._consumer_factory,
        )
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
            self.close_producer()
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

    # ----------------------------------------------------------------------- flushing
    def _drop_held(self) -> None:
        self._held_gauge.dec(len(self.held))
        self.held, self._oldest = [], None

    def _on_error(self, error: str) -> None:
        self._errors.labels(topic=self.topic, error=error).inc()

    def flush(self) -> FlushResult | None:
        """The shared flush (:meth:`huracan.storage.archiver.TopicArchiver.flush`), counted in
        the ``huracan_archive_*`` metrics and kept in :attr:`results`."""
        result = super().flush()
        if result is None:
            return None
        topic = self.topic
        ARCHIVE_FLUSH_SECONDS.labels(topic=topic).observe(result.seconds)
        ARCHIVE_ROWS.labels(topic=topic).inc(result.added)
        ARCHIVE_DUPLICATES.labels(topic=topic).inc(result.duplicates)
        ARCHIVE_FILES.labels(topic=topic).inc(sum(1 for f in result.files if f.added))
        for reason in result.dead_letter_reasons:
            metrics.DEAD_LETTERS.labels(agent=AGENT, reason=reason).inc()
        self.results.append(result)
        return result


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
    "REASON_SCHEMA",
    "REASON_WRITE_FAILED",
    "ArchiveFlushError",
    "ArchiveService",
    "FlushResult",
    "TopicArchiver",
    "archive_group",
    "archive_topics",
    "build_archive_agents",
    "run_archivers",
]
