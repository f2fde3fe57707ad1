"""Errors raised by the event loop manager (``huracan.runtime``)."""

from __future__ import annotations


class EventLoopManagerError(Exception):
    """Base class of the event loop manager's errors."""


class TooManyCoinsError(EventLoopManagerError, ValueError):
    """More coins than ``max_loops * coins_per_loop``; the message gives both numbers."""


class DuplicateCoinError(EventLoopManagerError, ValueError):
    """The same coin appears more than once in ``assign_coins``."""


class CoinNotAssignedError(EventLoopManagerError, KeyError):
    """A processor was registered for a coin that ``assign_coins`` did not place on a loop."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class ProcessorNotPicklableError(EventLoopManagerError, TypeError):
    """``executor="process"`` needs processors a child process can import (module-level
    ``async def`` functions, or ``functools.partial`` of them); a closure or lambda is not."""


class ManagerStateError(EventLoopManagerError, RuntimeError):
    """The call does not fit the manager's state (e.g. ``start`` twice, ``assign_coins``
    while running, ``start`` before ``assign_coins``)."""


class LoopStartError(EventLoopManagerError, RuntimeError):
    """A loop (thread or process) did not come up; the others were stopped again."""
