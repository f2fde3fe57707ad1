"""Bus pieces without servers: the payload codec, Message, the factory, the Kafka offset
tracker and partitioner, and in-memory specifics (a fake clock for redelivery, lifecycle).

The delivery contract itself (ack, redelivery, order, shared work, dead letters) runs for all
three adapters in ``tests/integration/test_bus_contract.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import json
from decimal import Decimal

import pytest
from aiokafka.partitioner import DefaultPartitioner
from pydantic import BaseModel

from huracan.bus import (
    BusNotConnectedError,
    InMemoryBroker,
    MalformedMessageError,
    MemoryMessageBus,
    Message,
    MessageEncodeError,
    StreamType,
    create_message_bus,
    resolve_bus_config,
)
from huracan.bus.kafka import OffsetTracker, partition_for
from huracan.bus.message import decode, encode
from huracan.config import ConfigError, MessageBusConfig, build_config

MD = StreamType.MARKET_DATA


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Side(enum.Enum):
    BUY = "buy"


@dataclasses.dataclass(frozen=True)
class Fill:
    side: Side
    price: Decimal
    at: dt.datetime


class Quote(BaseModel):
    bid: float
    ask: float


# -- codec ------------------------------------------------------------------------------------


def test_encode_when_decoded_then_every_field_round_trips() -> None:
    sent = Message(MD, "BTC", {"price": 1.5, "tags": ["a"]}, timestamp=12.5, correlation_id="c1")

    got = decode(encode(sent), stream_type=MD, coin="BTC", message_id="7-0", delivery_count=1)

    assert got == dataclasses.replace(sent, message_id="7-0", delivery_count=1)


def test_encode_when_data_holds_dataclasses_models_enums_decimals_then_plain_json() -> None:
    at = dt.datetime(2025, 1, 27, 12, 0, tzinfo=dt.UTC)
    sent = Message(
        MD, "BTC", {"fill": Fill(Side.BUY, Decimal("1.10"), at), "quote": Quote(bid=1, ask=2)}
    )

    data = json.loads(encode(sent))["data"]

    assert data == {
        "fill": {"side": "buy", "price": "1.10", "at": "2025-01-27T12:00:00+00:00"},
        "quote": {"bid": 1.0, "ask": 2.0},
    }


def test_encode_when_data_is_not_representable_then_message_encode_error() -> None:
    with pytest.raises(MessageEncodeError, match="BTC"):
        encode(Message(MD, "BTC", {"callback": object()}))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "no 'payload' field"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"{not json", "not UTF-8 JSON"),
        (b"[1]", "JSON list"),
        (b'{"v": 2}', "version"),
        (b'{"v": 1, "data": [], "ts": 1, "event_id": "e", "coin": "BTC"}', "'data'"),
        (b'{"v": 1, "data": {}, "ts": "x", "event_id": "e", "coin": "BTC"}', "'ts'"),
        (b'{"v": 1, "data": {}, "ts": 1, "coin": "BTC"}', "'event_id'"),
        (b'{"v": 1, "data": {}, "ts": 1, "event_id": "e", "coin": "ETH", '
         b'"stream": "market-data"}', "coin 'ETH'"),
        (b'{"v": 1, "data": {}, "ts": 1, "event_id": "e", "coin": "BTC", '
         b'"stream": "signals"}', "stream 'signals'"),
    ],
)  # fmt: skip
def test_decode_when_payload_is_malformed_then_reason_says_why(
    raw: bytes | None, reason: str
) -> None:
    with pytest.raises(MalformedMessageError, match=reason):
        decode(raw, stream_type=MD, coin="BTC", message_id="1-0", delivery_count=1)


def test_message_when_built_then_validates_and_gets_an_event_id() -> None:
    message = Message("signals", "BTC", {})  # type: ignore[arg-type]

    assert message.stream_type is StreamType.SIGNALS
    assert len(message.event_id) == 32
    assert message.message_id is None
    with pytest.raises(ValueError, match="coin"):
        Message(MD, "", {})
    with pytest.raises(TypeError, match="mapping"):
        Message(MD, "BTC", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.coin = "ETH"  # type: ignore[misc]


# -- factory ----------------------------------------------------------------------------------


def test_resolve_bus_config_when_whole_config_and_kafka_then_bootstrap_from_kafka_section() -> None:
    config = build_config(
        {
            "engine": {"message_bus": {"type": "kafka"}},
            "kafka": {"bootstrap_servers": "broker-1:9092"},
        },
        environ={},
    )

    resolved = resolve_bus_config(config)
    from_dict = resolve_bus_config(
        {"engine": {"message_bus": {"type": "kafka"}}, "kafka": {"bootstrap_servers": "b:1"}}
    )

    assert resolved.bootstrap_servers == "broker-1:9092"
    assert from_dict.bootstrap_servers == "b:1"


def test_create_message_bus_when_value_is_invalid_then_config_error_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"engine\.message_bus\.port"):
        create_message_bus({"engine": {"message_bus": {"port": 70000}}})
    with pytest.raises(ConfigError, match="expected a mapping"):
        create_message_bus("redis://localhost")


def test_create_message_bus_when_called_then_nothing_connects() -> None:
    bus = create_message_bus({"message_bus": {"type": "redis_streams", "port": 1}})

    assert not bus.connected
    assert type(bus).__name__ == "RedisStreamsMessageBus"


# -- Kafka offsets ----------------------------------------------------------------------------


def test_offset_tracker_when_acks_arrive_out_of_order_then_commit_stops_at_first_unacked() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12, 13):
        tracker.delivered(offset)
    tracker.seen(14)  # another coin's record

    tracker.ack(11)
    tracker.ack(13)
    at_gap = tracker.commit_position()
    tracker.ack(10)
    after_first = tracker.commit_position()
    tracker.ack(12)
    after_all = tracker.commit_position()

    assert (at_gap, after_first, after_all) == (10, 12, 15)
    assert tracker.ack(12) is False


def test_partition_for_when_compared_with_the_producers_partitioner_then_agrees() -> None:
    partitioner = DefaultPartitioner()
    for coin in ("BTC", "ETH", "SOL", "DOGE", "C123"):
        for n in (1, 3, 12):
            assert partition_for(coin, n) == partitioner(coin.encode(), list(range(n)), [])


# -- in-memory specifics ----------------------------------------------------------------------


async def test_memory_bus_when_not_connected_then_operations_raise() -> None:
    bus = MemoryMessageBus()

    with pytest.raises(BusNotConnectedError, match="connect"):
        await bus.publish(Message(MD, "BTC", {}))
    with pytest.raises(BusNotConnectedError):
        await anext(bus.subscribe(MD, "BTC", "g"))


async def test_memory_bus_when_pending_entry_idles_past_claim_time_then_redelivered() -> None:
    clock = FakeClock()
    broker = InMemoryBroker(clock=clock)
    config = MessageBusConfig(type="memory", claim_idle_ms=60_000, block_ms=10)
    first, second = MemoryMessageBus(config, broker=broker), MemoryMessageBus(config, broker=broker)
    await first.connect()
    await second.connect()
    await first.publish(Message(MD, "BTC", {"n": 1}))
    dying = first.subscribe(MD, "BTC", "g", consumer_name="a")
    got = await anext(dying)
    await dying.aclose()

    early = second.subscribe(MD, "BTC", "g", consumer_name="b")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(early), 0.2)  # not idle long enough yet
    await early.aclose()
    clock.now += 60.0
    late = second.subscribe(MD, "BTC", "g", consumer_name="b")
    again = await asyncio.wait_for(anext(late), 5)
    await late.aclose()

    assert again.message_id == got.message_id
    assert (got.delivery_count, again.delivery_count) == (1, 2)
    assert second.stats.redelivered == 1


async def test_memory_bus_when_disconnected_then_open_subscriptions_end() -> None:
    bus = MemoryMessageBus(MessageBusConfig(type="memory", block_ms=10))
    await bus.connect()
    await bus.publish(Message(MD, "BTC", {}))
    subscription = bus.subscribe(MD, "BTC", "g")
    await anext(subscription)
    reader = asyncio.create_task(anext(subscription, None))

    await bus.disconnect()
    ended = await asyncio.wait_for(reader, 5)

    assert ended is None


async def test_memory_bus_when_buses_have_no_shared_broker_then_streams_are_separate() -> None:
    async with MemoryMessageBus() as one, MemoryMessageBus() as other:
        await one.publish(Message(MD, "BTC", {}))

        assert await one.pending_count(MD, "BTC", "g") == 0
        assert one.broker.length(one.stream_key(MD, "BTC")) == 1
        assert other.broker.length(other.stream_key(MD, "BTC")) == 0
