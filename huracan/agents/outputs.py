"""The agents' outputs go through librdkafka (confluent-kafka), not aiokafka's Python producer.

Promises:

* one :class:`OutputProducers` per app (:func:`outputs_of`): a thread pool for librdkafka's
  blocking calls (``flush``, ``init_transactions``, ``send_offsets_to_transaction``,
  ``commit_transaction``, ``abort_transaction``; each releases the GIL, so the event loop goes
  on), and under ``at_least_once`` one shared idempotent producer for every agent's outputs,
  dead letters and changelog records (and, under both guarantees, the coin agent's idle marks);
* every producer is built by :func:`huracan.streams.clients.make_output_producer`: a keyed
  record lands on the partition aiokafka's default partitioner chose (murmur2), a changelog
  record on the partition its unit names;
* a send never blocks the event loop: ``produce`` only queues (a full queue is drained in the
  pool first); a unit waits for its records with ``flush`` (at least once) or
  ``commit_transaction`` (exactly once, :mod:`huracan.agents.transactions`), and a record the
  broker refused fails that wait (:meth:`OutputProducers.check`).

Why, and what it gave: docs/decisions/0011-librdkafka-outputs.md.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from huracan.config import HuracanConfig
from huracan.streams import clients

log = logging.getLogger(__name__)

T = TypeVar("T")

#: threads for librdkafka's blocking calls: every task of a worker (12 coin partitions, the
#: sequencer, the execution agent) can commit at once
POOL_THREADS = 16
#: how long a stopping worker waits for the shared producer's queue
FLUSH_ON_STOP_S = 10.0


class DeliveryFailed(RuntimeError):
    """The broker refused a record (after librdkafka's retries): the batch must not be
    acknowledged."""


class OutputProducers:
    """An app's librdkafka output producers and the pool their blocking calls run in."""

    def __init__(self, cfg: HuracanConfig, *, factory: clients.ClientFactory | None = None) -> None:
        self.cfg = cfg
        self.factory = factory
        self.pool = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="huracan-kafka")
        self._shared: Any = None
        self._lock = threading.Lock()
        self.errors: list[Any] = []

    def on_delivery(self, err: Any, msg: Any) -> None:
        """librdkafka's delivery report, for failed records only (``delivery.report.only.error``);
        called from whichever thread serves the producer (``flush``, ``poll``)."""
        if err is not None:
            self.errors.append(err)
            log.error("record to %s refused: %s", msg.topic() if msg else "?", err)

    def new_producer(self, role: str, *, transactional_id: str | None = None) -> Any:
        """A librdkafka producer for ``role`` (``transactional_id`` under exactly_once)."""
        return clients.make_output_producer(
            self.cfg,
            role,
            transactional_id=transactional_id,
            overrides={"on_delivery": self.on_delivery},
            factory=self.factory,
        )

    def shared(self) -> Any:
        """The app's idempotent, non-transactional output producer (created on first use)."""
        if self._shared is None:
            with self._lock:
                if self._shared is None:
                    self._shared = self.new_producer("outputs")
        return self._shared

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the pool (a blocking librdkafka call), awaited."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def check(self) -> None:
        """Raise :class:`DeliveryFailed` when the broker refused a record."""
        if self.errors:
            raise DeliveryFailed(f"{len(self.errors)} record(s) refused: {self.errors[0]}")

    async def produce(
        self, producer: Any, topic: str, key: bytes | None, value: bytes | None, partition: int
    ) -> None:
        """Queue one record (``partition`` -1: the partitioner's choice)."""
        try:
            producer.produce(topic, value, key, partition)
        except BufferError:  # the local queue is full: let librdkafka send some, then retry
            await self.run(producer.flush, 1.0)
            producer.produce(topic, value, key, partition)

    async def flush(self, producer: Any) -> None:
        """Wait until the broker has every record queued on ``producer`` (or refused one)."""
        await self.run(producer.flush)
        self.check()

    async def close(self) -> None:
        """Flush the shared producer (the worker is stopping)."""
        if self._shared is not None:
            remaining = await self.run(self._shared.flush, FLUSH_ON_STOP_S)
            if remaining:
                log.warning("%d output records still queued at stop", remaining)


def outputs_of(app: Any) -> OutputProducers:
    """The app's :class:`OutputProducers` (created on first use from ``app.huracan_config``)."""
    outputs: OutputProducers | None = getattr(app, "huracan_outputs", None)
    if outputs is None:
        outputs = OutputProducers(app.huracan_config)
        app.huracan_outputs = outputs
    return outputs
