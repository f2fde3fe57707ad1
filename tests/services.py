"""Where the integration tests find the real services.

Order of preference for each service:

1. the address in its environment variable (``HURACAN_KAFKA_BOOTSTRAP``, ``HURACAN_REDIS_URL``,
   ``HURACAN_POSTGRES_DSN``) or the launchers' default, if something answers there
   (``make up`` / ``scripts/services.sh up`` start them natively);
2. a testcontainers container, where a Docker engine answers;
3. otherwise the test fails and says how to start the service. It never skips: a missing service
   must not pass for green, in CI or anywhere else.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from huracan.config import DEFAULT_KAFKA_BOOTSTRAP, DEFAULT_POSTGRES_DSN, DEFAULT_REDIS_URL

HOW_TO_START = "start the services with `make up` (scripts/services.sh up) or set {var}"


def tcp_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return (
            subprocess.run(
                ["docker", "info"], capture_output=True, timeout=10, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(address if "//" in address else f"//{address}")
    return parts.hostname or "127.0.0.1", parts.port or default_port


@contextlib.contextmanager
def kafka_service(env: dict[str, str]) -> Iterator[str]:
    bootstrap = env.get("HURACAN_KAFKA_BOOTSTRAP") or DEFAULT_KAFKA_BOOTSTRAP
    host, port = _host_port(bootstrap.split(",")[0], 9092)
    if tcp_reachable(host, port):
        yield bootstrap
        return
    if docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("confluentinc/cp-kafka:7.9.0").with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    pytest.fail(
        f"Kafka is not reachable at {bootstrap}: "
        + HOW_TO_START.format(var="HURACAN_KAFKA_BOOTSTRAP"),
        pytrace=False,
    )


@contextlib.contextmanager
def redis_service(env: dict[str, str]) -> Iterator[str]:
    url = env.get("HURACAN_REDIS_URL") or DEFAULT_REDIS_URL
    host, port = _host_port(url, 6379)
    if tcp_reachable(host, port):
        yield url
        return
    if docker_available():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7") as r:
            yield f"redis://{r.get_container_host_ip()}:{r.get_exposed_port(6379)}/0"
        return
    pytest.fail(
        f"Redis is not reachable at {url}: " + HOW_TO_START.format(var="HURACAN_REDIS_URL"),
        pytrace=False,
    )


@contextlib.contextmanager
def postgres_service(env: dict[str, str]) -> Iterator[str]:
    dsn = env.get("HURACAN_POSTGRES_DSN") or DEFAULT_POSTGRES_DSN
    host, port = _host_port(dsn, 5432)
    if tcp_reachable(host, port):
        yield dsn
        return
    if docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as pg:
            yield pg.get_connection_url()
        return
    pytest.fail(
        "PostgreSQL is not reachable: " + HOW_TO_START.format(var="HURACAN_POSTGRES_DSN"),
        pytrace=False,
    )
