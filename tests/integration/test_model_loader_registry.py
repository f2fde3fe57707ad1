"""Registry-backed signal models end to end on a real PostgreSQL registry.

A publisher registry writes to one PostgreSQL schema per test; the engine side reads the same
schema through a TCP proxy the test can cut, to show an unreachable registry for real.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from huracan.config import build_config
from huracan.domain.signals import BaselineParams, Signal
from huracan.domain.universe import universe
from huracan.models import MomentumModel, RegistryModels, register_momentum_model
from huracan.simulate import MarketSimulator
from huracan.storage import ModelRegistry, PostgresModelRegistryStore
from huracan.wiring import build_engine
from tests.waiting import wait_until

STRICT = BaselineParams(entry_z=2.5, edge_per_z_bps=6.0, base_size_usd=2_500.0, warmup_ticks=50)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; :meth:`cut` drops every connection and refuses
    new ones (the registry looks down), :meth:`start` serves again on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, args=(listener, self._stopped), daemon=True).start()

    def _accept(self, listener: socket.socket, stopped: threading.Event) -> None:
        while not stopped.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()
        listener.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._stopped.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


@pytest.fixture
def pg_schema(postgres_dsn: str) -> Iterator[str]:
    schema = f"test_models_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def publisher(tmp_path: Path, postgres_dsn: str, pg_schema: str) -> Iterator[ModelRegistry]:
    with ModelRegistry(
        storage_path=tmp_path / "models", metadata_db=postgres_dsn, schema=pg_schema
    ) as registry:
        yield registry


@pytest.fixture
def proxy(postgres_dsn: str) -> Iterator[TcpProxy]:
    params = conninfo_to_dict(postgres_dsn)
    p = TcpProxy(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
    p.start()
    yield p
    p.cut()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def models(
    tmp_path: Path, postgres_dsn: str, pg_schema: str, proxy: TcpProxy, clock: FakeClock
) -> Iterator[RegistryModels]:
    """The engine's side: its own PostgreSQL registry, reached through the proxy."""
    dsn = make_conninfo(postgres_dsn, host="127.0.0.1", port=str(proxy.port))
    store = PostgresModelRegistryStore(
        dsn, schema=pg_schema, connect_timeout=2, pool_timeout=3, min_size=1, max_size=2
    )
    loader = RegistryModels(
        ModelRegistry(storage_path=tmp_path / "models", store=store), refresh_s=30.0, clock=clock
    )
    yield loader
    loader.close()


def test_refresh_when_postgres_registry_has_active_model_then_served_and_baseline_for_others(
    publisher: ModelRegistry, models: RegistryModels
) -> None:
    register_momentum_model(publisher, "BTC", STRICT, sharpe_ratio=1.3, win_rate=0.55)
    register_momentum_model(publisher, "ETH", STRICT, activate=False)

    ok = models.refresh()

    btc = models("BTC")
    assert ok is True
    assert isinstance(btc, MomentumModel)
    assert btc.params == STRICT
    assert btc.version == "BTC:momentum@1"
    assert models("ETH") is None
    assert models("SOL") is None
    assert models.status().healthy


def test_refresh_if_due_when_new_version_activated_in_postgres_then_picked_up(
    publisher: ModelRegistry, models: RegistryModels, clock: FakeClock
) -> None:
    register_momentum_model(publisher, "BTC", STRICT)
    models.refresh_if_due()
    newer = replace(STRICT, entry_z=1.2)
    register_momentum_model(publisher, "BTC", newer, activate=False)
    publisher.set_model_active("BTC", 2)
    publisher.set_model_active("BTC", 1, is_active=False)

    clock.now += 10.0
    early = models.refresh_if_due()
    served_early = models("BTC")
    clock.now += 20.0
    due = models.refresh_if_due()

    btc = models("BTC")
    assert (early, due) == (False, True)
    assert served_early is not None
    assert served_early.version == "BTC:momentum@1"
    assert isinstance(btc, MomentumModel)
    assert (btc.version, btc.params) == ("BTC:momentum@2", newer)


def test_refresh_when_postgres_artifact_invalid_then_rejected_and_not_cached(
    publisher: ModelRegistry, models: RegistryModels, tmp_path: Path
) -> None:
    bad = tmp_path / "models" / "BTC" / "bad.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"format": "huracan.signal-model", "format_version": 1, "type": "gbm", '
                   '"params": {}}')  # fmt: skip
    publisher.register_model("BTC", 1, 1.0, 0.5, model_path=bad, is_active=True)

    models.refresh()
    models.refresh()

    status = models.status()
    assert models("BTC") is None
    assert status.last_refresh_ok is True
    assert "'gbm'" in status.load_errors["BTC"]
    assert status.models_loaded == 0


def test_refresh_when_postgres_unreachable_then_keeps_models_reports_and_recovers(
    publisher: ModelRegistry, models: RegistryModels, proxy: TcpProxy, clock: FakeClock
) -> None:
    register_momentum_model(publisher, "BTC", STRICT)
    assert models.refresh() is True
    served = models("BTC")
    proxy.cut()
    register_momentum_model(publisher, "ETH", STRICT)  # written while the engine cannot see it

    clock.now += 60.0
    ok = models.refresh()

    down = models.status()
    assert ok is False
    assert models("BTC") is served
    assert models("ETH") is None
    assert down.last_refresh_ok is False
    assert "RegistryUnavailable" in str(down.last_error)
    assert down.last_success_age_s == 60.0
    assert down.models_loaded == 1

    proxy.start()
    wait_until(models.refresh, timeout=30, what="registry refresh after the proxy is back")

    up = models.status()
    assert up.healthy
    assert dict(up.models) == {"BTC": "BTC:momentum@1", "ETH": "ETH:momentum@1"}
    assert models("BTC") is served


def test_engine_when_postgres_registry_model_active_then_signals_record_it(
    publisher: ModelRegistry, models: RegistryModels
) -> None:
    register_momentum_model(publisher, "BTC", replace(STRICT, entry_z=1.0))
    models.refresh()
    engine = build_engine(build_config({}, environ={}))
    engine.models = models
    signals: list[Signal] = []

    for tick in MarketSimulator(universe(4), seed=3, rate=100.0).ticks(8_000):
        out = engine.on_tick(tick)
        if out.signal is not None:
            signals.append(out.signal)
    engine.finish()

    versions = {(s.coin, s.model_version) for s in signals}
    assert ("BTC", "BTC:momentum@1") in versions
    assert ("BTC", "baseline-momentum-v1") not in versions
    assert ("ETH", "baseline-momentum-v1") in versions
