"""Scenario tests of the global risk controller (huracan.domain.risk), one rule per test.

Equity is 1,000,000 USD throughout unless a test says otherwise, so 1% of equity is 10,000 USD:
per-coin limit 40% = 400k (soft 320k), per-sector 60% = 600k (soft 480k), per-exchange 150%
= 1.5M (soft 1.2M), global 200% = 2M (soft 1.6M).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from huracan.config import DEFAULT_CONFIG_PATH, HuracanConfig, load_config
from huracan.domain.errors import (
    DuplicateTradeError,
    InvalidEquityError,
    InvalidLimitsError,
    InvalidTradeError,
    RiskError,
    SectorMismatchError,
    StateFormatError,
    UnknownBreakerError,
    UnknownSectorError,
    UnknownTradeError,
)
from huracan.domain.risk import (
    BreakerName,
    GlobalRiskController,
    RiskDecision,
    RiskLimits,
    RiskReason,
    TradeRequest,
)

EQUITY = 1_000_000.0


def make_controller(**limit_overrides: Any) -> GlobalRiskController:
    rc = GlobalRiskController(RiskLimits(**limit_overrides), equity_usd=EQUITY)
    for coin, sector in {
        "BTC": "L1",
        "ETH": "L1",
        "SOL": "L1",
        "UNI": "DeFi",
        "AAVE": "DeFi",
        "DOGE": "Meme",
    }.items():
        rc.set_coin_sector(coin, sector)
    return rc


def req(
    coin: str = "BTC",
    size: float = 1_000.0,
    direction: str = "long",
    exchange: str = "binance",
    sector: str | None = None,
    closes: str | None = None,
) -> TradeRequest:
    return TradeRequest(
        coin=coin,
        direction=direction,  # type: ignore[arg-type]
        size_usd=size,
        exchange=exchange,
        sector=sector,
        closes_trade_id=closes,
    )


@pytest.fixture
def rc() -> GlobalRiskController:
    return make_controller()


# --- exposure limits ------------------------------------------------------------------------


def test_check_trade_when_small_trade_then_approves(rc: GlobalRiskController) -> None:
    result = rc.check_trade(req(size=1_000.0))

    assert result.decision == RiskDecision.APPROVE
    assert result.reason_code is RiskReason.APPROVED
    assert result.limit is None
    assert result.approved
    assert not result.risk_reducing


def test_check_trade_when_called_then_state_is_unchanged(rc: GlobalRiskController) -> None:
    rc.register_trade("t1", req(size=5_000.0))
    before = rc.to_dict()

    rc.check_trade(req(size=390_000.0))
    rc.check_trade(req(size=10_000_000.0))

    assert rc.to_dict() == before


def test_check_trade_when_coin_over_80pct_then_throttles(rc: GlobalRiskController) -> None:
    result = rc.check_trade(req(size=320_000.01))

    assert result.decision == RiskDecision.THROTTLE
    assert result.reason_code is RiskReason.COIN_SOFT_LIMIT
    assert result.limit == "per_coin_max_exposure_pct"
    assert "per_coin_max_exposure_pct" in result.reason
    assert "soft_throttle_threshold_pct" in result.reason


def test_check_trade_when_coin_exactly_at_soft_threshold_then_approves(
    rc: GlobalRiskController,
) -> None:
    result = rc.check_trade(req(size=320_000.0))

    assert result.decision == RiskDecision.APPROVE


def test_check_trade_when_coin_over_limit_then_cut_to_what_fits(rc: GlobalRiskController) -> None:
    rc.register_trade("t1", req(size=300_000.0))

    result = rc.check_trade(req(size=100_000.01))

    assert result.decision == RiskDecision.THROTTLE
    assert 0 < result.approved_size_usd < 100_000.0
    assert result.reason_code is RiskReason.COIN_LIMIT
    assert result.limit == "per_coin_max_exposure_pct"
    assert "BTC" in result.reason
    assert "40.0%" in result.reason


def test_check_trade_when_coin_exactly_at_limit_and_no_soft_band_then_approves() -> None:
    rc = make_controller(soft_throttle_threshold_pct=100.0)
    rc.register_trade("t1", req(size=300_000.0))

    at_limit = rc.check_trade(req(size=100_000.0))
    past_limit = rc.check_trade(req(size=100_000.000001))

    assert at_limit.decision == RiskDecision.APPROVE
    # no band to taper over: what crosses the hard limit is cut to the 100k that fits
    assert (past_limit.decision, past_limit.reason_code) == (
        RiskDecision.THROTTLE,
        RiskReason.COIN_LIMIT,
    )
    assert past_limit.approved_size_usd == pytest.approx(100_000.0)


def test_check_trade_when_sector_over_80pct_then_throttles(rc: GlobalRiskController) -> None:
    rc.register_trade("t1", req("BTC", 300_000.0))

    result = rc.check_trade(req("ETH", 200_000.0))  # L1 -> 50% > 48% soft, ETH 20% fine

    assert result.decision == RiskDecision.THROTTLE
    assert result.reason_code is RiskReason.SECTOR_SOFT_LIMIT
    assert result.limit == "per_sector_max_exposure_pct"
    assert "sector L1" in result.reason


def test_check_trade_when_sector_over_limit_then_cut_to_what_fits(
    rc: GlobalRiskController,
) -> None:
    rc.register_trade("t1", req("BTC", 300_000.0))

    result = rc.check_trade(req("ETH", 300_000.01))  # L1 -> 60.000001%

    assert result.decision == RiskDecision.THROTTLE
    assert result.approved_size_usd < 300_000.0
    assert result.reason_code is RiskReason.SECTOR_LIMIT
    assert result.limit == "per_sector_max_exposure_pct"


def test_check_trade_when_other_sector_then_unaffected_by_full_sector(
    rc: GlobalRiskController,
) -> None:
    rc.register_trade("t1", req("BTC", 300_000.0))
    rc.register_trade("t2", req("ETH", 290_000.0))

    result = rc.check_trade(req("UNI", 100_000.0))

    assert result.decision == RiskDecision.APPROVE


def test_check_trade_when_exchange_over_80pct_then_throttles() -> None:
    rc = make_controller(per_exchange_max_exposure_pct=10.0)
    rc.register_trade("t1", req("BTC", 50_000.0, exchange="kraken"))

    result = rc.check_trade(req("UNI", 30_001.0, exchange="kraken"))  # 8.0001% > 8%

    assert result.decision == RiskDecision.THROTTLE
    assert result.reason_code is RiskReason.EXCHANGE_SOFT_LIMIT
    assert result.limit == "per_exchange_max_exposure_pct"


def test_check_trade_when_exchange_over_limit_then_cut_to_what_fits() -> None:
    rc = make_controller(per_exchange_max_exposure_pct=10.0)
    rc.register_trade("t1", req("BTC", 50_000.0, exchange="kraken"))

    on_kraken = rc.check_trade(req("UNI", 50_001.0, exchange="kraken"))
    elsewhere = rc.check_trade(req("UNI", 50_001.0, exchange="okx"))

    assert on_kraken.decision == RiskDecision.THROTTLE
    assert on_kraken.approved_size_usd < 50_000.0
    assert on_kraken.reason_code is RiskReason.EXCHANGE_LIMIT
    assert elsewhere.decision == RiskDecision.APPROVE


def test_check_trade_when_global_over_limit_then_cut_to_what_fits() -> None:
    rc = make_controller(global_max_exposure_pct=10.0)
    rc.register_trade("t1", req("BTC", 40_000.0, exchange="a"))
    rc.register_trade("t2", req("UNI", 40_000.0, exchange="b"))

    result = rc.check_trade(req("DOGE", 20_001.0, exchange="c"))

    assert result.decision == RiskDecision.THROTTLE
    assert result.approved_size_usd < 20_000.0
    assert result.reason_code is RiskReason.GLOBAL_LIMIT
    assert result.limit == "global_max_exposure_pct"
    assert "global exposure" in result.reason


def test_check_trade_when_global_over_80pct_then_throttles() -> None:
    rc = make_controller(global_max_exposure_pct=10.0)
    rc.register_trade("t1", req("BTC", 40_000.0, exchange="a"))

    result = rc.check_trade(req("UNI", 40_001.0, exchange="b"))

    assert result.decision == RiskDecision.THROTTLE
    assert result.reason_code is RiskReason.GLOBAL_SOFT_LIMIT


def test_check_trade_when_several_limits_exceeded_then_the_tightest_bucket_names_the_cut(
    rc: GlobalRiskController,
) -> None:
    rc.register_trade("t1", req("BTC", 300_000.0))

    # ETH 35% is past its soft coin threshold and takes L1 to 65% (over its hard limit):
    # the sector admits less, so it binds
    result = rc.check_trade(req("ETH", 350_000.0))

    assert result.decision == RiskDecision.THROTTLE
    assert result.reason_code is RiskReason.SECTOR_LIMIT
    assert result.approved_size_usd < 300_000.0


@pytest.mark.parametrize(
    ("limit_field", "soft_code", "hard_code"),
    [
        ("per_coin_max_exposure_pct", RiskReason.COIN_SOFT_LIMIT, RiskReason.COIN_LIMIT),
        ("per_sector_max_exposure_pct", RiskReason.SECTOR_SOFT_LIMIT, RiskReason.SECTOR_LIMIT),
        (
            "per_exchange_max_exposure_pct",
            RiskReason.EXCHANGE_SOFT_LIMIT,
            RiskReason.EXCHANGE_LIMIT,
        ),
        ("global_max_exposure_pct", RiskReason.GLOBAL_SOFT_LIMIT, RiskReason.GLOBAL_LIMIT),
    ],
)
def test_check_trade_when_at_each_boundary_then_one_micro_usd_more_changes_decision(
    limit_field: str, soft_code: RiskReason, hard_code: RiskReason
) -> None:
    # the bucket under test gets a 10% limit (soft 8% = 80k, hard 100k), the others 1000%
    others = {
        f: 1000.0
        for f in (
            "per_coin_max_exposure_pct",
            "per_sector_max_exposure_pct",
            "per_exchange_max_exposure_pct",
            "global_max_exposure_pct",
        )
    }
    rc = make_controller(**{**others, limit_field: 10.0})
    rc.register_trade("t1", req("BTC", 50_000.0))
    tiny = 0.000001

    at_soft = rc.check_trade(req("BTC", 30_000.0))
    past_soft = rc.check_trade(req("BTC", 30_000.0 + tiny))
    at_hard = rc.check_trade(req("BTC", 50_000.0))
    past_hard = rc.check_trade(req("BTC", 50_000.0 + tiny))

    assert at_soft.decision == RiskDecision.APPROVE
    assert at_soft.approved_size_usd == pytest.approx(30_000.0)
    assert (past_soft.decision, past_soft.reason_code) == (RiskDecision.THROTTLE, soft_code)
    assert past_soft.approved_size_usd == pytest.approx(30_000.0)  # the curve is continuous
    assert (at_hard.decision, at_hard.reason_code) == (RiskDecision.THROTTLE, soft_code)
    assert (past_hard.decision, past_hard.reason_code) == (RiskDecision.THROTTLE, hard_code)
    # 30k to the soft threshold, then 20k × (1 − e^(−20k/20k)) of the band
    assert at_hard.approved_size_usd == pytest.approx(30_000.0 + 20_000.0 * (1 - math.exp(-1)))
    assert past_hard.approved_size_usd >= at_hard.approved_size_usd
    assert at_soft.max_allowed_size_usd == pytest.approx(50_000.0)


def test_check_trade_when_gross_mode_then_long_and_short_both_add() -> None:
    rc = make_controller()
    rc.register_trade("t1", req("BTC", 200_000.0, direction="long"))

    result = rc.check_trade(req("BTC", 200_000.01, direction="short"))

    assert result.decision == RiskDecision.THROTTLE
    assert result.reason_code is RiskReason.COIN_LIMIT
    assert result.approved_size_usd < 200_000.0


def test_check_trade_when_net_mode_and_trade_offsets_then_approves_as_risk_reducing() -> None:
    rc = make_controller(exposure_mode="net")
    rc.register_trade("t1", req("BTC", 200_000.0, direction="long"))

    result = rc.check_trade(req("BTC", 200_000.01, direction="short"))

    assert result.decision == RiskDecision.APPROVE
    assert result.reason_code is RiskReason.RISK_REDUCING
    assert result.risk_reducing
    assert result.exposure.coin_after_pct == pytest.approx(0.000001)


def test_check_trade_when_net_mode_then_offsetting_size_extends_headroom() -> None:
    rc = make_controller(exposure_mode="net")
    rc.register_trade("t1", req("BTC", 200_000.0, direction="long"))

    result = rc.check_trade(req("BTC", 1_000.0, direction="short"))

    # a short can go through the 200k long and on to the 320k soft limit on the other side
    assert result.approved_size_usd == pytest.approx(1_000.0)
    assert result.max_allowed_size_usd == pytest.approx(600_000.0)
    assert rc.check_trade(req("BTC", 520_000.0, direction="short")).decision == (
        RiskDecision.APPROVE
    )
    past = rc.check_trade(req("BTC", 600_000.01, direction="short"))
    assert past.decision == RiskDecision.THROTTLE
    assert 520_000.0 < past.approved_size_usd < 600_000.0


def test_register_trade_when_net_mode_then_summary_shows_net_exposure() -> None:
    rc = make_controller(exposure_mode="net")

    rc.register_trade("t1", req("BTC", 200_000.0, direction="long"))
    rc.register_trade("t2", req("BTC", 50_000.0, direction="short"))

    summary = rc.get_exposure_summary()
    assert summary["per_coin"]["BTC"]["exposure_usd"] == pytest.approx(150_000.0)
    assert summary["global"]["total_exposure_pct"] == pytest.approx(15.0)
    assert summary["per_exchange"]["binance"]["exposure_usd"] == pytest.approx(150_000.0)


def test_check_trade_when_bucket_already_over_limit_then_only_increases_are_refused() -> None:
    rc = make_controller(exposure_mode="net")
    rc.register_trade("t1", req("BTC", 300_000.0))
    rc.update_equity(500_000.0)  # BTC is now 60% of equity, over its 40% limit
    rc.reset_breaker("drawdown")  # the 50% drawdown is not under test here

    more = rc.check_trade(req("BTC", 100.0))
    less = rc.check_trade(req("BTC", 1_000.0, direction="short"))
    other = rc.check_trade(req("UNI", 1_000.0, exchange="okx"))

    assert more.decision == RiskDecision.BLOCK
    assert more.reason_code is RiskReason.COIN_LIMIT
    assert less.decision == RiskDecision.APPROVE
    assert other.decision == RiskDecision.APPROVE


# --- largest approvable size ----------------------------------------------------------------


def test_check_trade_when_throttled_then_approved_size_is_the_resize_and_is_approved_again(
    rc: GlobalRiskController,
) -> None:
    rc.register_trade("t1", req("BTC", 300_000.0))
    result = rc.check_trade(req("ETH", 250_000.0))

    at_soft = rc.check_trade(req("ETH", 180_000.0))  # 48% L1 soft - 30%
    retry = rc.check_trade(req("ETH", result.approved_size_usd))

    assert result.decision == RiskDecision.THROTTLE
    # 180k to the L1 soft threshold, then 120k × (1 − e^(−70k/120k)) of the band
    assert result.approved_size_usd == pytest.approx(
        180_000.0 + 120_000.0 * (1 - math.exp(-70 / 120)), abs=1e-6
    )
    assert result.max_approvable_size_usd == result.approved_size_usd
    assert at_soft.decision == RiskDecision.APPROVE
    assert retry.decision == RiskDecision.THROTTLE  # past the soft threshold, resized again
    assert retry.approved_size_usd < result.approved_size_usd


def test_check_trade_when_any_size_requested_then_approved_stays_below_max_allowed_size(
    rc: GlobalRiskController,
) -> None:
    rc.register_trade("t1", req("BTC", 300_000.0))
    result = rc.check_trade(req("ETH", 350_000.0))

    huge = rc.check_trade(req("ETH", 1e9))

    assert result.max_allowed_size_usd == pytest.approx(300_000.0)
    assert result.approved_size_usd < huge.approved_size_usd <= 300_000.0
    assert huge.approved_size_usd == pytest.approx(300_000.0, abs=0.01)


def test_check_trade_when_approved_then_reports_exposure_snapshot(
    rc: GlobalRiskController,
) -> None:
    rc.register_trade("t1", req("BTC", 100_000.0))

    snap = rc.check_trade(req("ETH", 50_000.0)).exposure

    assert (snap.coin, snap.sector, snap.exchange) == ("ETH", "L1", "binance")
    assert snap.coin_pct == pytest.approx(0.0)
    assert snap.coin_after_pct == pytest.approx(5.0)
    assert snap.sector_pct == pytest.approx(10.0)
    assert snap.sector_after_pct == pytest.approx(15.0)
    assert snap.exchange_after_pct == pytest.approx(15.0)
    assert snap.global_after_pct == pytest.approx(15.0)
    assert snap.active_trades == 1
    assert snap.to_dict()["sector_after_pct"] == pytest.approx(15.0)


# --- trade counts ---------------------------------------------------------------------------


def test_check_trade_when_max_active_trades_reached_then_blocks() -> None:
    rc = make_controller(max_active_trades=2, max_concurrent_trades=10)
    rc.register_trade("t1", req("BTC"))
    rc.register_trade("t2", req("ETH"))

    result = rc.check_trade(req("UNI"))

    assert result.decision == RiskDecision.BLOCK
    assert result.reason_code is RiskReason.MAX_ACTIVE_TRADES
    assert result.limit == "max_active_trades"
    assert result.max_approvable_size_usd == 0.0


def test_check_trade_when_max_concurrent_trades_reached_then_blocks() -> None:
    rc = make_controller(max_active_trades=10, max_concurrent_trades=2)
    rc.register_trade("t1", req("BTC"))
    rc.register_trade("t2", req("ETH"))

    result = rc.check_trade(req("UNI"))

    assert result.decision == RiskDecision.BLOCK
    assert result.reason_code is RiskReason.MAX_CONCURRENT_TRADES
    assert result.limit == "max_concurrent_trades"


def test_check_trade_when_reservations_in_flight_then_they_count_as_trades() -> None:
    rc = make_controller(max_active_trades=2, max_concurrent_trades=10)
    rc.register_trade("t1", req("BTC"))
    assert rc.reserve_trade("r1", req("ETH")).decision == RiskDecision.APPROVE

    result = rc.check_trade(req("UNI"))

    assert result.decision == RiskDecision.BLOCK
    assert result.reason_code is RiskReason.MAX_ACTIVE_TRADES


def test_check_trade_when_trade_closed_then_slot_is_free_again() -> None:
    rc = make_controller(max_active_trades=1)
    rc.register_trade("t1", req("BTC"))
    assert rc.check_trade(req("ETH")).decision == RiskDecision.BLOCK

    rc.close_trade("t1")

    assert rc.check_trade(req("ETH")).decision == RiskDecision.APPROVE


def test_check_trade_when_counts_full_then_close_requests_still_approved() -> None:
    rc = make_controller(max_active_trades=1)
    rc.register_trade("t1", req("BTC", 5_000.0))

    result = rc.check_trade(req("BTC", 5_000.0, closes="t1"))

    assert result.decision == RiskDecision.APPROVE
    assert result.reason_code is RiskReason.RISK_REDUCING


# --- reservations ---------------------------------------------------------------------------


def test_reserve_trade_when_approved_then_holds_exposure_until_released(
    rc: GlobalRiskController,
) -> None:
    result = rc.reserve_trade("r1", req("BTC", 100_000.0), timestamp=10.0)

    held = rc.get_exposure_summary()
    rc.release_trade("r1")
    released = rc.get_exposure_summary()

    assert result.decision == RiskDecision.APPROVE
    assert held["global"]["total_exposure_pct"] == pytest.approx(10.0)
    assert held["global"]["reserved_exposure_usd"] == pytest.approx(100_000.0)
    assert held["in_flight_trades"] == 1
    assert held["active_trades"] == 0
    assert released["global"]["total_exposure_pct"] == 0.0
    assert released["in_flight_trades"] == 0


def test_reserve_trade_when_reserved_then_next_check_sees_it(rc: GlobalRiskController) -> None:
    rc.reserve_trade("r1", req("BTC", 300_000.0))

    result = rc.check_trade(req("BTC", 100_000.01))

    assert result.decision == RiskDecision.THROTTLE
    assert result.approved_size_usd < 100_000.0


def test_reserve_trade_when_net_mode_and_order_offsets_then_charged_in_full() -> None:
    rc = make_controller(exposure_mode="net")
    rc.register_trade("t1", req("BTC", 200_000.0))

    direct = rc.check_trade(req("BTC", 100_000.0, direction="short"))
    reserved = rc.reserve_trade("r1", req("BTC", 100_000.0, direction="short"))
    more_long = rc.check_trade(req("BTC", 100_000.0))

    assert direct.risk_reducing
    assert reserved.decision == RiskDecision.APPROVE
    assert not reserved.risk_reducing
    # the short may never fill: BTC is charged 200k open + 100k in flight
    assert rc.get_exposure_summary()["per_coin"]["BTC"]["exposure_usd"] == pytest.approx(300_000.0)
    assert more_long.decision == RiskDecision.THROTTLE
    assert more_long.exposure.coin_after_pct == pytest.approx(40.0)


def test_register_trade_when_net_mode_reservation_fills_then_it_offsets() -> None:
    rc = make_controller(exposure_mode="net")
    rc.register_trade("t1", req("BTC", 200_000.0))
    rc.reserve_trade("r1", req("BTC", 100_000.0, direction="short"))

    rc.register_trade("r1", req("BTC", 100_000.0, direction="short"))

    assert rc.get_exposure_summary()["per_coin"]["BTC"]["exposure_usd"] == pytest.approx(100_000.0)


def test_reserve_trade_when_throttled_then_holds_the_resized_size(
    rc: GlobalRiskController,
) -> None:
    result = rc.reserve_trade("r1", req("BTC", 350_000.0))

    assert result.decision == RiskDecision.THROTTLE
    assert rc.in_flight_trades == 1
    assert rc.get_exposure_summary()["global"]["total_exposure_usd"] == pytest.approx(
        result.approved_size_usd
    )
    assert 320_000.0 < result.approved_size_usd < 350_000.0


def test_reserve_trade_when_blocked_then_holds_nothing(rc: GlobalRiskController) -> None:
    rc.engage_kill_switch("ops")

    result = rc.reserve_trade("r1", req("BTC", 1_000.0))

    assert result.decision == RiskDecision.BLOCK
    assert rc.in_flight_trades == 0


def test_register_trade_when_reserved_then_fill_replaces_reservation(
    rc: GlobalRiskController,
) -> None:
    rc.reserve_trade("r1", req("BTC", 100_000.0), timestamp=5.0)

    opened = rc.register_trade("r1", req("BTC", 60_000.0))  # partial fill

    summary = rc.get_exposure_summary()
    assert opened.size_usd == pytest.approx(60_000.0)
    assert opened.opened_at == 5.0
    assert summary["active_trades"] == 1
    assert summary["in_flight_trades"] == 0
    assert summary["global"]["total_exposure_usd"] == pytest.approx(60_000.0)


def test_register_trade_when_fill_does_not_match_reservation_then_raises_and_keeps_state(
    rc: GlobalRiskController,
) -> None:
    rc.reserve_trade("r1", req("BTC", 100_000.0))
    before = rc.to_dict()

    with pytest.raises(InvalidTradeError):
        rc.register_trade("r1", req("ETH", 100_000.0))

    assert rc.to_dict() == before


def test_reserve_trade_when_id_in_use_then_raises_duplicate(rc: GlobalRiskController) -> None:
    rc.reserve_trade("r1", req("BTC"))
    rc.register_trade("t1", req("ETH"))
    before = rc.to_dict()

    with pytest.raises(DuplicateTradeError):
        rc.reserve_trade("r1", req("BTC"))
    with pytest.raises(DuplicateTradeError):
        rc.reserve_trade("t1", req("BTC"))

    assert rc.to_dict() == before


def test_release_trade_when_unknown_id_then_raises(rc: GlobalRiskController) -> None:
    with pytest.raises(UnknownTradeError):
        rc.release_trade("nope")


# --- register / close -----------------------------------------------------------------------


def test_register_trade_when_duplicate_id_then_raises_and_keeps_state(
    rc: GlobalRiskController,
) -> None:
    rc.register_trade("t1", req("BTC", 1_000.0))
    before = rc.to_dict()

    with pytest.raises(DuplicateTradeError):
        rc.register_trade("t1", req("ETH", 1_000.0))

    assert rc.to_dict() == before


def test_register_trade_when_close_request_then_raises(rc: GlobalRiskController) -> None:
    rc.register_trade("t1", req("BTC", 1_000.0))

    with pytest.raises(InvalidTradeError):
        rc.register_trade("t2", req("BTC", 1_000.0, closes="t1"))


def test_close_trade_when_full_then_exposure_returns_to_zero(rc: GlobalRiskController) -> None:
    rc.register_trade("t1", req("BTC", 123_456.78))

    remaining = rc.close_trade("t1")

    summary = rc.get_exposure_summary()
    assert remaining is None
    assert summary["active_trades"] == 0
    assert summary["global"]["total_exposure_usd"] == 0.0
    assert summary["per_coin"] == {}
    assert summary["per_sector"] == {}
    assert summary["per_exchange"] == {}


def test_close_trade_when_partial_then_remaining_size_stays_open(
    rc: GlobalRiskController,
) -> None:
    rc.register_trade("t1", req("BTC", 100_000.0))

    remaining = rc.close_trade("t1", size_usd=30_000.0)

    assert remaining is not None
    assert remaining.size_usd == pytest.approx(70_000.0)
    assert rc.get_exposure_summary()["per_coin"]["BTC"]["exposure_usd"] == pytest.approx(70_000.0)
    assert rc.active_trades == 1


def test_close_trade_when_size_too_large_then_raises_and_keeps_state(
    rc: GlobalRiskController,
) -> None:
    rc.register_trade("t1", req("BTC", 100_000.0))
    before = rc.to_dict()

    for bad in (100_000.01, 0.0, -1.0, math.nan, math.inf):
        with pytest.raises(InvalidTradeError):
            rc.close_trade("t1", size_usd=bad)

    assert rc.to_dict() == before


def test_close_trade_when_unknown_id_then_raises(rc: GlobalRiskController) -> None:
    with pytest.raises(UnknownTradeError):
        rc.close_trade("nope")


def test_check_trade_when_close_request_does_not_match_then_raises(
    rc: GlobalRiskController,
) -> None:
    rc.register_trade("t1", req("BTC", 10_000.0))

    with pytest.raises(InvalidTradeError):
        rc.check_trade(req("ETH", 10_000.0, closes="t1"))
    with pytest.raises(InvalidTradeError):
        rc.check_trade(req("BTC", 10_000.0, direction="short", closes="t1"))
    with pytest.raises(InvalidTradeError):
        rc.check_trade(req("BTC", 10_000.01, closes="t1"))
    with pytest.raises(UnknownTradeError):
        rc.check_trade(req("BTC", 10_000.0, closes="t2"))


# --- equity and drawdown breaker ------------------------------------------------------------


def test_update_equity_when_equity_halves_then_percentages_double(
    rc: GlobalRiskController,
) -> None:
    rc.register_trade("t1", req("BTC", 100_000.0))

    rc.update_equity(500_000.0)
    rc.reset_breaker("drawdown")  # the drawdown is not under test here

    summary = rc.get_exposure_summary()
    assert summary["global"]["total_exposure_pct"] == pytest.approx(20.0)
    assert summary["per_coin"]["BTC"]["exposure_pct"] == pytest.approx(20.0)
    # the coin limit is now 200k: 100k more would reach it, so it is cut into the band
    assert rc.check_trade(req("BTC", 100_000.01)).decision == RiskDecision.THROTTLE
    assert rc.check_trade(req("BTC", 60_000.0)).decision == RiskDecision.APPROVE


def test_update_equity_when_drawdown_reaches_limit_then_trips_and_blocks(
    rc: GlobalRiskController,
) -> None:
    rc.update_equity(1_100_000.0, timestamp=1.0)  # new peak
    rc.update_equity(1_000_000.0, timestamp=2.0)  # 9.09% down
    assert not rc.halted

    drawdown = rc.update_equity(990_000.0, timestamp=3.0)  # 10% down

    result = rc.check_trade(req("BTC", 1_000.0))
    assert drawdown == pytest.approx(10.0)
    assert rc.breakers()[BreakerName.DRAWDOWN].tripped
    assert rc.breakers()[BreakerName.DRAWDOWN].tripped_at == 3.0
    assert result.decision == RiskDecision.BLOCK
    assert result.reason_code is RiskReason.DRAWDOWN_BREAKER
    assert result.limit == "max_drawdown_pct"
    assert "drawdown" in result.reason


def test_update_equity_when_equity_recovers_then_breaker_stays_tripped_until_reset(
    rc: GlobalRiskController,
) -> None:
    rc.update_equity(850_000.0)
    rc.update_equity(1_200_000.0)
    assert rc.check_trade(req()).decision == RiskDecision.BLOCK

    before = rc.reset_breaker("drawdown")

    assert before.tripped
    assert not rc.halted
    assert rc.check_trade(req()).decision == RiskDecision.APPROVE


def test_reset_breaker_when_drawdown_then_peak_rebases_to_current_equity(
    rc: GlobalRiskController,
) -> None:
    rc.update_equity(880_000.0)

    rc.reset_breaker(BreakerName.DRAWDOWN)
    rc.update_equity(870_000.0)

    assert rc.peak_equity_usd == pytest.approx(880_000.0)
    assert not rc.halted


def test_check_trade_when_breaker_tripped_then_closes_stay_allowed(
    rc: GlobalRiskController,
) -> None:
    rc.register_trade("t1", req("BTC", 50_000.0))
    rc.update_equity(800_000.0)

    result = rc.check_trade(req("BTC", 50_000.0, closes="t1"))
    rc.close_trade("t1")

    assert result.decision == RiskDecision.APPROVE
    assert result.reason_code is RiskReason.RISK_REDUCING
    assert result.max_approvable_size_usd == pytest.approx(50_000.0)
    assert rc.active_trades == 0


def test_check_trade_when_breaker_tripped_and_net_offsetting_trade_then_allowed() -> None:
    rc = make_controller(exposure_mode="net")
    rc.register_trade("t1", req("BTC", 50_000.0))
    rc.engage_kill_switch("ops", timestamp=1.0)

    hedge = rc.check_trade(req("BTC", 20_000.0, direction="short"))
    increase = rc.check_trade(req("BTC", 120_000.0, direction="short"))

    assert hedge.decision == RiskDecision.APPROVE
    assert hedge.risk_reducing
    assert increase.decision == RiskDecision.BLOCK
    assert increase.reason_code is RiskReason.KILL_SWITCH
    assert increase.max_approvable_size_usd == pytest.approx(100_000.0)


# --- error breaker and kill switch ----------------------------------------------------------


def test_record_execution_error_when_run_reaches_limit_then_trips(
    rc: GlobalRiskController,
) -> None:
    for i in range(4):
        assert not rc.record_execution_error(timestamp=float(i))
    assert rc.check_trade(req()).decision == RiskDecision.APPROVE

    tripped = rc.record_execution_error(timestamp=4.0, detail="exchange timeout")

    result = rc.check_trade(req())
    assert tripped
    assert result.decision == RiskDecision.BLOCK
    assert result.reason_code is RiskReason.ERROR_BREAKER
    assert result.limit == "max_consecutive_errors"
    assert "exchange timeout" in result.reason
    assert rc.breakers()[BreakerName.ERRORS].tripped_at == 4.0


def test_record_execution_error_when_run_broken_by_success_then_does_not_trip(
    rc: GlobalRiskController,
) -> None:
    for _ in range(4):
        rc.record_execution_error()
    rc.record_execution_success()
    for _ in range(4):
        rc.record_execution_error()

    assert not rc.halted
    assert rc.consecutive_errors == 4


def test_register_trade_when_errors_in_a_row_then_ends_the_run(
    rc: GlobalRiskController,
) -> None:
    for _ in range(4):
        rc.record_execution_error()

    rc.register_trade("t1", req())
    rc.record_execution_error()

    assert rc.consecutive_errors == 1
    assert not rc.halted


def test_reset_breaker_when_errors_then_clears_the_run(rc: GlobalRiskController) -> None:
    for _ in range(5):
        rc.record_execution_error()

    rc.reset_breaker("errors")

    assert rc.consecutive_errors == 0
    assert rc.check_trade(req()).decision == RiskDecision.APPROVE


def test_engage_kill_switch_when_engaged_then_blocks_until_reset(
    rc: GlobalRiskController,
) -> None:
    rc.engage_kill_switch("operator halt", timestamp=42.0)

    blocked = rc.check_trade(req())
    rc.reset_breaker("kill_switch")
    after = rc.check_trade(req())

    assert blocked.decision == RiskDecision.BLOCK
    assert blocked.reason_code is RiskReason.KILL_SWITCH
    assert "operator halt" in blocked.reason
    assert after.decision == RiskDecision.APPROVE


def test_check_trade_when_several_breakers_tripped_then_kill_switch_reported_first(
    rc: GlobalRiskController,
) -> None:
    rc.update_equity(500_000.0)
    rc.engage_kill_switch()

    assert rc.check_trade(req()).reason_code is RiskReason.KILL_SWITCH
    rc.reset_breaker("kill_switch")
    assert rc.check_trade(req()).reason_code is RiskReason.DRAWDOWN_BREAKER


def test_reset_breaker_when_unknown_name_then_raises(rc: GlobalRiskController) -> None:
    with pytest.raises(UnknownBreakerError):
        rc.reset_breaker("volcano")


def test_register_trade_when_breaker_tripped_then_records_the_fact(
    rc: GlobalRiskController,
) -> None:
    rc.engage_kill_switch()

    rc.register_trade("t1", req("BTC", 1_000.0))

    assert rc.active_trades == 1


# --- sectors --------------------------------------------------------------------------------


def test_check_trade_when_coin_sector_unknown_then_raises_and_keeps_state(
    rc: GlobalRiskController,
) -> None:
    before = rc.to_dict()

    with pytest.raises(UnknownSectorError):
        rc.check_trade(req("PEPE"))
    with pytest.raises(UnknownSectorError):
        rc.register_trade("t1", req("PEPE"))
    with pytest.raises(UnknownSectorError):
        rc.reserve_trade("r1", req("PEPE"))

    assert rc.to_dict() == before


def test_check_trade_when_request_sector_disagrees_then_raises(rc: GlobalRiskController) -> None:
    before = rc.to_dict()

    with pytest.raises(SectorMismatchError):
        rc.check_trade(req("BTC", sector="DeFi"))
    with pytest.raises(SectorMismatchError):
        rc.register_trade("t1", req("BTC", sector="DeFi"))

    assert rc.to_dict() == before


def test_register_trade_when_coin_unregistered_then_request_sector_is_adopted(
    rc: GlobalRiskController,
) -> None:
    assert rc.check_trade(req("PEPE", sector="Meme")).decision == RiskDecision.APPROVE

    rc.register_trade("t1", req("PEPE", 10_000.0, sector="Meme"))

    assert rc.coin_sector("PEPE") == "Meme"
    assert rc.get_exposure_summary()["per_sector"]["Meme"]["exposure_usd"] == pytest.approx(
        10_000.0
    )
    with pytest.raises(SectorMismatchError):
        rc.check_trade(req("PEPE", sector="AI"))


def test_set_coin_sector_when_coin_has_exposure_then_exposure_moves(
    rc: GlobalRiskController,
) -> None:
    rc.register_trade("t1", req("SOL", 100_000.0))

    rc.set_coin_sector("SOL", "AltL1")

    sectors = rc.get_exposure_summary()["per_sector"]
    assert "L1" not in sectors
    assert sectors["AltL1"]["exposure_usd"] == pytest.approx(100_000.0)


# --- input validation -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [0.0, -1.0, math.nan, math.inf, -math.inf, 1e-9])
def test_trade_request_when_size_not_positive_finite_then_raises(size: float) -> None:
    with pytest.raises(InvalidTradeError):
        req(size=size)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"direction": "up"},
        {"coin": ""},
        {"exchange": ""},
        {"sector": ""},
        {"closes": ""},
    ],
)
def test_trade_request_when_field_invalid_then_raises(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidTradeError):
        req(**kwargs)


def test_trade_request_when_bool_size_then_raises() -> None:
    with pytest.raises(InvalidTradeError):
        TradeRequest(coin="BTC", direction="long", size_usd=True, exchange="x")


def test_check_trade_when_not_a_trade_request_then_raises(rc: GlobalRiskController) -> None:
    with pytest.raises(InvalidTradeError):
        rc.check_trade({"coin": "BTC"})  # type: ignore[arg-type]


@pytest.mark.parametrize("equity", [0.0, -5.0, math.nan, math.inf])
def test_update_equity_when_invalid_then_raises_and_keeps_state(
    rc: GlobalRiskController, equity: float
) -> None:
    before = rc.to_dict()

    with pytest.raises(InvalidEquityError):
        rc.update_equity(equity)

    assert rc.to_dict() == before


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("global_max_exposure_pct", 0.0),
        ("per_coin_max_exposure_pct", -1.0),
        ("per_sector_max_exposure_pct", math.nan),
        ("soft_throttle_threshold_pct", 120.0),
        ("max_concurrent_trades", 0),
        ("max_active_trades", 1.5),
        ("max_drawdown_pct", 0.0),
        ("max_consecutive_errors", 0),
        ("exposure_mode", "sideways"),
    ],
)
def test_risk_limits_when_field_out_of_range_then_error_names_it(field: str, value: Any) -> None:
    with pytest.raises(InvalidLimitsError, match=field):
        RiskLimits(**{field: value})


def test_errors_when_raised_then_are_risk_errors_and_builtins() -> None:
    assert issubclass(InvalidTradeError, RiskError)
    assert issubclass(InvalidTradeError, ValueError)
    assert issubclass(UnknownTradeError, LookupError)


# --- config ---------------------------------------------------------------------------------


def test_risk_limits_when_built_from_config_then_takes_every_key() -> None:
    config = load_config(DEFAULT_CONFIG_PATH, environ={})

    limits = RiskLimits(**config["engine"]["risk"])

    assert limits.global_max_exposure_pct == 200.0
    assert limits.max_active_trades == 100
    assert limits.max_drawdown_pct == 10.0
    assert limits.max_consecutive_errors == 5
    assert limits.exposure_mode == "gross"


def test_risk_limits_when_defaults_then_match_config_defaults() -> None:
    assert RiskLimits().to_dict() == {**dict(HuracanConfig().engine.risk), "exposure_mode": "gross"}


def test_set_limits_when_mode_switched_to_net_then_totals_are_refolded(
    rc: GlobalRiskController,
) -> None:
    rc.register_trade("t1", req("BTC", 100_000.0))
    rc.register_trade("t2", req("BTC", 100_000.0, direction="short"))
    assert rc.get_exposure_summary()["global"]["total_exposure_usd"] == pytest.approx(200_000.0)

    rc.set_limits(RiskLimits(exposure_mode="net"))

    assert rc.get_exposure_summary()["global"]["total_exposure_usd"] == 0.0


def test_set_limits_when_tightened_then_new_checks_use_them(rc: GlobalRiskController) -> None:
    rc.register_trade("t1", req("BTC", 100_000.0))

    rc.set_limits(RiskLimits(per_coin_max_exposure_pct=10.0))

    assert rc.check_trade(req("BTC", 1.0)).decision == RiskDecision.BLOCK
    assert rc.active_trades == 1


# --- summary --------------------------------------------------------------------------------


def test_get_exposure_summary_when_trades_open_then_has_documented_shape(
    rc: GlobalRiskController,
) -> None:
    rc.register_trade("t1", req("BTC", 100_000.0, exchange="binance"))
    rc.register_trade("t2", req("UNI", 50_000.0, exchange="okx"))
    rc.reserve_trade("r1", req("ETH", 10_000.0, exchange="okx"))
    rc.record_execution_error()

    summary = rc.get_exposure_summary()

    assert summary["global"]["total_exposure_pct"] == pytest.approx(16.0)
    assert summary["global"]["utilization_pct"] == pytest.approx(8.0)
    assert summary["active_trades"] == 2
    assert summary["in_flight_trades"] == 1
    assert summary["concurrent_trades"] == 3
    assert summary["per_coin"]["BTC"] == {
        "sector": "L1",
        "exposure_usd": pytest.approx(100_000.0),
        "exposure_pct": pytest.approx(10.0),
        "limit_pct": 40.0,
        "utilization_pct": pytest.approx(25.0),
    }
    assert set(summary["per_sector"]) == {"L1", "DeFi"}
    assert summary["per_sector"]["L1"]["exposure_pct"] == pytest.approx(11.0)
    assert summary["per_exchange"]["okx"]["exposure_pct"] == pytest.approx(6.0)
    assert summary["utilization_pct"]["max_coin"] == pytest.approx(25.0)
    assert summary["utilization_pct"]["max_sector"] == pytest.approx(11.0 / 60.0 * 100.0)
    assert summary["utilization_pct"]["max_active_trades"] == pytest.approx(3.0)
    assert summary["utilization_pct"]["max_concurrent_trades"] == pytest.approx(0.6)
    assert summary["trade_limits"]["max_active_trades"] == {
        "count": 3,
        "limit": 100,
        "utilization_pct": pytest.approx(3.0),
    }
    assert set(summary["breakers"]) == {"kill_switch", "drawdown", "errors"}
    assert summary["breakers"]["errors"] == {"tripped": False, "reason": "", "tripped_at": None}
    assert summary["consecutive_errors"] == 1
    assert summary["halted"] is False
    assert summary["equity_usd"] == EQUITY
    json.dumps(summary)  # plain data


# --- state ----------------------------------------------------------------------------------


def test_from_dict_when_round_tripped_through_json_then_decides_identically(
    rc: GlobalRiskController,
) -> None:
    rc.register_trade("t1", req("BTC", 300_000.0))
    rc.reserve_trade("r1", req("UNI", 20_000.0, exchange="okx"), timestamp=7.0)
    rc.update_equity(1_050_000.0)
    rc.record_execution_error(timestamp=3.0)
    rc.engage_kill_switch("test", timestamp=9.0)
    rc.reset_breaker("kill_switch")

    restored = GlobalRiskController.from_dict(json.loads(json.dumps(rc.to_dict())))

    assert restored.to_dict() == rc.to_dict()
    assert restored.get_exposure_summary() == rc.get_exposure_summary()
    for probe in (req("ETH", 200_000.0), req("BTC", 50_000.0), req("UNI", 1.0, exchange="okx")):
        assert restored.check_trade(probe) == rc.check_trade(probe)


def test_from_state_when_state_copied_then_original_is_independent(
    rc: GlobalRiskController,
) -> None:
    rc.register_trade("t1", req("BTC", 10_000.0))
    clone = GlobalRiskController.from_state(rc.state())

    clone.register_trade("t2", req("ETH", 10_000.0))

    assert rc.active_trades == 1
    assert clone.active_trades == 2


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(version=99),
        lambda d: d.pop("trades"),
        lambda d: d["trades"].append(dict(d["trades"][0])),
        lambda d: d["coin_sectors"].clear(),
        lambda d: d["trades"][0].update(direction="sideways"),
        lambda d: d.update(equity_micro_usd=0),
    ],
)
def test_from_dict_when_malformed_then_raises_state_format_error(
    rc: GlobalRiskController, mutate: Any
) -> None:
    rc.register_trade("t1", req("BTC", 10_000.0))
    data = rc.to_dict()
    mutate(data)

    with pytest.raises(StateFormatError):
        GlobalRiskController.from_dict(data)


def test_check_trade_when_float_sizes_accumulate_then_limit_is_exact() -> None:
    rc = make_controller(soft_throttle_threshold_pct=100.0)
    for i in range(10):
        assert rc.check_trade(req("BTC", 0.1 * 400_000.0)).decision == RiskDecision.APPROVE
        rc.register_trade(f"t{i}", req("BTC", 0.1 * 400_000.0))

    # exactly 40% now: one more micro-USD is over, nothing is lost to float drift
    assert rc.get_exposure_summary()["per_coin"]["BTC"]["exposure_pct"] == 40.0
    assert rc.check_trade(req("BTC", 0.000001)).decision == RiskDecision.BLOCK
