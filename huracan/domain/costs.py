"""Real-time cost model: spread, fees and funding per symbol, and the edge left after them.

The pure core of the spec's *Real-Time Cost Model*: no clock, no I/O. Every call that depends
on time takes an explicit ``now`` (seconds since the epoch); the shell
:class:`huracan.components.cost_model.RealTimeCostModel` supplies the wall clock and the
refresh loop.

Cost formula (all in basis points of the mid price)::

    cost_bps            = legs × (spread_leg_bps + fee_bps) + funding_bps
    spread_leg_bps      = (ask − bid) / 2 / mid × 10 000      when taking (crossing half the spread)
                        = maker_spread_cost_bps (default 0)   when making (resting at the touch)
    fee_bps             = the symbol's maker or taker fee (the defaults until update_fees)
    funding_bps         = funding_rate_bps × expected_holding_hours / funding_interval_hours
                          signed by direction: "long" pays a positive rate (+), "short" receives
                          it (−); with no direction the conservative |…| is charged; 0 when
                          include_funding is False or no funding rate is known
    edge_after_cost_bps = edge_bps − cost_bps

Funding is charged *pro rata* over the expected holding time, not per funding timestamp
crossed: a trade held 5 minutes of an 8-hour interval pays 5/480 of the rate. The expected
holding time is the exit rules' time limit (``engine.exits.max_holding_seconds``, 5 minutes by
default; :func:`huracan.wiring.cost_settings` derives it unless
``engine.cost_model.expected_holding_hours`` is set): an upper bound on how long a trade is
held, so a payer is never under-charged. The pro-rata choice makes the charge independent of
where in the interval a trade happens to sit, which the backtest report also uses (funding at
the rate in force over each trade's life, pro rata).

``legs`` is 2 by default: a trade's edge is realised only after it is closed again, so the
entry and the exit each pay the spread leg and the fee; set ``legs=1`` to cost the entry only.
``mid = (bid + ask) / 2``.

Quotes
    A quote must have ``0 < bid <= ask``, both finite, and a finite timestamp; anything else
    raises :class:`InvalidQuoteError` and leaves the book unchanged. A quote older than the one
    held (by timestamp) is ignored (``update_spread`` returns ``False``), so replays and
    out-of-order deliveries converge to the newest quote. A quote is *stale* when
    ``now − quote_timestamp > stale_after_seconds``.

Decisions (``check_trade_cost``)
    ``no_quote`` when the symbol has never been quoted, ``stale_quote`` when its quote is
    stale, ``below_min_edge`` when ``edge_after_cost_bps < min_edge_after_cost_bps``, else
    ``ok``. ``should_trade`` is ``check_trade_cost(...).ok``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal, NamedTuple

from huracan.domain.errors import (
    InvalidCostRequestError,
    InvalidCostSettingsError,
    InvalidFeeError,
    InvalidFundingRateError,
    InvalidQuoteError,
    InvalidSymbolError,
    NoQuoteError,
    StateFormatError,
)

__all__ = [
    "BPS",
    "CostBook",
    "CostBreakdown",
    "CostCheck",
    "CostReason",
    "CostSettings",
    "CostSnapshot",
    "Quote",
    "SymbolCostView",
    "SymbolRanking",
    "TradeDirection",
]

#: basis points per unit
BPS: Final = 10_000.0
_INF: Final = math.inf
STATE_VERSION: Final = 1

TradeDirection = Literal["long", "short"]


class CostReason(StrEnum):
    """Stable reason codes of a :class:`CostCheck`."""

    OK = "ok"
    NO_QUOTE = "no_quote"
    STALE_QUOTE = "stale_quote"
    BELOW_MIN_EDGE = "below_min_edge"


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class CostSettings:
    """The cost model's settings, each with its default (the same as ``engine.cost_model``).

    Raises :class:`InvalidCostSettingsError` naming the field when a value is out of range.
    """

    #: should_trade requires at least this edge after costs, bps (default 5)
    min_edge_after_cost_bps: float = 5.0
    #: maker fee until update_fees gives the symbol's own, bps; may be negative (a rebate)
    default_maker_fee_bps: float = 2.0
    #: taker fee until update_fees gives the symbol's own, bps
    default_taker_fee_bps: float = 5.0
    #: a quote older than this makes its symbol stale, seconds, > 0 (default 30)
    stale_after_seconds: float = 30.0
    #: funding is charged pro rata over this expected holding period, hours, >= 0 (default
    #: 300 s: the exit rules' default time limit)
    expected_holding_hours: float = 300.0 / 3600.0
    #: hours per funding interval: funding_rate_bps is per interval, > 0 (default 8)
    funding_interval_hours: float = 8.0
    #: spread cost of a maker leg, bps, >= 0 (default 0: a maker fills at its own price)
    maker_spread_cost_bps: float = 0.0
    #: legs paying spread and fee: 2 = entry and exit (default), 1 = entry only
    legs: int = 2

    def __post_init__(self) -> None:
        for name in (
            "min_edge_after_cost_bps",
            "default_maker_fee_bps",
            "default_taker_fee_bps",
            "stale_after_seconds",
            "expected_holding_hours",
            "funding_interval_hours",
            "maker_spread_cost_bps",
        ):
            value = getattr(self, name)
            if not _finite(value):
                raise InvalidCostSettingsError(f"{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.stale_after_seconds <= 0:
            raise InvalidCostSettingsError("stale_after_seconds must be > 0")
        if self.funding_interval_hours <= 0:
            raise InvalidCostSettingsError("funding_interval_hours must be > 0")
        if self.expected_holding_hours < 0:
            raise InvalidCostSettingsError("expected_holding_hours must be >= 0")
        if self.maker_spread_cost_bps < 0:
            raise InvalidCostSettingsError("maker_spread_cost_bps must be >= 0")
        if self.legs not in (1, 2) or isinstance(self.legs, bool):
            raise InvalidCostSettingsError(f"legs must be 1 or 2, got {self.legs!r}")

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class Quote(NamedTuple):
    """The best bid and ask of a symbol at ``timestamp``."""

    bid: float
    ask: float
    timestamp: float

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2.0

    @property
    def spread_bps(self) -> float:
        """The full spread in bps of mid."""
        return (self.ask - self.bid) / self.mid * BPS


class CostBreakdown(NamedTuple):
    """The parts of a symbol's cost, in bps; ``total_bps`` is what the edge is reduced by."""

    symbol: str
    use_maker: bool
    legs: int
    spread_leg_bps: float
    fee_bps: float
    funding_bps: float
    total_bps: float


class CostCheck(NamedTuple):
    """The outcome of a cost check; ``edge_after_cost_bps`` is ``None`` without a quote."""

    ok: bool
    reason_code: CostReason
    reason: str
    symbol: str
    edge_bps: float
    edge_after_cost_bps: float | None
    quote_age_seconds: float | None


class SymbolRanking(NamedTuple):
    """A symbol's place by net edge after cost (1 = best).

    ``edge_after_cost_bps`` orders the ranking: what a trade keeps, in bps, is what earns.
    ``cost_efficiency`` is reported beside it, the share of the gross edge that survives
    costs, ``edge_after_cost_bps / edge_bps`` (1.0 = free, 0 = costs eat it all, below 0 = a
    loss; ``-inf`` when ``edge_bps <= 0``); it does not order the ranking, since a 6 bps edge
    that keeps 90 % would otherwise rank above an 80 bps net edge. ``tradeable`` says whether
    it passes the minimum edge.
    """

    symbol: str
    edge_bps: float
    cost_bps: float
    edge_after_cost_bps: float
    cost_efficiency: float
    tradeable: bool
    rank: int


class SymbolCostView(NamedTuple):
    """One symbol's cost inputs as of a snapshot."""

    symbol: str
    bid: float | None
    ask: float | None
    spread_bps: float | None
    quote_timestamp: float | None
    quote_age_seconds: float | None
    stale: bool
    maker_fee_bps: float
    taker_fee_bps: float
    funding_rate_bps: float | None


class CostSnapshot(NamedTuple):
    """Every symbol's cost inputs at ``taken_at``, and which are stale (sorted by symbol)."""

    taken_at: float
    symbols: tuple[SymbolCostView, ...]
    stale_symbols: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at,
            "symbols": [v._asdict() for v in self.symbols],
            "stale_symbols": list(self.stale_symbols),
        }


class _Entry:
    """Mutable per-symbol record (internal). ``maker_leg``/``taker_leg`` (spread leg + fee)
    and ``funding_cost`` (rate × holding / interval) are kept precomputed for the hot path."""

    __slots__ = (
        "ask",
        "bid",
        "funding_at",
        "funding_cost",
        "funding_rate_bps",
        "half_spread_bps",
        "maker_bps",
        "maker_leg",
        "quoted_at",
        "taker_bps",
        "taker_leg",
    )

    def __init__(self) -> None:
        self.bid: float | None = None
        self.ask: float | None = None
        self.quoted_at: float | None = None
        self.half_spread_bps = 0.0
        self.maker_bps: float | None = None
        self.taker_bps: float | None = None
        self.funding_rate_bps: float | None = None
        self.funding_at: float | None = None
        self.funding_cost: float | None = None
        self.maker_leg = 0.0
        self.taker_leg = 0.0


class CostBook:
    """Per-symbol spread, fees and funding, and the cost arithmetic over them (pure core).

    Single-writer and synchronous. See the module docstring for the formula and rules.
    """

    def __init__(self, settings: CostSettings | None = None) -> None:
        self._settings = settings if settings is not None else CostSettings()
        if not isinstance(self._settings, CostSettings):
            raise InvalidCostSettingsError(
                f"settings must be CostSettings, got {type(settings).__name__}"
            )
        self._entries: dict[str, _Entry] = {}
        self._configure()

    def _configure(self) -> None:
        st = self._settings
        self._legs = float(st.legs)
        self._maker_spread = st.maker_spread_cost_bps
        self._default_maker = st.default_maker_fee_bps
        self._default_taker = st.default_taker_fee_bps
        self._hold_factor = st.expected_holding_hours / st.funding_interval_hours
        self._min_edge = st.min_edge_after_cost_bps
        self._stale_after = st.stale_after_seconds

    @property
    def settings(self) -> CostSettings:
        return self._settings

    def symbols(self) -> list[str]:
        """Every symbol the book knows (quoted or with fees/funding), sorted."""
        return sorted(self._entries)

    # -- updates -----------------------------------------------------------------------------

    def update_spread(self, symbol: str, bid: float, ask: float, timestamp: float) -> bool:
        """Record the best bid/ask at ``timestamp``; returns ``False`` (and keeps the held
        quote) when ``timestamp`` is older than the held quote's.

        Raises :class:`InvalidQuoteError` (crossed, non-positive, non-finite, bad timestamp)
        or :class:`InvalidSymbolError`, leaving the book unchanged.
        """
        if not (
            # the common case in one expression (NaN fails every comparison); anything else,
            # valid or not, takes the checks below, which say what is wrong
            type(bid) is float
            and type(ask) is float
            and type(timestamp) is float
            and 0.0 < bid <= ask < _INF
            and -_INF < timestamp < _INF
            and type(symbol) is str
            and symbol
        ):
            _check_quote(symbol, bid, ask, timestamp)
        entry = self._entries.get(symbol)
        if entry is None:
            entry = self._entries[symbol] = self._new_entry()
        elif entry.quoted_at is not None and timestamp < entry.quoted_at:
            return False
        bid = float(bid)
        ask = float(ask)
        entry.bid = bid
        entry.ask = ask
        entry.quoted_at = float(timestamp)
        entry.half_spread_bps = (ask - bid) / (ask + bid) * BPS  # (ask-bid)/2 / ((ask+bid)/2)
        self._refresh_legs(entry)
        return True

    def update_fees(self, symbol: str, maker_bps: float, taker_bps: float) -> None:
        """Set ``symbol``'s own maker and taker fees in bps (a negative maker fee is a rebate).

        Raises :class:`InvalidFeeError` for a non-finite fee, leaving the book unchanged.
        """
        _check_symbol(symbol)
        if not _finite(maker_bps) or not _finite(taker_bps):
            raise InvalidFeeError(
                f"{symbol}: fees must be finite numbers, got {maker_bps!r}/{taker_bps!r}"
            )
        entry = self._entries.get(symbol)
        if entry is None:
            entry = self._entries[symbol] = self._new_entry()
        entry.maker_bps = float(maker_bps)
        entry.taker_bps = float(taker_bps)
        self._refresh_legs(entry)

    def update_funding_rate(
        self, symbol: str, funding_rate_bps: float, timestamp: float | None = None
    ) -> None:
        """Set ``symbol``'s funding rate in bps per funding interval (positive: longs pay).

        Raises :class:`InvalidFundingRateError` for a non-finite rate or timestamp.
        """
        _check_symbol(symbol)
        if not _finite(funding_rate_bps):
            raise InvalidFundingRateError(
                f"{symbol}: funding rate must be finite, got {funding_rate_bps!r}"
            )
        if timestamp is not None and not _finite(timestamp):
            raise InvalidFundingRateError(f"{symbol}: timestamp must be finite, got {timestamp!r}")
        entry = self._entries.get(symbol)
        if entry is None:
            entry = self._entries[symbol] = self._new_entry()
        entry.funding_rate_bps = float(funding_rate_bps)
        entry.funding_cost = entry.funding_rate_bps * self._hold_factor
        entry.funding_at = None if timestamp is None else float(timestamp)

    def _new_entry(self) -> _Entry:
        entry = _Entry()
        self._refresh_legs(entry)
        return entry

    def _refresh_legs(self, entry: _Entry) -> None:
        maker = self._default_maker if entry.maker_bps is None else entry.maker_bps
        taker = self._default_taker if entry.taker_bps is None else entry.taker_bps
        entry.maker_leg = self._maker_spread + maker
        entry.taker_leg = entry.half_spread_bps + taker

    # -- reads -------------------------------------------------------------------------------

    def quote(self, symbol: str) -> Quote | None:
        """The held quote of ``symbol`` or ``None``."""
        entry = self._entries.get(symbol)
        if entry is None or entry.quoted_at is None or entry.bid is None or entry.ask is None:
            return None
        return Quote(entry.bid, entry.ask, entry.quoted_at)

    def fees(self, symbol: str) -> tuple[float, float]:
        """``(maker_bps, taker_bps)`` in force for ``symbol`` (its own or the defaults)."""
        entry = self._entries.get(symbol)
        maker = entry.maker_bps if entry is not None else None
        taker = entry.taker_bps if entry is not None else None
        return (
            self._default_maker if maker is None else maker,
            self._default_taker if taker is None else taker,
        )

    def funding_rate(self, symbol: str) -> float | None:
        """The funding rate of ``symbol`` in bps per interval, or ``None`` if unknown."""
        entry = self._entries.get(symbol)
        return None if entry is None else entry.funding_rate_bps

    def quote_age(self, symbol: str, now: float) -> float | None:
        """Seconds since ``symbol``'s quote, or ``None`` without one."""
        entry = self._entries.get(symbol)
        if entry is None or entry.quoted_at is None:
            return None
        return now - entry.quoted_at

    def is_stale(self, symbol: str, now: float) -> bool:
        """Whether ``symbol`` has no quote or its quote is older than ``stale_after_seconds``."""
        entry = self._entries.get(symbol)
        return entry is None or entry.quoted_at is None or now - entry.quoted_at > self._stale_after

    def stale_symbols(self, now: float) -> list[str]:
        """Symbols with a quote that has gone stale at ``now``, sorted."""
        limit = self._stale_after
        return sorted(
            s
            for s, e in self._entries.items()
            if e.quoted_at is not None and now - e.quoted_at > limit
        )

    # -- arithmetic --------------------------------------------------------------------------

    def edge_after_cost(
        self,
        symbol: str,
        edge_bps: float,
        use_maker: bool = False,
        include_funding: bool = True,
        direction: TradeDirection | None = None,
    ) -> float:
        """``edge_bps`` minus the symbol's cost (module docstring), ignoring staleness.

        Raises :class:`NoQuoteError` when the symbol has no quote, and
        :class:`InvalidCostRequestError` for a non-finite edge or an unknown direction.
        """
        entry = self._entries.get(symbol)
        if entry is None or entry.quoted_at is None:
            raise NoQuoteError(f"{symbol!r} has no quote")
        try:
            finite = edge_bps - edge_bps == 0.0  # False for NaN and ±inf
        except TypeError:
            finite = False
        if not finite or isinstance(edge_bps, bool):
            raise InvalidCostRequestError(f"edge_bps must be finite, got {edge_bps!r}")
        return edge_bps - self._cost(entry, use_maker, include_funding, direction)

    def breakdown(
        self,
        symbol: str,
        use_maker: bool = False,
        include_funding: bool = True,
        direction: TradeDirection | None = None,
    ) -> CostBreakdown:
        """The parts of ``symbol``'s cost; raises :class:`NoQuoteError` without a quote."""
        entry = self._entries.get(symbol)
        if entry is None or entry.quoted_at is None:
            raise NoQuoteError(f"{symbol!r} has no quote")
        self._cost(entry, use_maker, include_funding, direction)  # validates direction
        if use_maker:
            spread = self._maker_spread
            fee = self._default_maker if entry.maker_bps is None else entry.maker_bps
        else:
            spread = entry.half_spread_bps
            fee = self._default_taker if entry.taker_bps is None else entry.taker_bps
        rate_cost = entry.funding_cost
        if not include_funding or rate_cost is None:
            funding = 0.0
        elif direction is None:
            funding = abs(rate_cost)
        else:
            funding = rate_cost if direction == "long" else -rate_cost
        total = self._legs * (spread + fee) + funding
        return CostBreakdown(symbol, use_maker, int(self._legs), spread, fee, funding, total)

    def _cost(
        self, entry: _Entry, use_maker: bool, include_funding: bool, direction: str | None
    ) -> float:
        cost = self._legs * (entry.maker_leg if use_maker else entry.taker_leg)
        funding = entry.funding_cost
        if direction is None:
            if include_funding and funding is not None:
                cost += funding if funding >= 0.0 else -funding
        elif direction == "long":
            if include_funding and funding is not None:
                cost += funding
        elif direction == "short":
            if include_funding and funding is not None:
                cost -= funding
        else:
            raise InvalidCostRequestError(
                f"direction must be 'long', 'short' or None, got {direction!r}"
            )
        return cost

    # -- decisions ---------------------------------------------------------------------------

    def check_trade_cost(
        self,
        symbol: str,
        edge_bps: float,
        now: float,
        use_maker: bool = False,
        include_funding: bool = True,
        direction: TradeDirection | None = None,
    ) -> CostCheck:
        """Whether a trade with ``edge_bps`` passes the cost threshold at ``now``, and why.

        Never raises for an unknown or stale symbol (those are reasons); raises
        :class:`InvalidCostRequestError` for a non-finite edge or time, or a bad direction.
        """
        if not (type(edge_bps) is float and -_INF < edge_bps < _INF) and not _finite(edge_bps):
            raise InvalidCostRequestError(f"edge_bps must be finite, got {edge_bps!r}")
        if not (type(now) is float and -_INF < now < _INF) and not _finite(now):
            raise InvalidCostRequestError(f"now must be finite, got {now!r}")
        entry = self._entries.get(symbol)
        if entry is None or entry.quoted_at is None:
            if direction is not None and direction not in ("long", "short"):
                raise InvalidCostRequestError(
                    f"direction must be 'long', 'short' or None, got {direction!r}"
                )
            return CostCheck(
                False,
                CostReason.NO_QUOTE,
                f"{symbol}: no quote yet, spread cost unknown",
                symbol,
                edge_bps,
                None,
                None,
            )
        eac = edge_bps - self._cost(entry, use_maker, include_funding, direction)
        age = now - entry.quoted_at
        if age > self._stale_after:
            return CostCheck(
                False,
                CostReason.STALE_QUOTE,
                f"{symbol}: quote is {age:.3f}s old, older than "
                f"stale_after_seconds={self._stale_after}",
                symbol,
                edge_bps,
                eac,
                age,
            )
        if eac < self._min_edge:
            return CostCheck(
                False,
                CostReason.BELOW_MIN_EDGE,
                f"{symbol}: edge after cost {eac:.4g} bps is below "
                f"min_edge_after_cost_bps={self._min_edge}",
                symbol,
                edge_bps,
                eac,
                age,
            )
        return CostCheck(True, CostReason.OK, "ok", symbol, edge_bps, eac, age)

    def rank_symbols(
        self,
        symbols: Iterable[str],
        edges_bps: Mapping[str, float],
        now: float,
        use_maker: bool = False,
        include_funding: bool = True,
    ) -> list[SymbolRanking]:
        """Rank ``symbols`` by net edge after cost in bps, best first (rank 1).

        Symbols with no quote or a stale quote at ``now`` are left out (they cannot be costed;
        :meth:`check_trade_cost` says why). Order: edge after cost descending, then symbol.
        Raises :class:`InvalidCostRequestError` when a symbol has no finite edge in
        ``edges_bps``. Funding is charged conservatively (no direction).
        """
        if not _finite(now):
            raise InvalidCostRequestError(f"now must be finite, got {now!r}")
        entries = self._entries
        stale_after = self._stale_after
        legs = self._legs
        rows: list[tuple[float, str, float, float]] = []
        seen: set[str] = set()
        for symbol in symbols:
            if symbol in seen:
                continue
            seen.add(symbol)
            edge = edges_bps.get(symbol)
            try:
                finite = edge - edge == 0.0  # type: ignore[operator]
            except TypeError:
                finite = False
            if not finite or edge is None:
                raise InvalidCostRequestError(f"{symbol}: no finite edge in edges_bps: {edge!r}")
            entry = entries.get(symbol)
            if entry is None:
                continue
            quoted_at = entry.quoted_at
            if quoted_at is None or now - quoted_at > stale_after:
                continue
            cost = legs * (entry.maker_leg if use_maker else entry.taker_leg)
            funding = entry.funding_cost
            if include_funding and funding is not None:
                cost += funding if funding >= 0.0 else -funding
            eac = edge - cost
            rows.append((-eac, symbol, edge, eac))
        rows.sort()
        min_edge = self._min_edge
        return [
            SymbolRanking(
                symbol,
                edge,
                edge - eac,
                eac,
                eac / edge if edge > 0 else -math.inf,
                eac >= min_edge,
                rank,
            )
            for rank, (_neg_eac, symbol, edge, eac) in enumerate(rows, start=1)
        ]

    # -- snapshots and state -----------------------------------------------------------------

    def snapshot(self, now: float) -> CostSnapshot:
        """Every symbol's cost inputs at ``now`` (sorted by symbol) and the stale ones."""
        views = []
        stale = []
        for symbol in sorted(self._entries):
            e = self._entries[symbol]
            maker, taker = self.fees(symbol)
            if e.quoted_at is None:
                views.append(
                    SymbolCostView(
                        symbol, None, None, None, None, None, True, maker, taker, e.funding_rate_bps
                    )
                )
                continue
            age = now - e.quoted_at
            is_stale = age > self._stale_after
            if is_stale:
                stale.append(symbol)
            views.append(
                SymbolCostView(
                    symbol,
                    e.bid,
                    e.ask,
                    2.0 * e.half_spread_bps,
                    e.quoted_at,
                    age,
                    is_stale,
                    maker,
                    taker,
                    e.funding_rate_bps,
                )
            )
        return CostSnapshot(float(now), tuple(views), tuple(stale))

    def to_dict(self) -> dict[str, Any]:
        """The book as JSON-safe data; :meth:`from_dict` restores an identical book."""
        return {
            "version": STATE_VERSION,
            "settings": self._settings.to_dict(),
            "symbols": {
                s: {
                    "bid": e.bid,
                    "ask": e.ask,
                    "quoted_at": e.quoted_at,
                    "maker_bps": e.maker_bps,
                    "taker_bps": e.taker_bps,
                    "funding_rate_bps": e.funding_rate_bps,
                    "funding_at": e.funding_at,
                }
                for s, e in sorted(self._entries.items())
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CostBook:
        """Rebuild from :meth:`to_dict`; raises :class:`StateFormatError` on bad data."""
        if not isinstance(data, Mapping) or data.get("version") != STATE_VERSION:
            raise StateFormatError(f"cost book must be a mapping with version {STATE_VERSION}")
        try:
            book = cls(CostSettings(**data["settings"]))
            for symbol, raw in data["symbols"].items():
                if raw.get("quoted_at") is not None:
                    book.update_spread(symbol, raw["bid"], raw["ask"], raw["quoted_at"])
                if raw.get("maker_bps") is not None or raw.get("taker_bps") is not None:
                    book.update_fees(symbol, raw["maker_bps"], raw["taker_bps"])
                if raw.get("funding_rate_bps") is not None:
                    book.update_funding_rate(symbol, raw["funding_rate_bps"], raw.get("funding_at"))
                if symbol not in book._entries:
                    book._entries[symbol] = book._new_entry()
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            if isinstance(exc, StateFormatError):
                raise
            raise StateFormatError(f"bad cost book: {exc!r}") from None
        return book


def _check_symbol(symbol: object) -> None:
    if not isinstance(symbol, str) or not symbol:
        raise InvalidSymbolError(f"symbol must be a non-empty string, got {symbol!r}")


def _check_quote(symbol: object, bid: object, ask: object, timestamp: object) -> None:
    """The checks of :meth:`CostBook.update_spread`, in order; raises the first that fails."""
    _check_symbol(symbol)
    if not _finite(bid) or not _finite(ask):
        raise InvalidQuoteError(f"{symbol}: bid and ask must be finite, got {bid!r}/{ask!r}")
    if bid <= 0 or ask <= 0:  # type: ignore[operator]
        raise InvalidQuoteError(f"{symbol}: bid and ask must be > 0, got {bid!r}/{ask!r}")
    if bid > ask:  # type: ignore[operator]
        raise InvalidQuoteError(f"{symbol}: crossed quote, bid {bid!r} > ask {ask!r}")
    if not _finite(timestamp):
        raise InvalidQuoteError(f"{symbol}: timestamp must be finite, got {timestamp!r}")
