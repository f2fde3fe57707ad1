from __future__ import annotations

import pytest

from huracan.config import build_config
from huracan.domain.costs import CostBook
from huracan.domain.execution import (
    ExecutionError,
    ExitRules,
    PaperExchange,
    PaperExchangeParams,
    PositionMonitor,
)
from huracan.streams.serde import make_serde


def _decision(rid: str, direction: str = "LONG", intent: str = "OPEN", **kw: object) -> dict:
    d = {
        "event_id": f"dec:{rid}",
        "correlation_id": f"tick:{rid}",
        "request_id": rid,
        "trade_id": kw.pop("trade_id", f"trd:{rid}"),
        "coin": "BTC",
        "exchange": "binance",
        "sector": "L1",
        "direction": direction,
        "intent": intent,
        "ts": 1_000_000,
        "decision": "APPROVE",
        "approved_size_usd": 10_000.0,
        "bid": 100.0,
        "ask": 100.1,
    }
    d.update(kw)
    return d


def test_fill_when_long_opened_then_buys_at_ask_with_taker_fee_and_latency() -> None:
    ex = PaperExchange(PaperExchangeParams(taker_fee_bps=5.0, latency_us=2_000))

    e = ex.fill(_decision("r1"))

    assert e is not None
    assert (e["side"], e["action"], e["price"]) == ("BUY", "OPEN", 100.1)
    assert e["size"] == pytest.approx(10_000.0 / 100.1)
    assert e["fees_usd"] == pytest.approx(5.0)
    assert e["ts"] == 1_002_000
    assert e["execution_id"] == "exe:r1"
    assert e["trade_id"] == "trd:r1"


def test_fill_when_long_closed_then_sells_at_bid_and_pnl_net_of_both_fees() -> None:
    ex = PaperExchange(PaperExchangeParams(taker_fee_bps=5.0))
    opened = ex.fill(_decision("r1"))
    assert opened is not None

    closed = ex.fill(_decision("c1", intent="CLOSE", trade_id="trd:r1", bid=101.0, ask=101.1))

    assert closed is not None
    units = 10_000.0 / 100.1
    assert closed["side"] == "SELL"
    assert closed["price"] == 101.0
    exit_fees = units * 101.0 * 5e-4
    assert closed["realized_pnl_usd"] == pytest.approx(units * 0.9 - 5.0 - exit_fees)
    assert ex.positions == {}


def test_fill_when_short_closed_higher_then_loses() -> None:
    ex = PaperExchange(PaperExchangeParams(taker_fee_bps=0.0))
    ex.fill(_decision("r1", direction="SHORT"))  # sells at bid 100.0

    closed = ex.fill(_decision("c1", intent="CLOSE", trade_id="trd:r1", bid=101.0, ask=101.0))

    assert closed is not None
    assert closed["side"] == "BUY"
    assert closed["realized_pnl_usd"] == pytest.approx(-(10_000.0 / 100.0) * 1.0)


def test_fill_when_decision_redelivered_or_blocked_then_nothing_filled() -> None:
    ex = PaperExchange()
    ex.fill(_decision("r1"))

    assert ex.fill(_decision("r1")) is None
    assert ex.duplicates == 1
    assert ex.fill(_decision("r2", decision="BLOCK", approved_size_usd=0.0)) is None
    assert len(ex.positions) == 1


@pytest.mark.parametrize(
    "bad", [{"bid": None}, {"bid": 101.0, "ask": 100.0}, {"ask": float("nan")}, {"bid": 0.0}]
)
def test_fill_when_quote_unusable_then_error_and_state_unchanged(bad: dict) -> None:
    ex = PaperExchange()

    with pytest.raises(ExecutionError):
        ex.fill(_decision("r1", **bad))
    assert ex.positions == {}
    assert ex.fill(_decision("r1")) is not None  # not remembered as filled


def test_fill_when_closing_unknown_trade_then_error() -> None:
    with pytest.raises(ExecutionError, match="no open position"):
        PaperExchange().fill(_decision("c1", intent="CLOSE", trade_id="trd:nope"))


def test_exchange_when_restored_from_dict_then_same_fills() -> None:
    a = PaperExchange()
    a.fill(_decision("r1"))
    b = PaperExchange.from_dict(a.to_dict())

    close = _decision("c1", intent="CLOSE", trade_id="trd:r1", bid=102.0, ask=102.1)
    assert a.fill(close) == b.fill(close)
    assert b.fill(_decision("r1")) is None


def _open_request(rid: str) -> dict:
    return {**_decision(rid), "size_usd": 10_000.0}


def _monitor_with_long(rules: ExitRules) -> PositionMonitor:
    mon = PositionMonitor(rules)
    mon.on_request(_open_request("r1"))
    return mon


def _tick(bid: float, ask: float, ts: int = 1_100_000) -> dict:
    return {"coin": "BTC", "bid": bid, "ask": ask, "ts": ts, "event_id": "tick:BTC:9",
            "correlation_id": "tick:BTC:9"}  # fmt: skip


@pytest.mark.parametrize(
    ("bid", "ts", "why"),
    [
        # the entry mid is 100.05; a tick (bid, bid + 0.1) has mid bid + 0.05
        (100.05 * 1.0031 - 0.05, 1_100_000, "take_profit"),
        (100.05 * 0.9979 - 0.05, 1_100_000, "stop_loss"),
        (100.0, 1_000_000 + 50_000 + 300_000_000, "time_limit"),
    ],
)
def test_on_tick_when_exit_rule_hit_then_one_close_request(bid: float, ts: int, why: str) -> None:
    mon = _monitor_with_long(ExitRules(take_profit_bps=30, stop_loss_bps=20))

    first = mon.on_tick(_tick(bid, bid + 0.1, ts))
    second = mon.on_tick(_tick(bid, bid + 0.1, ts + 1))

    assert len(first) == 1
    assert first[0]["exit_reason"] == why
    assert first[0]["intent"] == "CLOSE"
    assert first[0]["request_id"] == "close:trd:r1"
    assert second == []


def test_on_tick_when_inside_bands_then_no_close() -> None:
    mon = _monitor_with_long(ExitRules())

    assert mon.on_tick(_tick(100.15, 100.2)) == []


def test_on_signal_when_reversed_then_close_and_when_same_direction_then_none() -> None:
    mon = _monitor_with_long(ExitRules())
    same = {"coin": "BTC", "direction": "LONG", "ts": 5, "event_id": "sig:BTC:5"}
    opposite = {**same, "direction": "SHORT", "event_id": "sig:BTC:6"}

    assert mon.on_signal(same, 100.0, 100.1) == []
    closes = mon.on_signal(opposite, 100.0, 100.1)

    assert [c["exit_reason"] for c in closes] == ["reversal"]


def test_monitor_when_close_requested_then_trade_forgotten() -> None:
    mon = _monitor_with_long(ExitRules())
    (close,) = mon.on_tick(_tick(1.0, 1.1))

    assert close["trade_id"] == "trd:r1"
    assert mon.on_tick(_tick(1.0, 1.1)) == []
    assert PositionMonitor.from_dict(mon.to_dict()).positions == {}


def test_on_request_when_open_then_entry_at_the_quote_the_exchange_fills() -> None:
    mon = PositionMonitor(ExitRules())
    request = _open_request("r1")

    mon.on_request(request)
    mon.on_request(request)  # idempotent
    mon.on_request({**request, "intent": "CLOSE", "request_id": "close:trd:r1"})

    ((trade_id, pos),) = mon.positions["BTC"].items()
    filled = PaperExchange().fill(_decision("r1"))
    assert filled is not None
    assert trade_id == filled["trade_id"] == "trd:r1"
    assert pos.entry_price == filled["price"] == 100.1
    assert pos.units == pytest.approx(filled["size"])


def test_on_tick_when_quote_unchanged_and_spread_wider_than_the_stop_then_no_stop_loss() -> None:
    mon = PositionMonitor(ExitRules(stop_loss_bps=20))
    mon.on_request({**_open_request("r1"), "bid": 100.0, "ask": 100.25})  # 25 bps spread

    closes = mon.on_tick(_tick(100.0, 100.25))  # main: stopped out (ask to bid, -25 bps)

    assert closes == []


def test_on_tick_when_mid_falls_past_the_stop_then_stop_loss_for_long_and_not_short() -> None:
    mon = PositionMonitor(ExitRules(stop_loss_bps=20, take_profit_bps=50))
    mon.on_request({**_open_request("r1"), "bid": 100.0, "ask": 100.25})
    mon.on_request({**_open_request("r2"), "direction": "SHORT", "bid": 100.0, "ask": 100.25})

    closes = mon.on_tick(_tick(99.7, 99.95))  # mid 99.825: -30 bps for the long, +30 short

    assert [(c["trade_id"], c["exit_reason"]) for c in closes] == [("trd:r1", "stop_loss")]


def test_fill_when_fee_book_given_then_charges_the_coins_taker_fee() -> None:
    book = CostBook()
    book.update_fees("BTC", 1.0, 12.0)
    ex = PaperExchange(PaperExchangeParams(taker_fee_bps=5.0), costs=book)

    e = ex.fill(_decision("r1"))

    assert e is not None
    assert e["fees_usd"] == pytest.approx(10_000.0 * 12.0 / 1e4)


def test_fill_when_size_beyond_quoted_size_then_price_walks_the_book() -> None:
    ex = PaperExchange(PaperExchangeParams(quoted_size_usd=100_000.0, impact_bps=10.0))

    small = ex.fill(_decision("r1", approved_size_usd=100_000.0))
    big = ex.fill(_decision("r2", approved_size_usd=300_000.0))
    sell = ex.fill(_decision("r3", direction="SHORT", approved_size_usd=300_000.0))

    assert small is not None
    assert big is not None
    assert sell is not None
    assert small["price"] == 100.1  # within the quoted size: at the touch
    assert big["price"] == pytest.approx(100.1 * (1 + 20.0 / 1e4))  # 2 quoted sizes beyond
    assert sell["price"] == pytest.approx(100.0 * (1 - 20.0 / 1e4))


def test_fill_when_closing_a_position_larger_than_quoted_then_close_price_also_slips() -> None:
    ex = PaperExchange(PaperExchangeParams(quoted_size_usd=100_000.0, impact_bps=10.0))
    ex.fill(_decision("r1", approved_size_usd=200_000.0))

    closed = ex.fill(_decision("c1", intent="CLOSE", trade_id="trd:r1", bid=100.0, ask=100.1))

    assert closed is not None
    units = 200_000.0 / (100.1 * 1.001)
    slip = 10.0 * (units * 100.0 - 100_000.0) / 100_000.0
    assert closed["price"] == pytest.approx(100.0 * (1 - slip / 1e4))


def test_paper_exchange_params_when_bad_then_raise_naming_the_field() -> None:
    with pytest.raises(ValueError, match="quoted_size_usd"):
        PaperExchangeParams(quoted_size_usd=0.0)
    with pytest.raises(ValueError, match="impact_bps"):
        PaperExchangeParams(impact_bps=-1.0)


def test_position_when_state_has_no_entry_mid_then_entry_price_stands_in() -> None:
    mon = _monitor_with_long(ExitRules())
    data = mon.to_dict()
    for p in data["BTC"]:
        del p["entry_mid"]

    restored = PositionMonitor.from_dict(data)

    assert restored.positions["BTC"]["trd:r1"].reference_mid == 100.1


def test_on_request_when_short_then_entry_at_bid() -> None:
    mon = PositionMonitor(ExitRules())

    mon.on_request({**_open_request("r2"), "direction": "SHORT"})

    assert mon.positions["BTC"]["trd:r2"].entry_price == 100.0


def test_records_when_encoded_then_valid_execution_and_trade_request() -> None:
    serde = make_serde(build_config({}, environ={}))
    ex = PaperExchange()
    opened = ex.fill(_decision("r1"))
    mon = PositionMonitor(ExitRules(stop_loss_bps=1))
    assert opened is not None
    mon.on_request(_open_request("r1"))
    (close_request,) = mon.on_tick(_tick(90.0, 90.1))
    closed = ex.fill(_decision("c1", intent="CLOSE", trade_id="trd:r1", bid=90.0, ask=90.1))
    assert closed is not None

    for event_type, record in [
        ("Execution", opened),
        ("Execution", closed),
        ("TradeRequest", close_request),
    ]:
        assert serde.decode(serde.encode(event_type, record)) == record
