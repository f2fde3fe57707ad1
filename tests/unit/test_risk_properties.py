"""Property tests of the global risk controller: over random sequences of checks,
reservations, fills, registrations, closes, breaker events (and, in one test, equity changes),

* registered exposure never exceeds any limit, and trade counts never exceed theirs;
* the running totals always equal a fold over the open trades and reservations;
* the same sequence always yields the same decisions and the same state, also when the state
  is serialized and restored halfway.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from huracan.domain.risk import (
    MICRO_USD,
    GlobalRiskController,
    RiskDecision,
    RiskLimits,
    TradeRequest,
)

COINS = ("BTC", "ETH", "SOL", "UNI", "AAVE", "DOGE", "PEPE", "ARB")
SECTOR = {
    "BTC": "L1",
    "ETH": "L1",
    "SOL": "L1",
    "UNI": "DeFi",
    "AAVE": "DeFi",
    "DOGE": "Meme",
    "PEPE": "Meme",
    "ARB": "L2",
}
REGISTERED = ("BTC", "ETH", "SOL", "UNI", "AAVE", "DOGE")  # PEPE and ARB carry their sector
EXCHANGES = ("binance", "okx", "kraken")
EQUITY = 100_000.0

sizes = st.one_of(
    st.floats(min_value=500.0, max_value=6_000.0, allow_nan=False),
    st.floats(min_value=0.01, max_value=30_000.0, allow_nan=False),
    st.sampled_from((0.1, 0.2, 0.3, 999.99, 1_000.1, 2_000.0, 2_500.0, 3_333.33, 4_000.0)),
)
fractions = st.floats(min_value=0.05, max_value=1.0, allow_nan=False)
opening = st.tuples(
    st.sampled_from(("open", "reserve")),
    st.sampled_from(COINS),
    st.sampled_from(("long", "short")),
    sizes,
    st.sampled_from(EXCHANGES),
)
fill_or_close = st.tuples(st.sampled_from(("fill", "close")), st.integers(0, 50), fractions)
release = st.tuples(st.just("release"), st.integers(0, 50))
breaker = st.one_of(
    st.tuples(st.sampled_from(("error", "success", "error", "success", "kill"))),
    st.tuples(st.just("reset"), st.sampled_from(("kill_switch", "drawdown", "errors"))),
)
equity_op = st.tuples(st.just("equity"), st.floats(min_value=40_000.0, max_value=250_000.0))
_mix = (opening,) * 10 + (fill_or_close,) * 3 + (release, breaker)
operations = st.lists(st.one_of(*_mix), min_size=40, max_size=120)
#: no breaker events, so that sequences run deep into the exposure and count limits
trading_only = st.lists(
    st.one_of(*(opening,) * 6, fill_or_close, release), min_size=40, max_size=120
)
operations_with_equity = st.lists(st.one_of(*_mix, equity_op), min_size=40, max_size=120)
modes = st.sampled_from(("gross", "net"))


def new_controller(mode: str) -> GlobalRiskController:
    limits = RiskLimits(
        global_max_exposure_pct=40.0,
        per_coin_max_exposure_pct=10.0,
        per_sector_max_exposure_pct=15.0,
        per_exchange_max_exposure_pct=20.0,
        soft_throttle_threshold_pct=80.0,
        max_concurrent_trades=24,
        max_active_trades=20,
        max_drawdown_pct=25.0,
        max_consecutive_errors=3,
        exposure_mode=mode,  # type: ignore[arg-type]
    )
    rc = GlobalRiskController(limits, equity_usd=EQUITY)
    for coin in REGISTERED:
        rc.set_coin_sector(coin, SECTOR[coin])
    return rc


def request(coin: str, direction: str, size: float, exchange: str, **kw: Any) -> TradeRequest:
    sector = SECTOR[coin] if coin not in REGISTERED else None
    return TradeRequest(coin, direction, size, exchange, sector, **kw)  # type: ignore[arg-type]


Leg = tuple[str, str, str, int, bool]


def fold(rc: GlobalRiskController, extra: tuple[Leg, ...] = ()) -> dict[str, Any]:
    """The exposure totals recomputed naively from the open trades and reservations, plus
    ``extra`` (coin, exchange, direction, units, reserved) legs (negative units reduce).

    Open legs net out in net mode; reserved legs always count in full."""
    net = rc.limits.exposure_mode == "net"
    longs: dict[Any, int] = defaultdict(int)
    shorts: dict[Any, int] = defaultdict(int)
    reserved: dict[Any, int] = defaultdict(int)
    legs: list[Leg] = [
        (t.coin, t.exchange, t.direction, t.size_units, False) for t in rc.open_trades()
    ]
    legs += [(t.coin, t.exchange, t.direction, t.size_units, True) for t in rc.reservations()]
    for coin, exchange, direction, units, held in [*legs, *extra]:
        book = reserved if held else longs if direction == "long" else shorts
        book[coin] += units
        book[(coin, exchange)] += units

    def exposure(key: Any) -> int:
        opened = abs(longs[key] - shorts[key]) if net else longs[key] + shorts[key]
        return opened + reserved[key]

    keys = set(longs) | set(shorts) | set(reserved)
    coins = {k for k in keys if isinstance(k, str)}
    per_coin = {c: exposure(c) for c in coins if exposure(c)}
    per_sector: dict[str, int] = defaultdict(int)
    for c, units in per_coin.items():
        per_sector[rc.coin_sector(c) or SECTOR[c]] += units
    per_exchange: dict[str, int] = defaultdict(int)
    for k in keys - coins:
        per_exchange[k[1]] += exposure(k)
    return {
        "global": sum(per_coin.values()),
        "per_coin": per_coin,
        "per_sector": {s: u for s, u in per_sector.items() if u},
        "per_exchange": {e: u for e, u in per_exchange.items() if u},
    }


def buckets(units: dict[str, Any]) -> dict[tuple[str, str], int]:
    flat = {("global", ""): units["global"]}
    for kind, name in (
        ("coin", "per_coin"),
        ("sector", "per_sector"),
        ("exchange", "per_exchange"),
    ):
        flat.update({(kind, k): v for k, v in units[name].items()})
    return flat


_BREAKER_CODES = (
    ("kill_switch", "kill_switch"),
    ("drawdown", "drawdown_breaker"),
    ("errors", "error_breaker"),
)
_BUCKET_CODES = {"coin": "per_coin", "sector": "per_sector", "exchange": "per_exchange"}


def _taper(total: int, hard: int, soft: int, free: int, size: int) -> int:
    """The throttle curve of the module docstring, written out again for the oracle."""
    if size <= free:
        return size
    below = max(soft - total, 0)
    if size - free <= below:
        return size
    start = max(total, soft)
    if start >= hard:
        return free + below
    rest = size - free - below
    return free + below + math.floor((hard - start) * -math.expm1(-rest / (hard - soft)))


def oracle(
    rc: GlobalRiskController, trade: TradeRequest, reserve: bool = False
) -> tuple[str, str, int]:
    """The decision, reason code and approved micro-USD the module docstring's rules give,
    computed naively (by re-folding every trade) rather than from running totals."""
    units = trade.size_units
    closing = trade.closes_trade_id is not None
    leg = (trade.coin, trade.exchange, trade.direction, -units if closing else units, reserve)
    before = buckets(fold(rc))
    sector = rc.coin_sector(trade.coin) or SECTOR[trade.coin]
    after_all = buckets(fold(rc, (leg,)))
    touched = [
        ("coin", trade.coin),
        ("sector", sector),
        ("exchange", trade.exchange),
        ("global", ""),
    ]
    rises = [k for k in touched if after_all.get(k, 0) > before.get(k, 0)]
    limits = rc.exposure_units()
    breakers = rc.breakers()
    if rises:
        for name, code in _BREAKER_CODES:
            if breakers[name].tripped:  # type: ignore[index]
                return "BLOCK", code, 0
    count = rc.active_trades + rc.in_flight_trades
    if not closing:
        if count + 1 > rc.limits.max_concurrent_trades:
            return "BLOCK", "max_concurrent_trades", 0
        if count + 1 > rc.limits.max_active_trades:
            return "BLOCK", "max_active_trades", 0
    if not rises:
        return "APPROVE", "risk_reducing", units
    approved = units
    binding: tuple[str, str] | None = None
    for key in rises:
        total = before.get(key, 0)
        free = units - (after_all[key] - total)
        admitted = _taper(
            total, limits["limits"][key[0]], limits["soft_limits"][key[0]], free, units
        )
        if admitted < approved:
            approved, binding = admitted, key
    minimum = max(round(rc.limits.min_trade_usd * MICRO_USD), 1)
    if binding is None:
        if units < minimum:
            return "BLOCK", "below_min_size", 0
        return "APPROVE", "approved", units
    prefix = _BUCKET_CODES.get(binding[0], binding[0])
    if approved == 0:
        return "BLOCK", prefix + "_limit", 0
    if approved < minimum:
        return "BLOCK", "below_min_size", 0
    crossing = after_all[binding] > limits["limits"][binding[0]]
    return "THROTTLE", prefix + ("_limit" if crossing else "_soft_limit"), approved


def run(
    rc: GlobalRiskController, ops: list[tuple[Any, ...]], start: int = 0
) -> list[tuple[Any, ...]]:
    """Apply ``ops`` the way the risk sequencer would; assert the invariants after each."""
    decisions: list[tuple[Any, ...]] = []
    seq = start
    for op in ops:
        seq += 1
        before = buckets(rc.exposure_units())
        kind = op[0]
        if kind in ("open", "reserve"):
            _, coin, direction, size, exchange = op
            trade = request(coin, direction, size, exchange)
            trade_id = f"{kind}-{seq}"
            expected = oracle(rc, trade, reserve=kind == "reserve")
            if kind == "reserve":
                result = rc.reserve_trade(trade_id, trade, timestamp=float(seq))
            else:
                result = rc.check_trade(trade)
                if result.decision is not RiskDecision.BLOCK:
                    # as the sequencer: register the approved (possibly resized) size
                    approved = request(coin, direction, result.approved_size_usd, exchange)
                    rc.register_trade(trade_id, approved, timestamp=float(seq))
            got = (
                str(result.decision),
                str(result.reason_code),
                round(result.approved_size_usd * MICRO_USD),
            )
            assert got == expected, (op, result)
            assert result.approved_size_usd <= result.max_allowed_size_usd + 1e-6
            assert result.approved_size_usd * MICRO_USD <= trade.size_units + 0.5
            decisions.append((kind, str(result.decision), str(result.reason_code), result))
        elif kind == "fill" and rc.reservations():
            held = rc.reservations()[op[1] % len(rc.reservations())]
            size = max(held.size_usd * op[2], 1e-6)
            fill = request(held.coin, held.direction, size, held.exchange)
            rc.register_trade(held.trade_id, fill)
            decisions.append(("fill", held.trade_id))
        elif kind == "release" and rc.reservations():
            held = rc.reservations()[op[1] % len(rc.reservations())]
            rc.release_trade(held.trade_id)
            decisions.append(("release", held.trade_id))
        elif kind == "close" and rc.open_trades():
            opened = rc.open_trades()[op[1] % len(rc.open_trades())]
            size = max(opened.size_usd * op[2], 1e-6)
            if round(size * MICRO_USD) > opened.size_units:
                size = opened.size_usd
            close = request(
                opened.coin,
                opened.direction,
                size,
                opened.exchange,
                closes_trade_id=opened.trade_id,
            )
            expected = oracle(rc, close)
            result = rc.check_trade(close)
            got = (
                str(result.decision),
                str(result.reason_code),
                round(result.approved_size_usd * MICRO_USD),
            )
            assert got == expected, (op, result)
            if rc.limits.exposure_mode == "gross":
                assert result.decision is RiskDecision.APPROVE
                assert result.risk_reducing
            if result.decision is not RiskDecision.BLOCK:
                rc.close_trade(opened.trade_id, result.approved_size_usd)
            decisions.append(("close", str(result.decision), result))
        elif kind == "error":
            decisions.append(("error", rc.record_execution_error(timestamp=float(seq))))
        elif kind == "success":
            rc.record_execution_success()
        elif kind == "kill":
            rc.engage_kill_switch("property test", timestamp=float(seq))
        elif kind == "reset":
            rc.reset_breaker(op[1])
        elif kind == "equity":
            rc.update_equity(op[1], timestamp=float(seq))
            decisions.append(("equity", rc.halted))

        units = rc.exposure_units()
        after = buckets(units)
        limits = units["limits"]
        assert {k: units[k] for k in ("global", "per_coin", "per_sector", "per_exchange")} == fold(
            rc
        )
        count = rc.active_trades + rc.in_flight_trades
        assert count <= min(rc.limits.max_active_trades, rc.limits.max_concurrent_trades)
        for key, value in after.items():
            # a step never takes a bucket over its limit (unless it already was, after an
            # equity drop, and the step did not increase it)
            assert value <= max(limits[key[0]], before.get(key, 0)), (op, key, value)
    return decisions


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.one_of(trading_only, operations), mode=modes)
def test_random_sequences_when_applied_then_exposure_never_exceeds_limits(
    ops: list[tuple[Any, ...]], mode: str
) -> None:
    rc = new_controller(mode)

    run(rc, ops)

    units = rc.exposure_units()
    for key, value in buckets(units).items():
        assert value <= units["limits"][key[0]]
    summary = rc.get_exposure_summary()
    assert summary["global"]["total_exposure_pct"] <= rc.limits.global_max_exposure_pct + 1e-9
    for coin in summary["per_coin"].values():
        assert coin["exposure_pct"] <= rc.limits.per_coin_max_exposure_pct + 1e-9


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations_with_equity, mode=modes)
def test_random_sequences_when_equity_moves_then_no_step_pushes_a_bucket_over_its_limit(
    ops: list[tuple[Any, ...]], mode: str
) -> None:
    rc = new_controller(mode)

    run(rc, ops)  # asserts the per-step invariant


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations_with_equity, mode=modes)
def test_random_sequences_when_replayed_then_decisions_and_state_are_identical(
    ops: list[tuple[Any, ...]], mode: str
) -> None:
    first, second = new_controller(mode), new_controller(mode)

    decisions_a = run(first, ops)
    decisions_b = run(second, ops)

    assert decisions_a == decisions_b
    assert first.to_dict() == second.to_dict()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations_with_equity, mode=modes, cut=st.integers(0, 120))
def test_random_sequences_when_state_restored_halfway_then_decisions_are_identical(
    ops: list[tuple[Any, ...]], mode: str, cut: int
) -> None:
    cut = min(cut, len(ops))
    straight = new_controller(mode)
    expected = run(straight, ops)

    resumed = new_controller(mode)
    head = run(resumed, ops[:cut])
    restored = GlobalRiskController.from_dict(json.loads(json.dumps(resumed.to_dict())))
    tail = run(restored, ops[cut:], start=cut)

    assert head + tail == expected
    assert restored.to_dict() == straight.to_dict()
