from __future__ import annotations

import pytest

from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator


def test_simulator_when_same_seed_then_identical_ticks() -> None:
    a = list(MarketSimulator(universe(50), seed=3).ticks(2000))
    b = list(MarketSimulator(universe(50), seed=3).ticks(2000))
    c = list(MarketSimulator(universe(50), seed=4).ticks(2000))

    assert a == b
    assert a != c


def test_simulator_when_ticking_then_quotes_sane_and_seq_and_time_increase() -> None:
    sim = MarketSimulator(universe(400), seed=1, rate=1000.0)

    ticks = list(sim.ticks(20_000))

    last_seq: dict[str, int] = {}
    for t in ticks:
        assert 0 < t["bid"] < t["ask"]
        assert t["last"] in (t["bid"], t["ask"])
        assert t["volume"] > 0
        assert t["seq"] == last_seq.get(t["coin"], 0) + 1
        last_seq[t["coin"]] = t["seq"]
        assert t["event_id"] == f"tick:{t['coin']}:{t['seq']}"
    assert [t["ts"] for t in ticks] == sorted({t["ts"] for t in ticks})
    assert ticks[1]["ts"] - ticks[0]["ts"] == 1000  # 1/rate seconds in microseconds
    assert len(last_seq) > 350  # nearly every coin ticks


def test_simulator_when_bad_arguments_then_rejected() -> None:
    with pytest.raises(ValueError, match="at least one coin"):
        MarketSimulator([])
    with pytest.raises(ValueError, match="rate"):
        MarketSimulator(universe(1), rate=0)
