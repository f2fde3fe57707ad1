"""Research tasks and commands in process, over a small archive in a temporary folder (no
services): a sweep point is the backtest of its config, the linear fit recovers a planted
signal, the exit rules come from the config, and the commands run with ``--scheduler serial``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from huracan.backtest.run import override_config, run_backtest
from huracan.cli import app
from huracan.config import build_config
from huracan.domain.execution import ExitRules
from huracan.domain.features import FeatureVector
from huracan.domain.universe import universe
from huracan.research.executor import SerialExecutor
from huracan.research.retrain import run_retrain
from huracan.research.tasks import regime_of, ridge_linear_weights, sweep_point
from huracan.simulate import MarketSimulator
from huracan.storage import ModelRegistry
from huracan.storage.archive import ArchiveWriter
from huracan.wiring import exit_rules

T0 = 1_767_225_600_000_000
N_TICKS = 3_000
RATE = 10.0


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("research-unit") / "archive"
    ticks = MarketSimulator(universe(3), seed=11, start_ts_us=T0, rate=RATE).ticks(N_TICKS)
    ArchiveWriter(root).write(list(ticks))
    return root


def test_exit_rules_when_config_sets_exits_then_engine_rules_follow() -> None:
    cfg = build_config(
        {"engine": {"exits": {"take_profit_bps": 12.5, "stop_loss_bps": 7.0,
                              "max_holding_seconds": 1.5, "close_on_reversal": False}}},
        environ={},
    )  # fmt: skip

    assert exit_rules(cfg) == ExitRules(12.5, 7.0, 1_500_000, False)
    assert exit_rules(build_config({}, environ={})) == ExitRules()


def test_sweep_point_when_overrides_given_then_figures_are_the_backtest_of_that_config(
    archive: Path,
) -> None:
    cfg = build_config({}, environ={})
    overrides = {"exits.take_profit_bps": 10.0, "risk.per_coin_max_exposure_pct": 15.0}

    row = sweep_point(
        {"root": str(archive), "coins": None, "start": None, "end": None,
         "config": cfg.redacted(), "overrides": overrides, "point_id": "p000"}
    )  # fmt: skip
    _, report = run_backtest(override_config(cfg, overrides), root=archive)
    _, default = run_backtest(cfg, root=archive)

    assert row["point_id"] == "p000"
    assert row["values"] == overrides
    assert row["pnl_net_usd"] == report.pnl_net_usd
    assert row["trades_closed"] == report.trades_closed
    assert row["decisions"] == report.decisions
    assert (row["pnl_net_usd"], row["decisions"]) != (default.pnl_net_usd, default.decisions)
    json.dumps(row)  # small and plain: it crosses the wire


def _fv(i: int, mid: float, momentum: float, spread: float, ret_bps: float = 0.0) -> FeatureVector:
    return FeatureVector(
        event_id=f"f{i}", correlation_id=f"c{i}", causation_id=f"t{i}", coin="BTC",
        exchange="x", ts=i, seq=i + 1, mid=mid, bid=mid, ask=mid, ret_bps=ret_bps,
        mean_ret_bps=0.0, volatility_bps=1.0, spread_bps=spread, vwap=mid,
        momentum_bps=momentum, n_ticks=i + 1,
    )  # fmt: skip


def test_ridge_fit_when_next_return_follows_momentum_then_weight_positive_and_dominant() -> None:
    # the mid moves next tick by +momentum/10 bps: momentum predicts the return, spread is noise
    feats = []
    mid = 100.0
    for i in range(400):
        momentum = math.sin(i * 0.7) * 10.0
        spread = 1.0 + (i * 37 % 11) / 10.0
        feats.append(_fv(i, mid, momentum, spread))
        mid *= math.exp(momentum / 10.0 / 1e4)

    fit = ridge_linear_weights(feats, horizon=1, alpha=0.01, warmup=5)

    assert fit is not None
    weights, _bias = fit
    assert weights["momentum_bps"] > 0
    assert abs(weights.get("spread_bps", 0.0)) * 2.0 < weights["momentum_bps"] * 10.0
    scores = [_bias + sum(w * getattr(f, k) for k, w in weights.items()) for f in feats[5:]]
    mean = sum(scores) / len(scores)
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    assert sd == pytest.approx(1.0, rel=0.05)  # entry_z is in standard deviations


def test_ridge_fit_when_too_few_samples_then_none() -> None:
    assert ridge_linear_weights([_fv(i, 100.0, 1.0, 1.0) for i in range(10)],
                                horizon=1, alpha=1.0, warmup=0) is None  # fmt: skip


def test_regime_when_mid_climbs_steadily_then_trending_up_and_flat_noise_ranging() -> None:
    # up: +1 bps a tick with returns 0.5 / 1.5 bps; flat: ±2 bps around the same mid
    up = [_fv(i, 100.0 * math.exp(i * 1e-4), 0.0, 1.0, 0.5 + i % 2) for i in range(200)]
    flat = [_fv(i, 100.0 * (1 + (i % 2) * 2e-4), 0.0, 1.0, 2.0 if i % 2 else -2.0)
            for i in range(200)]  # fmt: skip
    down = [_fv(i, f.mid**-1, 0.0, 1.0, -f.ret_bps) for i, f in enumerate(up)]

    assert regime_of(up) == "trending-up"
    assert regime_of(flat) == "ranging"
    assert regime_of(down) == "trending-down"
    assert regime_of(up[:2]) == "ranging"


def test_retrain_when_dry_run_then_candidates_fitted_and_nothing_registered(
    archive: Path, tmp_path: Path
) -> None:
    cfg = build_config({"research": {"folds": 2, "momentum_entry_z": [1.5, 2.5],
                                     "linear_entry_z": [1.5]}}, environ={})  # fmt: skip
    registry = ModelRegistry(storage_path=tmp_path / "models")

    result = run_retrain(
        cfg, SerialExecutor(), registry, root=archive, coins=["BTC"],
        start=T0, end=T0 + int(N_TICKS / RATE * 1e6) + 1, dry_run=True,
    )  # fmt: skip

    assert registry.list_models() == []
    assert [c.family for c in result.candidates] == ["momentum", "linear"]
    momentum = result.candidates[0]
    assert momentum.params is not None
    assert momentum.params["entry_z"] in (1.5, 2.5)
    assert len(momentum.folds) == 2
    assert all(c.version is None for c in result.candidates)
    assert result.incumbents["BTC"]["model"] == "baseline"


def _invoke(args: list[str]) -> Any:
    return CliRunner().invoke(app, args, catch_exceptions=False)


def test_sweep_command_when_serial_then_writes_json_and_heatmap(
    archive: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"

    result = _invoke(["sweep", "--root", str(archive), "--scheduler", "serial", "--out",
                      str(out), "-g", "exits.take_profit_bps=10,40",
                      "-g", "risk.max_active_trades=1,50"])  # fmt: skip

    assert result.exit_code == 0, result.output
    data = json.loads((out / "sweep.json").read_text())
    assert [p["point_id"] for p in data["points"]] == ["p000", "p001", "p002", "p003"]
    assert {i["key"] for i in data["influence"]} == {
        "exits.take_profit_bps",
        "risk.max_active_trades",
    }
    assert (out / "sweep_heatmap.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["-g", "risk.no_such_limit=1,2"], 2),
        (["-g", "risk.max_active_trades=0,5"], 2),
        (["-g", "nonsense"], 2),
        (["--metric", "vibes"], 2),
    ],
)
def test_sweep_command_when_grid_unusable_then_one_line_and_exit_2(
    archive: Path, args: list[str], code: int
) -> None:
    result = _invoke(["sweep", "--root", str(archive), "--scheduler", "serial", *args])

    assert result.exit_code == code
    assert "Traceback" not in result.output


def test_retrain_command_when_dry_run_then_registers_nothing(archive: Path, tmp_path: Path) -> None:
    config = tmp_path / "cfg.yaml"
    config.write_text(
        f"engine:\n  model_registry:\n    storage_path: {tmp_path / 'models'}\n"
        "    metadata_db: ''\nresearch:\n  folds: 1\n  momentum_entry_z: [2.0]\n"
        "  linear_entry_z: [2.0]\n"
    )

    result = _invoke(["retrain", "-c", str(config), "--root", str(archive), "--coins", "ETH",
                      "--start", str(T0), "--end", str(T0 + 200_000_000), "--scheduler",
                      "serial", "--dry-run", "--out", str(tmp_path / "out")])  # fmt: skip

    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "out" / "retrain.json").read_text())
    assert data["dry_run"] is True
    assert [c["coin"] for c in data["candidates"]] == ["ETH", "ETH"]
    assert ModelRegistry(storage_path=tmp_path / "models").list_models() == []


def test_retrain_command_when_coin_outside_universe_then_exit_2(archive: Path) -> None:
    result = _invoke(["retrain", "--root", str(archive), "--coins", "NOPE", "--start", str(T0),
                      "--end", str(T0 + 10**8), "--scheduler", "serial", "--dry-run"])  # fmt: skip

    assert result.exit_code == 2
    assert "NOPE" in result.output
