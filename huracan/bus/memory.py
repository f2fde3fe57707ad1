"""In-memory message bus: the Redis Streams semantics inside one process, for tests and demos.

Buses that share one :class:`InMemoryBroker` see the same streams, like clients of one Redis
server; each :class:`MemoryMessageBus` made without a broker gets a private one. The broker is
thread-safe, so a bus works from several event loops at once (EventLoopManager threads).

Semantics, identical to :mod:`huracan.bus.redis_streams`:

- a stream per (stream type, coin), trimmed to ``maxlen`` entries (exactly; 0 keeps all);
- consumer groups created on demand at the start of the stream; each entry goes to one
  consumer of a group and stays pending until acknowledged;
- a consumer *dies* when its ``subscribe`` iterator is closed without acknowledging what it
  received (``aclose()``, a cancelled task, ``break``, or :meth:`MemoryMessageBus.disconnect`).
  Its entries stay pending; once an entry has been idle ``claim_idle_ms``, the next read of any
  consumer of the group claims it (the XAUTOCLAIM rule) and it is delivered again with its
  delivery count raised;
- an entry whose next delivery would be its ``max_deliveries + 1``-th is moved to the
  dead-letter stream and acknowledged instead; so is a payload that does not decode.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from huracan.bus.base import MessageBus
from huracan.bus.errors import MalformedMessageError
from huracan.bus.message import PAYLOAD_FIELD, DeadLetter, Message, StreamType, decode, encode
from huracan.config import MessageBusConfig

Clock = Callable[[], float]


@dataclasses.dataclass(slots=True)
class _Pending:
    consumer: str
    delivered_at: float
    count: int


@dataclasses.dataclass(slots=True)
class _Group:
    last_seq: int
    pending: dict[int, _Pending] = dataclasses.field(default_factory=dict)


class _Waiter:
    """A subscriber parked until its stream gets an entry; woken from any thread."""

    __slots__ = ("event", "loop")

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()

    def notify(self) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.event.set)


@dataclasses.dataclass(slots=True)
class _Stream:
    base: int = 1  # sequence number of entries[0]
    entries: list[dict[str, bytes]] = dataclasses.field(default_factory=list)
    groups: dict[str, _Group] = dataclasses.field(default_factory=dict)
    waiters: set[_Waiter] = dataclasses.field(default_factory=set)

    @property
    def next_seq(self) -> int:
        return self.base + len(self.entries)

    def get(self, seq: int) -> dict[str, bytes] | None:
        index = seq - self.base
        return self.entries[index] if 0 <= index < len(self.entries) else None


@dataclasses.dataclass(frozen=True, slots=True)
class _Delivery:
    message_id: str
    fields: dict[str, bytes]
    count: int


def _entry_id(seq: int) -> str:
    return f"{seq}-0"


def _parse_id(message_id: str) -> int | None:
    head, _, tail = message_id.partition("-")
    if not head.isdigit() or tail != "0":
        return None
    return int(head)


class InMemoryBroker:
    """The shared, thread-safe store behind :class:`MemoryMessageBus` (a tiny Redis)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._streams: dict[str, _Stream] = {}
        self._dead_letters: dict[str, list[DeadLetter]] = {}

    def _stream(self, key: str) -> _Stream:
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream()
        return stream

    def append(self, key: str, fields: dict[str, bytes], maxlen: int = 0) -> str:
        """Add an entry (raw fields, as a Redis client would); return its id."""
        with self._lock:
            stream = self._stream(key)
            seq = stream.next_seq
            stream.entries.append(dict(fields))
            if maxlen and len(stream.entries) > maxlen:
                drop = len(stream.entries) - maxlen
                del stream.entries[:drop]
                stream.base += drop
            waiters = list(stream.waiters)
        for waiter in waiters:
            waiter.notify()
        return _entry_id(seq)

    def length(self, key: str) -> int:
        with self._lock:
            stream = self._streams.get(key)
            return len(stream.entries) if stream else 0

    def ensure_group(self, key: str, group: str) -> None:
        with self._lock:
            stream = self._stream(key)
            if group not in stream.groups:
                stream.groups[group] = _Group(last_seq=stream.base - 1)

    def read(
        self,
        key: str,
        group: str,
        consumer: str,
        *,
        count: int,
        claim_idle_s: float | None,
        max_deliveries: int,
        dead_letter_key: str,
    ) -> list[_Delivery]:
        """Claim idle pending entries (when ``claim_idle_s`` is given), then read new ones.

        Entries past ``max_deliveries`` are dead-lettered and acknowledged here, atomically.
        """
        now = self._clock()
        out: list[_Delivery] = []
        with self._lock:
            stream = self._stream(key)
            grp = stream.groups.setdefault(group, _Group(last_seq=stream.base - 1))
            if claim_idle_s is not None:
                for seq in sorted(grp.pending):
                    if len(out) >= count:
                        break
                    pend = grp.pending[seq]
                    if now - pend.delivered_at < claim_idle_s:
                        continue
                    fields = stream.get(seq)
                    if fields is None:  # trimmed while pending: nothing left to deliver
                        del grp.pending[seq]
                        continue
                    pend.count += 1
                    if pend.count > max_deliveries:
                        del grp.pending[seq]
                        self._add_dead_letter(
                            dead_letter_key,
                            source=key,
                            message_id=_entry_id(seq),
                            reason=f"delivered more than {max_deliveries} times",
                            fields=fields,
                            group=group,
                            consumer=consumer,
                            delivery_count=pend.count - 1,
                        )
                        continue
                    pend.consumer = consumer
                    pend.delivered_at = now
                    out.append(_Delivery(_entry_id(seq), fields, pend.count))
            seq = max(grp.last_seq + 1, stream.base)
            while len(out) < count and seq < stream.next_seq:
                fields = stream.entries[seq - stream.base]
                grp.pending[seq] = _Pending(consumer, now, 1)
                grp.last_seq = seq
                out.append(_Delivery(_entry_id(seq), fields, 1))
                seq += 1
        return out

    def ack(self, key: str, group: str, message_id: str) -> bool:
        seq = _parse_id(message_id)
        if seq is None:
            return False
        with self._lock:
            stream = self._streams.get(key)
            grp = stream.groups.get(group) if stream else None
            return grp is not None and grp.pending.pop(seq, None) is not None

    def pending_count(self, key: str, group: str) -> int:
        with self._lock:
            stream = self._streams.get(key)
            grp = stream.groups.get(group) if stream else None
            return len(grp.pending) if grp else 0

    def dead_letter(
        self,
        dead_letter_key: str,
        *,
        source: str,
        group: str,
        message_id: str,
        reason: str,
        fields: dict[str, bytes],
        consumer: str | None,
        delivery_count: int | None,
    ) -> None:
        """Move one entry to the dead-letter stream and acknowledge it on its source."""
        seq = _parse_id(message_id)
        with self._lock:
            self._add_dead_letter(
                dead_letter_key,
                source=source,
                message_id=message_id,
                reason=reason,
                fields=fields,
                group=group,
                consumer=consumer,
                delivery_count=delivery_count,
            )
            stream = self._streams.get(source)
            grp = stream.groups.get(group) if stream else None
            if grp is not None and seq is not None:
                grp.pending.pop(seq, None)

    def _add_dead_letter(self, dead_letter_key: str, **kwargs: Any) -> None:
        letters = self._dead_letters.setdefault(dead_letter_key, [])
        letters.append(
            DeadLetter(
                dead_letter_id=_entry_id(len(letters) + 1),
                dead_lettered_at=time.time(),
                **kwargs,
            )
        )

    def dead_letters(self, dead_letter_key: str, limit: int) -> list[DeadLetter]:
        with self._lock:
            return list(self._dead_letters.get(dead_letter_key, [])[:limit])

    def add_waiter(self, key: str, waiter: _Waiter) -> None:
        with self._lock:
            self._stream(key).waiters.add(waiter)

    def remove_waiter(self, key: str, waiter: _Waiter) -> None:
        with self._lock:
            stream = self._streams.get(key)
            if stream is not None:
                stream.waiters.discard(waiter)


class MemoryMessageBus(MessageBus):
    """The in-process adapter; ``broker`` shares streams between buses (default: a private one).

    Idle time for redelivery is measured by the broker's clock (monotonic seconds).
    """

    def __init__(
        self,
        config: MessageBusConfig | None = None,
        *,
        broker: InMemoryBroker | None = None,
    ) -> None:
        super().__init__(config or MessageBusConfig(type="memory"))
        self._broker = broker or InMemoryBroker()
        cfg = self._config
        self._dead_letter_key = f"{cfg.stream_prefix}:dead-letter"
        self._claim_idle_s = cfg.claim_idle_ms / 1000.0
        self._claim_every_s = min(max(cfg.claim_idle_ms / 2, 5), 5000) / 1000.0
        self._wait_s = min(cfg.block_ms / 1000.0, self._claim_every_s)

    @property
    def broker(self) -> InMemoryBroker:
        return self._broker

    def stream_key(self, stream_type: StreamType, coin: str) -> str:
        """``{prefix}:{stream_type}:{coin}`` — the same names as the Redis adapter."""
        return f"{self._config.stream_prefix}:{StreamType(stream_type).value}:{coin}"

    @property
    def dead_letter_key(self) -> str:
        return self._dead_letter_key

    async def connect(self) -> None:
        self._connected = True

    async def disconnect(self) -> None:
        self._connected = False

    async def publish(self, message: Message) -> str:
        self._require_connected()
        payload = encode(message)
        message_id = self._broker.append(
            self.stream_key(message.stream_type, message.coin),
            {PAYLOAD_FIELD: payload},
            self._config.maxlen,
        )
        self._counters.add("published")
        return message_id

    async def publish_many(self, messages: Iterable[Message]) -> list[str]:
        return [await self.publish(m) for m in messages]

    def append_raw(self, stream_type: StreamType, coin: str, fields: dict[str, bytes]) -> str:
        """Store raw entry fields without encoding — how tests inject malformed payloads."""
        return self._broker.append(self.stream_key(stream_type, coin), fields, self._config.maxlen)

    async def subscribe(
        self,
        stream_type: StreamType,
        coin: str,
        consumer_group: str,
        *,
        consumer_name: str | None = None,
        auto_ack: bool = False,
    ) -> AsyncIterator[Message]:
        self._require_connected()
        stream_type = StreamType(stream_type)
        key = self.stream_key(stream_type, coin)
        name = self._consumer_name(consumer_name)
        broker = self._broker
        cfg = self._config
        broker.ensure_group(key, consumer_group)
        waiter = _Waiter()
        broker.add_waiter(key, waiter)
        next_claim = 0.0
        try:
            while self._connected:
                now = time.monotonic()
                claim = now >= next_claim
                if claim:
                    next_claim = now + self._claim_every_s
                waiter.event.clear()
                batch = broker.read(
                    key,
                    consumer_group,
                    name,
                    count=cfg.batch_size,
                    claim_idle_s=self._claim_idle_s if claim else None,
                    max_deliveries=cfg.max_deliveries,
                    dead_letter_key=self._dead_letter_key,
                )
                if not batch:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(waiter.event.wait(), self._wait_s)
                    continue
                for delivery in batch:
                    try:
                        message = decode(
                            delivery.fields.get(PAYLOAD_FIELD),
                            stream_type=stream_type,
                            coin=coin,
                            message_id=delivery.message_id,
                            delivery_count=delivery.count,
                        )
                    except MalformedMessageError as exc:
                        broker.dead_letter(
                            self._dead_letter_key,
                            source=key,
                            group=consumer_group,
                            message_id=delivery.message_id,
                            reason=exc.reason,
                            fields=delivery.fields,
                            consumer=name,
                            delivery_count=delivery.count,
                        )
                        self._counters.add("dead_lettered")
                        continue
                    self._counters.add("delivered")
                    if delivery.count > 1:
                        self._counters.add("redelivered")
                    yield message
                    if auto_ack:
                        await self.ack_message(
                            stream_type, coin, consumer_group, delivery.message_id
                        )
                await asyncio.sleep(0)
        finally:
            broker.remove_waiter(key, waiter)

    async def ack_message(
        self, stream_type: StreamType, coin: str, group_name: str, message_id: str
    ) -> bool:
        self._require_connected()
        acked = self._broker.ack(self.stream_key(stream_type, coin), group_name, message_id)
        if acked:
            self._counters.add("acked")
        return acked

    async def pending_count(self, stream_type: StreamType, coin: str, group_name: str) -> int:
        return self._broker.pending_count(self.stream_key(stream_type, coin), group_name)

    async def read_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self._broker.dead_letters(self._dead_letter_key, limit)
