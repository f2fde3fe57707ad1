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


class KafkaReplayError(BacktestError):
    """A replay through Kafka failed: the broker is unreachable, the topics could not be made,
    the worker did not start or died, or the ticks could not be produced or read back; the
    message says which, with the broker address or the worker's log tail."""


class KafkaReplayTimeout(KafkaReplayError):
    """A replay through Kafka did not finish within its time limit; the message gives the
    counts reached (which stage of the pipeline was still working)."""
