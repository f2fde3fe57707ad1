"""Replaying history through the in-process engine, and what it adds up to.

:func:`replay_ticks` drives :func:`huracan.wiring.build_engine` — the same core, configured the
same way, as the Faust pipeline — over ticks in ``(ts, coin, seq)`` order, folding each cost
update before the first tick at or after its ``ts``. :func:`run_replay` loads the history and
replays it, :func:`run_backtest` adds the report, :func:`run_whatif` runs the same ticks under
two configs and compares them. Records the live pipeline would dead-letter are skipped and
counted in :class:`ReplayResult`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huracan.backtest.errors import EmptyBacktest
from huracan.backtest.report import (
    MARK_INTERVAL_US,
    SHARPE_MIN_PERIODS,
    BacktestReport,
    Mark,
    QuoteMarks,
    build_report,
)
from huracan.backtest.whatif import WhatIfDiff, compare_runs
from huracan.config import HuracanConfig
from huracan.domain.engine import EngineStats, TradingEngine
from huracan.domain.errors import CostError
from huracan.domain.features import FeatureError
from huracan.wiring import build_engine

if TYPE_CHECKING:
    from huracan.domain.signals import SignalModel
from huracan.backtest.arguments import TimeInput
from huracan.backtest.history_input import Source, load_cost_updates, load_ticks

if TYPE_CHECKING:
    from huracan.domain.signals import SignalModel

Models = Callable[[str], "SignalModel | None"]


@dataclass
class ReplayResult:
    """What one replay made, in the order the engine made it.

    ``decisions``/``executions``: the ``RiskDecision``/``Execution`` records, exactly as the
    pipeline would write them. ``requests``: trade requests made (OPEN and CLOSE). ``ticks``:
    ticks replayed (duplicates included, invalid ones not); ``coins``: the coins ticked,
    sorted; ``start_us``/``end_us``: the first and last tick's ``ts``; ``last_quotes``: each
    coin's last ``(bid, ask)``; ``cost_rejections``: signals the cost check dropped, by
    reason; ``funding_rate_bps``: each coin's funding rate at the end (from cost updates);
    ``cost_updates``: cost updates folded; ``invalid_*``: records skipped as the pipeline
    would dead-letter them.
    """

    decisions: list[dict[str, Any]]
    executions: list[dict[str, Any]]
    requests: int
    stats: EngineStats
    ticks: int
    coins: tuple[str, ...]
    start_us: int
    end_us: int
    last_quotes: dict[str, tuple[float, float]]
    cost_rejections: dict[str, int]
    funding_rate_bps: dict[str, float] = field(default_factory=dict)
    #: each coin's funding rate changes ``(ts_us, rate_bps)`` as folded (the report charges
    #: the rate in force over each trade's life)
    funding_schedule: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    #: price marks for the mark-to-market equity curve (each coin's last quote per second)
    marks: list[Mark] = field(default_factory=list)
    cost_updates: int = 0
    invalid_ticks: int = 0
    invalid_cost_updates: int = 0

    @property
    def decisions_by_outcome(self) -> dict[str, int]:
        """Decisions counted by outcome (APPROVE, THROTTLE, BLOCK, in that order first)."""
        counts = Counter(str(d["decision"]) for d in self.decisions)
        out = {k: counts.pop(k, 0) for k in ("APPROVE", "THROTTLE", "BLOCK")}
        out.update(sorted(counts.items()))
        return out

    def summary(self) -> dict[str, Any]:
        """The counts as JSON-ready data (``huracan replay --json``)."""
        return {
            "ticks": self.ticks,
            "duplicate_ticks": self.stats.duplicate_ticks,
            "invalid_ticks": self.invalid_ticks,
            "coins": len(self.coins),
            "start_us": self.start_us,
            "end_us": self.end_us,
            "cost_updates": self.cost_updates,
            "invalid_cost_updates": self.invalid_cost_updates,
            "features": self.stats.features,
            "signals": self.stats.signals,
            "cost_rejections": dict(sorted(self.cost_rejections.items())),
            "requests": self.requests,
            "decisions": len(self.decisions),
            "decisions_by_outcome": self.decisions_by_outcome,
            "decisions_by_reason": dict(sorted(self.stats.decision_reasons.items())),
            "executions": len(self.executions),
            "execution_errors": self.stats.execution_errors,
        }


def new_engine(cfg: HuracanConfig, models: Models | None = None) -> TradingEngine:
    """:func:`huracan.wiring.build_engine` for ``cfg``, serving ``models`` (coin → model or
    ``None`` for the baseline) when given."""
    return build_engine(cfg, models=models)


def replay_ticks(
    cfg: HuracanConfig,
    ticks: Iterable[Mapping[str, Any]],
    *,
    models: Models | None = None,
    cost_updates: Iterable[Mapping[str, Any]] | None = None,
) -> ReplayResult:
    """Replay ``ticks`` (in ``(ts, coin, seq)`` order) through a fresh engine for ``cfg``.

    Steps:

    1. build the engine (:func:`new_engine`);
    2. for each tick: fold the ``cost_updates`` (sorted by ``ts``) with a ``ts`` at or before
       the tick's; then ``on_tick``, collecting the decisions and executions it releases. A
       tick or cost update the domain rejects as invalid (bad quote or volume, unknown cost
       kind: :class:`FeatureError`, :class:`CostError`) is skipped and counted, as the coin
       agent dead-letters it;
    3. ``finish()``: decide every request still held.

    Raises :class:`EmptyBacktest` when ``ticks`` is empty; whatever iterating ``ticks``
    raises (the history readers' errors); and any other error of the engine or a model as is
    (live dead-letters a tick whose model raises; a replay stops on it). An invalid tick
    releases nothing: ``on_tick`` validates it before it decides what the tick's time
    releases, so skipping it loses no decision.
    """
    engine = new_engine(cfg, models)
    updates = iter(sorted(cost_updates or (), key=lambda r: r["ts"]))
    pending = next(updates, None)
    decisions: list[dict[str, Any]] = []
    executions: list[dict[str, Any]] = []
    quotes: dict[str, tuple[float, float]] = {}
    first_us: int | None = None
    last_us: int | None = None
    folded = bad_ticks = bad_updates = 0
    schedule: dict[str, list[tuple[int, float]]] = {}
    marks = QuoteMarks(MARK_INTERVAL_US)
    for tick in ticks:
        ts = int(tick["ts"])
        while pending is not None and pending["ts"] <= ts:
            try:
                engine.on_cost_update(pending)
                folded += 1
                if pending["kind"] == "FUNDING":
                    schedule.setdefault(str(pending["coin"]), []).append(
                        (int(pending["ts"]), float(pending["funding_rate_bps"]))
                    )
            except CostError:
                bad_updates += 1
            pending = next(updates, None)
        try:
            out = engine.on_tick(tick)
        except (FeatureError, CostError):
            bad_ticks += 1
            continue
        if out.decisions:
            decisions += out.decisions
        if out.executions:
            executions += out.executions
        if out.features is not None:
            quotes[str(tick["coin"])] = (float(tick["bid"]), float(tick["ask"]))
            marks.add(ts, str(tick["coin"]), float(tick["bid"]), float(tick["ask"]))
        first_us = ts if first_us is None else min(first_us, ts)
        last_us = ts if last_us is None else max(last_us, ts)
    out = engine.finish()
    decisions += out.decisions
    executions += out.executions
    stats = engine.stats
    if first_us is None or last_us is None:
        raise EmptyBacktest(
            "no ticks to replay" + (f" ({bad_ticks} invalid ticks skipped)" if bad_ticks else "")
        )
    funding: dict[str, float] = {}
    for coin in engine.costs.symbols():
        rate = engine.costs.funding_rate(coin)
        if rate is not None:
            funding[coin] = rate
    return ReplayResult(
        decisions=decisions,
        executions=executions,
        requests=stats.requests,
        stats=stats,
        ticks=stats.ticks - bad_ticks,
        coins=tuple(sorted(engine.feature_state)),
        start_us=first_us,
        end_us=last_us,
        last_quotes=quotes,
        cost_rejections=dict(stats.cost_rejections),
        funding_rate_bps=funding,
        funding_schedule=schedule,
        marks=marks.marks(),
        cost_updates=folded,
        invalid_ticks=bad_ticks,
        invalid_cost_updates=bad_updates,
    )


def report_for(
    cfg: HuracanConfig, result: ReplayResult, *, sharpe_min_periods: int | None = None
) -> BacktestReport:
    """The :class:`BacktestReport` of ``result``: starting equity ``engine.equity_usd``,
    funding at the rates in force (``result.funding_schedule``) per
    ``engine.cost_model.funding_interval_hours``, equity marked to market at ``result.marks``."""
    return build_report(
        decisions=result.decisions,
        executions=result.executions,
        equity_usd=cfg.engine.equity_usd,
        start_us=result.start_us,
        end_us=result.end_us,
        ticks=result.ticks,
        coins=result.coins,
        funding_rates=result.funding_schedule,
        funding_interval_hours=cfg.engine.cost_model.funding_interval_hours,
        cost_rejections=result.cost_rejections,
        last_quotes=result.last_quotes,
        marks=result.marks,
        mark_interval_us=MARK_INTERVAL_US,
        sharpe_min_periods=SHARPE_MIN_PERIODS if sharpe_min_periods is None else sharpe_min_periods,
    )


def _history(
    cfg: HuracanConfig,
    source: Source | str,
    root: str | Path | None,
    coins: str | Iterable[str] | None,
    start: TimeInput,
    end: TimeInput,
    start_offsets: Mapping[int, int] | None,
    cost_updates: bool,
    topic_options: Mapping[str, Any] | None,
) -> tuple[Iterator[dict[str, Any]], list[dict[str, Any]]]:
    ticks = load_ticks(
        cfg, source=source, root=root, coins=coins, start=start, end=end,
        start_offsets=start_offsets, topic_options=topic_options,
    )  # fmt: skip
    costs: list[dict[str, Any]] = []
    if cost_updates:
        costs = load_cost_updates(
            cfg, source=source, root=root, coins=coins, end=end, topic_options=topic_options
        )
    return ticks, costs


def run_replay(
    cfg: HuracanConfig,
    *,
    source: Source | str = "archive",
    root: str | Path | None = None,
    coins: str | Iterable[str] | None = None,
    start: TimeInput = None,
    end: TimeInput = None,
    start_offsets: Mapping[int, int] | None = None,
    cost_updates: bool = True,
    models: Models | None = None,
    topic_options: Mapping[str, Any] | None = None,
) -> ReplayResult:
    """Replay the history :func:`load_ticks` selects (plus, with ``cost_updates``, the
    recorded cost updates: :func:`load_cost_updates`) through the engine for ``cfg``.

    Raises what :func:`load_ticks`, :func:`load_cost_updates` and :func:`replay_ticks` raise.
    """
    ticks, costs = _history(
        cfg, source, root, coins, start, end, start_offsets, cost_updates, topic_options
    )
    return replay_ticks(cfg, ticks, models=models, cost_updates=costs)


def run_backtest(
    cfg: HuracanConfig,
    *,
    source: Source | str = "archive",
    root: str | Path | None = None,
    coins: str | Iterable[str] | None = None,
    start: TimeInput = None,
    end: TimeInput = None,
    start_offsets: Mapping[int, int] | None = None,
    cost_updates: bool = True,
    models: Models | None = None,
    topic_options: Mapping[str, Any] | None = None,
) -> tuple[ReplayResult, BacktestReport]:
    """:func:`run_replay` and its report (:func:`report_for`).

    Raises what :func:`run_replay` raises, and :class:`InvalidBacktestInput` from the report
    for unusable records.
    """
    result = run_replay(
        cfg, source=source, root=root, coins=coins, start=start, end=end,
        start_offsets=start_offsets, cost_updates=cost_updates, models=models,
        topic_options=topic_options,
    )  # fmt: skip
    return result, report_for(cfg, result)


@dataclass(frozen=True)
class WhatIfRun:
    """Two replays of the same ticks and their comparison."""

    base: ReplayResult
    base_report: BacktestReport
    other: ReplayResult
    other_report: BacktestReport
    diff: WhatIfDiff


def run_whatif(
    cfg: HuracanConfig,
    other_cfg: HuracanConfig,
    *,
    source: Source | str = "archive",
    root: str | Path | None = None,
    coins: str | Iterable[str] | None = None,
    start: TimeInput = None,
    end: TimeInput = None,
    start_offsets: Mapping[int, int] | None = None,
    cost_updates: bool = True,
    models: Models | None = None,
    topic_options: Mapping[str, Any] | None = None,
    examples: int = 10,
    base_label: str = "configured",
    other_label: str = "what-if",
) -> WhatIfRun:
    """Replay the same history (arguments as :func:`run_backtest`) under ``cfg`` and under
    ``other_cfg``, and compare the two runs (:func:`~huracan.backtest.whatif.compare_runs`).

    The ticks and cost updates are read once, held in memory, and replayed through two
    engines. Reading (topic, universe check) follows ``cfg``; ``other_cfg`` should differ in
    engine settings only (limits, costs, equity). Raises what :func:`run_backtest` raises.
    """
    tick_iter, costs = _history(
        cfg, source, root, coins, start, end, start_offsets, cost_updates, topic_options
    )
    ticks = list(tick_iter)
    base = replay_ticks(cfg, ticks, models=models, cost_updates=costs)
    other = replay_ticks(other_cfg, ticks, models=models, cost_updates=costs)
    base_report, other_report = report_for(cfg, base), report_for(other_cfg, other)
    diff = compare_runs(
        base.decisions,
        base_report,
        other.decisions,
        other_report,
        examples=examples,
        base_label=base_label,
        other_label=other_label,
    )
    return WhatIfRun(base, base_report, other, other_report, diff)
