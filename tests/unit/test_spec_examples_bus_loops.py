"""The spec's Message Bus and Event Loop Manager usage examples, run as written (in-memory bus).

Changed from the spec: the import lines; the bus config's ``type`` is ``"memory"`` (the Redis
run is ``tests/integration/test_spec_example_bus_redis.py``); the examples' statements sit in
an ``async def`` (the spec's top-level ``await``); the coin list's ``...`` is filled to 400
coins. The subscribe loop of the bus example never ends by design, so it runs as a task that
the test cancels once the message has been printed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from huracan.bus import Message, StreamType, create_message_bus
from huracan.config import ConfigError, MessageBusConfig, build_config
from huracan.runtime import EventLoopManager


async def wait_for_output(capsys: pytest.CaptureFixture[str], text: str, timeout: float = 10.0):
    """Poll captured stdout until ``text`` appears; return everything captured."""
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen:
        seen += capsys.readouterr().out
        if time.monotonic() > deadline:
            pytest.fail(f"{text!r} was not printed within {timeout}s; got {seen!r}")
        await asyncio.sleep(0.01)
    return seen


async def test_spec_bus_example_when_run_as_written_then_prints_the_received_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def example() -> None:
        # --- the spec's example, from here on as written (type: memory) --------------------
        # Create message bus from config
        config = {
            "message_bus": {
                "type": "memory",
                "host": "localhost",
                "port": 6379,
                "stream_prefix": "huracan",
            }
        }
        bus = create_message_bus(config)
        await bus.connect()

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
    out = await wait_for_output(capsys, "Received:")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert out.splitlines() == ["Received: {'price': 50000.0, 'volume': 1000.0}"]


async def test_spec_event_loop_example_when_run_as_written_then_prints_each_loops_metrics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # --- the spec's example, from here on as written ("..." filled to 400 coins) -------------
    # Create event loop manager
    manager = EventLoopManager(
        coins_per_loop=50,
        max_loops=10,
        timeout_seconds=300,
    )

    # Assign coins
    coins = ["BTC", "ETH", "SOL", *(f"COIN{i:03d}" for i in range(397))]  # 400 coins
    manager.assign_coins(coins)

    # Register processors
    async def process_coin(coin: str):
        # Process coin data
        print(f"Processing {coin}")
        await asyncio.sleep(1)

    for coin in coins:
        manager.register_processor(coin, process_coin)

    # Start event loops
    await manager.start()

    # Get metrics
    metrics = manager.get_metrics()
    for loop_id, metric in metrics.items():
        print(
            f"Loop {loop_id}: {metric.coins_assigned} coins, {metric.messages_processed} messages"
        )

    # Stop event loops
    await manager.stop(timeout=10.0)
    # --- end of the spec's example ---------------------------------------------------------

    lines = capsys.readouterr().out.splitlines()
    processing = sorted(line for line in lines if line.startswith("Processing "))
    loops = [line for line in lines if line.startswith("Loop ")]
    assert processing == sorted(f"Processing {coin}" for coin in coins)
    assert loops == [f"Loop {i}: 50 coins, 0 messages" for i in range(8)]


def test_create_message_bus_when_given_the_engine_section_then_uses_it() -> None:
    config = build_config({"engine": {"message_bus": {"type": "memory", "stream_prefix": "x"}}})

    bus = create_message_bus(config["engine"]["message_bus"])
    whole = create_message_bus(config)

    assert type(bus).__name__ == "MemoryMessageBus"
    assert bus.config == MessageBusConfig(type="memory", stream_prefix="x")
    assert whole.config == bus.config


def test_create_message_bus_when_a_key_is_unknown_then_config_error_names_it() -> None:
    with pytest.raises(ConfigError, match=r"message_bus\.prot"):
        create_message_bus({"message_bus": {"type": "redis_streams", "prot": 6379}})
    with pytest.raises(ConfigError, match=r"message_bus\.type"):
        create_message_bus({"type": "rabbitmq"})


@dataclasses.dataclass(frozen=True)
class TradeRequest:  # the shape of the spec's TradeRequest, for the integration example
    coin: str
    direction: str
    size_usd: float
    exchange: str
    sector: str


async def test_integration_example_when_processors_subscribe_then_executions_flow() -> None:
    """The bus and event-loop part of the spec's "Complete Pipeline Integration": processors on
    the manager's thread loops subscribe through one bus connected in the main loop and publish
    executions carrying a ``TradeRequest``; risk, cost and registry are out of this test."""
    bus = create_message_bus({"type": "memory", "claim_idle_ms": 60_000})
    await bus.connect()
    active_coins = [f"C{i:02d}" for i in range(20)]
    event_loop_manager = EventLoopManager(coins_per_loop=5, max_loops=10)
    event_loop_manager.assign_coins(active_coins)

    async def process_coin(coin: str):
        async for message in bus.subscribe(
            stream_type=StreamType.MARKET_DATA,
            coin=coin,
            consumer_group="market_data_workers",
        ):
            trade = TradeRequest(coin, "long", message.data["price"], "binance", "L1")
            await bus.publish(
                Message(
                    stream_type=StreamType.EXECUTIONS,
                    coin=coin,
                    data={"trade_id": f"{coin}-1", "trade": trade},
                    timestamp=time.time(),
                    causation_id=message.event_id,
                )
            )
            await bus.ack_message(
                StreamType.MARKET_DATA, coin, "market_data_workers", message.message_id
            )

    for coin in active_coins:
        event_loop_manager.register_processor(coin, process_coin)
    await event_loop_manager.start()
    sent = {
        coin: await bus.publish(Message(StreamType.MARKET_DATA, coin, {"price": 100.0 + i}))
        for i, coin in enumerate(active_coins)
    }

    executions = []
    for coin in active_coins:
        subscription = bus.subscribe(StreamType.EXECUTIONS, coin, "audit")
        executions.append(await asyncio.wait_for(anext(subscription), 10))
        await subscription.aclose()
    await event_loop_manager.stop()
    await bus.disconnect()

    assert [e.coin for e in executions] == active_coins
    assert executions[3].data == {
        "trade_id": "C03-1",
        "trade": {
            "coin": "C03",
            "direction": "long",
            "size_usd": 103.0,
            "exchange": "binance",
            "sector": "L1",
        },
    }
    assert len(sent) == 20
