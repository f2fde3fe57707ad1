"""The worker's Kafka consumer: faust-streaming's, with a per-batch fetch loop and trusted
high watermarks.

Corrects (docs/decisions/0002-faust-corrections.md):

* ``Consumer._drain_messages`` waits on four asyncio tasks per record:
  :class:`BatchDrainConsumer` runs the same loop, step for step (read offsets, gaps, periodic
  commits, the conductor callback, a yield every :data:`YIELD_EVERY` records), and waits for
  "delivered, or flow suspended, or stopped" once per fetched batch. When a rebalance suspends
  the flow mid-batch, the rest of the batch is abandoned unacknowledged, as Faust abandons the
  record it was delivering, and the consumer seeks back to the committed offsets;
* under ``read_committed`` the high watermarks table recovery reads up to are -1 until a
  partition was fetched: :class:`ListOffsetsConsumerThread` asks the broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer

#: records delivered between two yields to the event loop (Faust's own value)
YIELD_EVERY = 100


class ListOffsetsConsumerThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, whose high watermarks are asked of the broker under
    ``exactly_once`` too.

    Corrects: under ``read_committed`` Faust takes them from aiokafka's ``last_stable_offset``,
    -1 until the partition was fetched, so recovery read nothing (decision record 0002). A
    ListOffsets request of a ``read_committed`` consumer returns the last stable offset, fetched
    or not; under ``at_least_once`` the high watermark, as Faust's own call does."""

    async def _highwaters(self, partitions: list[Any]) -> Any:
        return await self._ensure_consumer().end_offsets(partitions)


class BatchDrainConsumer(AIOKafkaConsumer):
    """Faust's aiokafka consumer with a fetch loop that waits once per batch (module doc), and
    high watermarks that table recovery can trust (:class:`ListOffsetsConsumerThread`)."""

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return ListOffsetsConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - the worker's
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        sleep = asyncio.sleep

        async def deliver(records: AsyncIterator[Any]) -> None:
            # the body of Faust's per-record loop, with the callback awaited in place
            since_yield = 0
            async for tp, message in records:
                since_yield += 1
                if since_yield > YIELD_EVERY:
                    await sleep(0)
                    since_yield = 0
                offset = message.offset
                r_offset = get_read_offset(tp)
                if r_offset is None or offset >= r_offset:
                    gap = offset - (r_offset or 0)
                    if gap > 1 and r_offset and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    await callback(message)
                    set_read_offset(tp, offset)

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                records = getmany(timeout=1.0)
                # as Faust: getmany may return at once, over and over; let others run
                await self.sleep(0)
                if not self.should_stop:
                    await self.wait_first(deliver(records), self.suspend_flow.wait())
                unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)
