"""Faust's transaction manager replaced by one transactional producer per task.

Corrects: faust-streaming's ``TransactionManager`` routes sends by destination partition and
commits a producer's transaction only with source offsets of its own group, which deadlocks
this topology (the coin agent's requests wait in a transaction only the sequencer's offsets
would commit). Decision record: docs/decisions/0002-faust-corrections.md; the exactly-once
design it serves: :mod:`huracan.agents.transactions`.

Promises: a task (an agent and a source partition) has one transactional librdkafka producer,
``{app id}-{task}-{partition}`` (:mod:`huracan.agents.outputs`), initialised
(``init_transactions``: fencing a previous owner and aborting its open transaction) when the
partition is assigned, before its changelog is recovered and before its committed offsets are
read; dropped when it is revoked. Offsets go into a transaction with the metadata of the app's
group taken from a librdkafka consumer that never subscribes (generation -1: fencing by
transactional id). Faust's commit loop commits nothing (the task transactions committed the
offsets); sends that are no batch's result go through Faust's plain idempotent producer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from faust.transport.consumer import TransactionManager
from faust.types import TP

from huracan.agents.outputs import OutputProducers, outputs_of
from huracan.agents.transactions import TaskProducer, transactional_id
from huracan.streams import clients

log = logging.getLogger(__name__)

#: how long a task's ``init_transactions`` (fencing the previous owner) may take
INIT_TIMEOUT_S = 60.0
#: how long a revoked task's producer may take to deliver what it still holds
STOP_FLUSH_S = 5.0


class TaskTransactions(TransactionManager):
    """Faust's transaction manager replaced by one producer per task (module doc).

    Installed by :func:`huracan.agents.faust_fixes.create_app` under exactly_once; the pipeline
    names each source topic's task in ``app.huracan_task_topics``, and an agent takes its
    task's producer from :meth:`producer_for` for each batch and source partition."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.producers: dict[str, TaskProducer] = {}  # transactional id -> initialised producer
        self._starting: dict[str, asyncio.Future[Any]] = {}
        self._group_metadata: Any = None

    # ------------------------------------------------------------------ tasks
    @property
    def tasks(self) -> Mapping[str, str]:
        """Source topic -> task (agent) name, as the pipeline registered them."""
        tasks: dict[str, str] = getattr(self.app, "huracan_task_topics", {})
        return tasks

    @property
    def outputs(self) -> OutputProducers:
        return outputs_of(self.app)

    def task_ids(self, tps: Iterable[TP]) -> set[str]:
        tasks = self.tasks
        group_id = self.app.conf.id
        return {
            transactional_id(group_id, tasks[tp.topic], tp.partition)
            for tp in tps
            if tp.topic in tasks
        }

    def group_metadata(self) -> Any:
        """The app group's metadata for ``send_offsets_to_transaction``, from a librdkafka
        consumer with the app's ``group.id`` that never subscribes: generation -1 and no member
        id, so the broker accepts the offsets from whichever producer holds the task's
        transactional id (fencing by id, as the aiokafka path did), under the classic group
        protocol of Faust's own consumer."""
        if self._group_metadata is None:
            app: Any = self.app
            consumer = clients.make_consumer(
                app.huracan_config, "txn-offsets", group_id=app.conf.id
            )
            try:
                self._group_metadata = consumer.consumer_group_metadata()
            finally:
                consumer.close()
        return self._group_metadata

    async def producer_for(self, task: str, partition: int) -> TaskProducer:
        """The initialised (and fencing) transactional producer of a task."""
        tid = transactional_id(self.app.conf.id, task, partition)
        producer = self.producers.get(tid)
        if producer is None:
            producer = await self._start(tid)
        return producer

    async def _start(self, tid: str) -> TaskProducer:
        fut = self._starting.get(tid)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._starting[tid] = fut
        try:
            outputs = self.outputs
            producer = TaskProducer(outputs.new_producer(f"task-{tid}", transactional_id=tid))
            # InitProducerId: bumps the epoch, which fences a previous owner of this task and
            # aborts its open transaction (init_transactions returns once it is aborted)
            await outputs.run(self._init, producer)
            self.producers[tid] = producer
            fut.set_result(producer)
            return producer
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: a waiter re-raises it, none is not an error
            raise
        finally:
            self._starting.pop(tid, None)

    @staticmethod
    def _init(task: TaskProducer) -> None:
        task.producer.init_transactions(INIT_TIMEOUT_S)
        task.begin()

    async def _stop(self, tid: str) -> None:
        task = self.producers.pop(tid, None)
        if task is not None:
            # a transaction still open is aborted by the next owner's init_transactions
            await self.outputs.run(task.producer.flush, STOP_FLUSH_S)

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
            await self.outputs.run(self.group_metadata)
            log.info("starting transactional producers of assigned tasks: %s", new)
            await asyncio.gather(*(self._start(tid) for tid in new))

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Nothing to flush: a batch's records are committed (or not) with its transaction."""

    async def on_stop(self) -> None:
        for tid in list(self.producers):
            await self._stop(tid)
        await self.outputs.close()

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
