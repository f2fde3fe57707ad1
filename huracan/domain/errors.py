"""Errors raised by the pure core (``huracan.domain``).

Every error the core raises derives from :class:`DomainError`, and every one that reports bad
input also derives from :class:`ValueError` (or :class:`LookupError` for unknown ids), so callers
may catch either the precise class, the component's base (:class:`RiskError`,
:class:`CostError`) or the builtin. An operation that raises leaves the component's state exactly
as it was before the call.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error raised by the pure core."""


class ClockError(DomainError, ValueError):
    """A manual clock was asked to go backwards or to a non-finite time."""


class StateFormatError(DomainError, ValueError):
    """A serialized state (``from_dict``) is malformed or of an unknown version."""


# --- risk -----------------------------------------------------------------------------------


class RiskError(DomainError):
    """Base of the global risk controller's errors."""


class InvalidLimitsError(RiskError, ValueError):
    """A :class:`~huracan.domain.risk.RiskLimits` field is out of range; the message names it."""


class InvalidEquityError(RiskError, ValueError):
    """Equity must be a finite number greater than zero."""


class InvalidTradeError(RiskError, ValueError):
    """A trade request is malformed: empty coin or exchange, unknown direction, size that is
    zero, negative, NaN or infinite, or a close that does not match the trade it closes."""


class UnknownSectorError(RiskError, ValueError):
    """The coin has no registered sector and the request names none."""


class SectorMismatchError(RiskError, ValueError):
    """The request names a sector other than the one registered for its coin."""


class DuplicateTradeError(RiskError, ValueError):
    """A trade id is already open or reserved."""


class UnknownTradeError(RiskError, LookupError):
    """No open trade (or reservation) has this id."""


class UnknownBreakerError(RiskError, ValueError):
    """The name is not one of the circuit breakers (``drawdown``, ``errors``, ``kill_switch``)."""


# --- costs ----------------------------------------------------------------------------------


class CostError(DomainError):
    """Base of the real-time cost model's errors."""


class InvalidCostSettingsError(CostError, ValueError):
    """A cost model setting is out of range; the message names it."""


class InvalidQuoteError(CostError, ValueError):
    """A quote is crossed (bid > ask), non-positive, NaN or infinite, or has a bad timestamp."""


class InvalidFeeError(CostError, ValueError):
    """A fee is NaN or infinite."""


class InvalidFundingRateError(CostError, ValueError):
    """A funding rate is NaN or infinite."""


class InvalidCostRequestError(CostError, ValueError):
    """An edge is NaN or infinite, a direction is not ``long``/``short``/``None``, a time is not
    finite, or a symbol to rank has no edge."""


class InvalidSymbolError(CostError, ValueError):
    """A symbol is empty or not a string."""


class NoQuoteError(CostError, LookupError):
    """The symbol has no quote yet, so its spread cost is unknown."""


class UnknownCoinError(DomainError, LookupError):
    """A tick or cost update names a coin outside the configured universe; it is
    dead-lettered with reason ``unknown_coin`` (``dead_letter_reason``)."""

    dead_letter_reason = "unknown_coin"
