from __future__ import annotations

import math
import random

import pytest

from huracan.config import build_config
from huracan.domain.risk import GlobalRiskController, RiskLimits, TradeRequest
from huracan.domain.sequencer import RiskSequencer, trade_id_for
from huracan.streams.serde import make_serde

SECTORS = {"BTC": "L1", "ETH": "L1", "UNI": "DeFi", "DOGE": "Meme"}


def _sequencer(**limits: float) -> RiskSequencer:
    ctl = GlobalRiskController(RiskLimits(**limits), equity_usd=100_000.0, coin_sectors=SECTORS)
    return RiskSequencer(ctl)


def _open(n: int, coin: str = "BTC", size: float = 1_000.0, direction: str = "LONG") -> dict:
    return {
        "event_id": f"treq:{n}",
        "correlation_id": f"tick:{coin}:{n}",
        "causation_id": f"sig:{coin}:{n}",
        "request_id": f"r{n}",
        "coin": coin,
        "ts": 1_000_000 + n,
        "signal_ts": 1_000_000 + n,
        "direction": direction,
        "size_usd": size,
        "exchange": "binance",
        "sector": SECTORS.get(coin),
        "edge_bps": 20.0,
        "edge_after_cost_bps": 8.0,
        "intent": "OPEN",
        "trade_id": None,
        "model_version": "baseline-momentum-v1",
    }


def _close(n: int, trade_id: str, coin: str = "BTC") -> dict:
    return {**_open(n, coin), "intent": "CLOSE", "trade_id": trade_id}


def test_decide_when_within_limits_then_approves_registers_and_derives_ids() -> None:
    seq = _sequencer()

    d = seq.decide(_open(1))

    assert d is not None
    assert d["decision"] == "APPROVE"
    assert d["approved_size_usd"] == 1_000.0
    assert d["trade_id"] == trade_id_for("r1")
    assert (d["event_id"], d["causation_id"], d["correlation_id"]) == (
        "dec:r1",
        "treq:1",
        "tick:BTC:1",
    )
    assert seq.controller.active_trades == 1


def test_decide_when_request_redelivered_then_none_and_state_unchanged() -> None:
    seq = _sequencer()
    seq.decide(_open(1))
    before = seq.controller.to_dict()

    again = seq.decide(_open(1))

    assert again is None
    assert seq.duplicates == 1
    assert seq.controller.to_dict() == before


def test_decide_when_over_soft_threshold_then_throttles_along_the_curve() -> None:
    # per-coin limit 40% of 100k = 40k; soft at 80% = 32k; the 3k past it taper over the band
    seq = _sequencer()

    d = seq.decide(_open(1, size=35_000.0))

    expected = 32_000.0 + 8_000.0 * (1 - math.exp(-3 / 8))
    assert d is not None
    assert d["decision"] == "THROTTLE"
    assert d["approved_size_usd"] == pytest.approx(expected, abs=1e-6)
    assert seq.controller.get_trade(trade_id_for("r1")).size_usd == pytest.approx(
        expected, abs=1e-6
    )


def test_decide_when_over_hard_limit_then_cut_to_what_fits_and_registered() -> None:
    seq = _sequencer()

    d = seq.decide(_open(1, size=50_000.0))

    assert d is not None
    assert d["decision"] == "THROTTLE"
    assert d["reason_code"] == "per_coin_limit"
    assert 32_000.0 < d["approved_size_usd"] < 40_000.0
    assert seq.controller.get_trade(trade_id_for("r1")).size_usd == d["approved_size_usd"]


def test_decide_when_coin_full_then_blocks_and_registers_nothing() -> None:
    seq = _sequencer()
    seq.controller.register_trade("t0", TradeRequest("BTC", "long", 40_000.0, "binance"))

    d = seq.decide(_open(1, size=5_000.0))

    assert d is not None
    assert d["decision"] == "BLOCK"
    assert d["reason_code"] == "per_coin_limit"
    assert d["approved_size_usd"] == 0.0
    assert d["trade_id"] is None
    assert seq.controller.active_trades == 1


def test_decide_when_request_invalid_then_blocked_as_invalid_request() -> None:
    seq = _sequencer()

    d = seq.decide({**_open(1, coin="NEW"), "sector": None})

    assert d is not None
    assert d["decision"] == "BLOCK"
    assert d["reason_code"] == "invalid_request"


def test_decide_when_close_then_approved_even_with_kill_switch_and_exposure_released() -> None:
    seq = _sequencer()
    seq.decide(_open(1))
    outcome = seq.apply_control(
        {"event_id": "c1", "command": "KILL_SWITCH_ON", "ts": 5, "reason": "ops"}
    )

    blocked = seq.decide(_open(2))
    closed = seq.decide(_close(3, trade_id_for("r1")))
    twice = seq.decide(_close(4, trade_id_for("r1")))

    assert outcome.applied
    assert blocked is not None
    assert blocked["decision"] == "BLOCK"
    assert blocked["reason_code"] == "kill_switch"
    assert closed is not None
    assert closed["decision"] == "APPROVE"
    assert closed["risk_reducing"] is True
    assert seq.controller.active_trades == 0
    assert twice is not None
    assert twice["reason_code"] == "unknown_trade"


def test_apply_control_when_limit_changed_then_next_decision_uses_it() -> None:
    seq = _sequencer()

    out = seq.apply_control(
        {"event_id": "c1", "command": "SET_LIMIT", "key": "per_coin_max_exposure_pct",
         "value": 1.0, "ts": 1}
    )  # fmt: skip
    d = seq.decide(_open(1, size=2_000.0))

    assert out.applied
    assert d is not None
    assert d["decision"] == "THROTTLE"  # the 1% limit is 1k: cut to fit under it
    assert d["approved_size_usd"] < 1_000.0


@pytest.mark.parametrize(
    "event",
    [
        {"event_id": "x", "command": "SET_LIMIT", "key": "nope", "value": 1.0},
        {"event_id": "x", "command": "SET_LIMIT", "key": "global_max_exposure_pct", "value": -5},
        {"event_id": "x", "command": "RESET_BREAKER", "key": "bogus"},
        {"event_id": "x", "command": "SET_EQUITY", "value": "lots"},
        {"event_id": "x", "command": "UNKNOWN"},
    ],
)
def test_apply_control_when_bad_then_rejected_and_limits_unchanged(event: dict) -> None:
    seq = _sequencer()
    before = seq.controller.to_dict()

    out = seq.apply_control(event)

    assert not out.applied
    assert out.reason_code == "rejected"
    assert seq.controller.to_dict() == before


def _random_stream(seed: int, n: int = 600) -> list[dict]:
    rng = random.Random(seed)
    events: list[dict] = []
    opened: list[str] = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.2 and opened:
            events.append(_close(i, opened.pop(rng.randrange(len(opened)))))
        elif roll < 0.23:
            events.append(
                {"event_id": f"c{i}", "command": rng.choice(["KILL_SWITCH_ON", "KILL_SWITCH_OFF"]),
                 "ts": i, "reason": "test"}
            )  # fmt: skip
        elif roll < 0.28 and events:
            events.append(rng.choice(events))  # a redelivery
        else:
            coin = rng.choice(list(SECTORS))
            events.append(_open(i, coin, rng.uniform(100, 9_000), rng.choice(["LONG", "SHORT"])))
            opened.append(trade_id_for(f"r{i}"))
    return events


def _run(seq: RiskSequencer, events: list[dict]) -> list[dict]:
    out = []
    for e in events:
        if "command" in e:
            seq.apply_control(e)
        else:
            d = seq.decide(e)
            if d is not None:
                out.append(d)
    return out


def test_sequencer_when_replayed_or_restored_midway_then_identical_decisions() -> None:
    events = _random_stream(11)

    first = _run(_sequencer(), events)
    second = _run(_sequencer(), events)
    half = len(events) // 2
    a = _sequencer()
    head = _run(a, events[:half])
    restored = RiskSequencer.from_dict(a.to_dict())
    tail = _run(restored, events[half:])

    assert first == second
    assert head + tail == first
    assert len({d["event_id"] for d in first}) == len(first)


def test_decisions_when_encoded_then_valid_risk_decision_records() -> None:
    serde = make_serde(build_config({}, environ={}))
    decisions = _run(_sequencer(), _random_stream(5, 200))

    for d in decisions:
        assert serde.decode(serde.encode("RiskDecision", d)) == d


def _small_window() -> RiskSequencer:
    ctl = GlobalRiskController(RiskLimits(), equity_usd=100_000.0, coin_sectors=SECTORS)
    return RiskSequencer(ctl, dedupe_window=5)


def test_take_seen_changes_when_window_full_then_remembered_and_forgotten_ids() -> None:
    seq = _small_window()
    seq.journal_seen()
    for n in range(4):
        seq.decide(_open(n, size=10.0))
    first = seq.take_seen_changes()
    for n in range(4, 7):
        seq.decide(_open(n, size=10.0))
    seq.decide(_open(6, size=10.0))  # a redelivery changes nothing
    second = seq.take_seen_changes()

    assert first == ([(f"req:r{n}", n) for n in range(4)], [])
    assert second == ([(f"req:r{n}", n) for n in range(4, 7)], ["req:r0", "req:r1"])
    assert seq.take_seen_changes() == ([], [])


def test_from_dict_when_window_stored_apart_then_same_duplicates_and_eviction_order() -> None:
    seq = _small_window()
    stored: dict[str, int] = {}
    seq.journal_seen()
    for n in range(8):
        seq.decide(_open(n, size=10.0))
        added, dropped = seq.take_seen_changes()
        stored.update(added)
        for key in dropped:
            del stored[key]
    state = seq.to_dict(include_seen=False)

    restored = RiskSequencer.from_dict(state, seen=reversed(list(stored.items())))

    assert "seen" not in state
    assert restored.to_dict() == seq.to_dict()  # same ids in the same eviction order
    assert restored.decide(_open(7, size=10.0)) is None  # still a duplicate
    # forgotten by the window, but its trade is open: still not decided twice
    assert restored.decide(_open(2, size=10.0)) is None
    assert restored.remembered == 9


def test_journal_seen_when_include_current_then_whole_window_reported_once() -> None:
    # a state written before the window was stored apart: its ids must be stored once
    seq = _small_window()
    for n in range(3):
        seq.decide(_open(n, size=10.0))
    legacy = RiskSequencer.from_dict(seq.to_dict())

    legacy.journal_seen(include_current=True)

    assert legacy.take_seen_changes() == ([(f"req:r{n}", n) for n in range(3)], [])
    assert legacy.take_seen_changes() == ([], [])


def test_take_seen_changes_when_not_journaling_then_error() -> None:
    with pytest.raises(RuntimeError, match="journal"):
        _small_window().take_seen_changes()
