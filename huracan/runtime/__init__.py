"""The spec's Event Loop Manager: coins grouped onto event loops run by threads or processes.

See :mod:`huracan.runtime.event_loops` for the contract and the threads-vs-processes choice.
"""

from __future__ import annotations

from huracan.runtime.errors import (
    CoinNotAssignedError,
    DuplicateCoinError,
    EventLoopManagerError,
    LoopStartError,
    ManagerStateError,
    ProcessorNotPicklableError,
    TooManyCoinsError,
)
from huracan.runtime.event_loops import (
    EventLoopManager,
    LoopMetrics,
    ManagerHealth,
    ShutdownReport,
    backoff_delay,
    current_coin,
    report_processed,
)

__all__ = [
    "CoinNotAssignedError",
    "DuplicateCoinError",
    "EventLoopManager",
    "EventLoopManagerError",
    "LoopMetrics",
    "LoopStartError",
    "ManagerHealth",
    "ManagerStateError",
    "ProcessorNotPicklableError",
    "ShutdownReport",
    "TooManyCoinsError",
    "backoff_delay",
    "current_coin",
    "report_processed",
]
