"""The spec's Message Bus usage example, run as written against a real Redis; and the bus and
event-loop part of its "Complete Pipeline Integration" against real Redis and Kafka.

Changed from the spec: the import line; ``host``/``port`` are the test Redis's (the spec says
``localhost``/``6379``, which is where the launcher runs it) and ``stream_prefix`` is unique to
the run, so runs do not share streams; the statements sit in an ``async def``. The subscribe
loop never ends by design, so it runs as a task the test cancels once the message is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from confluent_kafka.admin import AdminClient

from huracan.bus import Message, StreamType, create_message_bus
from huracan.runtime import EventLoopManager
from tests.services import _host_port


@pytest.fixture
async def redis_prefix(
    redis_url: str, unique_name: Callable[[str], str]
) -> AsyncIterator[tuple[str, int, str]]:
    host, port = _host_port(redis_url, 6379)
    prefix = unique_name("spec-bus")
    yield host, port, prefix
    raw = aioredis.Redis(host=host, port=port)
    async for key in raw.scan_iter(match=f"{prefix}:*"):
        await raw.delete(key)
    await raw.aclose()


async def test_spec_bus_example_when_run_against_redis_then_prints_the_received_message(
    redis_prefix: tuple[str, int, str], capsys: pytest.CaptureFixture[str]
) -> None:
    host, port, prefix = redis_prefix
    buses: list[Any] = []

    async def example() -> None:
        # --- the spec's example, from here on as written ------------------------------------
        # Create message bus from config
        config = {
            "message_bus": {
                "type": "redis_streams",
                "host": host,
                "port": port,
                "stream_prefix": prefix,
            }
        }
        bus = create_message_bus(config)
        await bus.connect()
        buses.append(bus)

        # Publish message
        message = Message(
            stream_type=StreamType.MARKET_DATA,
            coin="BTC",
            data={"price": 50000.0, "volume": 1000.0},
            timestamp=time.time(),
        )
        message_id = await bus.publish(message)

        # Subscribe to stream
        async for message in bus.subscribe(
            stream_type=StreamType.MARKET_DATA,
            coin="BTC",
            consumer_group="market_data_workers",
        ):
            # Process message
            print(f"Received: {message.data}")
            await bus.ack_message(
                stream_type=StreamType.MARKET_DATA,
                coin="BTC",
                group_name="market_data_workers",
                message_id=message.message_id,
            )
        # --- end of the spec's example -----------------------------------------------------
        del message_id

    task = asyncio.create_task(example())
    seen = ""
    deadline = time.monotonic() + 15
    while "Received:" not in seen and time.monotonic() < deadline:
        seen += capsys.readouterr().out
        await asyncio.sleep(0.02)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    [bus] = buses
    pending = await bus.pending_count(StreamType.MARKET_DATA, "BTC", "market_data_workers")
    await bus.disconnect()

    assert seen.splitlines() == ["Received: {'price': 50000.0, 'volume': 1000.0}"]
    assert pending == 0


async def run_integration_example(bus_config: dict[str, Any], coins: list[str]) -> list[Message]:
    """The spec's integration example, bus and loops only: each coin's processor, on one of the
    manager's thread loops, subscribes to market data through one bus (connected here, in the
    test's loop) and publishes an execution per tick."""
    bus = create_message_bus(bus_config)
    await bus.connect()
    event_loop_manager = EventLoopManager(coins_per_loop=2, max_loops=10)
    event_loop_manager.assign_coins(coins)

    async def process_coin(coin: str):
        async for message in bus.subscribe(
            stream_type=StreamType.MARKET_DATA,
            coin=coin,
            consumer_group="market_data_workers",
        ):
            await bus.publish(
                Message(
                    stream_type=StreamType.EXECUTIONS,
                    coin=coin,
                    data={"trade_id": f"{coin}-{message.data['seq']}", "size_usd": 1000.0},
                    timestamp=time.time(),
                    causation_id=message.event_id,
                )
            )
            await bus.ack_message(
                StreamType.MARKET_DATA, coin, "market_data_workers", message.message_id
            )

    for coin in coins:
        event_loop_manager.register_processor(coin, process_coin)
    await event_loop_manager.start()
    ticks = [Message(StreamType.MARKET_DATA, coin, {"seq": 0}) for coin in coins]
    await bus.publish_many(ticks)

    executions: list[Message] = []
    for coin in coins:
        subscription = bus.subscribe(StreamType.EXECUTIONS, coin, "audit")
        executions.append(await asyncio.wait_for(anext(subscription), 60))
        await subscription.aclose()
    report = await event_loop_manager.stop(timeout=10.0)
    await bus.disconnect()
    assert report.clean
    assert [e.causation_id for e in executions] == [t.event_id for t in ticks]
    return executions


async def test_integration_example_when_bus_is_redis_then_thread_loops_share_it(
    redis_prefix: tuple[str, int, str],
) -> None:
    host, port, prefix = redis_prefix
    coins = [f"C{i:02d}" for i in range(12)]

    executions = await run_integration_example(
        {"type": "redis_streams", "host": host, "port": port, "stream_prefix": prefix}, coins
    )

    assert [e.data["trade_id"] for e in executions] == [f"{c}-0" for c in coins]


async def test_integration_example_when_bus_is_kafka_then_thread_loops_share_it(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("spec-bus")
    coins = ["BTC", "ETH", "SOL", "XRP"]
    try:
        executions = await run_integration_example(
            {
                "type": "kafka",
                "bootstrap_servers": kafka_bootstrap,
                "stream_prefix": prefix,
                "partitions": 2,
                "block_ms": 200,
            },
            coins,
        )
    finally:
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        for future in admin.delete_topics(mine).values() if mine else ():
            with contextlib.suppress(Exception):
                future.result(timeout=30)

    assert [e.data["trade_id"] for e in executions] == [f"{c}-0" for c in coins]
