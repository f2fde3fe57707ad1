"""The task functions the executor runs on a worker: one backtest, one fit, one evaluation.

Every function here takes one JSON-like spec — the archive ``root`` (a path the worker can
read), the coin(s), the time range in epoch microseconds and the config as a dict
(``HuracanConfig.redacted()``; tasks need no secrets) — reads its own slice of the archive
through :mod:`huracan.backtest.run`, and returns a small dict of figures. Nothing here touches
the registry or the network: those stay with the driver.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

from huracan.backtest.errors import EmptyBacktest
from huracan.backtest.report import BacktestReport
from huracan.backtest.run import load_ticks, override_config, report_for, run_backtest
from huracan.config import HuracanConfig, build_config
from huracan.domain.features import FeatureVector
from huracan.domain.signals import BaselineParams, Signal
from huracan.models.artifact import LINEAR_FEATURES, dump_artifact, parse_artifact
from huracan.storage.archive_errors import NoDataInRange
from huracan.wiring import build_engine

#: the figures a task reports for one backtest
METRICS = (
    "pnl_net_usd",
    "pnl_gross_usd",
    "fees_usd",
    "return_pct",
    "sharpe",
    "win_rate",
    "max_drawdown_pct",
    "max_drawdown_usd",
    "trades_closed",
    "trades_won",
    "decisions",
    "ticks",
)
#: the regime labels :func:`regime_of` gives
REGIMES = ("trending-up", "trending-down", "ranging")
#: |t| of the period's return above which it is a trend
TREND_T = 2.0


def _config(spec: Mapping[str, Any]) -> HuracanConfig:
    cfg = build_config(dict(spec["config"]), environ={}, source="task")
    overrides = spec.get("overrides") or {}
    return override_config(cfg, overrides) if overrides else cfg


def _where() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def metrics_of(report: BacktestReport | None) -> dict[str, Any]:
    """The :data:`METRICS` of ``report``; zeros (Sharpe and win rate ``None``) for no data."""
    if report is None:
        out: dict[str, Any] = {k: 0 for k in METRICS}
        out.update(sharpe=None, win_rate=None, pnl_net_usd=0.0, return_pct=0.0)
        return out
    out = {k: getattr(report, k) for k in METRICS}
    out["decisions"] = report.decisions
    for k in ("sharpe", "win_rate"):
        v = out[k]
        out[k] = v if v is not None and math.isfinite(v) else None
    return out


def _backtest(
    cfg: HuracanConfig,
    spec: Mapping[str, Any],
    *,
    coins: Sequence[str] | None,
    start: int,
    end: int,
    model: Mapping[str, Any] | None = None,
) -> BacktestReport | None:
    """One archive backtest; ``None`` when the range holds no ticks of ``coins``."""
    models = None
    if model is not None:
        built = build_model(model, version=f"research:{model['type']}")
        models = lambda _coin: built  # noqa: E731 - one model for the coin(s) replayed
    try:
        result, _ = run_backtest(
            cfg, source="archive", root=spec["root"], coins=coins, start=start, end=end,
            cost_updates=bool(spec.get("cost_updates", True)), models=models,
        )  # fmt: skip
        # research windows are short: Sharpe from research.sharpe_min_periods returns
        report = report_for(cfg, result, sharpe_min_periods=cfg.research.sharpe_min_periods)
    except (NoDataInRange, EmptyBacktest):
        return None
    return report


def build_model(model: Mapping[str, Any], *, version: str) -> Any:
    """A :class:`~huracan.domain.signals.SignalModel` from ``{"type", "params"}``, validated
    as a registry artifact is (:func:`~huracan.models.artifact.parse_artifact`)."""
    return parse_artifact(dump_artifact(str(model["type"]), dict(model["params"]))).build(version)


# --- sweep ----------------------------------------------------------------------------------------


def sweep_point(spec: Mapping[str, Any]) -> dict[str, Any]:
    """One grid point: the period's backtest under the config with ``overrides`` applied.

    Spec: ``root``, ``coins`` (list or ``None`` = all), ``start``/``end`` (µs or ``None``),
    ``config``, ``overrides`` (``{key: value}``), ``point_id``. Returns the point id, its
    values, :data:`METRICS`, the seconds it took and where it ran."""
    t0 = time.perf_counter()
    cfg = _config(spec)
    report = _backtest(cfg, spec, coins=spec.get("coins"), start=spec["start"], end=spec["end"])
    return {
        "point_id": spec["point_id"],
        "values": dict(spec.get("overrides") or {}),
        **metrics_of(report),
        "seconds": time.perf_counter() - t0,
        **_where(),
    }


# --- retrain --------------------------------------------------------------------------------------


class _Silent:
    """A model that never signals: a replay with it computes features and nothing else."""

    version = "research:features"

    def evaluate(self, features: FeatureVector) -> Signal | None:
        return None


def coin_features(
    cfg: HuracanConfig, root: str, coin: str, start: int, end: int
) -> list[FeatureVector]:
    """The coin's feature vectors over ``[start, end)``, made by the engine live runs
    (:func:`huracan.wiring.build_engine`) — the same core, the same parameters."""
    engine = build_engine(cfg, models=lambda _c: _Silent())
    out: list[FeatureVector] = []
    try:
        ticks = load_ticks(cfg, source="archive", root=root, coins=[coin], start=start, end=end)
        for tick in ticks:
            try:
                fv = engine.on_tick(tick).features
            except ValueError:  # an invalid tick, skipped as a replay skips it
                continue
            if fv is not None:
                out.append(fv)
    except NoDataInRange:
        return []
    return out


def regime_of(features: Sequence[FeatureVector]) -> str:
    """``trending-up``/``trending-down`` when the window's mid moved more than
    :data:`TREND_T` standard errors (t = total log return / (per-tick σ × √n)), else
    ``ranging`` (also for fewer than 3 ticks)."""
    if len(features) < 3:
        return "ranging"
    rets = [f.ret_bps for f in features[1:]]
    n = len(rets)
    mean = sum(rets) / n
    sd = math.sqrt(sum((r - mean) ** 2 for r in rets) / (n - 1)) if n > 1 else 0.0
    total = 1e4 * math.log(features[-1].mid / features[0].mid)
    if sd <= 0:
        return "ranging"
    t = total / (sd * math.sqrt(n))
    return "trending-up" if t > TREND_T else "trending-down" if t < -TREND_T else "ranging"


def ridge_linear_weights(
    features: Sequence[FeatureVector], *, horizon: int, alpha: float, warmup: int
) -> tuple[dict[str, float], float] | None:
    """Ridge fit of the coin's next-``horizon``-tick log return (bps) on
    :data:`~huracan.models.artifact.LINEAR_FEATURES`, as ``(weights, bias)`` of a score in
    units of its own standard deviation; ``None`` with fewer than 20 samples or no variation.

    Steps: 1. samples are the ticks past ``warmup`` with ``horizon`` ticks after them;
    2. features are standardised, a feature without variation gets weight 0; 3. β minimises
    ``mean((y − ȳ − Xβ)²) + alpha‖β‖²``; 4. the score ``s = Xβ`` (the mean return left out:
    the model predicts moves, not drift) is divided by its standard deviation, so ``entry_z``
    is in standard deviations; 5. weights and bias are mapped back to raw feature units."""
    import numpy as np

    rows = [
        (
            [float(getattr(f, name)) for name in LINEAR_FEATURES],
            1e4 * math.log(features[i + horizon].mid / f.mid),
        )
        for i, f in enumerate(features[: max(0, len(features) - horizon)])
        if f.n_ticks >= warmup
    ]
    if len(rows) < 20:
        return None
    x = np.array([r[0] for r in rows], dtype=float)
    y = np.array([r[1] for r in rows], dtype=float)
    mu, sigma = x.mean(axis=0), x.std(axis=0)
    usable = sigma > 1e-12
    if not usable.any():
        return None
    xs = np.zeros_like(x)
    xs[:, usable] = (x[:, usable] - mu[usable]) / sigma[usable]
    n, k = xs.shape
    beta = np.linalg.solve(xs.T @ xs / n + alpha * np.eye(k), xs.T @ (y - y.mean()) / n)
    beta[~usable] = 0.0
    score_sd = float((xs @ beta).std())
    if not score_sd > 1e-12 or not math.isfinite(score_sd):
        return None
    weights: dict[str, float] = {}
    bias = 0.0
    for j, name in enumerate(LINEAR_FEATURES):
        if not usable[j] or beta[j] == 0.0:
            continue
        w = float(beta[j] / (sigma[j] * score_sd))
        weights[name] = w
        bias -= w * float(mu[j])
    if not weights:
        return None
    return weights, bias


def _grid_fit(
    cfg: HuracanConfig,
    spec: Mapping[str, Any],
    family: str,
    base: Mapping[str, Any],
    entry_zs: Sequence[float],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Each ``entry_z`` of the grid backtested in sample; the best by net PnL (ties: the
    first) and every point's figures."""
    tried: list[dict[str, Any]] = []
    best: tuple[float, int] | None = None
    for i, entry_z in enumerate(entry_zs):
        params = {**base, "entry_z": float(entry_z)}
        report = _backtest(
            cfg, spec, coins=[spec["coin"]], start=spec["start"], end=spec["end"],
            model={"type": family, "params": params},
        )  # fmt: skip
        m = metrics_of(report)
        tried.append({"entry_z": float(entry_z), **m})
        if best is None or m["pnl_net_usd"] > best[0]:
            best = (m["pnl_net_usd"], i)
    assert best is not None  # entry_zs is never empty (config validation)
    return {**base, "entry_z": float(entry_zs[best[1]])}, tried


def fit_candidate(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Fit one model family for one coin on one training window.

    Spec: ``root``, ``coin``, ``start``/``end`` (the training window, µs), ``family``
    (``momentum`` or ``linear``), ``config``, ``key``. The momentum family is the baseline rule
    with ``entry_z`` chosen from ``research.momentum_entry_z`` by in-sample net PnL; the linear
    family is :func:`ridge_linear_weights` with ``entry_z`` chosen from
    ``research.linear_entry_z`` the same way. Returns ``params`` (``None`` when the window
    holds too little data to fit), the window's ``regime``, the grid's in-sample figures and
    where it ran."""
    t0 = time.perf_counter()
    cfg = _config(spec)
    r = cfg.research
    family = str(spec["family"])
    features = coin_features(cfg, spec["root"], spec["coin"], spec["start"], spec["end"])
    out: dict[str, Any] = {
        "key": spec.get("key"),
        "coin": spec["coin"],
        "family": family,
        "regime": regime_of(features),
        "train_ticks": len(features),
        "params": None,
        "grid": [],
    }
    defaults = {
        f: getattr(BaselineParams(), f)
        for f in ("warmup_ticks", "entry_z", "edge_per_z_bps", "max_edge_bps",
                  "base_size_usd", "max_size_multiple")
    }  # fmt: skip
    if features:
        if family == "momentum":
            base = {**defaults, "min_volatility_bps": BaselineParams().min_volatility_bps}
            out["params"], out["grid"] = _grid_fit(cfg, spec, family, base, r.momentum_entry_z)
        elif family == "linear":
            fit = ridge_linear_weights(
                features,
                horizon=r.linear_horizon_ticks,
                alpha=r.ridge_alpha,
                warmup=int(defaults["warmup_ticks"]),
            )
            if fit is not None:
                base = {**defaults, "weights": fit[0], "bias": fit[1]}
                out["params"], out["grid"] = _grid_fit(cfg, spec, family, base, r.linear_entry_z)
        else:
            raise ValueError(f"unknown model family {family!r} (momentum, linear)")
    out["seconds"] = time.perf_counter() - t0
    out.update(_where())
    return out


def evaluate_model(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Backtest one model for one coin on one test window (out of sample).

    Spec: ``root``, ``coin``, ``start``/``end`` (µs), ``config``, ``model``
    (``{"type", "params"}``, or ``None`` for the engine's built-in baseline), ``key``.
    Returns :data:`METRICS`, the seconds it took and where it ran."""
    t0 = time.perf_counter()
    cfg = _config(spec)
    report = _backtest(
        cfg, spec, coins=[spec["coin"]], start=spec["start"], end=spec["end"],
        model=spec.get("model"),
    )  # fmt: skip
    return {
        "key": spec.get("key"),
        **metrics_of(report),
        "seconds": time.perf_counter() - t0,
        **_where(),
    }
