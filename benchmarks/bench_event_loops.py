"""Event loop manager: 400 coins of a CPU-bound processor — one loop vs thread loops vs process
loops, in one run, on every core of this machine.

The processor (:func:`cpu_tick`) is pure-Python arithmetic — a rolling mean and variance over a
window of prices, about a millisecond — standing in for feature computation. Each completed call
counts as one processed message. Rows:

- *baseline: one event loop* — the 400 processors as tasks of a single plain asyncio loop, no
  manager;
- *threads* — ``EventLoopManager(coins_per_loop=50, executor="thread")``: 8 loops, 8 threads;
- *processes* — the same with ``executor="process"``: 8 loops, 8 child processes.

Rates are steady-state: processed calls counted over a window after a warm-up, median of
``REPEATS`` runs. Expected: threads ~ the baseline (the GIL runs one thread's bytecode at a
time), processes ~ the number of cores times the baseline.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Literal

from benchmarks.harness import Report
from huracan.runtime import EventLoopManager

COINS = [f"C{i:03d}" for i in range(400)]
WINDOW_S = 2.0
WARMUP_S = 0.5
REPEATS = 3
PRICES = [50_000.0 + (i * 37 % 101) for i in range(400)]


def _work() -> float:
    mean = 0.0
    var = 0.0
    n = 0
    for price in PRICES:
        for _ in range(5):
            n += 1
            delta = price - mean
            mean += delta / n
            var += delta * (price - mean)
    return var / n


async def cpu_tick(coin: str) -> None:
    """One 'message' of CPU-bound work for ``coin`` (module-level: process loops import it)."""
    _work()


async def _baseline_rate() -> float:
    count = 0
    stop = False

    async def run(coin: str) -> None:
        nonlocal count
        while not stop:
            await cpu_tick(coin)
            count += 1
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(run(c)) for c in COINS]
    await asyncio.sleep(WARMUP_S)
    c0, t0 = count, time.perf_counter()
    await asyncio.sleep(WINDOW_S)
    rate = (count - c0) / (time.perf_counter() - t0)
    stop = True
    await asyncio.gather(*tasks)
    return rate


async def _manager_rate(executor: Literal["thread", "process"]) -> tuple[float, float]:
    manager = EventLoopManager(
        coins_per_loop=50, max_loops=10, timeout_seconds=30, executor=executor
    )
    manager.assign_coins(COINS)
    for coin in COINS:
        manager.register_processor(coin, cpu_tick)
    t_start = time.perf_counter()
    await manager.start()
    startup = time.perf_counter() - t_start

    def processed() -> int:
        return sum(m.messages_processed for m in manager.get_metrics().values())

    await asyncio.sleep(WARMUP_S)
    c0, t0 = processed(), time.perf_counter()
    await asyncio.sleep(WINDOW_S)
    rate = (processed() - c0) / (time.perf_counter() - t0)
    report = await manager.stop(timeout=10.0)
    if not report.clean:
        raise RuntimeError(f"{executor} loops did not stop cleanly: {report}")
    return rate, startup


async def run() -> Report:
    report = Report(
        "event_loops",
        ["mode", "loops", "calls/s (median)", "x baseline", "start s", "runs"],
    )
    base_runs = [await _baseline_rate() for _ in range(REPEATS)]
    base = statistics.median(base_runs)
    report.add("baseline: one event loop", 1, base, 1.0, "", [round(r) for r in base_runs])
    for executor in ("thread", "process"):
        results = [await _manager_rate(executor) for _ in range(REPEATS)]  # type: ignore[arg-type]
        rates = [r for r, _ in results]
        rate = statistics.median(rates)
        startup = statistics.median(s for _, s in results)
        report.add(
            f"EventLoopManager executor={executor}",
            8,
            rate,
            rate / base,
            startup,
            [round(r) for r in rates],
        )
    report.notes.append(
        f"400 coins, coins_per_loop=50; CPU-bound processor (~{_calls_ms():.2f} ms per call); "
        f"{os.cpu_count()} CPUs; steady-state rate over {WINDOW_S}s after {WARMUP_S}s warm-up, "
        f"median of {REPEATS} runs. Other work on the machine lowers every row alike."
    )
    return report


def _calls_ms() -> float:
    t0 = time.perf_counter()
    for _ in range(50):
        _work()
    return (time.perf_counter() - t0) / 50 * 1000


def main() -> int:
    report = asyncio.run(run())
    report.emit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
