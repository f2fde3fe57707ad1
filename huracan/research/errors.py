"""The errors of :mod:`huracan.research`; all are :class:`ResearchError`."""

from __future__ import annotations


class ResearchError(Exception):
    """Base class of the research errors."""


class InvalidGrid(ResearchError, ValueError):
    """A sweep grid that cannot be expanded (bad ``KEY=V1,V2`` text, an empty axis, a key twice)."""


class InvalidPeriod(ResearchError, ValueError):
    """A period that cannot be cut into walk-forward windows (empty, or too short)."""


class ExecutorError(ResearchError):
    """The executor could not start, reach its scheduler, or finish a task."""


class TaskFailed(ExecutorError):
    """A task raised; the message names the task and the remote error."""

    def __init__(self, key: str, error: BaseException) -> None:
        super().__init__(f"task {key} failed: {type(error).__name__}: {error}")
        self.key = key
        self.error = error
