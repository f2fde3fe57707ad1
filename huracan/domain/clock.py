"""Injected time for the pure core.

The core never reads the wall clock: decisions take an event timestamp or a :class:`Clock`
passed in by the shell (``huracan.components`` supplies a wall clock), so a replay or a test
decides exactly as live did. Times are seconds since the Unix epoch as ``float``.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

from huracan.domain.errors import ClockError


@runtime_checkable
class Clock(Protocol):
    """Something that tells the time: ``now()`` in seconds since the epoch."""

    def now(self) -> float:
        """The current time in seconds since the Unix epoch."""
        ...


class ManualClock:
    """A clock that moves only when told to (tests, replays, simulations).

    It never goes backwards: :meth:`advance` with a negative step and :meth:`set` to an earlier
    time raise :class:`ClockError` and leave the time unchanged.
    """

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        _check_finite(start)
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (>= 0) and return the new time."""
        _check_finite(seconds)
        if seconds < 0:
            raise ClockError(f"a manual clock cannot go backwards (advance by {seconds})")
        self._now += float(seconds)
        return self._now

    def set(self, timestamp: float) -> None:
        """Jump to ``timestamp``, which must not be earlier than the current time."""
        _check_finite(timestamp)
        if timestamp < self._now:
            raise ClockError(f"a manual clock cannot go backwards ({self._now} -> {timestamp})")
        self._now = float(timestamp)

    def __repr__(self) -> str:
        return f"ManualClock({self._now!r})"


def _check_finite(value: float) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ClockError(f"time must be a finite number, got {value!r}")
