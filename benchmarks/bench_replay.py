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
d. **through Kafka**: the first ``N_KAFKA`` ticks (plus the pipeline benchmark's padding)
   published to a fresh market-data topic and processed by one ``faust -A huracan worker``
   (:func:`benchmarks.bench_pipeline.throughput_run`: ticks/s from the output records' broker
   timestamps, the run complete when the worker has made exactly the engine's decisions and
   executions, byte for byte).

The issue's goal for (b) is 500k ticks/s per core. Where the time goes: (b) split into its
parts per tick — the Parquet files read and merged into one Arrow table
(``read_archive_table(merge=True)``), that table turned into tick dicts (a minus that), and
the engine (c) — and cProfiles of the engine over ``N_PROFILE`` ticks and of the dict
conversion, top functions in ``results/replay_profile.txt``.

``HURACAN_BENCH_QUICK=1`` runs a smaller version for iterating (see :mod:`benchmarks.harness`).
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
    PAD,
    bench_config,
    expected_outputs,
    throughput_run,
)
from benchmarks.harness import QUICK, Report, results_dir
from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator
from huracan.storage.archive import ArchiveWriter
from huracan.storage.history import read_archive, read_archive_table
from huracan.wiring import build_engine

COINS = 400
#: quick mode (``HURACAN_BENCH_QUICK=1``, for iterating): fewer ticks, nothing saved
N = 60_000 if QUICK else 300_000
REPEATS = 3
N_KAFKA = 8_000 if QUICK else 30_000
N_PROFILE = 20_000 if QUICK else 60_000
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


def profile_call(
    run: Callable[[], Any], title: str, top: int = 25
) -> tuple[str, list[dict[str, Any]]]:
    """cProfile of ``run()``: (report text, top functions by self time)."""
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    text = io.StringIO()
    text.write(f"{title}; profiled total {total:.2f} s (cProfile slows calls down).\n\n")
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

        # where b's time goes: Parquet → merged Arrow table, table → dicts, the engine
        table_rate, table_s, table_all = _rate(
            lambda: read_archive_table(root, merge=True).num_rows
        )
        parts_us = {
            "parquet_to_merged_table": 1e6 / table_rate,
            "table_to_dicts": 1e6 / read - 1e6 / table_rate,
            "engine": 1e6 / eng,
        }

        profiled = ticks[:N_PROFILE]
        text, top_self = profile_call(
            lambda: replay(profiled, cfg),
            f"cProfile of engine.on_tick over {len(profiled):,} pre-materialised ticks "
            f"({COINS} coins)",
        )
        read_text, read_top = profile_call(
            lambda: count(read_archive(root, merge=True)),
            f"cProfile of read_archive(merge=True) over {N:,} ticks, iterated to the end",
            top=15,
        )
        (results_dir() / "replay_profile.txt").write_text(text + "\n\n" + read_text)

        # d. the same ticks (the first N_KAFKA, plus padding) through Kafka and one worker
        subset = ticks[: N_KAFKA + PAD]
        expected = expected_outputs(cfg, subset)
        run = throughput_run(subset, N_KAFKA, expected, workdir)
        ok &= run.ok

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
            "   (a's Parquet → merged Arrow table alone)",
            table_rate,
            table_s,
            vs(table_rate, read),
            "",
        )
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
            "d made exactly the engine's decisions/executions for its ticks, byte for byte "
            f"({expected.decisions:,} / {expected.executions:,})"
            if run.ok
            else f"WARNING: the worker's run differs from the engine: {run.parity}"
        )
        report.notes.append(
            "b per tick: "
            + ", ".join(f"{k.replace('_', ' ')} {v:.2f} µs" for k, v in parts_us.items())
            + f" (sum {sum(parts_us.values()):.2f} µs = {1e6 / sum(parts_us.values()):,.0f}/s)"
        )
        report.notes.append(
            "engine self time (cProfile, % of profiled): "
            + ", ".join(f"{r['function']} {r['self_pct']}" for r in top_self[:5])
            + f" — top functions in {results_dir() / 'replay_profile.txt'}"
        )
        report.notes.append(f"total benchmark time {time.perf_counter() - started:.0f} s")
        report.extra = {
            "ticks": N,
            "coins": COINS,
            "rates": {"a": read_all, "b": rr_all, "c": eng_all, "table": table_all},
            "b_per_tick_us": parts_us,
            "read_profile_top_self": read_top,
            "decisions": decisions,
            "executions": executions,
            "kafka": {
                "ticks": N_KAFKA,
                "coin_stage_rate": run.coin_stage_rate,
                "through_execution_rate": run.through_execution_rate,
                "drained": run.drained,
                "parity": run.parity,
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
