from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from huracan.domain.features import FeatureError, FeatureParams, FeatureState, update
from huracan.domain.signals import LONG, SHORT, BaselineMomentumModel, BaselineParams

PARAMS = FeatureParams(halflife_ticks=10)


def _tick(state: FeatureState, seq: int, mid: float, spread: float = 1.0, volume: float = 1.0):
    return update(
        state,
        PARAMS,
        coin="BTC",
        exchange="binance",
        ts=1_000 * seq,
        seq=seq,
        bid=mid - spread / 2,
        ask=mid + spread / 2,
        last=mid,
        volume=volume,
        event_id=f"tick:BTC:{seq}",
        correlation_id=f"tick:BTC:{seq}",
    )


def test_update_when_first_tick_then_no_return_and_vwap_is_last() -> None:
    state = FeatureState()

    f = _tick(state, 1, 100.0, spread=0.02)

    assert f is not None
    assert f.ret_bps == 0.0
    assert f.mid == 100.0
    assert f.vwap == pytest.approx(100.0)
    assert f.spread_bps == pytest.approx(2.0)
    assert f.n_ticks == 1
    assert (f.event_id, f.causation_id, f.correlation_id) == (
        "feat:BTC:1",
        "tick:BTC:1",
        "tick:BTC:1",
    )


def test_update_when_price_rises_steadily_then_positive_return_and_momentum() -> None:
    state = FeatureState()
    f = None
    for seq in range(1, 200):
        f = _tick(state, seq, 100.0 * (1.001**seq))

    assert f is not None
    assert f.ret_bps == pytest.approx(1e4 * math.log(1.001))
    assert f.mean_ret_bps == pytest.approx(1e4 * math.log(1.001), rel=1e-3)
    assert f.volatility_bps < 0.1
    assert f.momentum_bps > 0


def test_update_when_seq_not_increasing_then_ignored_and_state_unchanged() -> None:
    state = FeatureState()
    _tick(state, 5, 100.0)
    before = state.to_row()

    assert _tick(state, 5, 200.0) is None
    assert _tick(state, 3, 200.0) is None
    assert state.to_row() == before


@pytest.mark.parametrize(
    ("bid", "ask", "volume"),
    [(0.0, 1.0, 1.0), (2.0, 1.0, 1.0), (float("nan"), 1.0, 1.0), (1.0, 2.0, -1.0)],
)
def test_update_when_quote_bad_then_error_and_state_unchanged(
    bid: float, ask: float, volume: float
) -> None:
    state = FeatureState()
    _tick(state, 1, 100.0)
    before = state.to_row()

    with pytest.raises(FeatureError):
        update(
            state, PARAMS, coin="BTC", exchange="x", ts=2, seq=2, bid=bid, ask=ask,
            last=ask, volume=volume, event_id="e", correlation_id="c",
        )  # fmt: skip
    assert state.to_row() == before


@given(st.lists(st.floats(min_value=1.0, max_value=1e5), min_size=2, max_size=60))
def test_update_when_state_round_trips_through_row_then_same_features(mids: list[float]) -> None:
    """A worker restored from its table row computes exactly what it would have."""
    live, restored = FeatureState(), FeatureState()
    for i, mid in enumerate(mids, start=1):
        a = _tick(live, i, mid)
        restored = FeatureState.from_row(restored.to_row())
        b = _tick(restored, i, mid)
        assert a == b


def _features_with(momentum_bps: float, volatility_bps: float, n: int = 100):
    state = FeatureState()
    f = _tick(state, 1, 100.0)
    assert f is not None
    return type(f)(**{**{s: getattr(f, s) for s in f.__slots__}, "momentum_bps": momentum_bps,
                      "volatility_bps": volatility_bps, "n_ticks": n, "seq": 7})  # fmt: skip


def test_baseline_when_momentum_strong_then_signal_with_capped_edge_and_size() -> None:
    model = BaselineMomentumModel(BaselineParams())

    up = model.evaluate(_features_with(momentum_bps=30.0, volatility_bps=2.0))  # z = 15
    down = model.evaluate(_features_with(momentum_bps=-4.0, volatility_bps=2.0))  # z = -2

    assert up is not None
    assert down is not None
    assert up.direction == LONG
    assert down.direction == SHORT
    assert up.edge_bps == 60.0  # 4 * 15 = 60, at the cap
    assert up.size_usd == 30_000.0  # capped at 3x
    assert down.edge_bps == pytest.approx(8.0)
    assert down.size_usd == pytest.approx(10_000.0 * 2 / 1.5)
    assert up.event_id == "sig:BTC:7"
    assert up.model_version == "baseline-momentum-v1"


def test_baseline_when_warming_up_or_weak_then_no_signal() -> None:
    model = BaselineMomentumModel()

    assert model.evaluate(_features_with(momentum_bps=50.0, volatility_bps=1.0, n=29)) is None
    assert model.evaluate(_features_with(momentum_bps=2.0, volatility_bps=2.0)) is None


def test_records_when_encoded_then_valid_feature_vector_and_signal_events() -> None:
    from huracan.config import build_config
    from huracan.domain.features import FeatureVector
    from huracan.streams.serde import make_serde

    serde = make_serde(build_config({}, environ={}))
    fv = _features_with(momentum_bps=30.0, volatility_bps=2.0)
    signal = BaselineMomentumModel().evaluate(fv)
    assert signal is not None

    fv_back = serde.decode(serde.encode("FeatureVector", fv.to_record()))
    sig_back = serde.decode(serde.encode("Signal", signal.to_record()))

    assert FeatureVector.from_record(fv_back) == fv
    assert sig_back == signal.to_record()
