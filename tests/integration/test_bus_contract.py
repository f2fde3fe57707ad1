"""One contract for every message bus adapter: in-memory, a real Redis and the real Kafka broker.

:class:`BusContract` holds the tests; each subclass provides ``bus_config`` (the config every
bus of a test shares — one stream prefix per test), ``make_bus`` (a bus that sees the same
streams as the test's other buses) and ``inject_raw`` (writes bytes straight to the stream,
bypassing the encoder, as a broken producer would).

A consumer *dies* here by having its ``subscribe`` iterator closed or its task cancelled
without acknowledging — what a crashed process looks like to the server once its connection is
gone. A ``kill -9`` of a worker process and a Redis restart with pending entries are left to
``tests/reliability``.

Where adapters differ, the subclass says so with a class flag, and the test asserts the
adapter's documented behaviour rather than skipping:

- ``splits_one_coin``: Redis and in-memory split one coin's stream between the consumers of a
  group; Kafka keeps a coin in one partition, so one consumer owns it (per-coin order).
- ``counts_deliveries``: Redis and in-memory know each entry's delivery count (and dead-letter
  after ``max_deliveries``); Kafka does not (``delivery_count`` is ``None``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar

import pytest
import redis.asyncio as aioredis
from confluent_kafka.admin import AdminClient

from huracan.bus import (
    InMemoryBroker,
    KafkaMessageBus,
    MemoryMessageBus,
    Message,
    MessageBus,
    RedisStreamsMessageBus,
    StreamType,
)
from huracan.config import MessageBusConfig
from tests.services import _host_port
from tests.waiting import eventually as _eventually

MD = StreamType.MARKET_DATA
TIMEOUT = 30.0


# -- helpers --------------------------------------------------------------------------------

#: poll an (async) check until truthy; fail after TIMEOUT
eventually = functools.partial(_eventually, timeout=TIMEOUT, interval=0.05)


async def take(it: AsyncIterator[Message], n: int, timeout: float = TIMEOUT) -> list[Message]:
    """The next ``n`` messages of ``it``; fail the test if they do not come within ``timeout``."""
    out: list[Message] = []

    async def run() -> None:
        async for message in it:
            out.append(message)
            if len(out) == n:
                return

    try:
        await asyncio.wait_for(run(), timeout)
    except TimeoutError:
        pytest.fail(f"received {len(out)} of {n} messages within {timeout}s")
    return out


def tick(coin: str, seq: int) -> Message:
    return Message(stream_type=MD, coin=coin, data={"seq": seq, "price": 50_000.0 + seq})


class Collector:
    """A consumer running in its own task: collects (and optionally acks) what it receives."""

    def __init__(
        self, bus: MessageBus, coin: str, group: str, name: str, *, ack: bool = True
    ) -> None:
        self.bus = bus
        self.received: list[Message] = []
        self.first = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self._ack = ack
        self._it = bus.subscribe(MD, coin, group, consumer_name=name)
        self._coin, self._group = coin, group
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for message in self._it:
            self.received.append(message)
            if self._ack:
                assert await self.bus.ack_message(MD, self._coin, self._group, message.message_id)
            self.first.set()
            if self.gate is not None:
                await self.gate.wait()

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


BusMaker = Callable[..., Awaitable[MessageBus]]


class BusContract:
    splits_one_coin: ClassVar[bool] = True
    counts_deliveries: ClassVar[bool] = True

    # -- provided by subclasses -----------------------------------------------------------

    def new_bus(self, config: MessageBusConfig) -> MessageBus:
        raise NotImplementedError

    async def inject_raw(self, bus: MessageBus, coin: str, payload: bytes) -> None:
        raise NotImplementedError

    @pytest.fixture
    def bus_config(self, unique_name: Callable[[str], str]) -> dict[str, Any]:
        return {
            "stream_prefix": unique_name("bus"),
            "claim_idle_ms": 300,
            "block_ms": 100,
            "batch_size": 10,
        }

    @pytest.fixture
    async def make_bus(self, bus_config: dict[str, Any]) -> AsyncIterator[BusMaker]:
        """``await make_bus(**overrides)`` -> a connected bus; all are disconnected afterwards."""
        buses: list[MessageBus] = []

        async def make(**overrides: Any) -> MessageBus:
            bus = self.new_bus(MessageBusConfig(**{**bus_config, **overrides}))
            await bus.connect()
            buses.append(bus)
            return bus

        yield make
        for bus in buses:
            await bus.disconnect()

    # -- the contract ---------------------------------------------------------------------

    async def test_publish_when_subscribed_then_delivered_with_its_id_and_acked_once(
        self, make_bus: BusMaker
    ) -> None:
        bus = await make_bus()
        sent = Message(stream_type=MD, coin="BTC", data={"price": 50000.0, "volume": 1000.0})

        message_id = await bus.publish(sent)
        it = bus.subscribe(stream_type=MD, coin="BTC", consumer_group="g")
        [got] = await take(it, 1)
        first_ack = await bus.ack_message(MD, "BTC", "g", got.message_id)
        second_ack = await bus.ack_message(MD, "BTC", "g", got.message_id)
        await it.aclose()

        assert got.message_id == message_id
        assert (got.coin, got.stream_type, got.data) == ("BTC", MD, sent.data)
        assert (got.event_id, got.timestamp) == (sent.event_id, sent.timestamp)
        assert got.delivery_count == (1 if self.counts_deliveries else None)
        assert (first_ack, second_ack) == (True, False)
        await eventually(lambda: _is(bus.pending_count(MD, "BTC", "g"), 0), what="nothing pending")
        assert bus.stats.acked == 1

    async def test_ack_when_consumer_restarts_then_acked_entries_are_not_redelivered(
        self, make_bus: BusMaker
    ) -> None:
        bus_a, bus_b = await make_bus(), await make_bus()
        for i in range(3):
            await bus_a.publish(tick("ETH", i))
        it_a = bus_a.subscribe(MD, "ETH", "g", consumer_name="a")
        for message in await take(it_a, 3):
            assert await bus_a.ack_message(MD, "ETH", "g", message.message_id)
        await it_a.aclose()
        await eventually(lambda: _is(bus_a.pending_count(MD, "ETH", "g"), 0), what="acks stored")

        await bus_a.publish(tick("ETH", 3))
        it_b = bus_b.subscribe(MD, "ETH", "g", consumer_name="b")
        [first] = await take(it_b, 1)
        await it_b.aclose()

        assert first.data["seq"] == 3

    async def test_subscribe_when_consumer_dies_without_ack_then_another_gets_the_entries(
        self, make_bus: BusMaker
    ) -> None:
        bus_a, bus_b = await make_bus(), await make_bus()
        sent = [tick("SOL", i) for i in range(5)]
        ids = await bus_a.publish_many(sent)
        it_a = bus_a.subscribe(MD, "SOL", "workers", consumer_name="a")
        first_delivery = await take(it_a, 5)
        await it_a.aclose()  # dies: nothing acknowledged

        it_b = bus_b.subscribe(MD, "SOL", "workers", consumer_name="b")
        second_delivery = await take(it_b, 5)
        for message in second_delivery:
            assert await bus_b.ack_message(MD, "SOL", "workers", message.message_id)
        await it_b.aclose()

        assert [m.message_id for m in first_delivery] == ids
        assert [m.event_id for m in second_delivery] == [m.event_id for m in sent]
        assert [m.message_id for m in second_delivery] == ids
        expected = 2 if self.counts_deliveries else None
        assert {m.delivery_count for m in second_delivery} == {expected}
        await eventually(lambda: _is(bus_b.pending_count(MD, "SOL", "workers"), 0))

    async def test_subscribe_when_consumer_task_is_cancelled_mid_stream_then_nothing_is_lost(
        self, make_bus: BusMaker
    ) -> None:
        bus_a, bus_b = await make_bus(), await make_bus()
        ids = await bus_a.publish_many([tick("ADA", i) for i in range(20)])
        a = Collector(bus_a, "ADA", "g", "a")
        a.gate = asyncio.Event()  # a takes one entry (acked), then hangs until cancelled
        await asyncio.wait_for(a.first.wait(), TIMEOUT)
        await a.stop()

        b = Collector(bus_b, "ADA", "g", "b")
        await eventually(
            lambda: _now(len({m.message_id for m in b.received}) >= 19), what="b catches up"
        )
        await b.stop()

        seen = {m.message_id for m in a.received} | {m.message_id for m in b.received}
        assert seen == set(ids)
        assert not {m.message_id for m in a.received} & {m.message_id for m in b.received}

    async def test_publish_when_many_per_coin_then_each_coin_is_delivered_in_order(
        self, make_bus: BusMaker
    ) -> None:
        bus = await make_bus(batch_size=50)
        interleaved = [tick(coin, i) for i in range(250) for coin in ("BTC", "ETH")]
        await bus.publish_many(interleaved[:300])
        for message in interleaved[300:]:
            await bus.publish(message)

        btc = bus.subscribe(MD, "BTC", "g", auto_ack=True)
        eth = bus.subscribe(MD, "ETH", "g", auto_ack=True)
        btc_seq = [m.data["seq"] for m in await take(btc, 250)]
        eth_seq = [m.data["seq"] for m in await take(eth, 250)]
        await btc.aclose()
        await eth.aclose()

        assert btc_seq == list(range(250))
        assert eth_seq == list(range(250))

    async def test_subscribe_when_two_consumers_share_a_group_then_each_entry_goes_to_one(
        self, make_bus: BusMaker
    ) -> None:
        bus_a, bus_b = await make_bus(), await make_bus()
        a = Collector(bus_a, "XRP", "g", "a")
        b = Collector(bus_b, "XRP", "g", "b")
        if self.splits_one_coin:
            a.gate = asyncio.Event()  # a holds its first batch until b has received something
        ids = await bus_a.publish_many([tick("XRP", i) for i in range(200)])
        if self.splits_one_coin:
            await asyncio.wait_for(b.first.wait(), TIMEOUT)
            a.gate.set()
        await eventually(
            lambda: _now(len(a.received) + len(b.received) >= 200), what="all 200 received"
        )
        await a.stop()
        await b.stop()

        got_a = {m.message_id for m in a.received}
        got_b = {m.message_id for m in b.received}
        assert len(a.received) + len(b.received) == 200
        assert not got_a & got_b
        assert got_a | got_b == set(ids)
        if self.splits_one_coin:
            assert got_a
            assert got_b
        else:  # one partition holds the coin: exactly one consumer owns it
            assert {len(got_a), len(got_b)} == {0, 200}

    async def test_subscribe_when_payloads_are_malformed_then_dead_lettered_and_stream_goes_on(
        self, make_bus: BusMaker
    ) -> None:
        bus = await make_bus()
        bad = [b"\xff\xfenot json", b"[1, 2, 3]", b'{"v": 1, "coin": "DOGE"}']
        await bus.publish(tick("DOGE", 0))
        for payload in bad:
            await self.inject_raw(bus, "DOGE", payload)
        await bus.publish(tick("DOGE", 1))

        it = bus.subscribe(MD, "DOGE", "g")
        got = await take(it, 2)
        assert await bus.ack_messages(MD, "DOGE", "g", [m.message_id for m in got]) == 2
        letters = await eventually(
            lambda: _at_least(bus.read_dead_letters(), len(bad)), what="dead letters"
        )
        await it.aclose()

        assert [m.data["seq"] for m in got] == [0, 1]
        assert [_raw_payload(d.fields) for d in letters] == bad
        assert all(d.reason for d in letters)
        assert all(d.source.endswith("market-data") or "DOGE" in d.source for d in letters)
        assert bus.stats.dead_lettered == len(bad)
        await eventually(lambda: _is(bus.pending_count(MD, "DOGE", "g"), 0))

    async def test_publish_when_called_from_another_threads_event_loop_then_delivered(
        self, make_bus: BusMaker
    ) -> None:
        bus = await make_bus()
        ids: list[str] = []

        def other_thread() -> None:
            async def publish_there() -> None:
                ids.append(await bus.publish(tick("BNB", 7)))

            asyncio.run(publish_there())

        thread = threading.Thread(target=other_thread)
        thread.start()
        await asyncio.to_thread(thread.join, TIMEOUT)
        it = bus.subscribe(MD, "BNB", "g", auto_ack=True)
        [got] = await take(it, 1)
        await it.aclose()

        assert [got.message_id] == ids
        assert got.data["seq"] == 7


class MaxDeliveriesContract:
    """For adapters that count deliveries (Redis, in-memory)."""

    async def test_subscribe_when_entry_delivered_more_than_max_then_dead_lettered(
        self, make_bus: BusMaker
    ) -> None:
        buses = [await make_bus(max_deliveries=2) for _ in range(3)]
        poison = tick("LINK", 0)
        await buses[0].publish(poison)
        for i, bus in enumerate(buses[:2]):  # two consumers take it and die
            it = bus.subscribe(MD, "LINK", "g", consumer_name=f"dies-{i}")
            [got] = await take(it, 1)
            assert got.delivery_count == i + 1
            await it.aclose()

        survivor = Collector(buses[2], "LINK", "g", "survivor")
        letters = await eventually(lambda: _at_least(buses[2].read_dead_letters(), 1))
        await buses[2].publish(tick("LINK", 1))
        await eventually(lambda: _now(survivor.received), what="the next entry")
        await survivor.stop()

        assert [m.data["seq"] for m in survivor.received] == [1]
        [letter] = letters
        assert letter.reason == "delivered more than 2 times"
        assert letter.delivery_count == 2
        assert letter.group == "g"
        assert b'"seq":0' in _raw_payload(letter.fields)
        assert await buses[2].pending_count(MD, "LINK", "g") == 0

    async def test_subscribe_when_entry_has_no_payload_field_then_dead_lettered(
        self, make_bus: BusMaker
    ) -> None:
        bus = await make_bus()
        await self.inject_fields(bus, "DOT", {"something": b"else"})  # type: ignore[attr-defined]
        await bus.publish(tick("DOT", 1))

        it = bus.subscribe(MD, "DOT", "g")
        [got] = await take(it, 1)
        assert await bus.ack_message(MD, "DOT", "g", got.message_id)
        letters = await eventually(lambda: _at_least(bus.read_dead_letters(), 1))
        await it.aclose()

        assert got.data["seq"] == 1
        assert letters[0].fields == {"something": b"else"}
        assert "payload" in letters[0].reason
        assert await bus.pending_count(MD, "DOT", "g") == 0


async def _is(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def _now(value: Any) -> Any:
    return value


async def _at_least(letters: Awaitable[list[Any]], n: int) -> list[Any] | None:
    got = await letters
    return got if len(got) >= n else None


def _raw_payload(fields: Any) -> bytes:
    return fields.get("payload", fields.get("value", b""))


# -- the adapters ---------------------------------------------------------------------------


class TestMemoryBus(MaxDeliveriesContract, BusContract):
    @pytest.fixture(autouse=True)
    def _broker(self) -> None:
        self.broker = InMemoryBroker()

    def new_bus(self, config: MessageBusConfig) -> MessageBus:
        return MemoryMessageBus(config.model_copy(update={"type": "memory"}), broker=self.broker)

    async def inject_raw(self, bus: MessageBus, coin: str, payload: bytes) -> None:
        await self.inject_fields(bus, coin, {"payload": payload})

    async def inject_fields(self, bus: MessageBus, coin: str, fields: dict[str, bytes]) -> None:
        assert isinstance(bus, MemoryMessageBus)
        bus.append_raw(MD, coin, fields)

    async def test_publish_when_maxlen_reached_then_oldest_entries_are_trimmed(
        self, make_bus: BusMaker
    ) -> None:
        bus = await make_bus(maxlen=50)
        await bus.publish_many([tick("BTC", i) for i in range(1000)])

        it = bus.subscribe(MD, "BTC", "g", auto_ack=True)
        got = await take(it, 50)
        await it.aclose()

        assert isinstance(bus, MemoryMessageBus)
        assert self.broker.length(bus.stream_key(MD, "BTC")) == 50
        assert [m.data["seq"] for m in got] == list(range(950, 1000))


class TestRedisStreamsBus(MaxDeliveriesContract, BusContract):
    @pytest.fixture(autouse=True)
    async def _redis(self, redis_url: str, bus_config: dict[str, Any]) -> AsyncIterator[None]:
        host, port = _host_port(redis_url, 6379)
        self.redis_host, self.redis_port = host, port
        self.raw = aioredis.Redis(host=host, port=port)
        yield
        async for key in self.raw.scan_iter(match=f"{bus_config['stream_prefix']}:*"):
            await self.raw.delete(key)
        await self.raw.aclose()

    def new_bus(self, config: MessageBusConfig) -> MessageBus:
        return RedisStreamsMessageBus(
            config.model_copy(
                update={"type": "redis_streams", "host": self.redis_host, "port": self.redis_port}
            )
        )

    async def inject_raw(self, bus: MessageBus, coin: str, payload: bytes) -> None:
        await self.inject_fields(bus, coin, {"payload": payload})

    async def inject_fields(self, bus: MessageBus, coin: str, fields: dict[str, bytes]) -> None:
        assert isinstance(bus, RedisStreamsMessageBus)
        await self.raw.xadd(bus.stream_key(MD, coin), fields)  # type: ignore[arg-type]

    async def test_publish_when_maxlen_reached_then_stream_is_trimmed_approximately(
        self, make_bus: BusMaker
    ) -> None:
        bus = await make_bus(maxlen=50)
        assert isinstance(bus, RedisStreamsMessageBus)
        for start in range(0, 2000, 100):
            await bus.publish_many([tick("BTC", i) for i in range(start, start + 100)])

        length = await self.raw.xlen(bus.stream_key(MD, "BTC"))

        # MAXLEN ~ trims whole radix-tree nodes (stream-node-max-entries, 100 by default)
        assert 50 <= length <= 50 + 100

    async def test_publish_when_maxlen_is_zero_then_stream_is_not_trimmed(
        self, make_bus: BusMaker
    ) -> None:
        bus = await make_bus(maxlen=0)
        assert isinstance(bus, RedisStreamsMessageBus)
        await bus.publish_many([tick("BTC", i) for i in range(500)])

        assert await self.raw.xlen(bus.stream_key(MD, "BTC")) == 500

    async def test_subscribe_when_iterator_closes_with_nothing_pending_then_consumer_removed(
        self, make_bus: BusMaker
    ) -> None:
        bus = await make_bus()
        assert isinstance(bus, RedisStreamsMessageBus)
        key = bus.stream_key(MD, "BTC")
        await bus.publish(tick("BTC", 0))
        it = bus.subscribe(MD, "BTC", "g", consumer_name="tidy")
        [got] = await take(it, 1)
        await bus.ack_message(MD, "BTC", "g", got.message_id)
        await it.aclose()

        assert await self.raw.xinfo_consumers(key, "g") == []

    async def test_subscribe_when_iterator_closes_with_entries_pending_then_consumer_kept(
        self, make_bus: BusMaker
    ) -> None:
        bus = await make_bus()
        assert isinstance(bus, RedisStreamsMessageBus)
        key = bus.stream_key(MD, "BTC")
        await bus.publish(tick("BTC", 0))
        it = bus.subscribe(MD, "BTC", "g", consumer_name="holder", auto_ack=True)
        await take(it, 1)
        await it.aclose()  # auto-ack happens when the loop asks for the next message: never

        consumers = await self.raw.xinfo_consumers(key, "g")
        assert [(c["name"], c["pending"]) for c in consumers] == [(b"holder", 1)]


class TestKafkaBus(BusContract):
    splits_one_coin = False
    counts_deliveries = False

    @pytest.fixture(autouse=True)
    def _kafka(self, kafka_bootstrap: str, bus_config: dict[str, Any]) -> Any:
        self.bootstrap = kafka_bootstrap
        yield
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        prefix = f"{bus_config['stream_prefix']}.bus."
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if mine:
            for future in admin.delete_topics(mine, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result(timeout=30)

    def new_bus(self, config: MessageBusConfig) -> MessageBus:
        return KafkaMessageBus(
            config.model_copy(
                update={"type": "kafka", "bootstrap_servers": self.bootstrap, "partitions": 3}
            ),
            consumer_options={
                "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 200,
                "fetch_max_wait_ms": 50,
            },
        )

    async def inject_raw(self, bus: MessageBus, coin: str, payload: bytes) -> None:
        assert isinstance(bus, KafkaMessageBus)
        await bus.produce_raw(MD, coin, payload)

    async def test_ack_when_acks_arrive_out_of_order_then_commit_stops_at_first_unacked(
        self, make_bus: BusMaker
    ) -> None:
        bus = await make_bus()
        ids = await bus.publish_many([tick("BTC", i) for i in range(5)])
        it = bus.subscribe(MD, "BTC", "g", consumer_name="a")
        got = await take(it, 5)
        for message in (got[0], got[1], got[3], got[4]):  # entry 2 never acknowledged
            assert await bus.ack_message(MD, "BTC", "g", message.message_id)
        await it.aclose()

        other = await make_bus()
        it_b = other.subscribe(MD, "BTC", "g", consumer_name="b")
        again = await take(it_b, 3)
        await it_b.aclose()

        assert await bus.pending_count(MD, "BTC", "g") == 3
        assert [m.message_id for m in again] == ids[2:]
