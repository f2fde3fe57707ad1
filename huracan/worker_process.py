"""Entry point for launching ``faust -A huracan worker`` as a child process.

The launcher lives in :mod:`huracan.runtime.worker_launcher` (library code may use it); this
module keeps its names importable from here for scripts and tests.
"""

from __future__ import annotations

from huracan.runtime.worker_launcher import (
    WorkerHandle,
    WorkerStartError,
    config_env,
    free_port,
    running_worker,
)

__all__ = ["WorkerHandle", "WorkerStartError", "config_env", "free_port", "running_worker"]
