"""Health checks of the services the engine depends on.

Each check connects with a short timeout, never raises, and returns a :class:`CheckResult`;
:func:`check_all` runs them concurrently in threads. Addresses come from the config, and every
detail string has passwords removed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from huracan.config import HuracanConfig

_PASSWORD_IN_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@]*):[^@/]*@", re.I)


def redact_url(text: str) -> str:
    """Replace the password of every ``scheme://user:password@`` in ``text`` with ``***``."""
    return _PASSWORD_IN_URL.sub(r"\g<scheme>\g<user>:***@", text)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    latency_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timed(name: str, fn: Callable[[], str]) -> CheckResult:
    t0 = time.perf_counter()
    try:
        detail = fn()
        ok = True
    except Exception as exc:  # noqa: BLE001 - a health check reports every failure
        detail = redact_url(f"{type(exc).__name__}: {exc}")
        ok = False
    return CheckResult(name, ok, detail, round((time.perf_counter() - t0) * 1000, 2))


def check_kafka(config: HuracanConfig, timeout: float = 3.0) -> CheckResult:
    def run() -> str:
        from huracan.streams.clients import make_admin

        admin = make_admin(
            config,
            "health",
            overrides={
                "socket.timeout.ms": 3000,
                "log_level": 0,  # the result says what failed; librdkafka need not repeat it
            },
        )
        md = admin.list_topics(timeout=timeout)
        where = config.kafka.bootstrap_servers
        return f"{len(md.brokers)} broker(s), {len(md.topics)} topics at {where}"

    return _timed("kafka", run)


def check_redis(config: HuracanConfig, timeout: float = 3.0) -> CheckResult:
    def run() -> str:
        import redis

        client = redis.Redis.from_url(
            config.redis.url.get_secret_value(),
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
        )
        try:
            client.ping()
            info: dict[str, Any] = client.info("server")  # type: ignore[assignment]
            version = info.get("redis_version", "?")
        finally:
            client.close()
        return f"redis {version}"

    return _timed("redis", run)


def check_postgres(config: HuracanConfig, timeout: float = 3.0) -> CheckResult:
    def run() -> str:
        import psycopg

        with psycopg.connect(
            config.postgres.dsn.get_secret_value(), connect_timeout=max(1, int(timeout))
        ) as conn:
            row = conn.execute("SELECT current_setting('server_version')").fetchone()
        return f"postgresql {row[0] if row else '?'}"

    return _timed("postgres", run)


CHECKS: dict[str, Callable[[HuracanConfig], CheckResult]] = {
    "kafka": check_kafka,
    "redis": check_redis,
    "postgres": check_postgres,
}


def check_all(config: HuracanConfig, names: list[str] | None = None) -> list[CheckResult]:
    """Run the named checks (default: all) concurrently; results in the order asked."""
    wanted = names or list(CHECKS)
    with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
        futures = [pool.submit(CHECKS[n], config) for n in wanted]
        return [f.result() for f in futures]
