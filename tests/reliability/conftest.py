"""Fault-injection tests: they stop and start the native services through scripts/services.sh.

They need the launchers' services (not testcontainers), run in a pytest session of their own
after the unit and integration tests (``make test``: those run in parallel and must not see a
service stop), and always leave the service running again when they finish.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "scripts" / "services.sh"


def services(command: str, timeout: float = 180) -> None:
    """Run ``scripts/services.sh <command>``; fail the test with its output if it fails."""
    result = subprocess.run(
        ["bash", str(SERVICES), command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"services.sh {command} failed:\n{result.stdout}\n{result.stderr}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability" in str(item.fspath):
            item.add_marker(pytest.mark.reliability)
