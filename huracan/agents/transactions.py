"""Exactly-once processing: one Kafka transaction per source partition and batch.

**Why Faust's own exactly-once stalls this pipeline** (faust-streaming 0.15.3, pinned; measured,
see README "Exactly-once"). Faust's ``TransactionManager`` keeps one transactional producer per
*copartition group and partition* (``{app id}-{group}-{partition}``, the group being the index
of the topic's partition count among the subscribed topics) and:

* routes every *send* to the producer of the **destination** topic's group and the destination
  partition (a topic this worker does not consume is sent outside any transaction);
* commits the **source** offsets through the producer of the source topic's group and
  partition, and commits a producer's transaction only when it has source offsets to commit.

The coin agent consumes market-data partition *p* (group "N partitions") and writes its trade
requests and watermarks to trade-requests partition 0 (group "1 partition"), so they land in
the transaction of producer ``…-0-0``. That transaction is committed only when offsets of a
one-partition topic are committed: trade-requests, control or risk-decisions. The sequencer
reads trade-requests ``read_committed`` and never sees a record of an open transaction, so it
never acknowledges one and never commits: a deadlock. After ``transaction.timeout.ms`` (60 s)
the broker aborts the transaction, and the trade requests are gone; the heartbeat's next send
is fenced. Features and signals (no agent consumes them) are sent outside transactions, so
they arrive, which is what made it look like a stall downstream.

**What the engine does instead** (the model of Kafka Streams' first exactly-once mode, with one
producer per task): a *task* is an agent and a source partition (``coin`` and market-data /
cost-updates partition *p*; ``sequencer`` and trade-requests / control partition 0;
``execution`` and risk-decisions partition 0), and it has a transactional producer of its own,
``{app id}-{task}-{partition}``, started when the partition is assigned (which fences a previous
owner and aborts its open transaction, before the partition's changelog is recovered or its
offsets are read). An agent processes a batch per source partition, and everything that batch
produces — its outputs, its dead letters and the changelog records of its table writes — goes
into that task's transaction with the batch's source offsets; then the transaction is
committed (:class:`TaskUnit`). Faust's commit loop commits nothing (the offsets are already
committed, in the transactions), and sends that are no batch's result (the sequencer's
heartbeat, the coin agent's idle marks) go through the plain idempotent producer, outside any
transaction.

A failed transaction is fatal for the worker (the in-memory state would be ahead of the
committed state): the worker crashes, and whoever gets the partitions next recovers the tables
from their committed changelogs and resumes from the committed offsets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka.structs import TopicPartition
from faust.transport.consumer import TransactionManager
from faust.types import TP, EventT

log = logging.getLogger(__name__)

#: how long a worker that is stopping waits for an abort before it leaves the transaction to the
#: next owner (who aborts it when it fences the producer) or to the transaction timeout
ABORT_TIMEOUT_S = 5.0


def transactional_id(app_id: str, task: str, partition: int) -> str:
    """The transactional id of a task: stable across workers and restarts (for fencing)."""
    return f"{app_id}-{task}-{partition}"


def split_by_partition(events: Sequence[EventT[Any]]) -> dict[int, list[EventT[Any]]]:
    """The events of a batch by source partition, each list in the batch's order.

    An agent's source topics are co-partitioned (Faust assigns partition *p* of each to the
    same worker), so a partition number names one task, whichever topic the event came from."""
    out: dict[int, list[EventT[Any]]] = {}
    for event in events:
        out.setdefault(event.message.partition, []).append(event)
    return out


def next_offsets(events: Iterable[EventT[Any]]) -> dict[TP, int]:
    """The offsets to commit after ``events``: per topic partition, the highest offset + 1."""
    out: dict[TP, int] = {}
    for event in events:
        msg = event.message
        tp = TP(msg.topic, msg.partition)
        nxt = msg.offset + 1
        if out.get(tp, -1) < nxt:
            out[tp] = nxt
    return out


class TaskTransactions(TransactionManager):
    """Faust's transaction manager replaced by one producer per task (module doc).

    Install it with :func:`use_task_transactions` before the worker starts; the agents register
    their source topics with :meth:`register` and take a :class:`TaskUnit` per batch and source
    partition from :meth:`unit`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.producers: dict[str, Any] = {}  # transactional id -> started AIOKafkaProducer
        self._starting: dict[str, asyncio.Future[Any]] = {}

    # ------------------------------------------------------------------ tasks
    @property
    def tasks(self) -> Mapping[str, str]:
        """Source topic -> task (agent) name, as the pipeline registered them."""
        tasks: dict[str, str] = getattr(self.app, "huracan_task_topics", {})
        return tasks

    def task_ids(self, tps: Iterable[TP]) -> set[str]:
        tasks = self.tasks
        group_id = self.app.conf.id
        return {
            transactional_id(group_id, tasks[tp.topic], tp.partition)
            for tp in tps
            if tp.topic in tasks
        }

    async def producer_for(self, task: str, partition: int) -> Any:
        """The started (and fencing) transactional producer of a task."""
        tid = transactional_id(self.app.conf.id, task, partition)
        producer = self.producers.get(tid)
        if producer is None:
            producer = await self._start(tid)
        return producer

    async def _start(self, tid: str) -> Any:
        fut = self._starting.get(tid)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._starting[tid] = fut
        try:
            faust_producer: Any = self.producer
            producer = faust_producer._new_producer(transactional_id=tid)
            await producer.start()
            # InitProducerId: bumps the epoch, which fences a previous owner of this task and
            # aborts its open transaction (begin_transaction waits for it; nothing is sent yet)
            await producer.begin_transaction()
            await producer.abort_transaction()
            self.producers[tid] = producer
            fut.set_result(producer)
            return producer
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: a waiter re-raises it, none is not an error
            raise
        finally:
            self._starting.pop(tid, None)

    async def _stop(self, tid: str) -> None:
        producer = self.producers.pop(tid, None)
        if producer is not None:
            await producer.stop()

    # ------------------------------------------------------------------ Faust's hooks
    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP]
    ) -> None:
        """Start (fence) the producers of assigned tasks, stop those of tasks gone elsewhere.

        Faust calls this before table recovery and before the stream partitions are sought
        to their committed offsets: a previous owner's open transaction is aborted first."""
        wanted = self.task_ids(assigned)
        gone = set(self.producers) - wanted
        if gone:
            log.info("stopping transactional producers of revoked tasks: %s", sorted(gone))
            await asyncio.gather(*(self._stop(tid) for tid in gone))
        new = sorted(wanted - set(self.producers))
        if new:
            log.info("starting transactional producers of assigned tasks: %s", new)
            await asyncio.gather(*(self._start(tid) for tid in new))

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Nothing to flush: a batch's records are committed (or not) with its transaction."""

    async def on_stop(self) -> None:
        for tid in list(self.producers):
            await self._stop(tid)

    async def commit(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        """Faust's commit loop: nothing to do, the task transactions committed these offsets.

        Faust only asks for offsets of events acknowledged after their batch's transaction was
        committed (:func:`huracan.agents.batching.take_batches`)."""
        return True

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> Any:
        """A send that is no batch's result (the sequencer's heartbeat, the coin agent's idle
        marks): idempotent, no transaction."""
        producer: Any = self.producer
        await producer.maybe_start()
        return await producer.send(topic, key, value, partition, timestamp, headers)

    async def send_and_wait(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> Any:
        fut = await self.send(topic, key, value, partition, timestamp, headers)
        return await fut

    def send_soon(self, fut: Any) -> None:
        self.producer.send_soon(fut)


def use_task_transactions(app: Any) -> None:
    """Make ``app``'s worker use :class:`TaskTransactions` (before its consumer is created)."""
    app.transport.TransactionManager = TaskTransactions


def changelog_record(table: Any, key: str, value: Any) -> tuple[str, bytes | None, bytes | None]:
    """``(changelog topic, key bytes, value bytes)`` of a table row, as Faust serialises it
    (``value`` ``None``: a tombstone), for a row written outside Faust's table path."""
    topic = table.changelog_topic
    raw_key, _ = topic.prepare_key(key, table.key_serializer)
    raw_value = None
    if value is not None:
        raw_value, _ = topic.prepare_value(value, table.value_serializer)
    return topic.get_topic_name(), raw_key, raw_value


class TaskUnit:
    """One task's work on one batch: a Kafka transaction on the task's producer.

    ``send`` and ``write``/``delete`` (a table row: the local store and its changelog record,
    on the task's partition) add to the transaction; ``commit(events)`` adds the events' next
    offsets and commits; ``abort()`` gives the transaction up."""

    def __init__(self, producer: Any, group_id: str, partition: int) -> None:
        self.producer = producer
        self.group_id = group_id
        self.partition = partition
        self.pending: list[asyncio.Future[Any]] = []
        self.open = False

    async def begin(self) -> TaskUnit:
        await self.producer.begin_transaction()
        self.open = True
        return self

    async def send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self.pending.append(await self.producer.send(topic, value, key=key))

    async def delivered(self) -> None:
        """Nothing to wait for: the sends are committed with the transaction, or not at all."""

    async def write(self, table: Any, key: str, value: Any, event: Any = None) -> None:
        """``table[key] = value`` in this transaction (changelog partition: the task's;
        ``event`` is not needed, the argument is the at-least-once unit's)."""
        table.data[key] = value
        await self._changelog(table, key, value)

    async def delete(self, table: Any, key: str, event: Any = None) -> None:
        """``del table[key]`` in this transaction (a tombstone on the task's partition)."""
        table.data.pop(key, None)
        await self._changelog(table, key, None)

    async def _changelog(self, table: Any, key: str, value: Any) -> None:
        topic, raw_key, raw_value = changelog_record(table, key, value)
        self.pending.append(
            await self.producer.send(topic, raw_value, key=raw_key, partition=self.partition)
        )

    async def commit(self, events: Iterable[EventT[Any]]) -> None:
        if self.pending:
            await asyncio.gather(*self.pending)  # a failed send fails the transaction here
            self.pending.clear()
        offsets = {
            TopicPartition(tp.topic, tp.partition): offset
            for tp, offset in next_offsets(events).items()
        }
        if offsets:
            await self.producer.send_offsets_to_transaction(offsets, self.group_id)
        await self.producer.commit_transaction()
        self.open = False

    async def abort(self) -> None:
        """Give the transaction up (best effort: a fenced or stopped producer cannot)."""
        if not self.open:
            return
        self.open = False
        self.pending.clear()
        try:
            await asyncio.wait_for(
                asyncio.shield(self.producer.abort_transaction()), ABORT_TIMEOUT_S
            )
        except Exception as exc:  # noqa: BLE001 - the next owner aborts it when it fences
            log.warning("could not abort transaction %s: %r", self.producer, exc)
