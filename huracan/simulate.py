"""Synthetic market data: seeded random-walk ticks for a universe of coins.

Each coin has its own starting price, per-tick volatility and quoted spread (wider for smaller
coins), trades on its home exchange, and gets a strictly increasing ``seq``. Event time advances
by ``1 / rate`` seconds per tick from ``start_ts_us``, so a run is reproducible from
``(coins, seed, start_ts_us, rate)`` alone: the same inputs give the same ticks, byte for byte.
Ids are derived, not random: ``event_id = "tick:<coin>:<seq>"``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from huracan.domain.universe import CoinInfo

_ANCHOR_PRICES = {"BTC": 50_000.0, "ETH": 3_000.0, "SOL": 150.0, "BNB": 550.0, "XRP": 0.6}


@dataclass(slots=True)
class _CoinState:
    info: CoinInfo
    mid: float
    vol: float  # per-tick log-return standard deviation
    spread_bps: float
    volume_scale: float
    seq: int = 0


class MarketSimulator:
    """Generates :class:`MarketTick`-shaped dicts for ``coins``; deterministic for a seed."""

    def __init__(
        self,
        coins: list[CoinInfo],
        *,
        seed: int = 7,
        start_ts_us: int = 1_767_225_600_000_000,  # 2026-01-01T00:00:00Z
        rate: float = 10_000.0,
    ) -> None:
        if not coins:
            raise ValueError("the simulator needs at least one coin")
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self._rng = random.Random(seed)  # noqa: S311 - synthetic data, not cryptography
        self._step_us = max(1, round(1_000_000 / rate))
        self._ts_us = start_ts_us
        self._states: list[_CoinState] = []
        for c in coins:
            rank = c.index + 1
            mid = _ANCHOR_PRICES.get(c.symbol) or math.exp(self._rng.uniform(-3.0, 6.0))
            vol = (2.0 + 6.0 * min(1.0, rank / 200)) * 1e-4
            spread = 1.0 + 19.0 * min(1.0, rank / 400) + self._rng.uniform(0.0, 2.0)
            scale = 1_000_000.0 / (rank**0.8) / mid
            self._states.append(_CoinState(c, mid, vol, spread, scale))

    @property
    def coins(self) -> list[str]:
        return [s.info.symbol for s in self._states]

    def next_tick(self) -> dict[str, Any]:
        """The next tick of a uniformly chosen coin."""
        rng = self._rng
        s = self._states[rng.randrange(len(self._states))]
        s.mid *= math.exp(rng.gauss(0.0, s.vol))
        half = s.mid * s.spread_bps * 0.5e-4 * rng.uniform(0.8, 1.2)
        bid, ask = s.mid - half, s.mid + half
        s.seq += 1
        self._ts_us += self._step_us
        symbol = s.info.symbol
        return {
            "event_id": f"tick:{symbol}:{s.seq}",
            "correlation_id": f"tick:{symbol}:{s.seq}",
            "causation_id": None,
            "coin": symbol,
            "exchange": s.info.exchange,
            "ts": self._ts_us,
            "bid": bid,
            "ask": ask,
            "last": ask if rng.random() < 0.5 else bid,
            "volume": s.volume_scale * rng.lognormvariate(0.0, 1.0),
            "seq": s.seq,
        }

    def ticks(self, n: int) -> Iterator[dict[str, Any]]:
        """``n`` ticks in event-time order."""
        for _ in range(n):
            yield self.next_tick()
