"""``huracan retrain``: refit each coin's candidate models walk-forward, test them out of
sample, register them, and promote one only when it beats what the coin trades now.

The fit (docs/research.md has the reasoning):

* **Walk-forward windows** (:func:`walk_forward_windows`): ``[start, end)`` is cut into
  ``folds + 1`` equal blocks; fold ``k`` trains on block ``k`` and is tested on block ``k + 1``.
  Test windows never overlap and always follow their training window.
* **Candidates**, one per model family the registry knows, fitted on each training window by
  :func:`huracan.research.tasks.fit_candidate`: ``momentum`` (the baseline rule; ``entry_z``
  chosen from the ``research.momentum_entry_z`` grid by in-sample net PnL) and ``linear``
  (ridge regression of the next ``research.linear_horizon_ticks`` ticks' return on the
  features, then ``entry_z`` from ``research.linear_entry_z`` the same way).
* **Out of sample**, every fold's fitted candidate and the coin's **incumbent** — its active
  registry model, or the built-in baseline when it has none — are backtested on the fold's
  test window with the engine (:func:`huracan.research.tasks.evaluate_model`), coin by coin.
  The folds' figures are pooled (:func:`pool_folds`).
* **Registered** (unless ``dry_run``): each family's fit on the *last* training window, the
  most recent one, inactive, with its pooled out-of-sample figures as ``sharpe_ratio``,
  ``win_rate`` and ``performance_metrics``, the last training window's regime, and the
  artifact's sha256 (recorded by the registry).
* **Promoted** (:func:`promotion_decision`): the coin's best candidate by out-of-sample Sharpe,
  when it beats the incumbent's by more than ``research.promotion_margin_sharpe`` with at
  least ``research.promotion_min_trades`` trades closed. Promotion activates it and
  deactivates the coin's other active versions, so a worker's next
  :meth:`~huracan.models.RegistryModels.refresh` serves it.

Every fit and evaluation is a task on the executor: ``coins × folds × 2`` fits, then
``coins × folds × 3`` evaluations. The registry is touched by this process only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from rich.console import Console
from rich.table import Table

from huracan.backtest.errors import InvalidBacktestInput
from huracan.config import HuracanConfig
from huracan.models.artifact import dump_artifact, parse_artifact
from huracan.models.errors import ModelArtifactError
from huracan.models.loader import register_model_artifact
from huracan.research.errors import InvalidPeriod
from huracan.research.executor import TaskExecutor, keyed
from huracan.research.tasks import evaluate_model, fit_candidate
from huracan.storage.errors import ModelIntegrityError, ModelNotFound
from huracan.wiring import coin_sectors

if TYPE_CHECKING:
    from huracan.storage.model_registry import ModelRegistry

FAMILIES: Final = ("momentum", "linear")
INCUMBENT: Final = "incumbent"
#: the fit method, recorded with every registered candidate
FIT_METHOD: Final = "walk-forward grid (momentum) / ridge + grid (linear), v1"

#: (phase, done, total) — phase is "fit" or "evaluate"
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Window:
    """One walk-forward fold: train on ``[train_start, train_end)``, test on
    ``[test_start, test_end)`` (epoch µs); ``train_end == test_start``."""

    fold: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int

    def to_dict(self) -> dict[str, int]:
        return {
            "fold": self.fold,
            "train_start": self.train_start,
            "train_end": self.train_end,
            "test_start": self.test_start,
            "test_end": self.test_end,
        }


def walk_forward_windows(start_us: int, end_us: int, folds: int) -> list[Window]:
    """``folds`` rolling windows over ``[start_us, end_us)`` (see the module docstring).

    Blocks are ``(end − start) // (folds + 1)`` µs long; the last test window ends at
    ``end_us`` (it takes the remainder). Raises :class:`InvalidPeriod` for ``folds < 1``, an
    empty period or one shorter than ``folds + 1`` µs."""
    if folds < 1:
        raise InvalidPeriod(f"folds must be >= 1, got {folds}")
    if end_us <= start_us:
        raise InvalidPeriod(f"the period is empty: start {start_us} is not before end {end_us}")
    block = (end_us - start_us) // (folds + 1)
    if block < 1:
        raise InvalidPeriod(f"the period ({end_us - start_us} µs) is too short for {folds} folds")
    out = []
    for k in range(folds):
        t0 = start_us + k * block
        out.append(
            Window(
                fold=k,
                train_start=t0,
                train_end=t0 + block,
                test_start=t0 + block,
                test_end=end_us if k == folds - 1 else t0 + 2 * block,
            )
        )
    return out


def pool_folds(folds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The out-of-sample figures of several test windows as one.

    ``pnl_net_usd``, ``fees_usd``, ``trades_closed``, ``trades_won``, ``decisions`` and
    ``ticks`` add up; ``win_rate = trades_won / trades_closed`` (``None`` without trades);
    ``max_drawdown_pct`` is the worst fold's; ``sharpe`` is the mean of the folds' Sharpe
    ratios, a fold without one (no trades, flat equity) counting as 0 — ``None`` only when no
    fold has one."""
    n = len(folds)
    closed = sum(int(f.get("trades_closed") or 0) for f in folds)
    won = sum(int(f.get("trades_won") or 0) for f in folds)
    sharpes = [f.get("sharpe") for f in folds]
    any_sharpe = any(s is not None for s in sharpes)
    return {
        "folds": n,
        "pnl_net_usd": sum(float(f.get("pnl_net_usd") or 0.0) for f in folds),
        "fees_usd": sum(float(f.get("fees_usd") or 0.0) for f in folds),
        "trades_closed": closed,
        "trades_won": won,
        "win_rate": (won / closed) if closed else None,
        "max_drawdown_pct": max(
            (float(f.get("max_drawdown_pct") or 0.0) for f in folds), default=0.0
        ),
        "sharpe": (sum(float(s) for s in sharpes if s is not None) / n) if any_sharpe else None,
        "decisions": sum(int(f.get("decisions") or 0) for f in folds),
        "ticks": sum(int(f.get("ticks") or 0) for f in folds),
    }


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str


def promotion_decision(
    candidate: Mapping[str, Any],
    incumbent: Mapping[str, Any],
    *,
    margin: float,
    min_trades: int,
) -> PromotionDecision:
    """Promote ``candidate`` over ``incumbent`` (pooled out-of-sample figures)?

    Rules, first match wins:

    1. the candidate has no Sharpe ratio (no trades) → no;
    2. it closed fewer than ``min_trades`` trades → no;
    3. its Sharpe exceeds the incumbent's (``None`` counts as 0) by more than ``margin`` →
       yes;
    4. otherwise → no.
    """
    s = candidate.get("sharpe")
    if s is None or not math.isfinite(float(s)):
        return PromotionDecision(False, "no trades out of sample")
    trades = int(candidate.get("trades_closed") or 0)
    if trades < min_trades:
        return PromotionDecision(False, f"{trades} trades < {min_trades}")
    inc = incumbent.get("sharpe")
    inc_s = float(inc) if inc is not None and math.isfinite(float(inc)) else 0.0
    lead = float(s) - inc_s
    if lead > margin:
        return PromotionDecision(True, f"Sharpe lead {lead:.2f} > {margin:g}")
    return PromotionDecision(False, f"Sharpe lead {lead:.2f} <= {margin:g}")


@dataclass
class CandidateRow:
    """One coin's candidate of one family: its fit, figures and fate."""

    coin: str
    family: str
    params: dict[str, Any] | None
    regime: str
    oos: dict[str, Any]
    folds: list[dict[str, Any]]
    version: int | None = None
    sha256: str | None = None
    promoted: bool = False
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "coin": self.coin,
            "family": self.family,
            "params": self.params,
            "regime": self.regime,
            "oos": self.oos,
            "folds": self.folds,
            "version": self.version,
            "sha256": self.sha256,
            "promoted": self.promoted,
            "reason": self.reason,
        }


@dataclass
class RetrainResult:
    windows: list[Window]
    candidates: list[CandidateRow]
    incumbents: dict[str, dict[str, Any]]
    dry_run: bool
    workers: int
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def promoted(self) -> list[CandidateRow]:
        return [c for c in self.candidates if c.promoted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "workers": self.workers,
            "seconds": self.seconds,
            "fit_method": FIT_METHOD,
            "windows": [w.to_dict() for w in self.windows],
            "incumbents": self.incumbents,
            "candidates": [c.to_dict() for c in self.candidates],
            **self.extra,
        }


def artifact_params(model_type: str, params: object) -> dict[str, Any]:
    """The JSON params of an artifact (as the registry file holds them)."""
    doc = json.loads(dump_artifact(model_type, params))
    return dict(doc["params"])


def check_coins(cfg: HuracanConfig, coins: Sequence[str]) -> None:
    """Raise :class:`InvalidBacktestInput` naming the coins outside the configured universe
    (the engine cannot replay them), before any task runs."""
    known = coin_sectors(cfg)
    unknown = [c for c in coins if c not in known]
    if unknown:
        raise InvalidBacktestInput(
            f"unknown coin(s) {', '.join(unknown)}: not in the universe of "
            f"engine.max_coins={cfg.engine.max_coins} coins"
        )


def incumbent_model(registry: ModelRegistry | None, coin: str) -> tuple[str, dict[str, Any] | None]:
    """The coin's model a worker serves now: ``(label, {"type", "params"})`` of its best
    active registry version that loads, or ``("baseline", None)``."""
    if registry is None:
        return "baseline", None
    for meta in registry.get_active_models(coin=coin, limit=None):
        try:
            artifact = parse_artifact(registry.load_model_bytes(coin, meta.version))
        except (ModelIntegrityError, ModelNotFound, ModelArtifactError):
            continue
        label = f"{coin}:{artifact.model_type}@{meta.version}"
        return label, {
            "type": artifact.model_type,
            "params": artifact_params(artifact.model_type, artifact.params),
        }
    return "baseline", None


def run_retrain(
    cfg: HuracanConfig,
    executor: TaskExecutor,
    registry: ModelRegistry | None,
    *,
    root: str | Path,
    coins: Sequence[str],
    start: int,
    end: int,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> RetrainResult:
    """Retrain ``coins`` on ``[start, end)`` of the archive at ``root`` (module docstring).

    ``registry`` is read for the incumbents and written unless ``dry_run`` (``None``: the
    incumbent is the baseline and nothing is registered — ``dry_run`` must then be true).
    Raises :class:`InvalidPeriod`, the executor's :class:`~huracan.research.errors.TaskFailed`
    and the registry's errors."""
    if registry is None and not dry_run:
        raise ValueError("a retrain that registers needs a registry")
    if not coins:
        raise InvalidPeriod("no coins to retrain")
    check_coins(cfg, coins)
    r = cfg.research
    windows = walk_forward_windows(start, end, r.folds)
    # the incumbents first: an unreachable registry fails before any task runs
    incumbents = {coin: incumbent_model(registry, coin) for coin in coins}
    base = cfg.redacted()
    archive = str(Path(root).resolve())

    def spec(coin: str, lo: int, hi: int, **more: Any) -> dict[str, Any]:
        return {"root": archive, "coin": coin, "start": lo, "end": hi, "config": base, **more}

    def step(phase: str) -> Callable[[str, dict[str, Any], int, int], None] | None:
        if progress is None:
            return None
        return lambda _k, _r, n, total: progress(phase, n, total)

    # 1. fit every family on every training window
    fits = executor.run(
        fit_candidate,
        keyed(
            (
                f"{coin}.{fam}.{w.fold}",
                spec(coin, w.train_start, w.train_end, family=fam, key=f"{coin}.{fam}.{w.fold}"),
            )
            for coin in coins
            for fam in FAMILIES
            for w in windows
        ),
        on_done=step("fit"),
    )
    # 2. test every fitted candidate and the incumbent on every test window
    evals_in: list[tuple[str, dict[str, Any]]] = []
    for coin in coins:
        for w in windows:
            for fam in FAMILIES:
                params = fits[f"{coin}.{fam}.{w.fold}"]["params"]
                if params is not None:
                    key = f"{coin}.{fam}.{w.fold}"
                    evals_in.append((key, spec(coin, w.test_start, w.test_end, key=key,
                                               model={"type": fam, "params": params})))  # fmt: skip
            key = f"{coin}.{INCUMBENT}.{w.fold}"
            evals_in.append(
                (key, spec(coin, w.test_start, w.test_end, key=key, model=incumbents[coin][1]))
            )
    evals = executor.run(evaluate_model, keyed(evals_in), on_done=step("evaluate"))

    # 3. pool the folds, register, promote
    last = windows[-1].fold
    rows: list[CandidateRow] = []
    incumbent_out: dict[str, dict[str, Any]] = {}
    for coin in coins:
        inc_folds = [evals[f"{coin}.{INCUMBENT}.{w.fold}"] for w in windows]
        inc = pool_folds(inc_folds)
        incumbent_out[coin] = {"model": incumbents[coin][0], "oos": inc}
        coin_rows: list[CandidateRow] = []
        for fam in FAMILIES:
            final = fits[f"{coin}.{fam}.{last}"]
            folds = [evals[k] for w in windows if (k := f"{coin}.{fam}.{w.fold}") in evals]
            row = CandidateRow(
                coin=coin, family=fam, params=final["params"], regime=final["regime"],
                oos=pool_folds(folds) if folds else pool_folds([]), folds=folds,
            )  # fmt: skip
            if final["params"] is None:
                row.reason = "too little data to fit on the last training window"
            coin_rows.append(row)
        fitted = [c for c in coin_rows if c.params is not None]
        decisions = {
            c.family: promotion_decision(
                c.oos, inc, margin=r.promotion_margin_sharpe, min_trades=r.promotion_min_trades
            )
            for c in fitted
        }
        qualified = [c for c in fitted if decisions[c.family].promote]
        best = max(qualified, key=lambda c: (c.oos["sharpe"], c.oos["pnl_net_usd"]), default=None)
        for c in fitted:
            c.promoted = c is best
            c.reason = decisions[c.family].reason
            if decisions[c.family].promote and not c.promoted:
                c.reason = f"{c.reason}; {best.family if best else '?'} is better"
            if not dry_run:
                assert registry is not None
                _register(registry, c, incumbents[coin][0], windows)
        rows += coin_rows
    return RetrainResult(
        windows=windows,
        candidates=rows,
        incumbents=incumbent_out,
        dry_run=dry_run,
        workers=executor.workers,
    )


def _register(
    registry: ModelRegistry, c: CandidateRow, incumbent: str, windows: Sequence[Window]
) -> None:
    """Register ``c`` inactive; when promoted, activate it and deactivate the coin's others."""
    sharpe = c.oos["sharpe"]
    latest = registry.get_model_metadata(c.coin)
    version = 1 if latest is None else latest.version + 1
    # an absolute path: register_model_artifact's default path is relative to the working
    # directory while the registry resolves a relative path against storage_path
    path = registry.storage_path.resolve() / c.coin / f"{c.family}_v{version}.json"
    meta = register_model_artifact(
        registry, c.coin, c.family, c.params, version=version, path=path,
        sharpe_ratio=float(sharpe) if sharpe is not None else 0.0,
        win_rate=float(c.oos["win_rate"] or 0.0),
        regime=c.regime,
        performance_metrics={
            "out_of_sample": c.oos,
            "folds": c.folds,
            "windows": [w.to_dict() for w in windows],
            "fit_method": FIT_METHOD,
            "incumbent": incumbent,
            "promoted": c.promoted,
            "reason": c.reason,
        },
        activate=False,
    )  # fmt: skip
    c.version, c.sha256 = meta.version, meta.sha256
    if c.promoted:
        registry.set_model_active(c.coin, meta.version, True)
        for other in registry.get_active_models(coin=c.coin, limit=None):
            if other.version != meta.version:
                registry.set_model_active(c.coin, other.version, False)


def _f(value: Any, spec: str = ",.2f") -> str:
    return "—" if value is None else format(value, spec)


def render_retrain(result: RetrainResult, console: Console) -> None:
    """The candidates, their out-of-sample figures against the incumbent's, and their fate."""
    title = "retrain" + (" (dry run: nothing registered)" if result.dry_run else "")
    table = Table(
        title=f"{title}: {len(result.windows)} walk-forward folds, out-of-sample figures",
        caption="incumbents: "
        + ", ".join(
            f"{coin} {inc['model']} (Sharpe {_f(inc['oos']['sharpe'])}, "
            f"pnl {_f(inc['oos']['pnl_net_usd'], ',.0f')})"
            for coin, inc in result.incumbents.items()
        ),
    )
    for col in ("coin", "model", "regime", "ver", "pnl net $", "sharpe", "win", "dd %",
                "trades", "promoted: why"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("coin", "model", "regime") else "right")
    for c in result.candidates:
        table.add_row(
            c.coin, c.family, c.regime, _f(c.version, "d"),
            _f(c.oos["pnl_net_usd"], ",.0f"), _f(c.oos["sharpe"]), _f(c.oos["win_rate"]),
            _f(c.oos["max_drawdown_pct"]), str(c.oos["trades_closed"]),
            ("[green]yes[/green]: " if c.promoted else "no: ") + c.reason,
        )  # fmt: skip
    console.print(table)


__all__ = [
    "FAMILIES",
    "FIT_METHOD",
    "CandidateRow",
    "PromotionDecision",
    "RetrainResult",
    "Window",
    "check_coins",
    "incumbent_model",
    "pool_folds",
    "promotion_decision",
    "render_retrain",
    "run_retrain",
    "walk_forward_windows",
]
