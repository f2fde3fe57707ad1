"""Faust's transaction manager replaced by one transactional producer per task.

Corrects: faust-streaming's ``TransactionManager`` routes sends by destination partition and
commits a producer's transaction only with source offsets of its own group, which deadlocks
this topology (the coin agent's requests wait in a transaction only the sequencer's offsets
would commit). Decision record: docs/decisions/0002-faust-corrections.md; the exactly-once
design it serves: :mod:`huracan.agents.transactions`.

Promises: a task (an agent and a source partition) has one transactional producer,
``{app id}-{task}-{partition}``, started — fencing a previous owner and aborting its open
transaction — when the partition is assigned, before its changelog is recovered; stopped when it
is revoked. Faust's commit loop commits nothing (the task transactions committed the offsets);
sends that are no batch's result go through the plain idempotent producer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from faust.transport.consumer import TransactionManager
from faust.types import TP

from huracan.agents.transactions import transactional_id

log = logging.getLogger(__name__)


class TaskTransactions(TransactionManager):
    """Faust's transaction manager replaced by one producer per task (module doc).

    Installed by :func:`huracan.agents.faust_fixes.create_app` under exactly_once; the pipeline
    names each source topic's task in ``app.huracan_task_topics``, and an agent takes its
    task's producer from :meth:`producer_for` for each batch and source partition."""

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
        committed (:func:`huracan.agents.faust_fixes.batching.take_batches`)."""
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
