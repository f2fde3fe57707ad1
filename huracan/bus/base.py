"""The message bus port: what every adapter (Redis Streams, in-memory, Kafka) promises.

Contract (checked for all three adapters by ``tests/integration/test_bus_contract.py``):

1. **At-least-once delivery per consumer group.** :meth:`MessageBus.publish` stores a message;
   each consumer group sees it; within a group one consumer gets it at a time. It stays
   *pending* until :meth:`MessageBus.ack_message`. A new group starts at the beginning of the
   retained stream (so a subscribe after a publish still sees the message).
2. **Redelivery.** An entry a consumer received but never acknowledged (the consumer died: its
   ``subscribe`` iterator was closed, its task cancelled or its process killed) is delivered
   again to a live consumer of the same group — Redis and in-memory: once it has been idle
   ``claim_idle_ms``; Kafka: after the group rebalances. Consumers de-duplicate on
   ``Message.event_id``.
3. **Per-coin order.** Entries of one (stream type, coin) are delivered in publish order (a
   redelivery comes, by nature, after the entries delivered since).
4. **Shared work.** Consumers of one group never receive the same entry at the same time, and
   together receive every entry.
5. **Dead letters.** A malformed payload never reaches the subscriber and never stops it: it is
   moved to the dead-letter stream with its original bytes and a reason, and acknowledged on
   its source. Redis and in-memory also dead-letter an entry delivered more than
   ``max_deliveries`` times.

Threads and event loops: a bus may be used from several event loops at once (the
:class:`~huracan.runtime.EventLoopManager` runs one per thread). Adapters keep one client per
event loop, created on first use in that loop after :meth:`connect`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import socket
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Generic, Self, TypeVar

from huracan.bus.errors import BusNotConnectedError
from huracan.bus.message import DeadLetter, Message, StreamType
from huracan.config import MessageBusConfig

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class BusStats:
    """Counters of one bus instance since it was created (all event loops together)."""

    published: int = 0
    delivered: int = 0
    redelivered: int = 0
    acked: int = 0
    dead_lettered: int = 0


class _Counters:
    """Thread-safe counters behind :class:`BusStats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(
            ("published", "delivered", "redelivered", "acked", "dead_lettered"), 0
        )

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] += n

    def snapshot(self) -> BusStats:
        with self._lock:
            return BusStats(**self._values)


class PerLoop(Generic[T]):
    """One resource per running event loop (clients bound to a loop cannot be shared).

    ``get(factory)`` returns the current loop's resource, creating it with ``factory`` on first
    use; ``drain()`` removes and returns them all so the owner can close each in its own loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[asyncio.AbstractEventLoop, T] = {}

    def current(self) -> T | None:
        loop = asyncio.get_running_loop()
        with self._lock:
            return self._items.get(loop)

    def get(self, factory: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        with self._lock:
            item = self._items.get(loop)
            if item is None:
                for dead in [lp for lp in self._items if lp.is_closed()]:
                    del self._items[dead]
                item = factory()
                self._items[loop] = item
            return item

    def drain(self) -> list[tuple[asyncio.AbstractEventLoop, T]]:
        with self._lock:
            items = list(self._items.items())
            self._items.clear()
            return items


async def close_in_owner_loops(
    items: list[tuple[asyncio.AbstractEventLoop, T]],
    close: Callable[[T], Awaitable[Any]],
    timeout: float = 5.0,
) -> None:
    """Close each resource in the event loop that owns it; drop those whose loop is gone."""
    here = asyncio.get_running_loop()
    for loop, item in items:
        try:
            if loop is here:
                await asyncio.wait_for(close(item), timeout)
            elif loop.is_running() and not loop.is_closed():
                future = asyncio.run_coroutine_threadsafe(_call(close, item), loop)
                await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except Exception as exc:  # noqa: BLE001 - best effort: the client may already be broken
            log.debug("closing a bus client failed: %r", exc)


async def _call(close: Callable[[T], Awaitable[Any]], item: T) -> None:
    await close(item)


_subscriber_seq = itertools.count(1)


def default_consumer_name(bus_token: str) -> str:
    """A consumer name unique to this process, bus instance and subscription."""
    return f"{socket.gethostname()}-{os.getpid()}-{bus_token}-{next(_subscriber_seq)}"


class MessageBus(ABC):
    """The port. Adapters: :class:`~huracan.bus.redis_streams.RedisStreamsMessageBus`,
    :class:`~huracan.bus.memory.MemoryMessageBus`, :class:`~huracan.bus.kafka.KafkaMessageBus`.

    Use as ``async with bus:`` or call :meth:`connect` / :meth:`disconnect`.
    """

    def __init__(self, config: MessageBusConfig) -> None:
        self._config = config
        self._connected = False
        self._token = uuid.uuid4().hex[:8]
        self._counters = _Counters()

    @property
    def config(self) -> MessageBusConfig:
        return self._config

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def stats(self) -> BusStats:
        """Counters since creation: published, delivered, redelivered, acked, dead-lettered."""
        return self._counters.snapshot()

    def _require_connected(self) -> None:
        if not self._connected:
            raise BusNotConnectedError(
                f"{type(self).__name__} is not connected: await bus.connect() first"
            )

    def _consumer_name(self, consumer_name: str | None) -> str:
        return consumer_name or default_consumer_name(self._token)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    @abstractmethod
    async def connect(self) -> None:
        """Reach the server (fail fast with :class:`BusConnectionError`). Idempotent."""

    @abstractmethod
    async def disconnect(self) -> None:
        """Close every client of this bus, in every event loop. Idempotent.

        Open subscriptions end at their next read; what they received and did not acknowledge
        stays pending (and is redelivered).
        """

    @abstractmethod
    async def publish(self, message: Message) -> str:
        """Store ``message``; return its ``message_id`` once the server has it.

        Raises :class:`MessageEncodeError` for data that cannot be encoded and
        :class:`BusNotConnectedError` before :meth:`connect`.
        """

    async def publish_many(self, messages: Iterable[Message]) -> list[str]:
        """Publish several messages with as few round trips as the adapter allows; ids in order.

        Per-coin order is the order of ``messages``.
        """
        return [await self.publish(m) for m in messages]

    @abstractmethod
    def subscribe(
        self,
        stream_type: StreamType,
        coin: str,
        consumer_group: str,
        *,
        consumer_name: str | None = None,
        auto_ack: bool = False,
    ) -> AsyncIterator[Message]:
        """Yield the group's messages of ``(stream_type, coin)`` forever, as one consumer.

        The group is created on demand, at the start of the stream. ``consumer_name`` defaults
        to a name unique to this subscription. With ``auto_ack`` a message is acknowledged
        when the loop asks for the next one (after its body ran), otherwise call
        :meth:`ack_message`. Closing the iterator (``aclose``, cancelling the task, ``break``)
        is how a consumer leaves; what it did not acknowledge is redelivered to others.
        """

    @abstractmethod
    async def ack_message(
        self, stream_type: StreamType, coin: str, group_name: str, message_id: str
    ) -> bool:
        """Acknowledge a delivered message for ``group_name``.

        Returns ``True`` when it was pending and is now acknowledged, ``False`` when it was not
        pending (already acknowledged, dead-lettered, or — Kafka — its partition has moved to
        another consumer, which will get it again).
        """

    async def ack_messages(
        self, stream_type: StreamType, coin: str, group_name: str, message_ids: Iterable[str]
    ) -> int:
        """Acknowledge several messages; returns how many were pending."""
        acked = 0
        for message_id in message_ids:
            acked += await self.ack_message(stream_type, coin, group_name, message_id)
        return acked

    @abstractmethod
    async def pending_count(self, stream_type: StreamType, coin: str, group_name: str) -> int:
        """How many entries of ``(stream_type, coin)`` the group has not acknowledged yet.

        Redis and in-memory: entries delivered and not acknowledged. Kafka: records of the
        coin's partition past the group's committed offset (any coin's, delivered or not).
        """

    @abstractmethod
    async def read_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` entries of the dead-letter stream."""
