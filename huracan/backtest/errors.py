"""Errors of :mod:`huracan.backtest`; every one is a :class:`BacktestError`.

The CLI maps them to exit codes: :class:`EmptyBacktest` means there was nothing to report,
:class:`InvalidBacktestInput` means the recorded inputs or the arguments are unusable.
"""

from __future__ import annotations


class BacktestError(Exception):
    """Base of every error raised by :mod:`huracan.backtest`; the message says what and why."""


class EmptyBacktest(BacktestError):
    """There is nothing to report: no ticks, no decisions and no executions."""


class InvalidBacktestInput(BacktestError, ValueError):
    """An argument or a recorded record is unusable; the message names the field and the value."""


class ChartError(BacktestError):
    """The equity chart could not be drawn or written; the message names the path."""
