"""Sweep scaling: one grid of full backtests on 1, 2 and 4 local Dask workers.

Data: ``N`` MarketTicks for ``COINS`` coins from :class:`~huracan.simulate.MarketSimulator`
(seed 7), written by :class:`~huracan.storage.archive.ArchiveWriter` into a temporary archive.
The grid: ``POINTS`` points over a risk limit, a cost parameter and two exit rules; every point
replays the whole archive (:func:`huracan.research.tasks.sweep_point`).

Rows (same archive, same grid, same run):

* **in process**: :class:`~huracan.research.executor.SerialExecutor`, every point one after the
  other in this process — the reference;
* **Dask, k workers** for k in 1, 2, 4: :class:`~huracan.research.executor.DaskExecutor` over a
  ``LocalCluster`` of k single-threaded worker processes, started (and its workers connected)
  before the clock starts; wall time of ``run_sweep`` from submit to the last result.

``task s (mean)`` is the mean time one point took inside its task: constant while every worker
has a core to itself, growing when they share one. Speed-up is against Dask with one worker;
efficiency is speed-up / k. A sweep cannot scale past the machine's cores: the notes record
``os.cpu_count()`` and the load average at the start, since other processes share the cores.
Every run must give every point the in-process figures (checked, and noted).

``HURACAN_BENCH_QUICK=1`` runs a smaller version for iterating (see :mod:`benchmarks.harness`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import QUICK, Report
from huracan.config import build_config
from huracan.domain.universe import universe
from huracan.research.executor import DaskExecutor, SerialExecutor, TaskExecutor
from huracan.research.sweep import SweepResult, run_sweep
from huracan.simulate import MarketSimulator
from huracan.storage.archive import ArchiveWriter

COINS = 20
N = 12_000 if QUICK else 60_000
WORKERS = (1, 2, 4)
GRID: dict[str, list[Any]] = {
    "risk.per_coin_max_exposure_pct": [10.0, 40.0],
    "costs.min_edge_after_cost_bps": [2.0, 8.0],
    "exits.take_profit_bps": [15.0, 60.0],
    "exits.stop_loss_bps": [10.0, 30.0],
}
POINTS = 16


def _figures(result: SweepResult) -> list[tuple[Any, ...]]:
    return [
        (p["point_id"], p["pnl_net_usd"], p["trades_closed"], p["decisions"]) for p in result.points
    ]


def _task_s(result: SweepResult) -> float:
    """Mean seconds one point took inside its task: it grows when workers share a core."""
    return sum(float(p["seconds"]) for p in result.points) / len(result.points)


def _timed(executor: TaskExecutor, cfg: Any, root: Path) -> tuple[SweepResult, float]:
    t0 = time.perf_counter()
    result = run_sweep(cfg, executor, grid=GRID, root=root)
    return result, time.perf_counter() - t0


def main() -> int:
    started = time.perf_counter()
    load = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="huracan-bench-sweep-"))
    try:
        root = tmp / "archive"
        ArchiveWriter(root).write(
            list(MarketSimulator(universe(COINS), seed=7, rate=200.0).ticks(N))
        )
        cfg = build_config({}, environ={})
        report = Report(
            name="sweep",
            columns=[
                "executor",
                "workers",
                "points",
                "wall s",
                "points/s",
                "speed-up",
                "efficiency",
            ],
        )
        serial, serial_s = _timed(SerialExecutor(), cfg, root)
        assert len(serial.points) == POINTS
        report.add(
            "in process (serial)", 1, POINTS, serial_s, POINTS / serial_s, _task_s(serial), "", ""
        )
        expected = _figures(serial)
        same = True
        base_s: float | None = None
        walls: dict[int, float] = {}
        for k in WORKERS:
            with DaskExecutor(None, local_workers=k) as executor:
                executor.wait_for_workers(k)
                result, wall = _timed(executor, cfg, root)
            same &= _figures(result) == expected
            walls[k] = wall
            base_s = base_s or wall
            speed = base_s / wall
            report.add("Dask LocalCluster", k, POINTS, wall, POINTS / wall, f"{speed:.2f}x",
                       f"{speed / k:.0%}")  # fmt: skip
        report.notes.append(
            f"{N:,} ticks of {COINS} coins per point; {POINTS} points "
            f"({' × '.join(str(len(v)) for v in GRID.values())}); cluster start-up not timed"
        )
        report.notes.append(
            f"machine: {os.cpu_count()} CPUs, load average at start {load[0]:.1f} / "
            f"{load[1]:.1f} / {load[2]:.1f} (1/5/15 min): other processes share the cores"
        )
        report.notes.append(
            "every run gave every point the in-process figures"
            if same
            else "WARNING: a Dask run's figures differ from the in-process run"
        )
        report.notes.append(f"total benchmark time {time.perf_counter() - started:.0f} s")
        report.extra = {
            "ticks": N,
            "coins": COINS,
            "points": POINTS,
            "serial_s": serial_s,
            "dask_wall_s": walls,
            "cpus": os.cpu_count(),
            "loadavg_at_start": load,
            "parity": same,
        }
        report.emit()
        return 0 if same else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
