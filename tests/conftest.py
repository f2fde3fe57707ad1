"""Shared fixtures: one set of real services per test session, unique names per test."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.services import kafka_service, postgres_service, redis_service


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a real Apache Kafka broker (see tests/services.py)."""
    with kafka_service(dict(os.environ)) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis server."""
    with redis_service(dict(os.environ)) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN of a real PostgreSQL database."""
    with postgres_service(dict(os.environ)) as dsn:
        yield dsn


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique_name("ticks")`` -> a topic/stream/group name no other test uses."""
    base = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name)[:60].strip("-")
    token = uuid.uuid4().hex[:8]

    def make(kind: str = "t") -> str:
        return f"test.{kind}.{base}.{token}"

    return make
