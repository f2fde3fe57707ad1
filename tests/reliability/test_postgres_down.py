"""PostgreSQL goes down under a running registry: a clear error, a DOWN health check, recovery."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from huracan.config import build_config
from huracan.observability.health import check_postgres
from huracan.storage import ModelRegistry
from huracan.storage.errors import RegistryUnavailable
from tests.reliability.conftest import services
from tests.waiting import wait_until


@pytest.fixture
def postgres_restored(postgres_dsn: str) -> Iterator[str]:
    yield postgres_dsn
    services("start-postgres")


def test_registry_when_postgres_stops_then_unavailable_reported_and_recovers_after_restart(
    postgres_restored: str, tmp_path: Path
) -> None:
    # arrange: a registry with one model, connected
    dsn = postgres_restored
    password = dsn.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    schema = f"reliability_{uuid.uuid4().hex[:12]}"
    model = tmp_path / "m.bin"
    model.write_bytes(b"weights")
    registry = ModelRegistry(storage_path=str(tmp_path), metadata_db=dsn, schema=schema)
    registry.register_model("BTC", 1, 1.5, 0.6, model_path=str(model), is_active=True)
    cfg = build_config({}, environ={"HURACAN_POSTGRES_DSN": dsn})

    # act 1: the server goes away
    services("stop-postgres")
    with pytest.raises(RegistryUnavailable) as err:
        registry.get_model_metadata("BTC", 1)
    health = check_postgres(cfg, timeout=2)

    # assert 1: clear error without the password, health check says so
    assert "5432" in str(err.value) or "127.0.0.1" in str(err.value)
    assert f":{password}@" not in str(err.value)
    assert not health.ok

    # act 2: it comes back; the same registry object serves again (pool reconnects)
    services("start-postgres")
    wait_until(lambda: check_postgres(cfg, timeout=2).ok, timeout=60, what="postgres back")
    meta = wait_until(
        lambda: _try_get(registry), timeout=60, what="registry to serve again after restart"
    )

    # assert 2: nothing was lost
    assert meta.sharpe_ratio == 1.5
    assert registry.get_model_path("BTC", 1) == model.resolve()
    registry.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def _try_get(registry: ModelRegistry):  # type: ignore[no-untyped-def]
    try:
        return registry.get_model_metadata("BTC", 1)
    except RegistryUnavailable:
        return None
