"""Per-coin rolling features from ticks: pure, O(1) per tick, and replayable.

The state of one coin is a handful of exponentially weighted moments, so it fits in one table
row and an update costs a few float operations. With ``a = 1 - 0.5 ** (1 / halflife_ticks)``
and ``r = 1e4 * ln(mid / previous_mid)`` (the last log return in bps), each tick updates::

    mean_ret  <- mean_ret + a * (r - mean_ret)                      (EWMA of returns, bps)
    var_ret   <- (1 - a) * (var_ret + a * (r - mean_ret_old) ** 2)  (EW variance, West 1979)
    pv, v     <- pv + a * (last * volume - pv),  v + a * (volume - v)
    vwap       = pv / v
    momentum   = 1e4 * (mid / vwap - 1)                             (bps)
    volatility = sqrt(var_ret)                                      (bps per tick)

``mid = (bid + ask) / 2`` and ``spread_bps = 1e4 * (ask - bid) / mid``. The first tick of a coin
has no return (r = 0). A tick whose ``seq`` is not above the last one seen is a duplicate or out
of order and changes nothing (``update`` returns ``None``): replays and redeliveries are harmless.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class FeatureError(ValueError):
    """A tick that cannot be turned into features (non-positive or crossed quote, NaN)."""


@dataclass(frozen=True, slots=True)
class FeatureParams:
    """How the features are computed.

    ``halflife_ticks``: half-life of every exponentially weighted moment, in ticks (default 20).
    """

    halflife_ticks: float = 20.0

    @property
    def alpha(self) -> float:
        return float(1.0 - 0.5 ** (1.0 / self.halflife_ticks))


@dataclass(slots=True)
class FeatureState:
    """The rolling state of one coin; ``to_row``/``from_row`` give its table form."""

    n: int = 0
    last_seq: int = 0
    last_mid: float = 0.0
    mean_ret: float = 0.0
    var_ret: float = 0.0
    pv: float = 0.0
    v: float = 0.0

    def to_row(self) -> list[float]:
        return [
            float(self.n),
            float(self.last_seq),
            self.last_mid,
            self.mean_ret,
            self.var_ret,
            self.pv,
            self.v,
        ]

    @classmethod
    def from_row(cls, row: list[float]) -> FeatureState:
        n, seq, mid, mean, var, pv, v = row
        return cls(int(n), int(seq), mid, mean, var, pv, v)


@dataclass(frozen=True, slots=True)
class FeatureVector:
    """The features of one coin after one tick (the ``huracan.features`` event body)."""

    event_id: str
    correlation_id: str
    causation_id: str
    coin: str
    exchange: str
    ts: int
    seq: int
    mid: float
    bid: float
    ask: float
    ret_bps: float
    mean_ret_bps: float
    volatility_bps: float
    spread_bps: float
    vwap: float
    momentum_bps: float
    n_ticks: int

    def to_record(self) -> dict[str, Any]:
        """The ``FeatureVector`` event record (schema ``feature_vector.avsc``): every field, in
        declaration order, plus ``extra`` (empty). Spelled out: it runs for every tick."""
        return {
            "event_id": self.event_id,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "coin": self.coin,
            "exchange": self.exchange,
            "ts": self.ts,
            "seq": self.seq,
            "mid": self.mid,
            "bid": self.bid,
            "ask": self.ask,
            "ret_bps": self.ret_bps,
            "mean_ret_bps": self.mean_ret_bps,
            "volatility_bps": self.volatility_bps,
            "spread_bps": self.spread_bps,
            "vwap": self.vwap,
            "momentum_bps": self.momentum_bps,
            "n_ticks": self.n_ticks,
            "extra": {},
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> FeatureVector:
        return cls(**{k: record[k] for k in cls.__slots__})


def update(
    state: FeatureState,
    params: FeatureParams,
    *,
    coin: str,
    exchange: str,
    ts: int,
    seq: int,
    bid: float,
    ask: float,
    last: float,
    volume: float,
    event_id: str,
    correlation_id: str,
) -> FeatureVector | None:
    """Fold one tick into ``state`` (in place) and return its features.

    Returns ``None``, leaving ``state`` untouched, when ``seq`` is not above the last seen.
    Raises :class:`FeatureError`, leaving ``state`` untouched, for a crossed, non-positive or
    non-finite quote or a negative volume.
    """
    if seq <= state.last_seq:
        return None
    if not (0.0 < bid <= ask) or not math.isfinite(ask) or not math.isfinite(last):
        raise FeatureError(f"{coin}: bad quote bid={bid} ask={ask} last={last}")
    if not (volume >= 0.0) or not math.isfinite(volume):
        raise FeatureError(f"{coin}: bad volume {volume}")
    a = params.alpha
    mid = 0.5 * (bid + ask)
    r = 1e4 * math.log(mid / state.last_mid) if state.n else 0.0
    if state.n:
        diff = r - state.mean_ret
        state.mean_ret += a * diff
        state.var_ret = (1.0 - a) * (state.var_ret + a * diff * diff)
        state.pv += a * (last * volume - state.pv)
        state.v += a * (volume - state.v)
    else:
        state.pv, state.v = last * volume, volume
    state.n += 1
    state.last_seq = seq
    state.last_mid = mid
    vwap = state.pv / state.v if state.v > 0.0 else mid
    return FeatureVector(
        event_id=f"feat:{coin}:{seq}",
        correlation_id=correlation_id,
        causation_id=event_id,
        coin=coin,
        exchange=exchange,
        ts=ts,
        seq=seq,
        mid=mid,
        bid=bid,
        ask=ask,
        ret_bps=r,
        mean_ret_bps=state.mean_ret,
        volatility_bps=math.sqrt(state.var_ret),
        spread_bps=1e4 * (ask - bid) / mid,
        vwap=vwap,
        momentum_bps=1e4 * (mid / vwap - 1.0),
        n_ticks=state.n,
    )
