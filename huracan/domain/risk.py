"""Global risk controller: exposure limits, trade counts and circuit breakers across all coins.

This is the spec's *Global Risk Controller* as a pure, deterministic core: no clock, no
randomness, no I/O. The same sequence of calls always yields the same decisions, so the Kafka
risk sequencer, the backtester and the tests share it and a replay decides bit for bit as live.

Exposure
    Every open trade (and every reservation, see below) adds its notional to four buckets: its
    coin, the coin's sector, its exchange, and the global total. A bucket's exposure is shown as
    a percentage of account equity (``update_equity`` changes equity). With
    ``exposure_mode="gross"`` (the default) a bucket's exposure is the sum of the notionals of
    its trades, longs and shorts alike. With ``"net"``, open longs and shorts of the same coin
    offset: the coin bucket holds ``|longs - shorts|``, a sector and the global bucket the sum
    of their coins' net exposures, and an exchange the sum over coins of the coin's net exposure
    on that exchange. A reservation (an order in flight) is never credited with offsetting
    anything, since it may not fill: in both modes it adds its full size to its buckets, so no
    mix of fills and cancellations can take a bucket past what was approved.

    Amounts are kept as integer micro-USD (``size_units``), so running totals are exact and a
    limit is never crossed by float accumulation; a size is rounded to the nearest micro-USD.

Decisions (``check_trade``), in this order, first match wins
    1. a request that increases no bucket is *risk-reducing* (every close in gross mode; in
       net mode an offsetting trade, or a close that does not unhedge): steps 2, 4 and 5 do
       not apply to it, nor does the minimum size;
    2. BLOCK while a circuit breaker is tripped (kill switch, then drawdown, then errors);
    3. BLOCK when one more trade would exceed ``max_concurrent_trades`` or ``max_active_trades``
       (opening requests only; closes never add a trade);
    4. the request is *resized* by the throttle curve below (a request that stays within the
       soft threshold of every bucket keeps its size); when the resized size is below
       ``min_trade_usd`` nothing useful fits: BLOCK, with the exceeded limit's reason
       (``per_coin_limit``…) when the bucket has no headroom at all, else ``below_min_size``
       (also for a request that is itself smaller than the minimum);
    5. THROTTLE when the resized size is smaller than the request: the reason is the binding
       bucket's hard-limit code (``per_coin_limit``…) when the request would have crossed its
       hard limit, else its soft code (``per_coin_soft_limit``…);
    6. APPROVE.
    ``approved_size_usd`` is the size the decision approves: the request's on APPROVE, the
    resized one on THROTTLE, 0 on BLOCK. It is monotone non-decreasing in the requested size,
    and positions plus reservations never exceed a hard limit through it.

Throttle curve
    Between the soft threshold ``S = soft_throttle_threshold_pct`` of a bucket's hard limit
    ``H`` and ``H`` itself, each further dollar requested is admitted at a rate that falls
    linearly with the bucket's utilisation ``u`` (exposure after what is admitted so far,
    over ``H``): 1 at ``u = S/H`` and 0 at ``u = 1``. For a bucket at exposure ``E`` and a
    request that adds ``r`` to it, this integrates to::

        below    = max(S - E, 0)                      admitted in full
        admitted = r                                  when r <= below, else
        admitted = below + (H - x0) * (1 - exp(-(r - below) / (H - S)))   x0 = max(E, S)

    so the approved size shrinks smoothly with utilisation, is continuous and strictly
    increasing in ``r`` (a larger request is never approved less) and approaches but never
    crosses ``H`` (a request that would cross the hard limit is cut to what fits). Repeated
    requests fill the band between S and H geometrically. The request's size is the minimum
    over its buckets (coin, sector, exchange, global) of what each admits; in net mode the
    part of a request that does not increase a bucket (``free``) is admitted in full. A
    linear taper of the *size* (``size × (1 − u)/(1 − S/H)``) was rejected: it is not
    monotone (a larger request gets less) and keeps exposure out of the band.
    A bucket only resizes or blocks a trade that *increases* it: a trade that leaves an
    already-over-limit bucket unchanged or smaller is not refused by that bucket.

Trade counts
    ``active trades`` are the open positions (``register_trade``); ``in flight`` are the
    approvals held by ``reserve_trade`` and not yet filled (``register_trade`` with the same id)
    or released (``release_trade``). A reservation holds its exposure and its trade slot, because
    it becomes a position when it fills: both count limits are checked against
    ``active + in flight + 1``, so registered positions can never exceed either. The two limits
    differ in role: ``max_concurrent_trades`` is the engine's capacity (the architecture's 500,
    ``engine.max_concurrent_trades``), ``max_active_trades`` the operating limit raised through
    the scaling phases, like ``active_coins`` against ``max_coins``. Whichever is lower binds,
    and the reason names it.

Circuit breakers
    ``drawdown`` trips when equity falls ``max_drawdown_pct`` or more below its peak;
    ``errors`` trips when ``max_consecutive_errors`` execution errors happen in a row (a
    registered or closed trade, or ``record_execution_success``, ends the run); ``kill_switch``
    is manual. A tripped breaker blocks every risk-increasing request, with its reason, until
    ``reset_breaker`` is called; risk-reducing requests stay allowed. Trips record the event
    timestamp passed in (the core never reads a clock).

Sectors
    ``set_coin_sector`` registers a coin's sector. A request's own ``sector`` is used when the
    coin has none registered (and is then registered by ``register_trade``/``reserve_trade``);
    when both exist they must agree (:class:`SectorMismatchError`); when neither does,
    :class:`UnknownSectorError`.

Every method that raises leaves the state unchanged. ``check_trade`` is O(1): it reads running
totals, never sums over trades.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Literal, NamedTuple

from huracan.domain.errors import (
    DuplicateTradeError,
    InvalidEquityError,
    InvalidLimitsError,
    InvalidTradeError,
    SectorMismatchError,
    StateFormatError,
    UnknownBreakerError,
    UnknownSectorError,
    UnknownTradeError,
)

__all__ = [
    "DEFAULT_EQUITY_USD",
    "MICRO_USD",
    "BreakerName",
    "BreakerState",
    "Direction",
    "ExposureMode",
    "ExposureSnapshot",
    "GlobalRiskController",
    "OpenTrade",
    "RiskCheckResult",
    "RiskDecision",
    "RiskLimits",
    "RiskReason",
    "RiskState",
    "TradeRequest",
    "to_micro_usd",
]

#: micro-USD per USD: sizes and equity are held as integers of this unit
MICRO_USD: Final = 1_000_000
#: equity assumed when none is given (the same as ``engine.equity_usd`` in config/base.yaml)
DEFAULT_EQUITY_USD: Final = 1_000_000.0
STATE_VERSION: Final = 1

Direction = Literal["long", "short"]
ExposureMode = Literal["gross", "net"]
_DIRECTIONS: Final = frozenset(("long", "short"))
_MODES: Final = frozenset(("gross", "net"))
_NO_LIMIT: Final = 1 << 62  # "unbounded" size in micro-USD, larger than any real headroom


class RiskDecision(StrEnum):
    """The outcome of a risk check."""

    APPROVE = "APPROVE"
    THROTTLE = "THROTTLE"
    BLOCK = "BLOCK"


class RiskReason(StrEnum):
    """Stable, machine-readable reason codes of a :class:`RiskCheckResult`."""

    APPROVED = "approved"
    RISK_REDUCING = "risk_reducing"
    KILL_SWITCH = "kill_switch"
    DRAWDOWN_BREAKER = "drawdown_breaker"
    ERROR_BREAKER = "error_breaker"
    MAX_CONCURRENT_TRADES = "max_concurrent_trades"
    MAX_ACTIVE_TRADES = "max_active_trades"
    COIN_LIMIT = "per_coin_limit"
    SECTOR_LIMIT = "per_sector_limit"
    EXCHANGE_LIMIT = "per_exchange_limit"
    GLOBAL_LIMIT = "global_limit"
    COIN_SOFT_LIMIT = "per_coin_soft_limit"
    SECTOR_SOFT_LIMIT = "per_sector_soft_limit"
    EXCHANGE_SOFT_LIMIT = "per_exchange_soft_limit"
    GLOBAL_SOFT_LIMIT = "global_soft_limit"
    BELOW_MIN_SIZE = "below_min_size"


class BreakerName(StrEnum):
    """The circuit breakers."""

    KILL_SWITCH = "kill_switch"
    DRAWDOWN = "drawdown"
    ERRORS = "errors"


_BREAKER_ORDER: Final = (BreakerName.KILL_SWITCH, BreakerName.DRAWDOWN, BreakerName.ERRORS)
_BREAKER_LIMIT: Final = {
    BreakerName.KILL_SWITCH: "kill_switch",
    BreakerName.DRAWDOWN: "max_drawdown_pct",
    BreakerName.ERRORS: "max_consecutive_errors",
}
_BREAKER_REASON: Final = {
    BreakerName.KILL_SWITCH: RiskReason.KILL_SWITCH,
    BreakerName.DRAWDOWN: RiskReason.DRAWDOWN_BREAKER,
    BreakerName.ERRORS: RiskReason.ERROR_BREAKER,
}


def to_micro_usd(amount_usd: float) -> int:
    """``amount_usd`` rounded to the nearest integer micro-USD (no validation)."""
    return round(amount_usd * MICRO_USD)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- limits -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """The risk limits; the spec's fields plus the breaker settings, each with a default.

    Built from the config as the spec does: ``RiskLimits(**config["engine"]["risk"])``. Raises
    :class:`InvalidLimitsError` naming the field when a value is out of range.
    """

    #: largest total exposure, % of equity (default 200)
    global_max_exposure_pct: float = 200.0
    #: largest exposure to one coin, % of equity (default 40)
    per_coin_max_exposure_pct: float = 40.0
    #: largest exposure to one sector, % of equity (default 60)
    per_sector_max_exposure_pct: float = 60.0
    #: largest exposure on one exchange, % of equity (default 150)
    per_exchange_max_exposure_pct: float = 150.0
    #: THROTTLE past this % of any exposure limit, in (0, 100] (default 80)
    soft_throttle_threshold_pct: float = 80.0
    #: engine capacity: open positions + reservations in flight (default 500)
    max_concurrent_trades: int = 500
    #: operating limit: open positions + reservations in flight (default 100)
    max_active_trades: int = 100
    #: drawdown from peak equity, %, that trips the drawdown breaker, in (0, 100] (default 10)
    max_drawdown_pct: float = 10.0
    #: execution errors in a row that trip the errors breaker (default 5)
    max_consecutive_errors: int = 5
    #: "gross" (default): longs and shorts add up; "net": they offset within a coin
    exposure_mode: ExposureMode = "gross"
    #: smallest size a risk-increasing request is approved at, USD, > 0 (default 10): a
    #: request or a resize below it is BLOCKed ``below_min_size``
    min_trade_usd: float = 10.0

    def __post_init__(self) -> None:
        for name in (
            "global_max_exposure_pct",
            "per_coin_max_exposure_pct",
            "per_sector_max_exposure_pct",
            "per_exchange_max_exposure_pct",
        ):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value <= 0:
                raise InvalidLimitsError(f"{name} must be a finite number > 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        mt = self.min_trade_usd
        if not _is_number(mt) or not math.isfinite(mt) or mt <= 0:
            raise InvalidLimitsError(f"min_trade_usd must be a finite number > 0, got {mt!r}")
        object.__setattr__(self, "min_trade_usd", float(mt))
        for name in ("soft_throttle_threshold_pct", "max_drawdown_pct"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or not 0 < value <= 100:
                raise InvalidLimitsError(f"{name} must be within (0, 100], got {value!r}")
            object.__setattr__(self, name, float(value))
        for name in ("max_concurrent_trades", "max_active_trades", "max_consecutive_errors"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidLimitsError(f"{name} must be an integer >= 1, got {value!r}")
        if self.exposure_mode not in _MODES:
            raise InvalidLimitsError(
                f"exposure_mode must be 'gross' or 'net', got {self.exposure_mode!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (``RiskLimits(**limits.to_dict())`` round-trips)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


# --- requests, trades, results --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TradeRequest:
    """A request to open a trade (or, with ``closes_trade_id``, to reduce an open one).

    ``direction`` is ``"long"`` or ``"short"``; ``size_usd`` the notional, finite and > 0
    (at least one micro-USD). ``sector`` may be omitted when the coin's sector is registered.
    A close request names the trade it reduces and must repeat its coin, exchange and
    direction, with a size no larger than the trade's. Raises :class:`InvalidTradeError`.
    """

    coin: str
    direction: Direction
    size_usd: float
    exchange: str
    sector: str | None = None
    closes_trade_id: str | None = None
    size_units: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.coin, str) or not self.coin:
            raise InvalidTradeError(f"coin must be a non-empty string, got {self.coin!r}")
        if not isinstance(self.exchange, str) or not self.exchange:
            raise InvalidTradeError(f"exchange must be a non-empty string, got {self.exchange!r}")
        if self.direction not in _DIRECTIONS:
            raise InvalidTradeError(f"direction must be 'long' or 'short', got {self.direction!r}")
        size = self.size_usd
        if not _is_number(size) or not math.isfinite(size) or size <= 0:
            raise InvalidTradeError(f"size_usd must be a finite number > 0, got {size!r}")
        units = to_micro_usd(size)
        if units < 1:
            raise InvalidTradeError(f"size_usd {size!r} is below one micro-USD")
        if self.sector is not None and (not isinstance(self.sector, str) or not self.sector):
            raise InvalidTradeError(
                f"sector must be a non-empty string or None, got {self.sector!r}"
            )
        if self.closes_trade_id is not None and (
            not isinstance(self.closes_trade_id, str) or not self.closes_trade_id
        ):
            raise InvalidTradeError(
                f"closes_trade_id must be a non-empty string or None, got {self.closes_trade_id!r}"
            )
        object.__setattr__(self, "size_units", units)

    def to_dict(self) -> dict[str, Any]:
        return {
            "coin": self.coin,
            "direction": self.direction,
            "size_usd": self.size_usd,
            "exchange": self.exchange,
            "sector": self.sector,
            "closes_trade_id": self.closes_trade_id,
        }


@dataclass(frozen=True, slots=True)
class OpenTrade:
    """An open position (or a reservation): what the exposure totals are folded from."""

    trade_id: str
    coin: str
    exchange: str
    direction: Direction
    size_units: int
    opened_at: float | None = None

    @property
    def size_usd(self) -> float:
        return self.size_units / MICRO_USD

    def to_dict(self) -> dict[str, Any]:
        return {
            "trade_id": self.trade_id,
            "coin": self.coin,
            "exchange": self.exchange,
            "direction": self.direction,
            "size_micro_usd": self.size_units,
            "opened_at": self.opened_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OpenTrade:
        """Rebuild from :meth:`to_dict`; raises :class:`StateFormatError` on bad data."""
        try:
            trade = cls(
                trade_id=str(data["trade_id"]),
                coin=str(data["coin"]),
                exchange=str(data["exchange"]),
                direction=data["direction"],
                size_units=int(data["size_micro_usd"]),
                opened_at=None if data.get("opened_at") is None else float(data["opened_at"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateFormatError(f"bad trade record {dict(data)!r}: {exc}") from None
        if trade.direction not in _DIRECTIONS or trade.size_units < 1:
            raise StateFormatError(f"bad trade record {dict(data)!r}")
        return trade


@dataclass(frozen=True, slots=True)
class BreakerState:
    """One circuit breaker: whether it is tripped, why, and the event time it tripped at."""

    name: BreakerName
    tripped: bool = False
    reason: str = ""
    tripped_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": str(self.name),
            "tripped": self.tripped,
            "reason": self.reason,
            "tripped_at": self.tripped_at,
        }


class ExposureSnapshot(NamedTuple):
    """The buckets a request touches, in % of equity, before and after it would be applied.

    This is the exposure snapshot carried by the RiskDecision event.
    """

    coin: str
    sector: str
    exchange: str
    coin_pct: float
    sector_pct: float
    exchange_pct: float
    global_pct: float
    coin_after_pct: float
    sector_after_pct: float
    exchange_after_pct: float
    global_after_pct: float
    active_trades: int
    in_flight_trades: int

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


class RiskCheckResult(NamedTuple):
    """The outcome of :meth:`GlobalRiskController.check_trade`.

    ``reason`` is human-readable text naming the limit; ``reason_code`` is stable;
    ``limit`` names what decided: a :class:`RiskLimits` field (``per_sector_max_exposure_pct``,
    ``max_active_trades``, ``max_drawdown_pct``, ``min_trade_usd``…) or ``"kill_switch"``;
    ``None`` for APPROVE. ``approved_size_usd`` is the size approved (0 on BLOCK);
    ``max_approvable_size_usd`` the size the throttle curve resizes the request to before the
    minimum-size rule (equal to ``approved_size_usd`` on APPROVE and THROTTLE, kept for the
    RiskDecision record and the sequencer; under a tripped breaker the part that would not
    increase any bucket; 0 when a count limit blocks);
    ``max_allowed_size_usd`` what fits under the hard limits — no request of this kind is
    approved more (the curve approaches it and never reaches it past the soft threshold).
    ``exposure`` shows the buckets before and after the *requested* size.
    """

    decision: RiskDecision
    reason_code: RiskReason
    reason: str
    limit: str | None
    max_approvable_size_usd: float
    max_allowed_size_usd: float
    risk_reducing: bool
    exposure: ExposureSnapshot
    request: TradeRequest
    approved_size_usd: float = 0.0

    @property
    def approved(self) -> bool:
        return self.decision is RiskDecision.APPROVE

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": str(self.decision),
            "reason_code": str(self.reason_code),
            "reason": self.reason,
            "limit": self.limit,
            "max_approvable_size_usd": self.max_approvable_size_usd,
            "max_allowed_size_usd": self.max_allowed_size_usd,
            "approved_size_usd": self.approved_size_usd,
            "risk_reducing": self.risk_reducing,
            "exposure": self.exposure.to_dict(),
            "request": self.request.to_dict(),
        }


# --- serializable state ---------------------------------------------------------------------


@dataclass
class RiskState:
    """Everything a controller needs to resume: plain data, JSON-safe via :meth:`to_dict`.

    Running totals are not part of it; they are folded from ``trades`` and ``reservations``
    when a controller is built from a state.
    """

    limits: RiskLimits = field(default_factory=RiskLimits)
    equity_micro_usd: int = to_micro_usd(DEFAULT_EQUITY_USD)
    peak_equity_micro_usd: int = to_micro_usd(DEFAULT_EQUITY_USD)
    coin_sectors: dict[str, str] = field(default_factory=dict)
    trades: dict[str, OpenTrade] = field(default_factory=dict)
    reservations: dict[str, OpenTrade] = field(default_factory=dict)
    breakers: dict[BreakerName, BreakerState] = field(
        default_factory=lambda: {name: BreakerState(name) for name in _BREAKER_ORDER}
    )
    consecutive_errors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "limits": self.limits.to_dict(),
            "equity_micro_usd": self.equity_micro_usd,
            "peak_equity_micro_usd": self.peak_equity_micro_usd,
            "coin_sectors": dict(sorted(self.coin_sectors.items())),
            "trades": [t.to_dict() for t in self.trades.values()],
            "reservations": [t.to_dict() for t in self.reservations.values()],
            "breakers": {str(n): self.breakers[n].to_dict() for n in _BREAKER_ORDER},
            "consecutive_errors": self.consecutive_errors,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RiskState:
        """Rebuild from :meth:`to_dict`; raises :class:`StateFormatError` on bad data."""
        if not isinstance(data, Mapping) or data.get("version") != STATE_VERSION:
            raise StateFormatError(f"risk state must be a mapping with version {STATE_VERSION}")
        try:
            limits = RiskLimits(**data["limits"])
            trades = [OpenTrade.from_dict(t) for t in data["trades"]]
            reservations = [OpenTrade.from_dict(t) for t in data["reservations"]]
            breakers = {}
            for name in _BREAKER_ORDER:
                raw = data["breakers"][str(name)]
                at = raw.get("tripped_at")
                breakers[name] = BreakerState(
                    name,
                    bool(raw["tripped"]),
                    str(raw["reason"]),
                    None if at is None else float(at),
                )
            state = cls(
                limits=limits,
                equity_micro_usd=int(data["equity_micro_usd"]),
                peak_equity_micro_usd=int(data["peak_equity_micro_usd"]),
                coin_sectors={str(k): str(v) for k, v in data["coin_sectors"].items()},
                trades={t.trade_id: t for t in trades},
                reservations={t.trade_id: t for t in reservations},
                breakers=breakers,
                consecutive_errors=int(data["consecutive_errors"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, StateFormatError):
                raise
            raise StateFormatError(f"bad risk state: {exc!r}") from None
        if len(state.trades) != len(trades) or len(state.reservations) != len(reservations):
            raise StateFormatError("bad risk state: duplicate trade ids")
        if state.trades.keys() & state.reservations.keys():
            raise StateFormatError("bad risk state: an id is both a trade and a reservation")
        if state.equity_micro_usd < 1 or state.peak_equity_micro_usd < state.equity_micro_usd:
            raise StateFormatError("bad risk state: equity must be > 0 and <= its peak")
        for t in (*trades, *reservations):
            if t.coin not in state.coin_sectors:
                raise StateFormatError(f"bad risk state: coin {t.coin!r} has no sector")
        return state


# --- the controller -------------------------------------------------------------------------


class GlobalRiskController:
    """Decides trade requests against exposure limits, trade counts and circuit breakers.

    Single-writer and synchronous: one instance per risk sequencer, no locks. See the module
    docstring for the rules. ``equity_usd`` defaults to :data:`DEFAULT_EQUITY_USD`.
    """

    def __init__(
        self,
        limits: RiskLimits | None = None,
        *,
        equity_usd: float = DEFAULT_EQUITY_USD,
        coin_sectors: Mapping[str, str] | None = None,
    ) -> None:
        units = _equity_units(equity_usd)
        state = RiskState(
            limits=limits if limits is not None else RiskLimits(),
            equity_micro_usd=units,
            peak_equity_micro_usd=units,
        )
        if not isinstance(state.limits, RiskLimits):
            raise InvalidLimitsError(f"limits must be RiskLimits, got {type(limits).__name__}")
        for coin, sector in (coin_sectors or {}).items():
            _check_name("coin", coin)
            _check_name("sector", sector)
            state.coin_sectors[coin] = sector
        self._load(state)

    # -- construction from state -------------------------------------------------------------

    @classmethod
    def from_state(cls, state: RiskState) -> GlobalRiskController:
        """A controller resuming ``state`` (copied; running totals re-folded, O(trades))."""
        controller = cls.__new__(cls)
        controller._load(
            RiskState(
                limits=state.limits,
                equity_micro_usd=state.equity_micro_usd,
                peak_equity_micro_usd=state.peak_equity_micro_usd,
                coin_sectors=dict(state.coin_sectors),
                trades=dict(state.trades),
                reservations=dict(state.reservations),
                breakers=dict(state.breakers),
                consecutive_errors=state.consecutive_errors,
            )
        )
        return controller

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GlobalRiskController:
        """A controller resuming :meth:`to_dict` output; raises :class:`StateFormatError`."""
        return cls.from_state(RiskState.from_dict(data))

    def state(self) -> RiskState:
        """A copy of the state as plain data (what a changelog table would hold)."""
        return RiskState(
            limits=self._limits,
            equity_micro_usd=self._equity,
            peak_equity_micro_usd=self._peak,
            coin_sectors=dict(self._sectors),
            trades=dict(self._trades),
            reservations=dict(self._reserved),
            breakers=dict(self._breakers),
            consecutive_errors=self._errors,
        )

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON-safe data; :meth:`from_dict` restores an identical controller."""
        return self.state().to_dict()

    def _load(self, state: RiskState) -> None:
        self._limits = state.limits
        self._net = state.limits.exposure_mode == "net"
        self._equity = state.equity_micro_usd
        self._peak = state.peak_equity_micro_usd
        self._sectors = state.coin_sectors
        self._trades = state.trades
        self._reserved = state.reservations
        self._breakers = state.breakers
        self._halted = any(b.tripped for b in self._breakers.values())
        self._errors = state.consecutive_errors
        for t in (*self._trades.values(), *self._reserved.values()):
            if t.coin not in self._sectors:
                raise StateFormatError(f"risk state: coin {t.coin!r} has no sector")
        self._refold()
        self._recompute_limits()

    def _refold(self) -> None:
        # open trades: signed net (long +) and gross; reservations: gross; per coin and per
        # (coin, exchange). Exposure = (|net| in net mode, else gross) + reserved.
        self._onet: dict[str, int] = {}
        self._ogross: dict[str, int] = {}
        self._rsv: dict[str, int] = {}
        self._ce_onet: dict[tuple[str, str], int] = {}
        self._ce_ogross: dict[tuple[str, str], int] = {}
        self._ce_rsv: dict[tuple[str, str], int] = {}
        self._coin_exp: dict[str, int] = {}
        self._ce_exp: dict[tuple[str, str], int] = {}
        self._sector_exp: dict[str, int] = {}
        self._exch_exp: dict[str, int] = {}
        self._global_exp = 0
        for t in self._trades.values():
            self._apply(t, 1, False)
        for t in self._reserved.values():
            self._apply(t, 1, True)

    def _recompute_limits(self) -> None:
        lim = self._limits
        eq = self._equity
        soft = lim.soft_throttle_threshold_pct
        pcts = (
            lim.per_coin_max_exposure_pct,
            lim.per_sector_max_exposure_pct,
            lim.per_exchange_max_exposure_pct,
            lim.global_max_exposure_pct,
        )
        self._hard = tuple(math.floor(eq * p / 100.0) for p in pcts)
        self._soft = tuple(math.floor(eq * p * soft / 10_000.0) for p in pcts)
        self._pct = 100.0 / eq
        self._max_trades = min(lim.max_concurrent_trades, lim.max_active_trades)
        self._min_units = max(to_micro_usd(lim.min_trade_usd), 1)

    # -- configuration -----------------------------------------------------------------------

    @property
    def limits(self) -> RiskLimits:
        return self._limits

    def set_limits(self, limits: RiskLimits, timestamp: float | None = None) -> None:
        """Replace the limits (a limit-change event). Open trades stay; new requests are
        checked against the new limits, and the drawdown breaker is re-evaluated."""
        if not isinstance(limits, RiskLimits):
            raise InvalidLimitsError(f"limits must be RiskLimits, got {type(limits).__name__}")
        mode_changed = limits.exposure_mode != self._limits.exposure_mode
        self._limits = limits
        self._net = limits.exposure_mode == "net"
        if mode_changed:
            self._refold()
        self._recompute_limits()
        self._evaluate_drawdown(timestamp)

    def set_coin_sector(self, coin: str, sector: str) -> None:
        """Register (or change) ``coin``'s sector; its open exposure moves with it."""
        _check_name("coin", coin)
        _check_name("sector", sector)
        old = self._sectors.get(coin)
        if old == sector:
            return
        exp = self._coin_exp.get(coin, 0)
        if old is not None and exp:
            _add(self._sector_exp, old, -exp)
            _add(self._sector_exp, sector, exp)
        self._sectors[coin] = sector

    def coin_sector(self, coin: str) -> str | None:
        """The registered sector of ``coin``, or ``None``."""
        return self._sectors.get(coin)

    @property
    def equity_usd(self) -> float:
        return self._equity / MICRO_USD

    @property
    def peak_equity_usd(self) -> float:
        return self._peak / MICRO_USD

    @property
    def drawdown_pct(self) -> float:
        """Current drawdown from peak equity, in %."""
        return (self._peak - self._equity) * 100.0 / self._peak

    def update_equity(self, equity_usd: float, timestamp: float | None = None) -> float:
        """Set account equity (exposure %s and limits follow it) and return the drawdown %.

        Raises the peak when equity is above it; trips the drawdown breaker when the drawdown
        reaches ``max_drawdown_pct``. Raises :class:`InvalidEquityError` for a value that is
        not finite and > 0.
        """
        units = _equity_units(equity_usd)
        self._equity = units
        if units > self._peak:
            self._peak = units
        self._recompute_limits()
        self._evaluate_drawdown(timestamp)
        return self.drawdown_pct

    # -- decisions ---------------------------------------------------------------------------

    def check_trade(self, trade: TradeRequest) -> RiskCheckResult:
        """Decide ``trade`` against the current state without changing it. O(1).

        Raises :class:`InvalidTradeError`, :class:`UnknownSectorError`,
        :class:`SectorMismatchError` or (for a close of an unknown id) :class:`UnknownTradeError`.
        """
        if not isinstance(trade, TradeRequest):
            raise InvalidTradeError(f"expected a TradeRequest, got {type(trade).__name__}")
        sector = self._sector_for(trade)
        close_of = trade.closes_trade_id
        if close_of is None:
            return self._decide(trade, sector, None)
        return self._decide(trade, sector, self._matching_trade(trade, close_of))

    def reserve_trade(
        self, trade_id: str, trade: TradeRequest, timestamp: float | None = None
    ) -> RiskCheckResult:
        """Check ``trade`` and, when APPROVED or THROTTLED, hold the approved size and a slot
        under ``trade_id``.

        The reservation counts like an open trade until :meth:`register_trade` (same id) turns
        it into one or :meth:`release_trade` drops it. A THROTTLE holds ``approved_size_usd``,
        not the requested size. In net mode it is charged its full size (see the module
        docstring), so an offsetting order that :meth:`check_trade` approves as risk-reducing
        for an immediate fill may be resized or refused here. Nothing is held for a BLOCK, nor
        for a close request (closes are applied by :meth:`close_trade`). Raises what
        :meth:`check_trade` raises, and :class:`DuplicateTradeError` for an id in use.
        """
        _check_name("trade_id", trade_id)
        if trade_id in self._trades or trade_id in self._reserved:
            raise DuplicateTradeError(f"trade id {trade_id!r} is already open or reserved")
        if not isinstance(trade, TradeRequest) or trade.closes_trade_id is not None:
            return self.check_trade(trade)
        result = self._decide(trade, self._sector_for(trade), None, as_reservation=True)
        if result.decision is not RiskDecision.BLOCK:
            self._adopt_sector(trade)
            held = OpenTrade(
                trade_id,
                trade.coin,
                trade.exchange,
                trade.direction,
                to_micro_usd(result.approved_size_usd),
                timestamp,
            )
            self._reserved[trade_id] = held
            self._apply(held, 1, True)
        return result

    def release_trade(self, trade_id: str) -> OpenTrade:
        """Drop the reservation ``trade_id`` (its order failed or was cancelled) and return it.

        Raises :class:`UnknownTradeError` when no reservation has that id.
        """
        held = self._reserved.get(trade_id)
        if held is None:
            raise UnknownTradeError(f"no reservation with id {trade_id!r}")
        del self._reserved[trade_id]
        self._apply(held, -1, True)
        return held

    def register_trade(
        self, trade_id: str, trade: TradeRequest, timestamp: float | None = None
    ) -> OpenTrade:
        """Record an executed (opened) trade; returns the open position.

        This applies a fact and does not re-check limits: call :meth:`check_trade` (or
        :meth:`reserve_trade`) first. A reservation with the same id is consumed and replaced
        by the executed size (a partial fill is smaller); its coin, exchange and direction must
        match. Ends a run of execution errors. Raises :class:`InvalidTradeError` (also for a
        close request: use :meth:`close_trade`), :class:`UnknownSectorError`,
        :class:`SectorMismatchError`, :class:`DuplicateTradeError` for an id already open.
        """
        _check_name("trade_id", trade_id)
        if not isinstance(trade, TradeRequest):
            raise InvalidTradeError(f"expected a TradeRequest, got {type(trade).__name__}")
        if trade.closes_trade_id is not None:
            raise InvalidTradeError("register_trade opens trades; use close_trade to reduce one")
        if trade_id in self._trades:
            raise DuplicateTradeError(f"trade id {trade_id!r} is already open")
        self._sector_for(trade)
        held = self._reserved.get(trade_id)
        if held is not None and (
            held.coin != trade.coin
            or held.exchange != trade.exchange
            or held.direction != trade.direction
        ):
            raise InvalidTradeError(
                f"trade {trade_id!r} does not match its reservation "
                f"({held.coin}/{held.exchange}/{held.direction})"
            )
        self._adopt_sector(trade)
        if held is not None:
            del self._reserved[trade_id]
            self._apply(held, -1, True)
            if timestamp is None:
                timestamp = held.opened_at
        opened = OpenTrade(
            trade_id, trade.coin, trade.exchange, trade.direction, trade.size_units, timestamp
        )
        self._trades[trade_id] = opened
        self._apply(opened, 1, False)
        self._errors = 0
        return opened

    def close_trade(
        self, trade_id: str, size_usd: float | None = None, timestamp: float | None = None
    ) -> OpenTrade | None:
        """Close ``trade_id`` fully (``size_usd=None``) or in part; return what stays open.

        Applies a fact: never refused by limits or breakers. Ends a run of execution errors.
        Raises :class:`UnknownTradeError` for an id that is not open, and
        :class:`InvalidTradeError` for a size that is not finite, > 0 and <= the open size.
        """
        del timestamp  # accepted for symmetry with the event; closes need no time today
        opened = self._trades.get(trade_id)
        if opened is None:
            raise UnknownTradeError(f"no open trade with id {trade_id!r}")
        if size_usd is None:
            units = opened.size_units
        else:
            if not _is_number(size_usd) or not math.isfinite(size_usd) or size_usd <= 0:
                raise InvalidTradeError(f"size_usd must be a finite number > 0, got {size_usd!r}")
            units = to_micro_usd(size_usd)
            if not 1 <= units <= opened.size_units:
                raise InvalidTradeError(
                    f"close size {size_usd!r} must be within (0, {opened.size_usd}] "
                    f"for {trade_id!r}"
                )
        self._apply(opened, -1, False)
        self._errors = 0
        if units == opened.size_units:
            del self._trades[trade_id]
            return None
        rest = OpenTrade(
            trade_id,
            opened.coin,
            opened.exchange,
            opened.direction,
            opened.size_units - units,
            opened.opened_at,
        )
        self._trades[trade_id] = rest
        self._apply(rest, 1, False)
        return rest

    def get_trade(self, trade_id: str) -> OpenTrade | None:
        """The open trade ``trade_id`` or ``None``."""
        return self._trades.get(trade_id)

    def open_trades(self) -> list[OpenTrade]:
        """The open trades, oldest registration first."""
        return list(self._trades.values())

    def reservations(self) -> list[OpenTrade]:
        """The reservations in flight, oldest first."""
        return list(self._reserved.values())

    @property
    def active_trades(self) -> int:
        return len(self._trades)

    @property
    def in_flight_trades(self) -> int:
        return len(self._reserved)

    # -- circuit breakers --------------------------------------------------------------------

    def record_execution_error(self, timestamp: float | None = None, detail: str = "") -> bool:
        """Count one more execution error in a row; trips ``errors`` at the limit.

        Returns whether the errors breaker is tripped after the call.
        """
        self._errors += 1
        limit = self._limits.max_consecutive_errors
        if self._errors >= limit and not self._breakers[BreakerName.ERRORS].tripped:
            why = f"{self._errors} execution errors in a row (max_consecutive_errors={limit})"
            self._trip(BreakerName.ERRORS, f"{why}: {detail}" if detail else why, timestamp)
        return self._breakers[BreakerName.ERRORS].tripped

    def record_execution_success(self) -> None:
        """End the current run of execution errors (the breaker, if tripped, stays tripped)."""
        self._errors = 0

    @property
    def consecutive_errors(self) -> int:
        return self._errors

    def engage_kill_switch(
        self, reason: str = "manual kill switch", timestamp: float | None = None
    ) -> None:
        """Trip the manual kill switch: every risk-increasing request is blocked until
        ``reset_breaker("kill_switch")``."""
        if not self._breakers[BreakerName.KILL_SWITCH].tripped:
            self._trip(BreakerName.KILL_SWITCH, reason or "manual kill switch", timestamp)

    def reset_breaker(self, name: BreakerName | str) -> BreakerState:
        """Reset one breaker explicitly and return its state before the reset.

        Resetting ``drawdown`` re-bases the peak to the current equity (otherwise the next
        equity update would trip it again); resetting ``errors`` clears the error run.
        Raises :class:`UnknownBreakerError` for another name. A breaker that is not tripped is
        left as it is.
        """
        try:
            key = BreakerName(name)
        except ValueError:
            raise UnknownBreakerError(
                f"unknown breaker {name!r}; expected one of {[str(n) for n in _BREAKER_ORDER]}"
            ) from None
        before = self._breakers[key]
        if key is BreakerName.DRAWDOWN:
            self._peak = self._equity
        elif key is BreakerName.ERRORS:
            self._errors = 0
        self._breakers[key] = BreakerState(key)
        self._halted = any(b.tripped for b in self._breakers.values())
        return before

    def breakers(self) -> dict[BreakerName, BreakerState]:
        """Every breaker's state."""
        return dict(self._breakers)

    @property
    def halted(self) -> bool:
        """Whether any breaker is tripped (risk-increasing requests are blocked)."""
        return self._halted

    def _trip(self, name: BreakerName, reason: str, timestamp: float | None) -> None:
        self._breakers[name] = BreakerState(name, True, reason, timestamp)
        self._halted = True

    def _evaluate_drawdown(self, timestamp: float | None) -> None:
        max_dd = self._limits.max_drawdown_pct
        if (self._peak - self._equity) * 100.0 >= max_dd * self._peak and not self._breakers[
            BreakerName.DRAWDOWN
        ].tripped:
            self._trip(
                BreakerName.DRAWDOWN,
                f"drawdown {self.drawdown_pct:.2f}% from peak equity {self.peak_equity_usd:,.2f} "
                f"reached max_drawdown_pct={max_dd}%",
                timestamp,
            )

    # -- summary -----------------------------------------------------------------------------

    def get_exposure_summary(self) -> dict[str, Any]:
        """Exposure, counts, utilisation of every limit and breaker states, as plain data.

        Shape (all percentages are of equity, ``utilization_pct`` is of the bucket's limit)::

            {"equity_usd", "peak_equity_usd", "drawdown_pct", "exposure_mode",
             "global": {"total_exposure_usd", "total_exposure_pct", "limit_pct",
                        "utilization_pct", "reserved_exposure_usd"},
             "per_coin":     {coin:     {"sector", "exposure_usd", "exposure_pct", "limit_pct",
                                         "utilization_pct"}},
             "per_sector":   {sector:   {... same keys but "sector"}},
             "per_exchange": {exchange: {... same keys but "sector"}},
             "active_trades", "in_flight_trades", "concurrent_trades",
             "trade_limits": {"max_active_trades": {"count", "limit", "utilization_pct"},
                              "max_concurrent_trades": {...}},
             "utilization_pct": {"global", "max_coin", "max_sector", "max_exchange",
                                 "max_active_trades", "max_concurrent_trades"},
             "breakers": {name: {"tripped", "reason", "tripped_at"}},
             "consecutive_errors", "halted"}

        Buckets with no exposure are left out; keys are sorted.
        """
        lim = self._limits
        pct = self._pct

        def bucket(units: int, limit_pct: float) -> dict[str, float]:
            exposure_pct = units * pct
            return {
                "exposure_usd": units / MICRO_USD,
                "exposure_pct": exposure_pct,
                "limit_pct": limit_pct,
                "utilization_pct": exposure_pct * 100.0 / limit_pct,
            }

        per_coin: dict[str, dict[str, Any]] = {}
        for coin in sorted(self._coin_exp):
            per_coin[coin] = {
                "sector": self._sectors.get(coin),
                **bucket(self._coin_exp[coin], lim.per_coin_max_exposure_pct),
            }
        per_sector = {
            s: bucket(self._sector_exp[s], lim.per_sector_max_exposure_pct)
            for s in sorted(self._sector_exp)
        }
        per_exchange = {
            e: bucket(self._exch_exp[e], lim.per_exchange_max_exposure_pct)
            for e in sorted(self._exch_exp)
        }
        g = bucket(self._global_exp, lim.global_max_exposure_pct)
        reserved_units = sum(t.size_units for t in self._reserved.values())
        active = len(self._trades)
        in_flight = len(self._reserved)
        concurrent = active + in_flight
        trade_limits = {
            "max_active_trades": {
                "count": concurrent,
                "limit": lim.max_active_trades,
                "utilization_pct": concurrent * 100.0 / lim.max_active_trades,
            },
            "max_concurrent_trades": {
                "count": concurrent,
                "limit": lim.max_concurrent_trades,
                "utilization_pct": concurrent * 100.0 / lim.max_concurrent_trades,
            },
        }

        def top(buckets: Mapping[str, Mapping[str, Any]]) -> float:
            return max((float(b["utilization_pct"]) for b in buckets.values()), default=0.0)

        return {
            "equity_usd": self.equity_usd,
            "peak_equity_usd": self.peak_equity_usd,
            "drawdown_pct": self.drawdown_pct,
            "exposure_mode": lim.exposure_mode,
            "global": {
                "total_exposure_usd": g["exposure_usd"],
                "total_exposure_pct": g["exposure_pct"],
                "limit_pct": g["limit_pct"],
                "utilization_pct": g["utilization_pct"],
                "reserved_exposure_usd": reserved_units / MICRO_USD,
            },
            "per_coin": per_coin,
            "per_sector": per_sector,
            "per_exchange": per_exchange,
            "active_trades": active,
            "in_flight_trades": in_flight,
            "concurrent_trades": concurrent,
            "trade_limits": trade_limits,
            "utilization_pct": {
                "global": g["utilization_pct"],
                "max_coin": top(per_coin),
                "max_sector": top(per_sector),
                "max_exchange": top(per_exchange),
                "max_active_trades": trade_limits["max_active_trades"]["utilization_pct"],
                "max_concurrent_trades": trade_limits["max_concurrent_trades"]["utilization_pct"],
            },
            "breakers": {
                str(n): {
                    "tripped": self._breakers[n].tripped,
                    "reason": self._breakers[n].reason,
                    "tripped_at": self._breakers[n].tripped_at,
                }
                for n in _BREAKER_ORDER
            },
            "consecutive_errors": self._errors,
            "halted": self._halted,
        }

    def exposure_units(self) -> dict[str, Any]:
        """The raw running totals in micro-USD (for audits and invariant tests)."""
        return {
            "global": self._global_exp,
            "per_coin": dict(self._coin_exp),
            "per_sector": dict(self._sector_exp),
            "per_exchange": dict(self._exch_exp),
            "limits": dict(zip(("coin", "sector", "exchange", "global"), self._hard, strict=True)),
            "soft_limits": dict(
                zip(("coin", "sector", "exchange", "global"), self._soft, strict=True)
            ),
        }

    # -- internals ---------------------------------------------------------------------------

    def _sector_for(self, trade: TradeRequest) -> str:
        registered = self._sectors.get(trade.coin)
        asked = trade.sector
        if registered is None:
            if asked is None:
                raise UnknownSectorError(
                    f"coin {trade.coin!r} has no registered sector and the request names none"
                )
            return asked
        if asked is not None and asked != registered:
            raise SectorMismatchError(
                f"request names sector {asked!r} for {trade.coin!r}, registered as {registered!r}"
            )
        return registered

    def _adopt_sector(self, trade: TradeRequest) -> None:
        if trade.coin not in self._sectors and trade.sector is not None:
            self._sectors[trade.coin] = trade.sector

    def _matching_trade(self, trade: TradeRequest, trade_id: str) -> OpenTrade:
        opened = self._trades.get(trade_id)
        if opened is None:
            raise UnknownTradeError(f"close request names {trade_id!r}, which is not open")
        if (
            opened.coin != trade.coin
            or opened.exchange != trade.exchange
            or opened.direction != trade.direction
        ):
            raise InvalidTradeError(
                f"close request does not match trade {trade_id!r} "
                f"({opened.coin}/{opened.exchange}/{opened.direction})"
            )
        if trade.size_units > opened.size_units:
            raise InvalidTradeError(
                f"close size {trade.size_usd} exceeds the open size {opened.size_usd} "
                f"of {trade_id!r}"
            )
        return opened

    def _apply(self, t: OpenTrade, sign: int, reserved: bool) -> None:
        """Add (sign=1) or remove (sign=-1) ``t`` (an open trade, or a reservation when
        ``reserved``) from every running total."""
        units = sign * t.size_units
        coin = t.coin
        key = (coin, t.exchange)
        if reserved:
            rsv = self._rsv.get(coin, 0) + units
            ce_rsv = self._ce_rsv.get(key, 0) + units
            _put(self._rsv, coin, rsv)
            _put(self._ce_rsv, key, ce_rsv)
            onet = self._onet.get(coin, 0)
            ogross = self._ogross.get(coin, 0)
            ce_onet = self._ce_onet.get(key, 0)
            ce_ogross = self._ce_ogross.get(key, 0)
        else:
            signed = units if t.direction == "long" else -units
            onet = self._onet.get(coin, 0) + signed
            ogross = self._ogross.get(coin, 0) + units
            ce_onet = self._ce_onet.get(key, 0) + signed
            ce_ogross = self._ce_ogross.get(key, 0) + units
            _put(self._onet, coin, onet)
            _put(self._ogross, coin, ogross)
            _put(self._ce_onet, key, ce_onet)
            _put(self._ce_ogross, key, ce_ogross)
            rsv = self._rsv.get(coin, 0)
            ce_rsv = self._ce_rsv.get(key, 0)
        if self._net:
            coin_exp = abs(onet) + rsv
            ce_exp = abs(ce_onet) + ce_rsv
        else:
            coin_exp = ogross + rsv
            ce_exp = ce_ogross + ce_rsv
        d_coin = coin_exp - self._coin_exp.get(coin, 0)
        d_ce = ce_exp - self._ce_exp.get(key, 0)
        _put(self._coin_exp, coin, coin_exp)
        _put(self._ce_exp, key, ce_exp)
        if d_coin:
            _add(self._sector_exp, self._sectors[coin], d_coin)
            self._global_exp += d_coin
        if d_ce:
            _add(self._exch_exp, t.exchange, d_ce)

    def _decide(
        self,
        trade: TradeRequest,
        sector: str,
        closing: OpenTrade | None,
        as_reservation: bool = False,
    ) -> RiskCheckResult:
        s = trade.size_units
        coin = trade.coin
        exch = trade.exchange
        coin_tot = self._coin_exp.get(coin, 0)
        sec_tot = self._sector_exp.get(sector, 0)
        ex_tot = self._exch_exp.get(exch, 0)
        g_tot = self._global_exp
        if self._net and not as_reservation:
            # ``x`` is the coin's open net position signed in the direction the request moves
            # it (``xe`` the same on the request's exchange): filling ``s`` changes the bucket
            # by |x + s| - |x|, and sizes up to |x| - x do not increase it at all.
            key = (coin, exch)
            net = self._onet.get(coin, 0)
            ce_net = self._ce_onet.get(key, 0)
            if (trade.direction == "long") == (closing is None):
                x, xe = net, ce_net
            else:
                x, xe = -net, -ce_net
            d_coin = abs(x + s) - abs(x)
            d_ex = abs(xe + s) - abs(xe)
            free_c = abs(x) - x
            free_e = abs(xe) - xe
        elif closing is None:
            d_coin = d_ex = s
            free_c = free_e = 0
        else:
            d_coin = d_ex = -s
            free_c = free_e = _NO_LIMIT
        new_coin = coin_tot + d_coin
        new_sec = sec_tot + d_coin
        new_ex = ex_tot + d_ex
        new_g = g_tot + d_coin
        hc, hs, he, hg = self._hard
        sc, ss, se, sg = self._soft

        # What fits under the hard limits: per bucket max(limit - total, 0) + free; coin,
        # sector and global share the coin's ``free``.
        m = hc - coin_tot
        v = hs - sec_tot
        if v < m:
            m = v
        v = hg - g_tot
        if v < m:
            m = v
        m = (m if m > 0 else 0) + free_c
        v = he - ex_tot
        v = (v if v > 0 else 0) + free_e
        max_allowed = m if m < v else v

        n_open = len(self._trades)
        n_flight = len(self._reserved)
        counts_full = closing is None and n_open + n_flight >= self._max_trades
        increases = d_coin > 0 or d_ex > 0
        if counts_full:
            max_allowed = 0
        elif self._halted:
            cap = free_c if free_c < free_e else free_e
            if cap < max_allowed:
                max_allowed = cap
        if closing is not None:
            cap = closing.size_units
            if cap < max_allowed:
                max_allowed = cap

        decision = _APPROVE
        limit_name: str | None = None
        resized = approved = s
        if increases:
            code = _APPROVED
            reason = "approved"
            if self._halted:
                decision, code, limit_name, reason = self._breaker_block()
                resized = max_allowed if max_allowed < s else s
                approved = 0
            elif counts_full:
                decision, code, limit_name, reason = self._count_block(n_open + n_flight)
                resized = approved = 0
            else:
                over: tuple[str, str, int] | None = None
                hard_over = False
                if (d_coin > 0 and (new_coin > sc or new_sec > ss or new_g > sg)) or (
                    d_ex > 0 and new_ex > se
                ):
                    # past a soft threshold: resize along the curve, the tightest bucket binds
                    resized = _taper(coin_tot, hc, sc, free_c, s)
                    over = ("coin", coin, new_coin)
                    hard_over = new_coin > hc
                    v = _taper(sec_tot, hs, ss, free_c, s)
                    if v < resized:
                        resized, over, hard_over = v, ("sector", sector, new_sec), new_sec > hs
                    v = _taper(ex_tot, he, se, free_e, s)
                    if v < resized:
                        resized, over, hard_over = v, ("exchange", exch, new_ex), new_ex > he
                    v = _taper(g_tot, hg, sg, free_c, s)
                    if v < resized:
                        resized, over, hard_over = v, ("global", "", new_g), new_g > hg
                    if resized > max_allowed:
                        resized = max_allowed
                approved = resized if resized >= self._min_units else 0
                if approved == 0:
                    if over is not None and resized == 0:
                        decision, code, limit_name, reason = self._exposure_refusal(
                            over, hard=True, resized=0
                        )
                    else:
                        decision, code, limit_name, reason = self._below_min(s, resized, over)
                elif over is not None and approved < s:
                    decision, code, limit_name, reason = self._exposure_refusal(
                        over, hard=hard_over, resized=approved
                    )
        elif counts_full:
            decision, code, limit_name, reason = self._count_block(n_open + n_flight)
            resized = approved = 0
        else:
            code = _RISK_REDUCING
            reason = "approved: risk-reducing"

        pct = self._pct
        return RiskCheckResult(
            decision,
            code,
            reason,
            limit_name,
            resized / MICRO_USD,
            max_allowed / MICRO_USD,
            not increases,
            ExposureSnapshot(
                coin,
                sector,
                exch,
                coin_tot * pct,
                sec_tot * pct,
                ex_tot * pct,
                g_tot * pct,
                new_coin * pct,
                new_sec * pct,
                new_ex * pct,
                new_g * pct,
                n_open,
                n_flight,
            ),
            trade,
            approved / MICRO_USD,
        )

    def _breaker_block(self) -> tuple[RiskDecision, RiskReason, str | None, str]:
        for name in _BREAKER_ORDER:
            state = self._breakers[name]
            if state.tripped:
                reason = f"{name} breaker tripped: {state.reason}"
                return RiskDecision.BLOCK, _BREAKER_REASON[name], _BREAKER_LIMIT[name], reason
        raise AssertionError("halted without a tripped breaker")  # pragma: no cover

    def _count_block(self, n: int) -> tuple[RiskDecision, RiskReason, str | None, str]:
        lim = self._limits
        if n + 1 > lim.max_concurrent_trades:
            code, cap = RiskReason.MAX_CONCURRENT_TRADES, lim.max_concurrent_trades
        else:
            code, cap = RiskReason.MAX_ACTIVE_TRADES, lim.max_active_trades
        reason = f"{code}: {n} open and in-flight trades, one more would exceed the limit of {cap}"
        return RiskDecision.BLOCK, code, str(code), reason

    def _exposure_refusal(
        self, over: tuple[str, str, int], hard: bool, resized: int
    ) -> tuple[RiskDecision, RiskReason, str | None, str]:
        kind, label, new_units = over
        field_name, hard_code, soft_code = _LIMIT_FIELDS[kind]
        lim = self._limits
        full = getattr(lim, field_name)
        what = f"{kind} {label}" if label else "global exposure"
        reach = f"{field_name}: {what} would reach {new_units * self._pct:.6g}% of equity"
        if resized <= 0:
            return RiskDecision.BLOCK, hard_code, field_name, f"{reach}, no headroom under {full}%"
        size = f"{resized / MICRO_USD:.2f} USD"
        if hard:
            reason = f"{reach}, over its limit of {full}%; cut to {size}"
            return RiskDecision.THROTTLE, hard_code, field_name, reason
        reason = (
            f"{reach}, past soft_throttle_threshold_pct={lim.soft_throttle_threshold_pct}% "
            f"of its limit of {full}%; resized to {size}"
        )
        return RiskDecision.THROTTLE, soft_code, field_name, reason

    def _below_min(
        self, requested: int, resized: int, over: tuple[str, str, int] | None
    ) -> tuple[RiskDecision, RiskReason, str | None, str]:
        minimum = self._limits.min_trade_usd
        if over is None:
            reason = (
                f"below_min_size: {requested / MICRO_USD:.6g} USD requested, "
                f"below min_trade_usd={minimum}"
            )
            return RiskDecision.BLOCK, _BELOW_MIN, "min_trade_usd", reason
        kind, label, _ = over
        field_name = _LIMIT_FIELDS[kind][0]
        what = f"{kind} {label}" if label else "global exposure"
        reason = (
            f"below_min_size: {field_name} resizes the request on {what} to "
            f"{resized / MICRO_USD:.6g} USD, below min_trade_usd={minimum}"
        )
        return RiskDecision.BLOCK, _BELOW_MIN, field_name, reason


_APPROVE: Final = RiskDecision.APPROVE
_APPROVED: Final = RiskReason.APPROVED
_RISK_REDUCING: Final = RiskReason.RISK_REDUCING
_BELOW_MIN: Final = RiskReason.BELOW_MIN_SIZE
_LIMIT_FIELDS: Final = {
    "coin": ("per_coin_max_exposure_pct", RiskReason.COIN_LIMIT, RiskReason.COIN_SOFT_LIMIT),
    "sector": (
        "per_sector_max_exposure_pct",
        RiskReason.SECTOR_LIMIT,
        RiskReason.SECTOR_SOFT_LIMIT,
    ),
    "exchange": (
        "per_exchange_max_exposure_pct",
        RiskReason.EXCHANGE_LIMIT,
        RiskReason.EXCHANGE_SOFT_LIMIT,
    ),
    "global": ("global_max_exposure_pct", RiskReason.GLOBAL_LIMIT, RiskReason.GLOBAL_SOFT_LIMIT),
}


def _taper(total: int, hard: int, soft: int, free: int, size: int) -> int:
    """Units of a request of ``size`` that one bucket admits: the throttle curve of the
    module docstring (``free`` admitted in full, then up to the soft threshold in full, then
    the band at a rate falling linearly to 0 at ``hard``). Monotone in ``size``, never more
    than ``free + max(hard - total, 0)``."""
    r = size - free
    if r <= 0:
        return size
    if total < soft:
        below = soft - total
        if r <= below:
            return size
        x0 = soft
        rest = r - below
    else:
        below = 0
        x0 = total
        rest = r
    if x0 >= hard:
        return free + below
    return free + below + math.floor((hard - x0) * -math.expm1(-rest / (hard - soft)))


def _put(d: dict[Any, int], key: Any, value: int) -> None:
    if value:
        d[key] = value
    else:
        d.pop(key, None)


def _add(d: dict[str, int], key: str, delta: int) -> None:
    _put(d, key, d.get(key, 0) + delta)


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidTradeError(f"{what} must be a non-empty string, got {value!r}")


def _equity_units(equity_usd: float) -> int:
    if not _is_number(equity_usd) or not math.isfinite(equity_usd) or equity_usd <= 0:
        raise InvalidEquityError(f"equity_usd must be a finite number > 0, got {equity_usd!r}")
    units = to_micro_usd(equity_usd)
    if units < 1:
        raise InvalidEquityError(f"equity_usd {equity_usd!r} is below one micro-USD")
    return units
