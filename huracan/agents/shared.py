"""What the three pipeline agents share: topics and tables, units of work, dead letters, metrics.

Promises:

* :func:`declare_topics` and :func:`declare_tables` declare the engine's topics (keys and values
  stay bytes: our Avro serde decodes) and tables (str keys, JSON values) on the app;
* :class:`AgentContext.in_units` runs an agent's body on one batch and finishes it so that the
  batch may be acknowledged. At least once (:class:`AtLeastOnceUnit`): (1) the body sends its
  outputs, (2) waits until the broker has them, (3) writes each changed table row once — to the
  table's store and, as a changelog record, straight to the producer — and the unit waits until
  the broker has those too. Exactly once: one Kafka transaction per source partition
  (:class:`~huracan.agents.transactions.TaskUnit`), committed with that partition's offsets; a
  failed transaction crashes the worker;
* :meth:`AgentContext.dead_letter` sends a record that does not decode, or that the core
  rejects, to the dead-letter topic with its original bytes, topic, partition, offset and
  reason, counted by reason; the agent goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import faust
from faust.types import EventT, StreamT

from huracan.agents.faust_fixes.batching import take_batches
from huracan.agents.faust_fixes.transactions import TaskTransactions
from huracan.agents.outputs import OutputProducers, outputs_of
from huracan.agents.rows import STATE_ROW_MAX_BYTES, window_rows
from huracan.agents.transactions import (
    TaskUnit,
    changelog_record,
    split_by_partition,
)
from huracan.config import ConfigError, HuracanConfig
from huracan.observability import metrics
from huracan.streams.dead_letter import build_dead_letter
from huracan.streams.serde import Serde
from huracan.streams.topics import TopicCatalog

log = logging.getLogger(__name__)

_CO_PARTITIONED = ("market_data", "features", "signals", "cost_updates", "executions")


def check_partitions(cfg: HuracanConfig) -> int:
    """The market-data partition count; raises :class:`ConfigError` unless the coin topics are
    co-partitioned and the sequencer's topics have one partition."""
    p = cfg.kafka.partitions
    counts = {name: getattr(p, name) for name in _CO_PARTITIONED}
    if len(set(counts.values())) != 1:
        raise ConfigError(
            "kafka.partitions: market_data, features, signals, cost_updates and executions must "
            f"have the same partition count (co-partitioned by coin), got {counts}"
        )
    for name in ("trade_requests", "risk_decisions", "control"):
        if getattr(p, name) != 1:
            raise ConfigError(
                f"kafka.partitions.{name} must be 1: the risk sequencer is one writer"
            )
    return int(counts["market_data"])


# ------------------------------------------------------------------------------ declarations


def raw_topic(app: faust.App, *names: str, **options: Any) -> Any:
    """A Faust channel over ``names`` whose keys and values stay bytes (our serde decodes)."""
    return app.topic(
        *names,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        **options,
    )


#: the engine's topics by event type, as :func:`declare_topics` declares them
EVENT_TYPES = (
    "MarketTick",
    "FeatureVector",
    "Signal",
    "CostUpdate",
    "TradeRequest",
    "RiskDecision",
    "Execution",
    "ControlEvent",
    "DeadLetter",
)


@dataclass(frozen=True)
class TopicNames:
    """The names of the engine's topics."""

    ticks: str
    features: str
    signals: str
    costs: str
    requests: str
    decisions: str
    executions: str
    control: str
    dead: str


def declare_topics(app: faust.App, cfg: HuracanConfig) -> tuple[dict[str, Any], TopicNames]:
    """The engine's topics (by event type) declared on ``app``, and their names."""
    catalog = TopicCatalog.from_config(cfg)
    topics: dict[str, Any] = {}
    for event_type in EVENT_TYPES:
        spec = catalog.for_event_type(event_type)
        topics[event_type] = raw_topic(app, spec.name, partitions=spec.partitions, internal=False)
    name = {k: t.get_topic_name() for k, t in topics.items()}
    return topics, TopicNames(
        ticks=name["MarketTick"],
        features=name["FeatureVector"],
        signals=name["Signal"],
        costs=name["CostUpdate"],
        requests=name["TradeRequest"],
        decisions=name["RiskDecision"],
        executions=name["Execution"],
        control=name["ControlEvent"],
        dead=name["DeadLetter"],
    )


def declare_tables(app: faust.App, partitions: int) -> dict[str, Any]:
    """The engine's tables: ``coin-state`` (co-partitioned with market data), ``risk-state``
    and ``exchange-state`` (one partition each; row layout in :mod:`huracan.agents.rows`)."""

    def table(name: str, parts: int, **topic_config: str) -> Any:
        return app.Table(
            name,
            partitions=parts,
            # str keys and JSON values on both sides: the changelog is read back at recovery
            schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
            extra_topic_configs=topic_config or None,
        )

    return {
        "coin-state": table("coin-state", partitions),
        # the global risk row holds the sequencer (open trades); working through a backlog it
        # passes Kafka's default 1 MiB record limit
        "risk-state": table("risk-state", 1, **{"max.message.bytes": str(STATE_ROW_MAX_BYTES)}),
        "exchange-state": table("exchange-state", 1),
    }


# ------------------------------------------------------------------------------ units of work


class Outbox:
    """The sends of one batch, awaited together before the batch's state is written.

    Records go to the app's shared librdkafka producer (:mod:`huracan.agents.outputs`): keys
    and values are bytes already; a keyed record lands where aiokafka's default partitioner put
    it (murmur2), a changelog record on the partition given. ``delivered`` waits until the
    broker has them (``flush`` in the outputs' pool) and raises when it refused one."""

    def __init__(self, outputs: OutputProducers, producer: Any) -> None:
        self.outputs = outputs
        self.producer = producer
        #: records sent since the last ``delivered``
        self.pending = 0

    @classmethod
    async def of(cls, app: faust.App) -> Outbox:
        outputs = outputs_of(app)
        return cls(outputs, outputs.shared())

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None:
        await self.outputs.produce(
            self.producer, topic, key, value, -1 if partition is None else partition
        )
        self.pending += 1

    async def delivered(self) -> None:
        if self.pending:
            await self.outputs.flush(self.producer)
            self.pending = 0


class AtLeastOnceUnit:
    """An agent's work on one batch, at least once (the module doc's order of steps).

    ``send`` goes to the app's shared output producer; ``delivered`` waits for the sends;
    ``write`` and ``delete`` change a table row in the table's store and send its changelog
    record (bytes and partition as Faust's own table write would: the event's partition)
    through the same producer; ``commit`` waits until the broker has every record, after which
    the batch may be acknowledged. (Faust's ``table[key] = value`` only queues the record in a
    buffer that its offset commits do not wait for.) The same interface as
    :class:`~huracan.agents.transactions.TaskUnit`, the exactly-once unit."""

    def __init__(self, app: faust.App, outbox: Outbox) -> None:
        self.app = app
        self.out = outbox

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        await self.out.send(topic, key, value)

    async def delivered(self) -> None:
        await self.out.delivered()

    async def write(self, table: Any, key: str, value: Any, event: EventT[Any]) -> None:
        table.data[key] = value
        await self.out.send(*changelog_record(table, key, value), event.message.partition)

    async def delete(self, table: Any, key: str, event: EventT[Any]) -> None:
        table.data.pop(key, None)
        await self.out.send(*changelog_record(table, key, None), event.message.partition)

    async def commit(self, events: Sequence[EventT[Any]]) -> None:
        await self.out.delivered()

    async def abort(self) -> None:
        """Nothing to undo: the batch is not acknowledged, so it is delivered again."""


#: the unit of work an agent's batch body writes to (at least once, or a transaction)
Unit = AtLeastOnceUnit | TaskUnit

#: an agent's work on one batch
BatchBody = Callable[[Unit, Sequence[EventT[Any]]], Awaitable[None]]


async def store_window(
    unit: Unit,
    table: Any,
    prefix: str,
    changes: tuple[list[tuple[str, int]], list[str]],
    event: EventT[Any],
) -> None:
    """A de-duplication window's changes (huracan.domain.dedupe), one key per id
    (:func:`huracan.agents.rows.window_rows`)."""
    writes, deletes = window_rows(prefix, changes)
    for key, n in writes:
        await unit.write(table, key, n, event)
    for key in deletes:
        if key in table:
            await unit.delete(table, key, event)


# ------------------------------------------------------------------------------ context


class AgentContext:
    """One app's shared agent plumbing: its serde, topic names, batching, units of work, dead
    letters and record counters. ``wall_clock`` is for latency metrics, dead-letter timestamps
    and the sequencer's stall release, never for a decision's content."""

    def __init__(
        self,
        app: faust.App,
        cfg: HuracanConfig,
        serde: Serde,
        names: TopicNames,
        wall_clock: Callable[[], float],
    ) -> None:
        self.app = app
        self.cfg = cfg
        self.serde = serde
        self.names = names
        self.wall_clock = wall_clock
        self.exactly_once = cfg.faust.processing_guarantee == "exactly_once"
        self.batch_size = cfg.faust.batch_size
        self.batch_within = cfg.faust.batch_timeout_s

    async def batches(
        self, stream: StreamT[bytes], *, yield_empty: bool = False
    ) -> AsyncIterator[Sequence[EventT[Any]]]:
        """The stream's events in batches, each acknowledged once the agent asks for the next
        (:func:`~huracan.agents.faust_fixes.batching.take_batches`)."""
        async for events in take_batches(
            stream, self.batch_size, self.batch_within, yield_empty=yield_empty
        ):
            yield events

    async def in_units(self, task: str, events: Sequence[EventT[Any]], body: BatchBody) -> None:
        """Run ``body`` on a batch and finish it, so that the batch may be acknowledged.

        At least once: one unit for the whole batch. Exactly once: one transaction per source
        partition (``task``'s producer for that partition), committed with the partition's
        offsets; a failed transaction crashes the worker (huracan.agents.transactions)."""
        app = self.app
        if not self.exactly_once:
            once = AtLeastOnceUnit(app, await Outbox.of(app))
            await body(once, events)
            await once.commit(events)
            return
        tx = cast(TaskTransactions, app.consumer.transactions)
        outputs = outputs_of(app)
        units: list[tuple[TaskUnit, list[EventT[Any]]]] = []
        try:
            for part, part_events in split_by_partition(events).items():
                producer = await tx.producer_for(task, part)
                unit = TaskUnit(producer, tx.group_metadata(), part, outputs)
                await unit.begin()
                units.append((unit, part_events))
                await body(unit, part_events)
            await asyncio.gather(*(u.commit(evs) for u, evs in units))
        except asyncio.CancelledError:
            await asyncio.gather(*(u.abort() for u, _ in units))
            raise
        except Exception as exc:
            await asyncio.gather(*(u.abort() for u, _ in units))
            log.exception("%s: transaction failed, stopping the worker: %r", task, exc)
            await app.crash(exc)
            raise

    async def dead_letter(
        self, unit: Unit, event: EventT[Any], agent: str, error: BaseException
    ) -> None:
        """Send ``event`` to the dead-letter topic with ``error``'s reason (module doc)."""
        msg = event.message
        record = build_dead_letter(
            value=msg.value,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=msg.key,
            error=error,
            consumer=agent,
            failed_at_us=int(self.wall_clock() * 1e6),
        )
        reason = str(record["reason"])
        metrics.DEAD_LETTERS.labels(agent=agent, reason=reason).inc()
        log.warning("dead-lettered %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, reason)
        await unit.send(self.names.dead, msg.key, self.serde.encode("DeadLetter", record))


def observe_in(agent: str, topic_name: str, n: int = 1) -> None:
    """Count ``n`` records ``agent`` read from ``topic_name``."""
    metrics.RECORDS_IN.labels(agent=agent, topic=topic_name).inc(n)


def observe_out(agent: str, topic_name: str, n: int = 1) -> None:
    """Count ``n`` records ``agent`` sent to ``topic_name``."""
    metrics.RECORDS_OUT.labels(agent=agent, topic=topic_name).inc(n)
