"""The real-time cost model: the pure CostBook (huracan.domain.costs) and its shell
RealTimeCostModel (huracan.components.cost_model) with an injected ManualClock.

Reference quote: BTC bid 50,000 / ask 50,010, mid 50,005, so a taker leg crosses half the
spread: 5 / 50,005 × 10,000 = 0.99990001 bps.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from huracan.components.cost_model import RealTimeCostModel, WallClock
from huracan.config import HuracanConfig
from huracan.domain.clock import Clock, ManualClock
from huracan.domain.costs import CostBook, CostReason, CostSettings, CostSnapshot
from huracan.domain.errors import (
    ClockError,
    CostError,
    InvalidCostRequestError,
    InvalidCostSettingsError,
    InvalidFeeError,
    InvalidFundingRateError,
    InvalidQuoteError,
    InvalidSymbolError,
    NoQuoteError,
    StateFormatError,
)
from huracan.wiring import cost_settings

HALF_SPREAD_BPS = 5.0 / 50_005.0 * 10_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_700_000_000.0)


@pytest.fixture
def model(clock: ManualClock) -> RealTimeCostModel:
    m = RealTimeCostModel(
        update_interval_seconds=60,
        min_edge_after_cost_bps=5.0,
        default_maker_fee_bps=2.0,
        default_taker_fee_bps=5.0,
        stale_after_seconds=30.0,
        expected_holding_hours=8.0,  # one whole interval: funding_bps = the rate
        clock=clock,
    )
    m.update_spread("BTC", bid=50_000.0, ask=50_010.0)
    return m


# --- the formula ----------------------------------------------------------------------------


def test_calculate_edge_after_cost_when_taking_then_pays_half_spread_and_taker_fee_per_leg(
    model: RealTimeCostModel,
) -> None:
    edge = model.calculate_edge_after_cost("BTC", 20.0, use_maker=False, include_funding=False)

    assert edge == pytest.approx(20.0 - 2 * (HALF_SPREAD_BPS + 5.0))


def test_calculate_edge_after_cost_when_making_then_pays_maker_fee_and_no_spread(
    model: RealTimeCostModel,
) -> None:
    edge = model.calculate_edge_after_cost("BTC", 20.0, use_maker=True, include_funding=False)

    assert edge == pytest.approx(20.0 - 2 * 2.0)


def test_calculate_edge_after_cost_when_maker_spread_cost_configured_then_charged(
    clock: ManualClock,
) -> None:
    m = RealTimeCostModel(maker_spread_cost_bps=0.5, clock=clock)
    m.update_spread("BTC", 50_000.0, 50_010.0)

    edge = m.calculate_edge_after_cost("BTC", 20.0, use_maker=True, include_funding=False)

    assert edge == pytest.approx(20.0 - 2 * (0.5 + 2.0))


def test_calculate_edge_after_cost_when_one_leg_then_entry_only(clock: ManualClock) -> None:
    m = RealTimeCostModel(legs=1, clock=clock)
    m.update_spread("BTC", 50_000.0, 50_010.0)

    edge = m.calculate_edge_after_cost("BTC", 20.0, use_maker=False, include_funding=False)

    assert edge == pytest.approx(20.0 - (HALF_SPREAD_BPS + 5.0))


def test_update_fees_when_symbol_has_own_fees_then_they_replace_defaults(
    model: RealTimeCostModel,
) -> None:
    model.update_fees("BTC", maker_bps=-1.0, taker_bps=3.0)

    maker = model.calculate_edge_after_cost("BTC", 10.0, use_maker=True, include_funding=False)
    taker = model.calculate_edge_after_cost("BTC", 10.0, use_maker=False, include_funding=False)

    assert maker == pytest.approx(10.0 + 2 * 1.0)  # a rebate adds edge
    assert taker == pytest.approx(10.0 - 2 * (HALF_SPREAD_BPS + 3.0))


def test_calculate_edge_after_cost_when_funding_and_no_direction_then_charges_its_size(
    model: RealTimeCostModel,
) -> None:
    model.update_funding_rate("BTC", funding_rate_bps=-10.0)

    edge = model.calculate_edge_after_cost("BTC", 20.0, use_maker=True, include_funding=True)

    assert edge == pytest.approx(20.0 - 4.0 - 10.0)


@pytest.mark.parametrize(
    ("rate", "direction", "funding_cost"),
    [(10.0, "long", 10.0), (10.0, "short", -10.0), (-6.0, "long", -6.0), (-6.0, "short", 6.0)],
)
def test_calculate_edge_after_cost_when_direction_given_then_funding_is_signed(
    model: RealTimeCostModel, rate: float, direction: Any, funding_cost: float
) -> None:
    model.update_funding_rate("BTC", rate)

    edge = model.calculate_edge_after_cost("BTC", 20.0, use_maker=True, direction=direction)

    assert edge == pytest.approx(20.0 - 4.0 - funding_cost)


def test_calculate_edge_after_cost_when_holding_two_intervals_then_funding_doubles(
    clock: ManualClock,
) -> None:
    m = RealTimeCostModel(expected_holding_hours=16.0, funding_interval_hours=8.0, clock=clock)
    m.update_spread("BTC", 50_000.0, 50_010.0)
    m.update_funding_rate("BTC", 3.0)

    breakdown = m.get_cost_breakdown("BTC", use_maker=True, direction="long")

    assert breakdown.funding_bps == pytest.approx(6.0)
    assert breakdown.total_bps == pytest.approx(4.0 + 6.0)


def test_calculate_edge_after_cost_when_funding_excluded_then_ignored(
    model: RealTimeCostModel,
) -> None:
    model.update_funding_rate("BTC", 50.0)

    edge = model.calculate_edge_after_cost("BTC", 20.0, use_maker=True, include_funding=False)

    assert edge == pytest.approx(16.0)


def test_get_cost_breakdown_when_taking_then_parts_add_up(model: RealTimeCostModel) -> None:
    model.update_funding_rate("BTC", 1.0)

    b = model.get_cost_breakdown("BTC", use_maker=False)

    assert b.spread_leg_bps == pytest.approx(HALF_SPREAD_BPS)
    assert b.fee_bps == 5.0
    assert b.funding_bps == pytest.approx(1.0)
    assert b.legs == 2
    assert b.total_bps == pytest.approx(2 * (HALF_SPREAD_BPS + 5.0) + 1.0)


def test_calculate_edge_after_cost_when_no_quote_then_raises(model: RealTimeCostModel) -> None:
    with pytest.raises(NoQuoteError):
        model.calculate_edge_after_cost("ETH", 20.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_calculate_edge_after_cost_when_edge_not_finite_then_raises(
    model: RealTimeCostModel, bad: float
) -> None:
    with pytest.raises(InvalidCostRequestError):
        model.calculate_edge_after_cost("BTC", bad)


def test_calculate_edge_after_cost_when_direction_unknown_then_raises(
    model: RealTimeCostModel,
) -> None:
    with pytest.raises(InvalidCostRequestError):
        model.calculate_edge_after_cost("BTC", 20.0, direction="up")  # type: ignore[arg-type]
    with pytest.raises(InvalidCostRequestError):
        model.check_trade_cost("ETH", 20.0, direction="up")  # type: ignore[arg-type]


# --- should_trade / check_trade_cost --------------------------------------------------------


def test_should_trade_when_edge_after_cost_above_minimum_then_true(
    model: RealTimeCostModel,
) -> None:
    check = model.check_trade_cost("BTC", 20.0, use_maker=True)

    assert model.should_trade("BTC", 20.0, use_maker=True)
    assert check.ok
    assert check.reason_code is CostReason.OK
    assert check.edge_after_cost_bps == pytest.approx(16.0)
    assert check.quote_age_seconds == 0.0


def test_should_trade_when_edge_after_cost_exactly_minimum_then_true(
    model: RealTimeCostModel,
) -> None:
    assert model.should_trade("BTC", 9.0, use_maker=True)  # 9 - 4 = 5


def test_should_trade_when_edge_after_cost_below_minimum_then_false_with_reason(
    model: RealTimeCostModel,
) -> None:
    check = model.check_trade_cost("BTC", 8.99, use_maker=True)

    assert not model.should_trade("BTC", 8.99, use_maker=True)
    assert check.reason_code is CostReason.BELOW_MIN_EDGE
    assert "min_edge_after_cost_bps" in check.reason


def test_should_trade_when_symbol_unknown_then_false_with_no_quote(
    model: RealTimeCostModel,
) -> None:
    check = model.check_trade_cost("DOGE", 100.0)

    assert not model.should_trade("DOGE", 100.0)
    assert check.reason_code is CostReason.NO_QUOTE
    assert check.edge_after_cost_bps is None


def test_should_trade_when_only_fees_known_then_false_with_no_quote(
    model: RealTimeCostModel,
) -> None:
    model.update_fees("ETH", 1.0, 2.0)

    assert model.check_trade_cost("ETH", 100.0).reason_code is CostReason.NO_QUOTE


def test_should_trade_when_quote_older_than_stale_age_then_false_with_reason(
    model: RealTimeCostModel, clock: ManualClock
) -> None:
    clock.advance(30.0)
    assert model.should_trade("BTC", 20.0, use_maker=True)  # exactly 30 s: still fresh

    clock.advance(0.001)

    check = model.check_trade_cost("BTC", 20.0, use_maker=True)
    assert not model.should_trade("BTC", 20.0, use_maker=True)
    assert check.reason_code is CostReason.STALE_QUOTE
    assert check.quote_age_seconds == pytest.approx(30.001)
    assert check.edge_after_cost_bps == pytest.approx(16.0)
    assert model.stale_symbols() == ["BTC"]


def test_update_spread_when_quote_refreshed_then_fresh_again(
    model: RealTimeCostModel, clock: ManualClock
) -> None:
    clock.advance(100.0)

    model.update_spread("BTC", 50_001.0, 50_002.0)

    assert model.should_trade("BTC", 20.0, use_maker=True)
    assert model.stale_symbols() == []


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bid", "ask"),
    [
        (50_010.0, 50_000.0),  # crossed
        (0.0, 1.0),
        (-1.0, 1.0),
        (1.0, 0.0),
        (math.nan, 1.0),
        (1.0, math.inf),
    ],
)
def test_update_spread_when_quote_invalid_then_raises_and_keeps_state(
    model: RealTimeCostModel, bid: float, ask: float
) -> None:
    before = model.book.to_dict()

    with pytest.raises(InvalidQuoteError):
        model.update_spread("BTC", bid, ask)
    with pytest.raises(InvalidQuoteError):
        model.update_spread("NEW", bid, ask)

    assert model.book.to_dict() == before


def test_update_spread_when_bid_equals_ask_then_accepted_with_zero_spread(
    model: RealTimeCostModel,
) -> None:
    model.update_spread("ETH", 3_000.0, 3_000.0)

    edge = model.calculate_edge_after_cost("ETH", 20.0, include_funding=False)
    assert edge == pytest.approx(20.0 - 2 * 5.0)


def test_update_spread_when_older_than_held_quote_then_ignored(
    model: RealTimeCostModel, clock: ManualClock
) -> None:
    now = clock.now()

    applied = model.update_spread("BTC", 1.0, 2.0, timestamp=now - 1.0)

    assert applied is False
    quote = model.book.quote("BTC")
    assert quote is not None
    assert (quote.bid, quote.ask, quote.timestamp) == (50_000.0, 50_010.0, now)


def test_update_spread_when_timestamp_not_finite_then_raises(model: RealTimeCostModel) -> None:
    with pytest.raises(InvalidQuoteError):
        model.update_spread("BTC", 1.0, 2.0, timestamp=math.nan)


@pytest.mark.parametrize(("maker", "taker"), [(math.nan, 1.0), (1.0, math.inf)])
def test_update_fees_when_not_finite_then_raises_and_keeps_state(
    model: RealTimeCostModel, maker: float, taker: float
) -> None:
    model.update_fees("BTC", 1.0, 2.0)
    before = model.book.to_dict()

    with pytest.raises(InvalidFeeError):
        model.update_fees("BTC", maker, taker)

    assert model.book.to_dict() == before


def test_update_funding_rate_when_not_finite_then_raises_and_keeps_state(
    model: RealTimeCostModel,
) -> None:
    before = model.book.to_dict()

    with pytest.raises(InvalidFundingRateError):
        model.update_funding_rate("BTC", math.nan)

    assert model.book.to_dict() == before


def test_update_spread_when_symbol_empty_then_raises(model: RealTimeCostModel) -> None:
    with pytest.raises(InvalidSymbolError):
        model.update_spread("", 1.0, 2.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"update_interval_seconds": 0}, "update_interval_seconds"),
        ({"stale_after_seconds": 0.0}, "stale_after_seconds"),
        ({"funding_interval_hours": 0.0}, "funding_interval_hours"),
        ({"expected_holding_hours": -1.0}, "expected_holding_hours"),
        ({"min_edge_after_cost_bps": math.nan}, "min_edge_after_cost_bps"),
        ({"legs": 3}, "legs"),
    ],
)
def test_real_time_cost_model_when_setting_invalid_then_error_names_it(
    kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidCostSettingsError, match=field):
        RealTimeCostModel(**kwargs)


def test_errors_when_raised_then_are_cost_errors_and_builtins() -> None:
    assert issubclass(InvalidQuoteError, CostError)
    assert issubclass(InvalidQuoteError, ValueError)
    assert issubclass(NoQuoteError, LookupError)


# --- ranking --------------------------------------------------------------------------------


def test_rank_symbols_when_costs_differ_then_ordered_by_net_edge_after_cost(
    clock: ManualClock,
) -> None:
    m = RealTimeCostModel(clock=clock)
    m.update_spread("BTC", 100.0, 100.0)  # no spread
    m.update_spread("ETH", 99.9, 100.1)  # 10 bps half spread
    m.update_spread("SOL", 99.0, 101.0)  # 100 bps half spread
    edges = {"BTC": 20.0, "ETH": 100.0, "SOL": 1_000.0}

    ranking = m.rank_symbols_by_cost_efficiency(["SOL", "ETH", "BTC"], edges, use_maker=False)

    # kept share of edge: BTC (20-10)/20 = .5, ETH (100-30)/100 = .7, SOL (1000-210)/1000 = .79
    assert [r.symbol for r in ranking] == ["SOL", "ETH", "BTC"]
    assert [r.rank for r in ranking] == [1, 2, 3]
    assert ranking[0].cost_efficiency == pytest.approx(0.79)
    assert ranking[0].edge_after_cost_bps == pytest.approx(790.0)
    assert ranking[0].cost_bps == pytest.approx(210.0)
    assert all(r.tradeable for r in ranking)


def test_rank_symbols_when_stale_or_unquoted_then_left_out(
    model: RealTimeCostModel, clock: ManualClock
) -> None:
    clock.advance(31.0)
    model.update_spread("ETH", 3_000.0, 3_000.5)

    ranking = model.rank_symbols_by_cost_efficiency(
        ["BTC", "ETH", "SOL"], {"BTC": 20.0, "ETH": 15.0, "SOL": 25.0}
    )

    assert [r.symbol for r in ranking] == ["ETH"]


def test_rank_symbols_when_edge_not_positive_then_ranked_last_and_not_tradeable(
    clock: ManualClock,
) -> None:
    m = RealTimeCostModel(clock=clock)
    m.update_spread("A", 100.0, 100.0)
    m.update_spread("B", 100.0, 100.0)

    ranking = m.rank_symbols_by_cost_efficiency(["B", "A"], {"A": 0.0, "B": 50.0})

    assert [r.symbol for r in ranking] == ["B", "A"]
    assert ranking[1].cost_efficiency == -math.inf
    assert not ranking[1].tradeable


def test_rank_symbols_when_tied_then_ordered_by_symbol(clock: ManualClock) -> None:
    m = RealTimeCostModel(clock=clock)
    for s in ("C", "A", "B"):
        m.update_spread(s, 100.0, 100.0)

    ranking = m.rank_symbols_by_cost_efficiency(["C", "A", "B", "A"], dict.fromkeys("ABC", 30.0))

    assert [r.symbol for r in ranking] == ["A", "B", "C"]


def test_rank_symbols_when_edge_missing_then_raises(model: RealTimeCostModel) -> None:
    with pytest.raises(InvalidCostRequestError):
        model.rank_symbols_by_cost_efficiency(["BTC"], {})


# --- config, clock, state -------------------------------------------------------------------


def test_real_time_cost_model_when_built_from_config_section_then_accepts_every_key() -> None:
    config = HuracanConfig()

    m = RealTimeCostModel(**config["engine"]["cost_model"])

    assert m.update_interval_seconds == 60.0
    assert m.settings.min_edge_after_cost_bps == 5.0
    assert m.settings.stale_after_seconds == 30.0
    # unset in engine.cost_model: the exit rules' 300 s time limit
    assert m.settings.expected_holding_hours == pytest.approx(300.0 / 3600.0)


def test_cost_settings_when_defaults_then_match_config_defaults() -> None:
    config = HuracanConfig()
    section = dict(config.engine.cost_model)
    section.pop("update_interval_seconds")
    # unset in the config: the exit rules' time limit, which is CostSettings' default
    assert section.pop("expected_holding_hours") is None
    assert cost_settings(config) == CostSettings()

    assert {k: v for k, v in CostSettings().to_dict().items() if k in section} == section


# --- issue 14: funding over the holding time, ranking by net edge -----------------------------


def test_cost_check_when_funding_positive_and_held_minutes_then_long_and_short_both_pass() -> None:
    book = CostBook(cost_settings(HuracanConfig()))
    book.update_spread("BTC", 99.99, 100.01, 0.0)  # 1 bps half spread: 2 × (1 + 5) = 12 bps
    book.update_funding_rate("BTC", 10.0)

    long = book.check_trade_cost("BTC", 20.0, 0.0, direction="long")
    short = book.check_trade_cost("BTC", 20.0, 0.0, direction="short")

    # funding over 5 minutes of an 8 h interval: 10 × 5/480 bps, not 10 (main: -2 and +18)
    assert long.ok
    assert short.ok
    assert long.edge_after_cost_bps == pytest.approx(8.0 - 10.0 * 5 / 480)
    assert short.edge_after_cost_bps == pytest.approx(8.0 + 10.0 * 5 / 480)


def test_rank_symbols_when_small_edge_keeps_more_of_itself_then_large_net_edge_ranks_first() -> (
    None
):
    book = CostBook()
    for symbol in ("SMALL", "LARGE"):
        book.update_spread(symbol, 100.0, 100.0, 0.0)
    book.update_fees("SMALL", 0.3, 5.0)  # maker 2 × 0.3: 6 bps keeps 5.4 (90 %)
    book.update_fees("LARGE", 10.0, 5.0)  # maker 2 × 10: 100 bps keeps 80 (80 %)

    ranking = book.rank_symbols(["SMALL", "LARGE"], {"SMALL": 6.0, "LARGE": 100.0}, 0.0, True)

    assert [r.symbol for r in ranking] == ["LARGE", "SMALL"]  # main: SMALL first
    assert ranking[0].edge_after_cost_bps == pytest.approx(80.0)
    assert ranking[1].cost_efficiency == pytest.approx(0.9)


def test_real_time_cost_model_when_no_clock_given_then_uses_wall_clock() -> None:
    m = RealTimeCostModel()

    assert isinstance(m.clock, WallClock)
    assert isinstance(m.clock, Clock)
    assert m.clock.now() > 1_600_000_000


def test_manual_clock_when_moved_backwards_then_raises() -> None:
    clock = ManualClock(10.0)

    with pytest.raises(ClockError):
        clock.advance(-1.0)
    with pytest.raises(ClockError):
        clock.set(5.0)
    assert clock.now() == 10.0


def test_cost_book_when_round_tripped_through_json_then_identical() -> None:
    book = CostBook(CostSettings(stale_after_seconds=5.0))
    book.update_spread("BTC", 50_000.0, 50_010.0, 100.0)
    book.update_fees("BTC", 1.0, 4.0)
    book.update_funding_rate("BTC", 3.0, 99.0)
    book.update_fees("ETH", 0.5, 2.5)
    book.update_funding_rate("SOL", -1.0)

    restored = CostBook.from_dict(json.loads(json.dumps(book.to_dict())))

    assert restored.to_dict() == book.to_dict()
    assert restored.edge_after_cost("BTC", 20.0) == book.edge_after_cost("BTC", 20.0)
    assert restored.snapshot(103.0) == book.snapshot(103.0)


def test_cost_book_from_dict_when_malformed_then_raises() -> None:
    good = CostBook()
    good.update_spread("BTC", 1.0, 2.0, 0.0)
    data = good.to_dict()
    data["symbols"]["BTC"]["bid"] = 3.0  # crossed

    with pytest.raises(StateFormatError):
        CostBook.from_dict(data)
    with pytest.raises(StateFormatError):
        CostBook.from_dict({"version": 7})


def test_cost_book_snapshot_when_quotes_age_then_lists_stale_symbols() -> None:
    book = CostBook(CostSettings(stale_after_seconds=10.0))
    book.update_spread("BTC", 100.0, 101.0, 0.0)
    book.update_spread("ETH", 100.0, 100.5, 5.0)
    book.update_fees("SOL", 1.0, 2.0)

    snap = book.snapshot(12.0)

    assert snap.stale_symbols == ("BTC",)
    assert [v.symbol for v in snap.symbols] == ["BTC", "ETH", "SOL"]
    assert snap.symbols[1].quote_age_seconds == 7.0
    assert snap.symbols[1].spread_bps == pytest.approx(0.5 / 100.25 * 10_000)
    assert snap.symbols[2].bid is None
    assert snap.symbols[2].maker_fee_bps == 1.0
    json.dumps(snap.to_dict())


# --- refresh loop ---------------------------------------------------------------------------


async def test_start_when_called_then_refreshes_at_once_and_stops_cleanly(
    clock: ManualClock,
) -> None:
    m = RealTimeCostModel(update_interval_seconds=3600, clock=clock)
    m.update_spread("BTC", 100.0, 101.0)

    await m.start()
    running = m.running
    await m.stop()

    assert running
    assert not m.running
    assert m.refresh_count == 1
    assert m.last_snapshot is not None
    assert m.last_snapshot.taken_at == clock.now()
    await m.stop()  # idempotent


async def test_refresh_loop_when_running_then_calls_hook_every_interval(
    clock: ManualClock,
) -> None:
    seen: list[CostSnapshot] = []
    three = asyncio.Event()

    async def hook(snapshot: CostSnapshot) -> None:
        seen.append(snapshot)
        clock.advance(20.0)
        if len(seen) >= 3:
            three.set()

    m = RealTimeCostModel(
        update_interval_seconds=0.01, stale_after_seconds=30.0, clock=clock, on_refresh=hook
    )
    m.update_spread("BTC", 100.0, 101.0)

    async with m:
        await asyncio.wait_for(three.wait(), timeout=10.0)

    assert not m.running
    assert seen[0].stale_symbols == ()
    assert seen[1].stale_symbols == ()  # 20 s old
    assert seen[2].stale_symbols == ("BTC",)  # 40 s old
    assert [s.taken_at for s in seen[:3]] == sorted(s.taken_at for s in seen[:3])


async def test_refresh_loop_when_hook_raises_then_counts_and_keeps_going(
    clock: ManualClock,
) -> None:
    calls = 0
    done = asyncio.Event()

    def hook(snapshot: CostSnapshot) -> None:
        nonlocal calls
        calls += 1
        if calls >= 3:
            done.set()
        raise RuntimeError("publisher down")

    m = RealTimeCostModel(update_interval_seconds=0.01, clock=clock, on_refresh=hook)
    await m.start()
    try:
        await asyncio.wait_for(done.wait(), timeout=10.0)
    finally:
        await m.stop()

    assert m.hook_errors >= 3
    assert m.refresh_count >= 3


async def test_start_when_already_running_then_does_nothing(clock: ManualClock) -> None:
    m = RealTimeCostModel(update_interval_seconds=3600, clock=clock)

    await m.start()
    await m.start()
    await m.stop()

    assert m.refresh_count == 1


# --- properties -----------------------------------------------------------------------------

prices = st.floats(min_value=1e-6, max_value=1e7, allow_nan=False, allow_infinity=False)
bps = st.floats(min_value=-1_000.0, max_value=1_000.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    bid=prices,
    widen=st.floats(min_value=0.0, max_value=0.5),
    maker=bps,
    taker=bps,
    funding=bps,
    edge=bps,
    use_maker=st.booleans(),
    include_funding=st.booleans(),
    direction=st.sampled_from((None, "long", "short")),
)
def test_edge_after_cost_when_any_inputs_then_equals_edge_minus_breakdown_total(
    bid: float,
    widen: float,
    maker: float,
    taker: float,
    funding: float,
    edge: float,
    use_maker: bool,
    include_funding: bool,
    direction: Any,
) -> None:
    book = CostBook(CostSettings(expected_holding_hours=8.0))
    ask = bid * (1.0 + widen)
    book.update_spread("X", bid, ask, 0.0)
    book.update_fees("X", maker, taker)
    book.update_funding_rate("X", funding)

    eac = book.edge_after_cost("X", edge, use_maker, include_funding, direction)
    b = book.breakdown("X", use_maker, include_funding, direction)
    check = book.check_trade_cost("X", edge, 0.0, use_maker, include_funding, direction)

    assert eac == pytest.approx(edge - b.total_bps, abs=1e-9)
    assert b.total_bps == pytest.approx(2 * (b.spread_leg_bps + b.fee_bps) + b.funding_bps)
    assert b.spread_leg_bps >= 0.0
    assert check.edge_after_cost_bps == eac
    assert check.ok == (eac >= 5.0)
    if not use_maker:
        assert b.spread_leg_bps == pytest.approx((ask - bid) / ((ask + bid) / 2) / 2 * 10_000)
    if include_funding and direction is None:
        assert b.funding_bps == pytest.approx(abs(funding))


@settings(max_examples=100, deadline=None)
@given(
    quotes=st.dictionaries(
        st.text("ABCDEFGH", min_size=1, max_size=3),
        st.tuples(prices, st.floats(min_value=0.0, max_value=0.1)),
        min_size=1,
        max_size=30,
    ),
    edge=st.floats(min_value=-50.0, max_value=500.0),
)
def test_rank_symbols_when_any_quotes_then_sorted_by_net_edge_with_dense_ranks(
    quotes: dict[str, tuple[float, float]], edge: float
) -> None:
    book = CostBook()
    edges = {}
    for i, (sym, (bid, widen)) in enumerate(sorted(quotes.items())):
        book.update_spread(sym, bid, bid * (1.0 + widen), 0.0)
        edges[sym] = edge + i

    ranking = book.rank_symbols(list(quotes), edges, 0.0)

    assert [r.rank for r in ranking] == list(range(1, len(quotes) + 1))
    assert {r.symbol for r in ranking} == set(quotes)
    net = [r.edge_after_cost_bps for r in ranking]
    assert net == sorted(net, reverse=True)
    for r in ranking:
        assert r.edge_after_cost_bps == book.edge_after_cost(r.symbol, r.edge_bps)
