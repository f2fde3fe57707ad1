"""Exactly-once processing: one Kafka transaction per task, source partition and batch.

Used under ``faust.processing_guarantee: exactly_once`` (the model of Kafka Streams' first
exactly-once mode). A *task* is an agent and a source partition (``coin`` and market-data /
cost-updates partition *p*; ``sequencer`` and trade-requests / control partition 0;
``execution`` and risk-decisions partition 0) and has a transactional producer of its own,
``{app id}-{task}-{partition}`` (:func:`transactional_id`; managed by
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

from aiokafka.structs import TopicPartition
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
