"""Replay throughput: archive → engine in process, the engine alone, and the Kafka pipeline.

Data: ``N`` MarketTicks for 400 coins from :class:`~huracan.simulate.MarketSimulator` (seed 7),
written by :class:`~huracan.storage.archive.ArchiveWriter` into a temporary archive.

Paths (same ticks, same run):

a. **read limit**: ``read_archive(root, merge=True)`` iterated to the end — the Parquet files
   decoded into tick dicts in ``(ts, coin, seq)`` order, nothing else; every other path is
   compared with it;
b. **read + replay**: the same iterator fed to ``build_engine(cfg).on_tick``, then
   ``engine.finish()`` (what a backtest from the archive does);
c. **engine alone**: ``on_tick`` over ticks already in a list (the core's own cost);
d. **through Kafka**: the first ``N_KAFKA`` ticks published to a fresh market-data topic and
   processed by one ``faust -A huracan worker`` (see :mod:`benchmarks.bench_pipeline`, whose
   throughput run this reuses: ticks/s from the output records' broker timestamps, the run
   complete when the worker has made exactly the engine's decisions and executions).

The issue's goal for (b) is 500k ticks/s per core. Where the time goes: a cProfile of (c)
over ``N_PROFILE`` ticks, top-25 functions in ``results/replay_profile.txt``.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchmarks.bench_pipeline import (
    bench_config,
    expected_outputs,
    throughput_run,
)
from benchmarks.harness import RESULTS_DIR, Report
from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator
from huracan.storage.archive import ArchiveWriter
from huracan.storage.history import read_archive
from huracan.wiring import build_engine

N = 300_000
COINS = 400
REPEATS = 3
N_KAFKA = 30_000
N_PROFILE = 60_000
GOAL = 500_000.0


def _rate(run: Callable[[], int], repeats: int = REPEATS) -> tuple[float, float, list[float]]:
    """(median ticks/s, median seconds, every rate) over ``repeats`` runs of ``run``."""
    rates, secs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = run()
        dt = time.perf_counter() - t0
        rates.append(n / dt)
        secs.append(dt)
    return statistics.median(rates), statistics.median(secs), rates


def replay(ticks: Iterable[dict[str, Any]], cfg: Any) -> tuple[int, int, int]:
    """Feed ``ticks`` to a fresh engine and finish it: (ticks, decisions, executions)."""
    engine = build_engine(cfg)
    on_tick = engine.on_tick
    n = decisions = executions = 0
    for tick in ticks:
        out = on_tick(tick)
        n += 1
        if out.decisions:
            decisions += len(out.decisions)
            executions += len(out.executions)
    out = engine.finish()
    return n, decisions + len(out.decisions), executions + len(out.executions)


def profile_engine(ticks: list[dict[str, Any]], cfg: Any, top: int = 25) -> tuple[str, list[Any]]:
    """cProfile of :func:`replay` over ``ticks``: (report text, top functions by self time)."""
    profiler = cProfile.Profile()
    profiler.enable()
    replay(ticks, cfg)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    text = io.StringIO()
    text.write(
        f"cProfile of engine.on_tick over {len(ticks):,} pre-materialised ticks "
        f"({COINS} coins); profiled total {total:.2f} s (cProfile roughly doubles the time).\n\n"
    )
    for order in ("cumulative", "tottime"):
        text.write(f"--- top {top} by {order} ---\n")
        pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(top)
    rows = sorted(
        stats.stats.items(),  # type: ignore[attr-defined]
        key=lambda kv: kv[1][2],
        reverse=True,
    )[:10]
    summary = [
        {
            "function": f"{func[2]} ({Path(func[0]).name}:{func[1]})",
            "self_pct": round(100 * st[2] / total, 1),
            "cumulative_pct": round(100 * st[3] / total, 1),
            "calls": st[1],
        }
        for func, st in rows
    ]
    return text.getvalue(), summary


def main() -> int:
    started = time.perf_counter()
    cfg = bench_config("bench-replay")
    ticks = list(MarketSimulator(universe(COINS), seed=7).ticks(N))
    workdir = Path(tempfile.mkdtemp(prefix="huracan-bench-replay-"))
    root = workdir / "archive"
    report = Report("replay", ["path", "ticks/s (median)", "seconds", "vs read limit", "vs goal"])
    ok = True
    try:
        ArchiveWriter(root).write(ticks)

        def count(it: Iterable[Any]) -> int:
            n = 0
            for _ in it:
                n += 1
            return n

        read, read_s, read_all = _rate(lambda: count(read_archive(root, merge=True)))
        results: dict[str, tuple[int, int, int]] = {}

        def read_replay() -> int:
            results["b"] = replay(read_archive(root, merge=True), cfg)
            return results["b"][0]

        def engine_only() -> int:
            results["c"] = replay(ticks, cfg)
            return results["c"][0]

        rr, rr_s, rr_all = _rate(read_replay, repeats=2)
        eng, eng_s, eng_all = _rate(engine_only, repeats=2)
        same = results["b"] == results["c"]
        ok &= same

        text, top_self = profile_engine(ticks[:N_PROFILE], cfg)
        (RESULTS_DIR / "replay_profile.txt").write_text(text)

        # d. the same ticks (the first N_KAFKA) through Kafka and one worker
        subset = ticks[:N_KAFKA]
        expected = expected_outputs(cfg, subset)
        run = throughput_run(subset, expected, workdir)
        ok &= run.drained

        def vs(rate: float, base: float) -> str:
            return f"{rate / base:.3f}x"

        report.add("a. read_archive(merge=True) → dicts (read limit)", read, read_s, "1.00x", "")
        report.add(
            "b. read + replay through build_engine().on_tick",
            rr,
            rr_s,
            vs(rr, read),
            vs(rr, GOAL),
        )
        report.add("c. engine.on_tick alone (ticks in a list)", eng, eng_s, vs(eng, read), "")
        report.add(
            f"d. Kafka + faust worker ({N_KAFKA:,} ticks, through execution)",
            run.through_execution_rate,
            run.seconds,
            vs(run.through_execution_rate, read),
            "",
        )
        _, decisions, executions = results["c"]
        report.notes.append(
            f"{N:,} ticks, {COINS} coins; a: median of {REPEATS} runs, b/c: of 2; one core each "
            f"(d: the worker's process). The goal for b is {GOAL:,.0f} ticks/s per core."
        )
        report.notes.append(
            f"b and c made the same {decisions:,} decisions and {executions:,} executions"
            if same
            else f"WARNING: b and c differ: {results['b']} vs {results['c']}"
        )
        report.notes.append(
            "d made exactly the engine's decisions/executions for its ticks "
            f"({expected.decisions:,} / {expected.executions:,})"
            if run.drained
            else f"WARNING: the worker did not finish its {N_KAFKA:,} ticks: {run.counts}"
        )
        report.notes.append(
            "engine self time (cProfile, % of profiled): "
            + ", ".join(f"{r['function']} {r['self_pct']}" for r in top_self[:5])
            + " — top-25 in benchmarks/results/replay_profile.txt"
        )
        report.notes.append(f"total benchmark time {time.perf_counter() - started:.0f} s")
        report.extra = {
            "ticks": N,
            "coins": COINS,
            "rates": {"a": read_all, "b": rr_all, "c": eng_all},
            "decisions": decisions,
            "executions": executions,
            "kafka": {
                "ticks": N_KAFKA,
                "coin_stage_rate": run.coin_stage_rate,
                "through_execution_rate": run.through_execution_rate,
                "drained": run.drained,
                "counts": run.counts,
            },
            "engine_profile_top_self": top_self,
            "goal_ticks_per_s": GOAL,
        }
        report.emit()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
