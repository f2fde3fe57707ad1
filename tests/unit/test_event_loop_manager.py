"""EventLoopManager: assignment, processors, errors and backoff, stalls, stop, both executors.

Processors used with ``executor="process"`` are module-level so the spawned loop processes can
import them; the others may be closures.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import random
import signal
import threading
import time

import pytest

from huracan.runtime import (
    CoinNotAssignedError,
    DuplicateCoinError,
    EventLoopManager,
    LoopMetrics,
    ManagerStateError,
    ProcessorNotPicklableError,
    TooManyCoinsError,
    backoff_delay,
    current_coin,
    report_processed,
)
from tests.waiting import eventually as _eventually

COINS_400 = [f"C{i:03d}" for i in range(400)]

#: poll without blocking the loop; fail after 20 s
eventually = functools.partial(_eventually, timeout=20.0, interval=0.01)


def total_processed(manager: EventLoopManager) -> int:
    return sum(m.messages_processed for m in manager.get_metrics().values())


# module-level processors (picklable by reference, for executor="process")


async def idle_processor(coin: str) -> None:
    await asyncio.sleep(0.01)


async def streaming_processor(coin: str) -> None:
    """Never returns; reports each 'message' it handles."""
    while True:
        await asyncio.sleep(0.001)
        report_processed()


async def failing_processor(coin: str) -> None:
    await asyncio.sleep(0)
    raise RuntimeError(f"boom in {coin}")


# -- assignment -----------------------------------------------------------------------------


def test_assign_coins_when_400_coins_50_per_loop_then_8_loops_of_50() -> None:
    manager = EventLoopManager(coins_per_loop=50, max_loops=10, timeout_seconds=300)

    assignment = manager.assign_coins(COINS_400)

    assert sorted(assignment) == list(range(8))
    assert [len(c) for c in assignment.values()] == [50] * 8
    assert sorted(c for group in assignment.values() for c in group) == COINS_400
    assert {m.coins_assigned for m in manager.get_metrics().values()} == {50}


def test_assign_coins_when_input_order_changes_then_assignment_is_identical() -> None:
    shuffled = COINS_400[:]
    random.Random(7).shuffle(shuffled)

    first = EventLoopManager(coins_per_loop=50, max_loops=10).assign_coins(COINS_400)
    second = EventLoopManager(coins_per_loop=50, max_loops=10).assign_coins(shuffled)

    assert first == second


@pytest.mark.parametrize(
    ("n", "per_loop", "sizes"),
    [(101, 50, [34, 34, 33]), (7, 3, [3, 2, 2]), (50, 50, [50]), (1, 50, [1]), (0, 50, [])],
)
def test_assign_coins_when_uneven_then_group_sizes_differ_by_at_most_one(
    n: int, per_loop: int, sizes: list[int]
) -> None:
    manager = EventLoopManager(coins_per_loop=per_loop, max_loops=10)

    assignment = manager.assign_coins([f"X{i}" for i in range(n)])

    assert [len(assignment[i]) for i in sorted(assignment)] == sizes


def test_assign_coins_when_more_than_capacity_then_too_many_coins_error_names_numbers() -> None:
    manager = EventLoopManager(coins_per_loop=50, max_loops=7)

    with pytest.raises(TooManyCoinsError, match=r"400 coins exceed the capacity of 350") as info:
        manager.assign_coins(COINS_400)

    assert "max_loops=7" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_assign_coins_when_a_coin_repeats_then_duplicate_coin_error() -> None:
    manager = EventLoopManager(coins_per_loop=5, max_loops=2)

    with pytest.raises(DuplicateCoinError, match="BTC"):
        manager.assign_coins(["BTC", "ETH", "BTC"])


def test_register_processor_when_coin_not_assigned_then_coin_not_assigned_error() -> None:
    manager = EventLoopManager(coins_per_loop=5, max_loops=2)
    manager.assign_coins(["BTC"])

    with pytest.raises(CoinNotAssignedError, match="DOGE"):
        manager.register_processor("DOGE", idle_processor)


def test_register_processor_when_not_async_then_type_error() -> None:
    manager = EventLoopManager(coins_per_loop=5, max_loops=2)
    manager.assign_coins(["BTC"])

    with pytest.raises(TypeError, match="async"):
        manager.register_processor("BTC", lambda coin: None)  # type: ignore[arg-type,return-value]


async def test_start_when_nothing_assigned_then_manager_state_error() -> None:
    manager = EventLoopManager()

    with pytest.raises(ManagerStateError, match="assign_coins"):
        await manager.start()


def test_backoff_delay_when_failures_grow_then_doubles_up_to_the_cap() -> None:
    delays = [backoff_delay(k, initial=0.1, maximum=1.0) for k in range(1, 7)]

    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff_delay(10_000, 0.1, 30.0) == 30.0


def test_report_processed_when_called_outside_a_manager_then_does_nothing() -> None:
    assert report_processed(3) is False
    assert current_coin() is None


# -- thread loops -----------------------------------------------------------------------------


async def test_start_when_processors_run_then_metrics_count_calls_and_loops_are_healthy() -> None:
    manager = EventLoopManager(coins_per_loop=50, max_loops=10, timeout_seconds=5)
    manager.assign_coins(COINS_400)
    calls: dict[str, int] = {}

    async def process_coin(coin: str) -> None:
        calls[coin] = calls.get(coin, 0) + 1
        await asyncio.sleep(0.01)

    for coin in COINS_400:
        manager.register_processor(coin, process_coin)

    await manager.start()
    await eventually(lambda: len(calls) == 400 and min(calls.values()) >= 2, what="every coin")
    metrics = manager.get_metrics()
    health = manager.health()
    report = await manager.stop(timeout=5.0)

    assert len(metrics) == 8
    assert all(m.running and m.healthy and m.errors == 0 for m in metrics.values())
    assert all(m.last_heartbeat is not None for m in metrics.values())
    assert sum(m.messages_processed for m in metrics.values()) >= 400  # first calls completed
    assert health.healthy
    assert report.clean
    assert not manager.running
    assert all(not m.running for m in manager.get_metrics().values())


async def test_start_when_loops_are_threads_then_each_loop_has_its_own_thread_and_loop() -> None:
    manager = EventLoopManager(coins_per_loop=2, max_loops=3)
    manager.assign_coins(["A", "B", "C", "D", "E", "F"])
    seen: dict[str, tuple[int, int]] = {}

    async def where(coin: str) -> None:
        seen[coin] = (threading.get_ident(), id(asyncio.get_running_loop()))
        await asyncio.sleep(0.01)

    for coin in "ABCDEF":
        manager.register_processor(coin, where)
    await manager.start()
    await eventually(lambda: len(seen) == 6)
    await manager.stop()

    per_loop = {loop_id: {seen[c] for c in coins} for loop_id, coins in manager.assignment.items()}
    assert all(len(places) == 1 for places in per_loop.values())
    assert len({next(iter(p)) for p in per_loop.values()}) == 3
    assert threading.get_ident() not in {t for t, _ in seen.values()}


async def test_processor_when_it_raises_then_errors_counted_and_restarted_with_backoff() -> None:
    manager = EventLoopManager(
        coins_per_loop=5, max_loops=1, restart_backoff_initial=0.05, restart_backoff_max=1.0
    )
    manager.assign_coins(["BTC"])
    started: list[float] = []

    async def flaky(coin: str) -> None:
        started.append(time.monotonic())
        if len(started) <= 3:
            raise ValueError(f"bad tick #{len(started)}")
        await asyncio.Event().wait()  # then runs forever

    manager.register_processor("BTC", flaky)
    await manager.start()
    await eventually(lambda: len(started) == 4, what="the fourth start")
    [metrics] = manager.get_metrics().values()
    await manager.stop()

    assert metrics.errors == 3
    assert metrics.restarts == 3
    assert metrics.last_error is not None
    assert "bad tick #3" in metrics.last_error
    gaps = [b - a for a, b in itertools.pairwise(started)]
    assert gaps[0] >= 0.05
    assert gaps[1] >= 0.10
    assert gaps[2] >= 0.20


async def test_processor_when_it_reports_progress_then_messages_processed_counts_it() -> None:
    manager = EventLoopManager(coins_per_loop=5, max_loops=2)
    manager.assign_coins(["BTC", "ETH"])
    coins_seen: set[str | None] = set()

    async def subscriber(coin: str) -> None:
        coins_seen.add(current_coin())
        for _ in range(100):
            await asyncio.sleep(0)
            report_processed()
        await asyncio.Event().wait()

    for coin in ("BTC", "ETH"):
        manager.register_processor(coin, subscriber)
    await manager.start()
    await eventually(lambda: total_processed(manager) == 200)
    await manager.stop()

    assert coins_seen == {"BTC", "ETH"}


async def test_processor_when_repeat_is_false_then_each_runs_once() -> None:
    manager = EventLoopManager(coins_per_loop=10, max_loops=2, repeat=False)
    manager.assign_coins([f"C{i}" for i in range(15)])
    calls: list[str] = []

    async def once(coin: str) -> None:
        calls.append(coin)

    for coin in manager.assignment[0] + manager.assignment[1]:
        manager.register_processor(coin, once)
    await manager.start()
    await eventually(lambda: total_processed(manager) == 15)
    await manager.stop()

    assert sorted(calls) == sorted(f"C{i}" for i in range(15))


async def test_get_metrics_when_a_loop_stalls_past_timeout_then_it_is_reported_unhealthy() -> None:
    manager = EventLoopManager(coins_per_loop=1, max_loops=2, timeout_seconds=0.2)
    manager.assign_coins(["BTC", "ETH"])
    release = threading.Event()

    async def blocks_its_loop(coin: str) -> None:
        release.wait(10)  # synchronous: nothing else on this loop runs meanwhile

    for coin in ("BTC", "ETH"):
        manager.register_processor(coin, blocks_its_loop if coin == "BTC" else idle_processor)
    await manager.start()
    stalled = manager.loop_of("BTC")
    await eventually(lambda: not manager.get_metrics()[stalled].healthy, what="the stall")
    metrics = manager.get_metrics()
    health = manager.health()
    release.set()
    await eventually(lambda: manager.health().healthy, what="recovery")
    await manager.stop()

    assert metrics[1 - stalled].healthy
    assert metrics[stalled].running
    assert metrics[stalled].heartbeat_age_seconds is not None
    assert metrics[stalled].heartbeat_age_seconds > 0.2
    assert not health.healthy
    assert list(health.unhealthy) == [stalled]
    assert "blocked" in health.unhealthy[stalled]


async def test_stop_when_processors_clean_up_then_their_finally_blocks_run() -> None:
    manager = EventLoopManager(coins_per_loop=5, max_loops=1)
    manager.assign_coins(["BTC", "ETH"])
    running: set[str] = set()
    cleaned: set[str] = set()

    async def with_cleanup(coin: str) -> None:
        running.add(coin)
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.01)  # async cleanup is allowed
            cleaned.add(coin)

    for coin in ("BTC", "ETH"):
        manager.register_processor(coin, with_cleanup)
    await manager.start()
    await eventually(lambda: running == {"BTC", "ETH"})
    report = await manager.stop(timeout=5.0)

    assert cleaned == {"BTC", "ETH"}
    assert report.clean


async def test_stop_when_a_processor_ignores_cancellation_then_forced_after_timeout() -> None:
    manager = EventLoopManager(coins_per_loop=5, max_loops=1)
    manager.assign_coins(["BTC"])
    cancels: list[int] = []
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def stubborn(coin: str) -> None:
        loop.call_soon_threadsafe(started.set)
        while True:
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                cancels.append(1)

    manager.register_processor("BTC", stubborn)
    await manager.start()
    await asyncio.wait_for(started.wait(), 10)
    t0 = time.monotonic()
    report = await manager.stop(timeout=0.3)
    took = time.monotonic() - t0

    assert report.forced == (0,)
    assert not report.clean
    assert len(cancels) > 1  # cancelled again and again until the timeout
    assert took < 10  # bounded by the timeout, not by the processor


async def test_start_when_already_running_then_manager_state_error() -> None:
    manager = EventLoopManager(coins_per_loop=5, max_loops=1)
    manager.assign_coins(["BTC"])
    manager.register_processor("BTC", idle_processor)
    await manager.start()

    with pytest.raises(ManagerStateError):
        await manager.start()
    with pytest.raises(ManagerStateError):
        manager.assign_coins(["ETH"])
    await manager.stop()


# -- process loops ----------------------------------------------------------------------------


async def test_start_when_executor_is_process_and_processor_is_a_closure_then_refused() -> None:
    manager = EventLoopManager(coins_per_loop=5, max_loops=1, executor="process")
    manager.assign_coins(["BTC"])

    async def closure(coin: str) -> None:
        await asyncio.sleep(0)

    manager.register_processor("BTC", closure)

    with pytest.raises(ProcessorNotPicklableError, match="module-level"):
        await manager.start()
    assert not manager.running


async def test_start_when_executor_is_process_then_loops_run_in_child_processes() -> None:
    manager = EventLoopManager(coins_per_loop=2, max_loops=2, executor="process", timeout_seconds=5)
    manager.assign_coins(["BTC", "ETH", "SOL"])
    for coin in ("BTC", "ETH", "SOL"):
        manager.register_processor(coin, streaming_processor)

    await manager.start()
    await eventually(lambda: all(m.messages_processed > 50 for m in manager.get_metrics().values()))
    metrics = manager.get_metrics()
    report = await manager.stop(timeout=5.0)

    pids = {m.pid for m in metrics.values()}
    assert len(pids) == 2
    assert os.getpid() not in pids
    assert all(m.healthy for m in metrics.values())
    assert report.clean


async def test_processor_when_it_raises_in_a_process_loop_then_errors_are_counted() -> None:
    manager = EventLoopManager(
        coins_per_loop=5, max_loops=1, executor="process", restart_backoff_initial=0.01
    )
    manager.assign_coins(["BTC"])
    manager.register_processor("BTC", failing_processor)

    await manager.start()
    await eventually(lambda: manager.get_metrics()[0].errors >= 3, what="three errors")
    [metrics] = manager.get_metrics().values()
    await manager.stop()

    assert metrics.restarts >= 2
    assert metrics.last_error is not None
    assert "boom in BTC" in metrics.last_error


async def test_get_metrics_when_a_loop_process_is_killed_then_unhealthy_then_restarted() -> None:
    manager = EventLoopManager(
        coins_per_loop=1,
        max_loops=2,
        executor="process",
        timeout_seconds=5,
        restart_backoff_initial=0.2,
    )
    manager.assign_coins(["BTC", "ETH"])
    for coin in ("BTC", "ETH"):
        manager.register_processor(coin, streaming_processor)
    await manager.start()
    victim = manager.get_metrics()[0]
    assert victim.pid is not None

    os.kill(victim.pid, signal.SIGKILL)

    def seen_dead() -> LoopMetrics | None:
        m = manager.get_metrics()[0]
        return m if not m.healthy else None

    def reborn_loop() -> LoopMetrics | None:
        m = manager.get_metrics()[0]
        return m if m.healthy and m.pid != victim.pid else None

    dead = await eventually(seen_dead, what="the death")
    reborn = await eventually(reborn_loop, what="the restart")
    await manager.stop()

    assert dead.phase == "dead"
    assert not dead.running
    assert reborn.restarts == 1
    assert reborn.errors == 1
    assert reborn.last_error is not None
    assert "exited with code -9" in reborn.last_error
    assert manager.get_metrics()[1].restarts == 0
