"""Exactly-once processing: one Kafka transaction per task, source partition and batch.

Used under ``faust.processing_guarantee: exactly_once`` (the model of Kafka Streams' first
exactly-once mode). A *task* is an agent and a source partition (``coin`` and market-data /
cost-updates partition *p*; ``sequencer`` and trade-requests / control partition 0;
``execution`` and risk-decisions partition 0) and has a transactional producer of its own,
``{app id}-{task}-{partition}``, a librdkafka producer (:func:`transactional_id`; managed by
:class:`huracan.agents.faust_fixes.transactions.TaskTransactions`, which replaces Faust's own
transaction manager: docs/decisions/0002-faust-corrections.md says why).

Promises: an agent processes a batch per source partition (:func:`split_by_partition`), and
everything that batch produces — its outputs, its dead letters and the changelog records of its
table writes (:func:`changelog_record`, the bytes Faust itself would write) — goes into that
task's transaction with the batch's next source offsets (:func:`next_offsets`); then the
transaction is committed (:class:`TaskUnit`). A failed transaction is fatal for the worker (the
in-memory state would be ahead of the committed state): whoever gets the partitions next
recovers the tables from their committed changelogs and resumes from the committed offsets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from confluent_kafka import TopicPartition as KafkaTopicPartition
from faust.types import TP, EventT

from huracan.agents.outputs import OutputProducers

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


def changelog_record(table: Any, key: str, value: Any) -> tuple[str, bytes | None, bytes | None]:
    """``(changelog topic, key bytes, value bytes)`` of a table row, as Faust serialises it
    (``value`` ``None``: a tombstone), for a row written outside Faust's table path."""
    topic = table.changelog_topic
    raw_key, _ = topic.prepare_key(key, table.key_serializer)
    raw_value = None
    if value is not None:
        raw_value, _ = topic.prepare_value(value, table.value_serializer)
    return topic.get_topic_name(), raw_key, raw_value


class TaskProducer:
    """A task's transactional librdkafka producer and whether a transaction is begun on it.

    ``begin_transaction`` is a local call but waits for librdkafka's main thread with the GIL
    held, so it runs in the outputs' pool: right after ``init_transactions`` and after each
    commit (the next transaction begun in the same job; an empty transaction is local state
    only, the broker hears of it with its first record)."""

    __slots__ = ("begun", "producer")

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.begun = False

    def begin(self) -> None:
        self.producer.begin_transaction()
        self.begun = True


class TaskUnit:
    """One task's work on one batch: a Kafka transaction on the task's librdkafka producer.

    ``send`` and ``write``/``delete`` (a table row: the local store and its changelog record,
    on the task's partition) add to the transaction; ``commit(events)`` adds the events' next
    offsets (``send_offsets_to_transaction`` with the app group's metadata: generation -1, no
    member, so the broker fences by transactional id alone, as in Kafka's first exactly-once
    mode) and commits, which waits for every record (a refused one fails the commit);
    ``abort()`` gives the transaction up. The blocking calls run in the outputs' pool
    (:class:`huracan.agents.outputs.OutputProducers`)."""

    def __init__(
        self, task: TaskProducer, group_metadata: Any, partition: int, outputs: OutputProducers
    ) -> None:
        self.task = task
        self.producer = task.producer
        self.group_metadata = group_metadata
        self.partition = partition
        self.outputs = outputs
        #: records sent in this transaction
        self.sent = 0
        self.open = False

    async def begin(self) -> TaskUnit:
        if not self.task.begun:
            await self.outputs.run(self.task.begin)
        self.open = True
        return self

    async def send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        await self.outputs.produce(self.producer, topic, key, value, -1)
        self.sent += 1

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
        await self.outputs.produce(self.producer, topic, raw_key, raw_value, self.partition)
        self.sent += 1

    def _commit(self, offsets: list[Any]) -> None:
        task = self.task
        task.begun = False
        if offsets:
            self.producer.send_offsets_to_transaction(offsets, self.group_metadata)
        self.producer.commit_transaction()  # flushes: a refused record fails the commit
        task.begin()  # the next batch's

    async def commit(self, events: Iterable[EventT[Any]]) -> None:
        offsets = [
            KafkaTopicPartition(tp.topic, tp.partition, offset)
            for tp, offset in next_offsets(events).items()
        ]
        await self.outputs.run(self._commit, offsets)
        self.open = False

    async def abort(self) -> None:
        """Give the transaction up (best effort: a fenced or stopped producer cannot)."""
        if not self.open:
            return
        self.open = False
        self.task.begun = False
        try:
            await asyncio.wait_for(
                asyncio.shield(self.outputs.run(self.producer.abort_transaction, ABORT_TIMEOUT_S)),
                ABORT_TIMEOUT_S + 1,
            )
        except Exception as exc:  # noqa: BLE001 - the next owner aborts it when it fences
            log.warning("could not abort transaction %s: %r", self.producer, exc)
