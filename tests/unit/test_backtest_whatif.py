from __future__ import annotations

import json
from typing import Any

import pytest
from rich.console import Console

from huracan.backtest.errors import InvalidBacktestInput
from huracan.backtest.report import BacktestReport, build_report
from huracan.backtest.whatif import compare_runs, render_whatif
from huracan.config import load_config
from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator
from huracan.wiring import build_engine

T0 = 1_767_225_600_000_000


def _d(request_id: str, decision: str, reason: str, coin: str = "BTC") -> dict[str, Any]:
    return {"request_id": request_id, "coin": coin, "decision": decision, "reason_code": reason}


BASE = [
    _d("r1", "APPROVE", "approved", "BTC"),
    _d("r2", "THROTTLE", "global_soft_limit", "ETH"),
    _d("r3", "BLOCK", "unknown_trade", "SOL"),
    _d("r5", "APPROVE", "approved", "BTC"),
]
OTHER = [
    _d("r1", "BLOCK", "per_coin_limit", "BTC"),
    _d("r2", "THROTTLE", "global_soft_limit", "ETH"),
    _d("r4", "APPROVE", "approved", "XRP"),
    _d("r5", "THROTTLE", "per_coin_soft_limit", "BTC"),
]


def _report(
    decisions: list[dict[str, Any]], executions: list[dict[str, Any]], **kw: Any
) -> BacktestReport:
    return build_report(
        decisions=decisions,
        executions=executions,
        equity_usd=100_000.0,
        start_us=T0,
        end_us=T0 + 3_600_000_000,
        ticks=100,
        coins=["BTC", "ETH", "SOL", "XRP"],
        **kw,
    )


def _close(trade: str, pnl: float, at: int = 0) -> list[dict[str, Any]]:
    base = {"trade_id": trade, "coin": "BTC", "direction": "LONG", "size": 1.0, "price": 100.0,
            "size_usd": 100.0, "fees_usd": 0.0}  # fmt: skip
    return [
        {**base, "execution_id": f"o:{trade}", "action": "OPEN", "ts": T0 + at + 1,
         "realized_pnl_usd": None},
        {**base, "execution_id": f"c:{trade}", "action": "CLOSE", "ts": T0 + at + 2,
         "realized_pnl_usd": pnl},
    ]  # fmt: skip


def test_compare_runs_when_decisions_differ_then_lists_changes_in_order() -> None:
    diff = compare_runs(BASE, _report(BASE, []), OTHER, _report(OTHER, []))

    assert diff.decisions_compared == 5
    assert diff.changed == 4  # r1, r5 changed; r3 only in base; r4 only in other
    assert (diff.only_in_base, diff.only_in_other) == (1, 1)
    assert [e.request_id for e in diff.examples] == ["r1", "r3", "r5", "r4"]
    r1 = diff.examples[0]
    assert (r1.coin, r1.base_decision, r1.base_reason) == ("BTC", "APPROVE", "approved")
    assert (r1.other_decision, r1.other_reason) == ("BLOCK", "per_coin_limit")
    r3, r4 = diff.examples[1], diff.examples[3]
    assert (r3.other_decision, r3.other_reason) == (None, None)
    assert (r4.base_decision, r4.other_decision, r4.coin) == (None, "APPROVE", "XRP")
    assert diff.transitions == {
        "APPROVE → BLOCK": 1,
        "APPROVE → THROTTLE": 1,
        "BLOCK → —": 1,
        "— → APPROVE": 1,
    }


def test_compare_runs_when_counted_then_outcome_and_reason_rows_have_deltas() -> None:
    diff = compare_runs(BASE, _report(BASE, []), OTHER, _report(OTHER, []))

    outcomes = {r.key: (r.base, r.other, r.delta) for r in diff.outcomes}
    reasons = {r.key: (r.base, r.other, r.delta) for r in diff.reasons}

    assert [r.key for r in diff.outcomes] == ["APPROVE", "THROTTLE", "BLOCK"]
    assert outcomes == {"APPROVE": (2, 1, -1), "THROTTLE": (1, 2, 1), "BLOCK": (1, 1, 0)}
    assert reasons == {
        "approved": (2, 1, -1),
        "global_soft_limit": (1, 1, 0),
        "per_coin_limit": (0, 1, 1),
        "per_coin_soft_limit": (0, 1, 1),
        "unknown_trade": (1, 0, -1),
    }


def test_compare_runs_when_examples_limited_then_count_still_complete() -> None:
    diff = compare_runs(BASE, _report(BASE, []), OTHER, _report(OTHER, []), examples=1)

    assert diff.changed == 4
    assert [e.request_id for e in diff.examples] == ["r1"]


def test_compare_runs_when_same_decisions_then_nothing_changed() -> None:
    report = _report(BASE, [])

    diff = compare_runs(BASE, report, [dict(d) for d in BASE], report)

    assert diff.changed == 0
    assert diff.examples == ()
    assert diff.transitions == {}
    assert all(r.delta == 0 for r in diff.outcomes + diff.reasons)
    assert all(r.delta in (0, 0.0, None) for r in diff.metrics)


def test_compare_runs_when_pnl_differs_then_metric_deltas_are_other_minus_base() -> None:
    base = _report(BASE, _close("a", 50.0), sharpe_bucket_us=7_200_000_000)  # 1 bucket
    other = _report(OTHER, _close("a", 50.0) + _close("b", -80.0, at=10))

    diff = compare_runs(BASE, base, OTHER, other)

    assert diff.metric("pnl_net_usd").delta == pytest.approx(-80.0)
    assert diff.metric("trades_closed").delta == 1
    assert diff.metric("win_rate").base == 1.0
    assert diff.metric("win_rate").delta == pytest.approx(-0.5)
    assert diff.metric("max_drawdown_usd").delta == pytest.approx(80.0)
    assert diff.metric("sharpe").base is None
    assert diff.metric("sharpe").other is not None
    assert diff.metric("sharpe").delta is None
    with pytest.raises(KeyError):
        diff.metric("no_such_figure")


def test_compare_runs_when_decision_has_no_request_id_then_raises() -> None:
    with pytest.raises(InvalidBacktestInput, match="other decision #0"):
        compare_runs(BASE, _report(BASE, []), [{"decision": "BLOCK"}], _report(BASE, []))


def test_to_dict_when_serialised_then_json_ready() -> None:
    diff = compare_runs(BASE, _report(BASE, []), OTHER, _report(OTHER, []))

    data = json.loads(json.dumps(diff.to_dict(), allow_nan=False))

    assert data["changed"] == 4
    assert data["examples"][0]["request_id"] == "r1"
    assert data["outcomes"][0] == {"key": "APPROVE", "base": 2, "other": 1, "delta": -1}


def test_render_whatif_when_printed_then_shows_changes_and_labels() -> None:
    diff = compare_runs(
        BASE, _report(BASE, []), OTHER, _report(OTHER, []), base_label="live", other_label="tight"
    )
    console = Console(record=True, width=160)

    render_whatif(diff, console)

    text = console.export_text()
    assert "live" in text
    assert "tight" in text
    assert "4 of 5 requests decided differently" in text
    assert "per_coin_limit" in text
    assert "r4" in text


def _run(environ: dict[str, str]) -> tuple[list[dict[str, Any]], BacktestReport]:
    cfg = load_config(environ=environ)
    engine = build_engine(cfg)
    ticks = list(MarketSimulator(universe(40), seed=21, rate=200.0).ticks(12_000))
    decisions: list[dict[str, Any]] = []
    executions: list[dict[str, Any]] = []
    for tick in ticks:
        out = engine.on_tick(tick)
        decisions += out.decisions
        executions += out.executions
    out = engine.finish()
    decisions += out.decisions
    executions += out.executions
    report = build_report(
        decisions=decisions,
        executions=executions,
        equity_usd=cfg.engine.equity_usd,
        start_us=ticks[0]["ts"],
        end_us=ticks[-1]["ts"],
        ticks=len(ticks),
        coins=[c.symbol for c in universe(40)],
    )
    return decisions, report


def test_compare_runs_when_limits_tightened_on_a_real_run_then_fewer_approvals() -> None:
    base_decisions, base = _run({})
    tight_decisions, tight = _run({"HURACAN__engine__risk__global_max_exposure_pct": "20"})

    diff = compare_runs(base_decisions, base, tight_decisions, tight)

    approve = next(r for r in diff.outcomes if r.key == "APPROVE")
    assert approve.delta < 0
    assert diff.changed > 0
    assert diff.metric("max_exposure_usd").delta < 0
    by_id = {d["request_id"]: d for d in tight_decisions}
    for e in diff.examples:
        if e.other_decision is not None:
            assert by_id[e.request_id]["decision"] == e.other_decision
            assert by_id[e.request_id]["reason_code"] == e.other_reason
