"""Polling helpers: tests wait on a condition, never on a bare sleep."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable

import pytest


def wait_until(
    predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> object:
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate!r}")
        time.sleep(interval)


async def eventually(
    predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> object:
    """:func:`wait_until` for async tests: polls without blocking the event loop.

    ``predicate`` may be a plain function or return an awaitable (an ``async def``).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate!r}")
        await asyncio.sleep(interval)
