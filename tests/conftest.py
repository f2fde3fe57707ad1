"""Shared fixtures: one set of real services per test session, unique names per test."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.services import kafka_service, postgres_service, redis_service

#: every unique_name of this test session carries it, so the session can delete its own topics
SESSION = uuid.uuid4().hex[:6]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a real Apache Kafka broker (see tests/services.py).

    At the end of the session the topics this session created are deleted (names from
    ``unique_name``): a broker that outlives its test runs would otherwise gather thousands of
    partitions, and with them open files, until it stops (measured: "Too many open files" at
    about 20,000 partitions, this machine's limit). Other sessions' topics are left alone."""
    with kafka_service(dict(os.environ)) as bootstrap:
        yield bootstrap
        _delete_session_topics(bootstrap)


def _delete_session_topics(bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        names = [
            t
            for t in admin.list_topics(timeout=10).topics
            if t.startswith("test.") and f".{SESSION}" in t
        ]
        for future in admin.delete_topics(names, operation_timeout=60).values() if names else ():
            future.result()
    except Exception as exc:  # cleanup must not turn a green run red
        print(f"warning: could not delete this session's test topics: {exc}")


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
    token = SESSION + uuid.uuid4().hex[:6]

    def make(kind: str = "t") -> str:
        return f"test.{kind}.{base}.{token}"

    return make
