"""THROTTLE has one meaning (issue 14, point 5): between the soft threshold and the hard limit
the approved size shrinks smoothly; a request that would cross a hard limit is cut to what fits;
BLOCK only when nothing useful fits. Scenario tests drive the unchanged risk sequencer, so each
shows what the pipeline would execute; the properties check monotonicity and the hard limits.

Equity is 1,000,000 USD: the per-coin limit of 40 % is 400k, its soft threshold (80 %) 320k.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from huracan.domain.risk import (
    MICRO_USD,
    GlobalRiskController,
    RiskDecision,
    RiskLimits,
    RiskReason,
    TradeRequest,
)
from huracan.domain.sequencer import RiskSequencer

EQUITY = 1_000_000.0
SECTORS = {"BTC": "L1", "ETH": "L1", "SOL": "L1", "UNI": "DeFi", "DOGE": "Meme"}


def _sequencer(**limits: Any) -> RiskSequencer:
    ctl = GlobalRiskController(RiskLimits(**limits), equity_usd=EQUITY, coin_sectors=SECTORS)
    return RiskSequencer(ctl)


def _open(n: int, size: float, coin: str = "BTC") -> dict[str, Any]:
    return {
        "event_id": f"treq:{n}",
        "correlation_id": f"tick:{coin}:{n}",
        "request_id": f"r{n}",
        "coin": coin,
        "ts": 1_000_000 + n,
        "direction": "LONG",
        "size_usd": size,
        "exchange": "binance",
        "sector": SECTORS[coin],
        "intent": "OPEN",
    }


def _coin_exposure(seq: RiskSequencer, coin: str = "BTC") -> float:
    return seq.controller.exposure_units()["per_coin"].get(coin, 0) / MICRO_USD


def test_decide_when_repeated_30k_opens_then_coin_exposure_fills_the_band_up_to_its_limit() -> None:
    seq = _sequencer()

    decisions = [seq.decide(_open(n, 30_000.0)) for n in range(60)]

    exposure = _coin_exposure(seq)
    assert exposure > 0.95 * 400_000.0  # main stopped at 320k (32 % of equity)
    assert exposure <= 400_000.0
    outcomes = [d["decision"] for d in decisions if d is not None]
    assert "THROTTLE" in outcomes
    assert outcomes[-1] == "BLOCK"


def test_decide_when_coin_at_300k_then_a_101k_request_gets_no_less_than_a_30k_request() -> None:
    small, large = _sequencer(), _sequencer()
    for seq in (small, large):
        seq.decide(_open(0, 300_000.0))

    d_small = small.decide(_open(1, 30_000.0))
    d_large = large.decide(_open(1, 101_000.0))

    assert d_small is not None
    assert d_large is not None
    assert d_large["decision"] == "THROTTLE"  # main: BLOCK with 0
    assert d_large["approved_size_usd"] >= d_small["approved_size_usd"] > 20_000.0
    assert _coin_exposure(large) <= 400_000.0


def test_decide_when_request_would_cross_the_hard_limit_then_cut_to_what_fits() -> None:
    seq = _sequencer()
    seq.controller.register_trade("t0", TradeRequest("BTC", "long", 390_000.0, "binance"))

    d = seq.decide(_open(1, 50_000.0))

    assert d is not None
    assert (d["decision"], d["reason_code"]) == ("THROTTLE", "per_coin_limit")
    assert 0.0 < d["approved_size_usd"] <= 10_000.0
    assert _coin_exposure(seq) <= 400_000.0


def test_decide_when_resize_is_below_the_minimum_then_blocks_below_min_size() -> None:
    seq = _sequencer()
    seq.controller.register_trade("t0", TradeRequest("BTC", "long", 399_995.0, "binance"))

    d = seq.decide(_open(1, 30_000.0))

    assert d is not None
    assert (d["decision"], d["reason_code"]) == ("BLOCK", "below_min_size")  # main: THROTTLE
    assert d["approved_size_usd"] == 0.0
    assert d["limit"] == "per_coin_max_exposure_pct"


def test_decide_when_past_soft_only_and_resize_below_minimum_then_blocks_not_empty_throttle() -> (
    None
):
    seq = _sequencer()
    seq.controller.register_trade("t0", TradeRequest("BTC", "long", 399_000.0, "binance"))

    # 500 fits under the 400k limit, but the band has 1k left of 80k: ~6 USD is admitted
    d = seq.decide(_open(1, 500.0))

    assert d is not None
    assert (d["decision"], d["reason_code"]) == ("BLOCK", "below_min_size")  # main: THROTTLE, 0
    assert d["approved_size_usd"] == 0.0


def test_check_trade_when_request_smaller_than_the_minimum_then_blocks_below_min_size() -> None:
    rc = GlobalRiskController(RiskLimits(min_trade_usd=50.0), equity_usd=EQUITY)

    result = rc.check_trade(TradeRequest("BTC", "long", 49.0, "binance", "L1"))

    assert (result.decision, result.reason_code) == (RiskDecision.BLOCK, RiskReason.BELOW_MIN_SIZE)
    assert result.limit == "min_trade_usd"


def test_check_trade_when_bucket_has_no_headroom_then_blocks_with_the_limit_reason() -> None:
    rc = GlobalRiskController(equity_usd=EQUITY, coin_sectors=SECTORS)
    rc.register_trade("t0", TradeRequest("BTC", "long", 400_000.0, "binance"))

    result = rc.check_trade(TradeRequest("BTC", "long", 1_000.0, "binance"))

    assert (result.decision, result.reason_code) == (RiskDecision.BLOCK, RiskReason.COIN_LIMIT)
    assert result.approved_size_usd == 0.0


def test_check_trade_when_past_soft_threshold_only_then_throttles_with_the_soft_code() -> None:
    rc = GlobalRiskController(equity_usd=EQUITY, coin_sectors=SECTORS)
    rc.register_trade("t0", TradeRequest("BTC", "long", 300_000.0, "binance"))

    result = rc.check_trade(TradeRequest("BTC", "long", 40_000.0, "binance"))

    assert (result.decision, result.reason_code) == (
        RiskDecision.THROTTLE,
        RiskReason.COIN_SOFT_LIMIT,
    )
    # 20k up to the soft threshold in full, then 80k × (1 − e^(−20k/80k)) of the band
    assert abs(result.approved_size_usd - 37_695.94) < 0.01
    assert result.max_approvable_size_usd == result.approved_size_usd


def test_reserve_trade_when_throttled_then_holds_the_approved_size() -> None:
    rc = GlobalRiskController(equity_usd=EQUITY, coin_sectors=SECTORS)
    rc.register_trade("t0", TradeRequest("BTC", "long", 300_000.0, "binance"))

    result = rc.reserve_trade("r1", TradeRequest("BTC", "long", 40_000.0, "binance"))

    assert result.decision is RiskDecision.THROTTLE
    assert rc.reservations()[0].size_usd == result.approved_size_usd


# -- properties ------------------------------------------------------------------------------

_COINS = tuple(SECTORS)
_EXCHANGES = ("binance", "okx")
_SMALL_LIMITS: dict[str, Any] = {
    "global_max_exposure_pct": 40.0,
    "per_coin_max_exposure_pct": 10.0,
    "per_sector_max_exposure_pct": 15.0,
    "per_exchange_max_exposure_pct": 25.0,
    "max_active_trades": 40,
    "max_concurrent_trades": 40,
}
_opens = st.lists(
    st.tuples(
        st.sampled_from(_COINS),
        st.sampled_from(("long", "short")),
        st.floats(min_value=1.0, max_value=60_000.0, allow_nan=False),
        st.sampled_from(_EXCHANGES),
        st.sampled_from(("fill", "reserve", "release", "close")),
    ),
    max_size=40,
)


def _controller(mode: str) -> GlobalRiskController:
    limits = RiskLimits(**_SMALL_LIMITS, exposure_mode=mode)
    return GlobalRiskController(limits, equity_usd=EQUITY / 4, coin_sectors=SECTORS)


def _apply(rc: GlobalRiskController, ops: list[tuple[str, str, float, str, str]]) -> None:
    """Apply requests as a fills-driven sequencer would: approve, reserve the approved size,
    fill it (or release it), close some positions (as decided); assert the hard limits after
    each step."""
    for i, (coin, direction, size, exchange, then) in enumerate(ops):
        trade = TradeRequest(coin, direction, size, exchange)  # type: ignore[arg-type]
        if then == "close" and rc.open_trades():
            # a close is decided too: in net mode one that unhedges increases exposure
            opened = rc.open_trades()[i % len(rc.open_trades())]
            close = TradeRequest(
                opened.coin,
                opened.direction,
                opened.size_usd,
                opened.exchange,
                closes_trade_id=opened.trade_id,
            )
            decided = rc.check_trade(close)
            if decided.decision is not RiskDecision.BLOCK:
                rc.close_trade(opened.trade_id, decided.approved_size_usd)
            continue
        result = rc.reserve_trade(f"t{i}", trade)
        if result.decision is not RiskDecision.BLOCK:
            assert result.approved_size_usd <= size + 1e-6
            assert result.approved_size_usd >= rc.limits.min_trade_usd
            if then == "release":
                rc.release_trade(f"t{i}")
            elif then == "fill":
                fill = TradeRequest(coin, direction, result.approved_size_usd, exchange)  # type: ignore[arg-type]
                rc.register_trade(f"t{i}", fill)
        units = rc.exposure_units()
        limits = units["limits"]
        assert units["global"] <= limits["global"]
        for kind, table in (("coin", "per_coin"), ("sector", "per_sector")):
            assert all(v <= limits[kind] for v in units[table].values())
        assert all(v <= limits["exchange"] for v in units["per_exchange"].values())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=_opens,
    coin=st.sampled_from(_COINS),
    direction=st.sampled_from(("long", "short")),
    exchange=st.sampled_from(_EXCHANGES),
    a=st.floats(min_value=0.01, max_value=200_000.0, allow_nan=False),
    b=st.floats(min_value=0.01, max_value=200_000.0, allow_nan=False),
    mode=st.sampled_from(("gross", "net")),
)
def test_check_trade_when_requested_size_grows_then_approved_size_never_shrinks(
    ops: list[tuple[str, str, float, str, str]],
    coin: str,
    direction: str,
    exchange: str,
    a: float,
    b: float,
    mode: str,
) -> None:
    rc = _controller(mode)
    _apply(rc, ops)
    lo, hi = sorted((a, b))

    small = rc.check_trade(TradeRequest(coin, direction, lo, exchange))  # type: ignore[arg-type]
    large = rc.check_trade(TradeRequest(coin, direction, hi, exchange))  # type: ignore[arg-type]

    assert small.approved_size_usd <= large.approved_size_usd
    assert large.approved_size_usd <= hi + 1e-6
    assert large.approved_size_usd <= large.max_allowed_size_usd + 1e-6


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_opens, mode=st.sampled_from(("gross", "net")))
def test_random_requests_when_resized_then_positions_plus_reservations_never_exceed_a_hard_limit(
    ops: list[tuple[str, str, float, str, str]], mode: str
) -> None:
    rc = _controller(mode)

    _apply(rc, ops)  # asserts after every step

    assert rc.active_trades + rc.in_flight_trades <= 40
