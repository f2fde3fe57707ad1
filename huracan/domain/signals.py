"""Signals from features: the built-in baseline model, pure and deterministic.

The engine trades without any trained model: when a coin has no active model in the registry,
:class:`BaselineMomentumModel` decides. Its rule, on a feature vector ``f``::

    z = f.momentum_bps / max(f.volatility_bps, min_volatility_bps)
    no signal            while f.n_ticks < warmup_ticks, or |z| < entry_z (or z is NaN)
    direction            LONG if z > 0 else SHORT
    edge_bps             min(edge_per_z_bps * |z|, max_edge_bps)
    size_usd             base_size_usd * min(|z| / entry_z, max_size_multiple)

Defaults (:class:`BaselineParams`): warmup 30 ticks, entry at |z| >= 1.5, 4 bps of edge per unit
of z capped at 60 bps, 10,000 USD base size, up to 3x. A signal's id is derived from the feature
vector it came from (``sig:<coin>:<seq>``), so a replay produces the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from huracan.domain.features import FeatureVector

LONG = "LONG"
SHORT = "SHORT"


@dataclass(frozen=True, slots=True)
class Signal:
    """A model's view on one coin (the ``huracan.signals`` event body)."""

    event_id: str
    correlation_id: str
    causation_id: str
    coin: str
    exchange: str
    ts: int
    direction: str
    edge_bps: float
    size_usd: float
    model_version: str
    mid: float
    bid: float
    ask: float

    def to_record(self) -> dict[str, Any]:
        """The ``Signal`` event record (schema ``signal.avsc``): every field, in declaration
        order, plus ``confidence`` (None). Spelled out: it runs for every signal."""
        return {
            "event_id": self.event_id,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "coin": self.coin,
            "exchange": self.exchange,
            "ts": self.ts,
            "direction": self.direction,
            "edge_bps": self.edge_bps,
            "size_usd": self.size_usd,
            "model_version": self.model_version,
            "mid": self.mid,
            "bid": self.bid,
            "ask": self.ask,
            "confidence": None,
        }


class SignalModel(Protocol):
    """What the signals agent calls; a registry-loaded model implements the same."""

    version: str

    def evaluate(self, features: FeatureVector) -> Signal | None: ...


class SizingParams(Protocol):
    """The entry, edge and size parameters every score-based model shares."""

    @property
    def entry_z(self) -> float: ...
    @property
    def edge_per_z_bps(self) -> float: ...
    @property
    def max_edge_bps(self) -> float: ...
    @property
    def base_size_usd(self) -> float: ...
    @property
    def max_size_multiple(self) -> float: ...


def signal_from_score(
    features: FeatureVector, z: float, params: SizingParams, version: str
) -> Signal | None:
    """The signal a score ``z`` makes (module docstring: direction, edge, size), or ``None``
    when ``|z|`` is under ``entry_z`` or not a number. Ids derive from the feature vector."""
    strength = abs(z)
    if not strength >= params.entry_z:  # also false for NaN
        return None
    return Signal(
        event_id=f"sig:{features.coin}:{features.seq}",
        correlation_id=features.correlation_id,
        causation_id=features.event_id,
        coin=features.coin,
        exchange=features.exchange,
        ts=features.ts,
        direction=LONG if z > 0 else SHORT,
        edge_bps=min(params.edge_per_z_bps * strength, params.max_edge_bps),
        size_usd=params.base_size_usd * min(strength / params.entry_z, params.max_size_multiple),
        model_version=version,
        mid=features.mid,
        bid=features.bid,
        ask=features.ask,
    )


@dataclass(frozen=True, slots=True)
class BaselineParams:
    warmup_ticks: int = 30
    entry_z: float = 1.5
    edge_per_z_bps: float = 4.0
    max_edge_bps: float = 60.0
    base_size_usd: float = 10_000.0
    max_size_multiple: float = 3.0
    min_volatility_bps: float = 0.5


class BaselineMomentumModel:
    """Momentum against the EW-VWAP, scaled by volatility (see the module docstring)."""

    version = "baseline-momentum-v1"

    def __init__(self, params: BaselineParams | None = None) -> None:
        self.params = params or BaselineParams()

    def evaluate(self, features: FeatureVector) -> Signal | None:
        p = self.params
        if features.n_ticks < p.warmup_ticks:
            return None
        z = features.momentum_bps / max(features.volatility_bps, p.min_volatility_bps)
        return signal_from_score(features, z, p, self.version)
