from __future__ import annotations

import json
import math
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from huracan.backtest.errors import BacktestError, EmptyBacktest, InvalidBacktestInput
from huracan.backtest.report import (
    YEAR_US,
    BacktestReport,
    QuoteMarks,
    build_report,
    render_report,
    write_equity_png,
)
from huracan.config import load_config
from huracan.domain.execution import PaperExchange, PaperExchangeParams
from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator
from huracan.wiring import build_engine

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
MIN = 60_000_000
HOUR = 3_600_000_000
EQUITY = 100_000.0


class Fills:
    """Executions made by the real paper exchange (5 bps taker fee, no latency)."""

    def __init__(self) -> None:
        self.exchange = PaperExchange(PaperExchangeParams(taker_fee_bps=5.0, latency_us=0))
        self.executions: list[dict[str, Any]] = []

    def _fill(self, **decision: Any) -> dict[str, Any]:
        execution = self.exchange.fill(
            {"decision": "APPROVE", "exchange": "binance", "sector": None, **decision}
        )
        assert execution is not None
        self.executions.append(execution)
        return execution

    def open(self, trade: str, coin: str, direction: str, size_usd: float, price: float, ts: int):
        return self._fill(
            request_id=f"req:{trade}", trade_id=trade, coin=coin, direction=direction,
            intent="OPEN", approved_size_usd=size_usd, bid=price, ask=price, ts=ts,
        )  # fmt: skip

    def close(self, trade: str, coin: str, direction: str, price: float, ts: int):
        return self._fill(
            request_id=f"close:{trade}", trade_id=trade, coin=coin, direction=direction,
            intent="CLOSE", approved_size_usd=1.0, bid=price, ask=price, ts=ts,
        )  # fmt: skip


def _two_trades() -> Fills:
    """A long BTC +2 % held 8 h and a short ETH −4 % held 4 h (hand-computed in the tests)."""
    f = Fills()
    f.open("A", "BTC", "LONG", 10_000.0, 100.0, T0 + 1 * HOUR)  # 100 units, fee 5.00
    f.open("B", "ETH", "SHORT", 5_000.0, 50.0, T0 + 2 * HOUR)  # 100 units, fee 2.50
    f.close("B", "ETH", "SHORT", 52.0, T0 + 6 * HOUR)  # gross −200, fee 2.60
    f.close("A", "BTC", "LONG", 102.0, T0 + 9 * HOUR)  # gross +200, fee 5.10
    return f


def _report(executions: list[dict[str, Any]], **kw: Any) -> BacktestReport:
    args: dict[str, Any] = {
        "decisions": [],
        "executions": executions,
        "equity_usd": EQUITY,
        "start_us": T0,
        "end_us": T0 + 10 * HOUR,
        "ticks": 1_000,
        "coins": ["BTC", "ETH", "SOL"],
    }
    args.update(kw)
    return build_report(**args)


def test_build_report_when_long_and_short_closed_then_hand_computed_pnl_fees_and_funding() -> None:
    fills = _two_trades()

    r = _report(fills.executions, funding_rate_bps={"BTC": 10.0, "ETH": 10.0})

    # long pays 10 000 × 10 bps × 8 h / 8 h = 10; short receives 5 000 × 10 bps × 4 h / 8 h = 2.5
    assert r.funding_usd == pytest.approx(10.0 - 2.5)
    assert r.per_coin["BTC"].funding_usd == pytest.approx(10.0)
    assert r.per_coin["ETH"].funding_usd == pytest.approx(-2.5)
    assert r.fees_usd == pytest.approx(5.0 + 2.5 + 2.6 + 5.1)
    assert r.pnl_gross_usd == pytest.approx(200.0 - 200.0, abs=1e-9)
    assert r.per_coin["BTC"].pnl_net_usd == pytest.approx(200.0 - 10.1 - 10.0)
    assert r.per_coin["ETH"].pnl_net_usd == pytest.approx(-200.0 - 5.1 + 2.5)
    assert r.pnl_net_usd == pytest.approx(-22.7)
    assert r.final_equity_usd == pytest.approx(EQUITY - 22.7)
    assert r.return_pct == pytest.approx(-0.0227)
    assert (r.trades_closed, r.trades_won, r.trades_open_at_end) == (2, 1, 0)
    assert r.win_rate == pytest.approx(0.5)
    assert r.executions == 4


def test_build_report_when_trades_overlap_then_curves_and_drawdown_are_hand_computed() -> None:
    fills = _two_trades()

    r = _report(fills.executions, funding_rate_bps={"BTC": 10.0, "ETH": 10.0})

    # no price marks: open trades stay at their entry price, less the exit fee they would
    # pay there (A 5.00, B 2.50) and the funding accrued (A pays 1.25 an hour, B gets 0.625)
    expected_equity = [
        (T0, EQUITY),
        (T0 + 1 * HOUR, EQUITY - 5.0 - 5.0),  # A's entry fee and exit fee
        (T0 + 2 * HOUR, EQUITY - 10.0 - 5.0 - 1.25),  # B's fees, A's first hour of funding
        (T0 + 6 * HOUR, EQUITY - 207.6 - 5.0 - 6.25),  # B closed (−205.1 + 2.5 funding)
        (T0 + 9 * HOUR, EQUITY - 22.7),  # A closed: +200 − 5.1 − 10 funding
        (T0 + 10 * HOUR, EQUITY - 22.7),
    ]
    assert [ts for ts, _ in r.equity_curve] == [ts for ts, _ in expected_equity]
    for (_, got), (_, want) in zip(r.equity_curve, expected_equity, strict=True):
        assert got == pytest.approx(want)
    assert r.exposure_curve == (
        (T0, 0.0),
        (T0 + 1 * HOUR, 10_000.0),
        (T0 + 2 * HOUR, 15_000.0),
        (T0 + 6 * HOUR, 10_000.0),
        (T0 + 9 * HOUR, 0.0),
        (T0 + 10 * HOUR, 0.0),
    )
    assert r.max_exposure_usd == 15_000.0
    assert r.max_drawdown_usd == pytest.approx(218.85)
    assert r.max_drawdown_pct == pytest.approx(100 * 218.85 / EQUITY)


def test_build_report_when_funding_rate_negative_then_shorts_pay_and_longs_receive() -> None:
    fills = _two_trades()

    r = _report(fills.executions, funding_rate_bps={"BTC": -10.0, "ETH": -10.0})

    assert r.per_coin["BTC"].funding_usd == pytest.approx(-10.0)
    assert r.per_coin["ETH"].funding_usd == pytest.approx(2.5)
    assert r.pnl_net_usd == pytest.approx(-15.2 + 7.5)


def test_build_report_when_no_funding_rate_then_net_equals_realized_pnl() -> None:
    fills = _two_trades()
    realized = sum(e["realized_pnl_usd"] for e in fills.executions if e["action"] == "CLOSE")

    r = _report(fills.executions)

    assert r.funding_usd == 0.0
    assert r.pnl_net_usd == pytest.approx(realized)
    assert r.pnl_net_usd == pytest.approx(-15.2)


def test_build_report_when_funding_eats_a_small_profit_then_trade_is_not_a_win() -> None:
    f = Fills()
    f.open("A", "BTC", "LONG", 10_000.0, 100.0, T0)
    close = f.close("A", "BTC", "LONG", 100.2, T0 + 8 * HOUR)  # gross 20, fees 10.01

    r = _report(f.executions, funding_rate_bps={"BTC": 20.0})  # long pays 20 over 8 h

    assert close["realized_pnl_usd"] == pytest.approx(9.99)
    assert r.pnl_net_usd == pytest.approx(9.99 - 20.0)
    assert (r.trades_closed, r.trades_won) == (1, 0)
    assert r.win_rate == 0.0


def test_build_report_when_funding_interval_halved_then_funding_doubles() -> None:
    fills = _two_trades()
    rates = {"BTC": 10.0, "ETH": 10.0}

    r8 = _report(fills.executions, funding_rate_bps=rates, funding_interval_hours=8.0)
    r4 = _report(fills.executions, funding_rate_bps=rates, funding_interval_hours=4.0)

    assert r4.funding_usd == pytest.approx(2 * r8.funding_usd)


def test_build_report_when_trades_open_at_end_then_marked_at_the_closing_side_of_the_quote() -> (
    None
):
    f = Fills()
    f.open("L", "SOL", "LONG", 1_000.0, 10.0, T0 + 1 * HOUR)  # 100 units, fee 0.50
    f.open("S", "ETH", "SHORT", 1_000.0, 50.0, T0 + 1 * HOUR)  # 20 units, fee 0.50

    r = _report(
        f.executions,
        end_us=T0 + 5 * HOUR,
        last_quotes={"SOL": (10.5, 10.6), "ETH": (48.9, 49.0)},
        funding_rate_bps={"SOL": 8.0},
    )

    # long marked at the bid: 100 × 0.5 = 50; short marked at the ask: 20 × 1.0 = 20
    assert r.pnl_unrealized_usd == pytest.approx(70.0)
    assert r.pnl_gross_usd == pytest.approx(70.0)
    # entry fees and the exit fees at the entry's rate: 100 × 10.5 and 20 × 49.0 at 5 bps
    exit_fees = (100 * 10.5 + 20 * 49.0) * 5e-4
    assert r.exit_fees_open_usd == pytest.approx(exit_fees)
    assert r.fees_usd == pytest.approx(1.0 + exit_fees)
    assert r.funding_usd == pytest.approx(1_000 * 8 / 1e4 * 4 / 8)  # held 4 h to the end
    assert r.pnl_net_usd == pytest.approx(70.0 - 1.0 - exit_fees - 0.4)
    assert (r.trades_closed, r.trades_open_at_end) == (0, 2)
    assert r.win_rate is None
    assert r.equity_curve[-1] == (T0 + 5 * HOUR, pytest.approx(EQUITY + r.pnl_net_usd))
    assert r.exposure_curve[-1] == (T0 + 5 * HOUR, 2_000.0)
    assert r.unmarked_coins == ()


def test_build_report_when_open_trade_has_no_last_quote_then_marked_at_entry_and_listed() -> None:
    f = Fills()
    f.open("L", "SOL", "LONG", 1_000.0, 10.0, T0 + 1 * HOUR)

    r = _report(f.executions, last_quotes={})

    assert r.pnl_unrealized_usd == 0.0
    assert r.unmarked_coins == ("SOL",)
    assert r.pnl_net_usd == pytest.approx(-0.5 - 0.5)  # entry fee and exit fee at entry


def test_build_report_when_executions_redelivered_then_counted_once() -> None:
    fills = _two_trades()
    once = _report(fills.executions)

    twice = _report(fills.executions + [dict(e) for e in fills.executions])

    assert twice.duplicate_executions == 4
    assert twice.executions == once.executions == 4
    assert twice.pnl_net_usd == once.pnl_net_usd
    assert twice.equity_curve == once.equity_curve


def test_build_report_when_close_without_its_open_then_counted_as_orphan_at_realized_pnl() -> None:
    fills = _two_trades()
    without_open_a = [e for e in fills.executions if e["execution_id"] != "exe:req:A"]
    realized_a = next(
        e for e in fills.executions if e["trade_id"] == "A" and e["action"] == "CLOSE"
    )

    r = _report(without_open_a)

    assert r.orphan_closes == 1
    assert r.per_coin["BTC"].pnl_net_usd == pytest.approx(realized_a["realized_pnl_usd"])
    assert r.trades_closed == 2


def test_build_report_when_decisions_given_then_counted_by_outcome_and_reason() -> None:
    decisions = [
        {"request_id": "1", "decision": "APPROVE", "reason_code": "approved"},
        {"request_id": "2", "decision": "THROTTLE", "reason_code": "global_soft_limit"},
        {"request_id": "3", "decision": "THROTTLE", "reason_code": "global_soft_limit"},
        {"request_id": "4", "decision": "BLOCK", "reason_code": "per_coin_limit"},
    ]

    r = _report([], decisions=decisions + decisions[:2], cost_rejections={"below_min_edge": 7})

    assert r.decisions == 4
    assert r.duplicate_decisions == 2
    assert r.decisions_by_outcome == {"APPROVE": 1, "THROTTLE": 2, "BLOCK": 1}
    assert list(r.decisions_by_outcome) == ["APPROVE", "THROTTLE", "BLOCK"]
    assert r.decisions_by_reason == {
        "approved": 1,
        "global_soft_limit": 2,
        "per_coin_limit": 1,
    }
    assert r.cost_rejections == {"below_min_edge": 7}


def test_build_report_when_two_bucket_returns_then_sharpe_is_hand_computed() -> None:
    f = Fills()
    f.open("A", "BTC", "LONG", 10_000.0, 100.0, T0 + 10 * MIN)
    f.close("A", "BTC", "LONG", 101.0, T0 + 20 * MIN)  # first hour
    f.open("B", "BTC", "LONG", 10_000.0, 100.0, T0 + 70 * MIN)
    f.close("B", "BTC", "LONG", 99.5, T0 + 80 * MIN)  # second hour
    pnl_a = 100.0 - 5.0 - 10_100 * 5e-4
    pnl_b = -50.0 - 5.0 - 9_950 * 5e-4
    e1, e2 = EQUITY + pnl_a, EQUITY + pnl_a + pnl_b
    returns = [e1 / EQUITY - 1, e2 / e1 - 1, 0.0]  # three one-hour buckets

    r = _report(f.executions, end_us=T0 + 3 * HOUR, sharpe_bucket_us=HOUR, sharpe_min_periods=2)

    expected = statistics.fmean(returns) / statistics.stdev(returns) * math.sqrt(YEAR_US / HOUR)
    assert r.sharpe == pytest.approx(expected)
    assert r.sharpe > 0  # +89.95 then −59.975: net up


def test_build_report_when_fewer_than_two_buckets_or_flat_equity_then_sharpe_is_none() -> None:
    fills = _two_trades()

    one_bucket = _report(fills.executions, sharpe_bucket_us=20 * HOUR)
    flat = _report([], decisions=[{"request_id": "1", "decision": "BLOCK", "reason_code": "x"}])

    assert one_bucket.sharpe is None
    assert flat.sharpe is None
    assert flat.max_drawdown_usd == 0.0


def test_build_report_when_nothing_happened_then_raises_empty_backtest() -> None:
    with pytest.raises(EmptyBacktest, match="nothing to report"):
        _report([], ticks=0)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"end_us": T0 - 1}, "end_us"),
        ({"equity_usd": 0.0}, "equity_usd"),
        ({"equity_usd": math.nan}, "equity_usd"),
        ({"sharpe_bucket_us": 0}, "sharpe_bucket_us"),
        ({"funding_interval_hours": 0.0}, "funding_interval_hours"),
        ({"funding_rate_bps": {"BTC": math.inf}}, "funding_rate_bps"),
    ],
)
def test_build_report_when_argument_invalid_then_raises_naming_it(
    override: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidBacktestInput, match=field):
        _report(_two_trades().executions, **override)


def test_build_report_when_ts_decoded_as_datetime_then_same_report_as_int_microseconds() -> None:
    executions = _two_trades().executions
    as_datetimes = [
        {**e, "ts": datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=e["ts"])}
        for e in executions
    ]

    assert _report(as_datetimes) == _report(executions)


def test_build_report_when_close_has_no_realized_pnl_then_raises_naming_the_execution() -> None:
    executions = _two_trades().executions
    executions[2] = {**executions[2], "realized_pnl_usd": None}

    with pytest.raises(BacktestError, match=r"exe:close:B.*realized_pnl_usd"):
        _report(executions)


trade_specs = st.lists(
    st.tuples(
        st.sampled_from(["BTC", "ETH", "SOL"]),
        st.sampled_from(["LONG", "SHORT"]),
        st.floats(100.0, 50_000.0),  # size usd
        st.floats(1.0, 1_000.0),  # entry price
        st.one_of(st.none(), st.floats(0.5, 2_000.0)),  # exit price, None: still open
        st.integers(0, 48 * 60),  # opened, minutes after T0
        st.integers(0, 24 * 60),  # held, minutes
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(
    specs=trade_specs,
    rate=st.floats(-50.0, 50.0),
    marks=st.dictionaries(st.sampled_from(["BTC", "ETH", "SOL"]), st.floats(0.5, 2_000.0)),
)
def test_build_report_when_any_trades_then_totals_and_curve_are_consistent(
    specs: list[tuple[str, str, float, float, float | None, int, int]],
    rate: float,
    marks: dict[str, float],
) -> None:
    f = Fills()
    end = T0
    for i, (coin, direction, size, entry, exit_, opened, held) in enumerate(specs):
        f.open(f"t{i}", coin, direction, size, entry, T0 + opened * MIN)
        end = max(end, T0 + (opened + held) * MIN)
        if exit_ is not None:
            f.close(f"t{i}", coin, direction, exit_, T0 + (opened + held) * MIN)

    r = _report(
        f.executions,
        end_us=end,
        funding_rate_bps={"BTC": rate, "ETH": rate, "SOL": rate},
        last_quotes={c: (p, p * 1.001) for c, p in marks.items()},
    )

    assert r.pnl_net_usd == pytest.approx(r.pnl_gross_usd - r.fees_usd - r.funding_usd)
    assert r.equity_curve[-1][1] == pytest.approx(EQUITY + r.pnl_net_usd, abs=1e-6)
    assert r.final_equity_usd == pytest.approx(EQUITY + r.pnl_net_usd)
    assert r.fees_usd == pytest.approx(
        sum(e["fees_usd"] for e in f.executions) + r.exit_fees_open_usd
    )
    assert r.trades_closed == sum(1 for s in specs if s[4] is not None)
    assert r.trades_open_at_end == sum(1 for s in specs if s[4] is None)
    assert r.pnl_net_usd == pytest.approx(sum(p.pnl_net_usd for p in r.per_coin.values()))
    assert r.max_drawdown_usd >= max(0.0, EQUITY - min(v for _, v in r.equity_curve)) - 1e-6
    assert r.max_drawdown_pct >= 0.0
    assert r.win_rate is None or 0.0 <= r.win_rate <= 1.0
    assert [ts for ts, _ in r.equity_curve] == sorted({ts for ts, _ in r.equity_curve})
    assert r.exposure_curve[-1][1] == pytest.approx(
        sum(s[2] for s in specs if s[4] is None), abs=1e-6
    )


def test_to_json_when_round_tripped_then_equal_and_has_no_nan() -> None:
    r = _report(_two_trades().executions, funding_rate_bps={"BTC": 3.0}, sharpe_bucket_us=HOUR)
    empty = _report([], decisions=[{"request_id": "1", "decision": "BLOCK", "reason_code": "x"}])

    for report in (r, empty):
        text = report.to_json()
        data = json.loads(text)

        assert "NaN" not in text
        assert "Infinity" not in text
        assert data == report.to_dict()
        assert BacktestReport.from_dict(data) == report
    assert json.loads(empty.to_json())["sharpe"] is None
    assert json.loads(empty.to_json())["win_rate"] is None


def test_to_dict_when_called_then_keys_in_a_stable_order() -> None:
    r = _report(_two_trades().executions)

    keys = list(r.to_dict())

    assert keys[:4] == ["start_us", "end_us", "coins", "ticks"]
    assert keys == list(_report(_two_trades().executions).to_dict())
    assert {"equity_curve", "exposure_curve", "per_coin", "decisions_by_outcome"} <= set(keys)


def test_from_dict_when_field_missing_then_raises_invalid_input() -> None:
    data = _report(_two_trades().executions).to_dict()
    del data["pnl_net_usd"]

    with pytest.raises(InvalidBacktestInput, match="pnl_net_usd"):
        BacktestReport.from_dict(data)


def test_write_equity_png_when_called_then_valid_png_written_atomically(tmp_path: Path) -> None:
    r = _report(_two_trades().executions)
    target = tmp_path / "charts" / "equity.png"

    first = write_equity_png(r, target)
    second = write_equity_png(r, str(target))  # overwrites in place

    assert first == second == target
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000
    assert [p.name for p in target.parent.iterdir()] == ["equity.png"]  # no temporary left


def test_render_report_when_printed_then_shows_the_headline_figures() -> None:
    r = _report(
        _two_trades().executions,
        decisions=[{"request_id": "1", "decision": "THROTTLE", "reason_code": "global_soft_limit"}],
        cost_rejections={"below_min_edge": 3},
    )
    console = Console(record=True, width=140)

    render_report(r, console)

    text = console.export_text()
    assert "-15.20" in text  # net PnL
    assert "global_soft_limit" in text
    assert "below_min_edge" in text
    assert "50.0 %" in text  # win rate


# -- against the real engine ---------------------------------------------------------------


def _engine_run(n: int = 20_000) -> dict[str, Any]:
    cfg = load_config(environ={})
    engine = build_engine(cfg)
    coins = universe(40)
    ticks = list(MarketSimulator(coins, seed=21, rate=200.0).ticks(n))
    decisions: list[dict[str, Any]] = []
    executions: list[dict[str, Any]] = []
    last_quotes: dict[str, tuple[float, float]] = {}
    for tick in ticks:
        out = engine.on_tick(tick)
        decisions += out.decisions
        executions += out.executions
        last_quotes[tick["coin"]] = (tick["bid"], tick["ask"])
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
        coins=[c.symbol for c in coins],
        cost_rejections=dict(engine.stats.cost_rejections),
        last_quotes=last_quotes,
    )
    return {
        "engine": engine,
        "decisions": decisions,
        "executions": executions,
        "report": report,
        "quotes": last_quotes,
    }


def test_build_report_when_fed_a_real_engine_run_then_figures_match_its_outputs() -> None:
    run = _engine_run()
    engine, executions, r = run["engine"], run["executions"], run["report"]
    closes = [e for e in executions if e["action"] == "CLOSE"]
    still_open = engine.exchange.positions

    assert r.trades_closed == len(closes) > 0
    assert r.trades_open_at_end == len(still_open)
    assert r.executions == len(executions) == engine.stats.executions
    assert r.fees_usd == pytest.approx(
        sum(e["fees_usd"] for e in executions) + r.exit_fees_open_usd
    )
    assert r.decisions == len(run["decisions"])
    assert {k: v for k, v in r.decisions_by_outcome.items() if v} == dict(engine.stats.decisions)
    assert r.decisions_by_reason == dict(engine.stats.decision_reasons)
    assert r.cost_rejections == dict(engine.stats.cost_rejections)
    assert r.trades_won == sum(1 for e in closes if e["realized_pnl_usd"] > 0)
    # marked PnL of what the exchange still holds, computed from its own positions
    unrealized = 0.0
    for pos in still_open.values():
        bid, ask = run["quotes"][pos.coin]
        unrealized += pos.units * (
            bid - pos.entry_price if pos.direction == "LONG" else pos.entry_price - ask
        )
    assert r.pnl_unrealized_usd == pytest.approx(unrealized)
    open_fees = sum(p.entry_fees_usd for p in still_open.values())
    realized = sum(e["realized_pnl_usd"] for e in closes)
    assert r.pnl_net_usd == pytest.approx(realized + unrealized - open_fees - r.exit_fees_open_usd)
    assert r.exposure_curve[-1][1] == pytest.approx(sum(p.size_usd for p in still_open.values()))
    assert r.equity_curve[-1][1] == pytest.approx(r.equity_usd + r.pnl_net_usd)


# --- issue 14 point 7: the report tells the truth --------------------------------------------


def test_build_report_when_rate_changes_after_a_trade_closed_then_it_pays_the_rate_in_force() -> (
    None
):
    fills = _two_trades()  # A: BTC long 10k, 1 h → 9 h
    schedule = {"BTC": [(T0, 10.0), (T0 + 5 * HOUR, 20.0), (T0 + 9 * HOUR + 1, 1_000.0)]}

    r = _report(fills.executions, funding_rates=schedule)

    # 4 h at 10 bps and 4 h at 20 bps of an 8 h interval; the 1 000 bps came after the close
    assert r.per_coin["BTC"].funding_usd == pytest.approx(10_000 * (10 * 4 + 20 * 4) / 8 / 1e4)
    assert "no look-ahead" in " ".join(r.assumptions)


def test_build_report_when_rate_known_only_after_the_open_then_none_before_it() -> None:
    fills = _two_trades()

    r = _report(fills.executions, funding_rates={"BTC": [(T0 + 5 * HOUR, 8.0)]})

    assert r.per_coin["BTC"].funding_usd == pytest.approx(10_000 * 8 * 4 / 8 / 1e4)


def test_build_report_when_position_under_water_mid_trade_then_drawdown_shows_it() -> None:
    f = Fills()
    f.open("A", "BTC", "LONG", 10_000.0, 100.0, T0 + 1 * MIN)  # 100 units
    f.close("A", "BTC", "LONG", 100.0, T0 + 9 * MIN)
    marks = [(T0 + m * MIN, "BTC", price, price) for m, price in ((2, 95.0), (4, 90.0), (6, 99.0))]

    r = _report(f.executions, end_us=T0 + 10 * MIN, marks=marks)

    # 10 % under water: 100 units × −10 less the exit fee at 90 and the entry fee
    low = EQUITY - 5.0 - 1_000.0 - 100 * 90.0 * 5e-4
    assert min(v for _, v in r.equity_curve) == pytest.approx(low)
    assert r.max_drawdown_usd == pytest.approx(EQUITY - low)
    assert r.max_drawdown_pct > 1.0  # main: 0.01 % (fills only)
    assert r.marks == 3


def test_build_report_when_three_minutes_of_data_then_sharpe_is_not_reported() -> None:
    f = Fills()
    f.open("A", "BTC", "LONG", 10_000.0, 100.0, T0 + 10_000_000)
    f.close("A", "BTC", "LONG", 101.0, T0 + 70_000_000)

    r = _report(f.executions, end_us=T0 + 3 * MIN)

    assert r.sharpe is None  # main: a number annualised from 3 one-minute buckets
    assert (r.sharpe_periods, r.sharpe_min_periods) == (3, 30)
    assert "sqrt(525,600" in r.sharpe_annualisation
    console = Console(record=True, width=200)
    render_report(r, console)
    assert "n/a (3 of 30 periods)" in console.export_text()


def test_build_report_when_enough_periods_then_sharpe_reported_with_its_basis() -> None:
    f = Fills()
    for i in range(40):
        ts = T0 + i * MIN
        f.open(f"T{i}", "BTC", "LONG", 1_000.0, 100.0, ts + 1)
        f.close(f"T{i}", "BTC", "LONG", 100.3 if i % 3 else 99.9, ts + 30_000_000)

    r = _report(f.executions, end_us=T0 + 40 * MIN)

    assert r.sharpe is not None
    assert r.sharpe_periods == 40


def test_build_report_when_trade_open_at_end_then_its_exit_fee_is_charged() -> None:
    f = Fills()
    f.open("A", "BTC", "LONG", 10_000.0, 100.0, T0 + 1 * HOUR)  # 100 units, fee 5.00

    r = _report(f.executions, last_quotes={"BTC": (101.0, 101.1)})

    exit_fee = 100 * 101.0 * 5e-4  # at the entry's fee rate, on the marked notional
    assert r.exit_fees_open_usd == pytest.approx(exit_fee)
    assert r.fees_usd == pytest.approx(5.0 + exit_fee)  # main: 5.00 (no exit fee)
    assert r.pnl_net_usd == pytest.approx(100.0 - 5.0 - exit_fee)
    assert r.equity_curve[-1][1] == pytest.approx(EQUITY + r.pnl_net_usd)


def test_build_report_when_serialised_then_assumptions_are_in_the_json_and_rendered() -> None:
    fills = _two_trades()
    r = _report(fills.executions, funding_rate_bps={"BTC": 10.0})
    console = Console(record=True, width=200)

    data = json.loads(r.to_json())
    render_report(r, console)

    assert data["assumptions"] == list(r.assumptions)
    assert len(r.assumptions) >= 6
    assert BacktestReport.from_dict(data) == r
    text = console.export_text()
    assert "Assumptions" in text
    assert "no price marks given" in text


def test_build_report_when_old_report_json_without_new_fields_then_still_loads() -> None:
    data = _report(_two_trades().executions).to_dict()
    for name in ("assumptions", "sharpe_periods", "exit_fees_open_usd", "marks"):
        del data[name]

    r = BacktestReport.from_dict(data)

    assert r.assumptions == ()


def test_quote_marks_when_many_ticks_per_second_then_each_coins_last_quote_per_second() -> None:
    marks = QuoteMarks(1_000_000)
    for ts, coin, price in [
        (T0 + 100, "BTC", 1.0),
        (T0 + 900_000, "BTC", 2.0),
        (T0 + 500, "ETH", 5.0),
        (T0 + 1_200_000, "BTC", 3.0),
    ]:
        marks.add(ts, coin, price, price)

    assert marks.marks() == [
        (T0 + 500, "ETH", 5.0, 5.0),
        (T0 + 900_000, "BTC", 2.0, 2.0),
        (T0 + 1_200_000, "BTC", 3.0, 3.0),
    ]
