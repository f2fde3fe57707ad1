"""One contract for every model registry store: the file store and a real PostgreSQL.

:class:`RegistryContract` holds the tests; each subclass provides ``make_registry``, a factory of
registries that share one backing store (a directory, or one PostgreSQL schema per test).
"""

from __future__ import annotations

import hashlib
import logging
import math
import socket
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from huracan.storage import (
    FileModelRegistryStore,
    InvalidModelMetadata,
    InvalidStatusTransition,
    MigrationError,
    ModelAlreadyRegistered,
    ModelFileMissing,
    ModelIntegrityError,
    ModelMetadata,
    ModelNotFound,
    ModelRegistry,
    ModelStatus,
    PostgresModelRegistryStore,
    RegistryClosed,
    RegistryUnavailable,
)
from huracan.storage.registry_stores import load_migrations

RegistryFactory = Callable[[], ModelRegistry]


class SteppingClock:
    """A deterministic clock: each call is one second after the previous one."""

    def __init__(self) -> None:
        self._now = datetime(2025, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=1)
            return self._now


def write_model(folder: Path, name: str, content: bytes | None = None) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if content is not None else f"weights of {name}".encode())
    return path


def register(
    registry: ModelRegistry,
    folder: Path,
    coin: str = "BTC",
    version: int = 1,
    *,
    sharpe_ratio: float = 1.0,
    win_rate: float = 0.5,
    regime: str | None = "trending",
    is_active: bool = True,
    **extra: Any,
) -> ModelMetadata:
    path = write_model(folder, f"{coin}/model_v{version}.pkl")
    return registry.register_model(
        coin=coin,
        version=version,
        sharpe_ratio=sharpe_ratio,
        win_rate=win_rate,
        regime=regime,
        model_path=str(path),
        is_active=is_active,
        **extra,
    )


class RegistryContract:
    """The registry tests every store must pass."""

    @pytest.fixture
    def make_registry(self) -> RegistryFactory:
        raise NotImplementedError

    @pytest.fixture
    def registry(self, make_registry: RegistryFactory) -> ModelRegistry:
        return make_registry()

    @pytest.fixture
    def models(self, tmp_path: Path) -> Path:
        folder = tmp_path / "model-files"
        folder.mkdir()
        return folder

    # -- register / get ----------------------------------------------------------------------

    def test_register_model_when_new_then_get_returns_equal_record(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        path = write_model(models, "BTC/model_v1.pkl", b"\x80\x04weights")

        registered = registry.register_model(
            coin="BTC",
            version=1,
            sharpe_ratio=2.5,
            win_rate=0.75,
            regime="trending",
            performance_metrics={"avg_return": 0.02, "max_drawdown": 0.05, "trades": 120},
            model_path=str(path),
            is_active=True,
        )
        fetched = registry.get_model_metadata("BTC", version=1)

        assert fetched == registered
        assert fetched is not None
        assert fetched.sharpe_ratio == 2.5
        assert fetched.win_rate == 0.75
        assert fetched.regime == "trending"
        assert dict(fetched.performance_metrics) == {
            "avg_return": 0.02,
            "max_drawdown": 0.05,
            "trades": 120,
        }
        assert fetched.is_active is True
        assert fetched.status is ModelStatus.ACTIVE
        assert fetched.model_path == str(path)
        assert fetched.sha256 == hashlib.sha256(b"\x80\x04weights").hexdigest()
        assert fetched.created_at.tzinfo is not None

    def test_register_model_when_is_active_not_given_then_inactive(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        path = write_model(models, "ETH/model_v1.pkl")

        registered = registry.register_model(
            coin="ETH", version=1, sharpe_ratio=1.0, win_rate=0.5, model_path=path
        )

        assert registered.status is ModelStatus.INACTIVE
        assert registry.get_active_models(coin="ETH") == []

    def test_get_model_metadata_when_no_version_then_returns_highest_version(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        register(registry, models, "BTC", 1, is_active=True)
        register(registry, models, "BTC", 3, is_active=False)
        register(registry, models, "BTC", 2, is_active=True)
        register(registry, models, "ETH", 9)

        latest = registry.get_model_metadata("BTC")

        assert latest is not None
        assert (latest.coin, latest.version, latest.is_active) == ("BTC", 3, False)

    def test_get_model_metadata_when_unknown_then_returns_none(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        register(registry, models, "BTC", 1)

        assert registry.get_model_metadata("DOGE") is None
        assert registry.get_model_metadata("DOGE", version=1) is None
        assert registry.get_model_metadata("BTC", version=2) is None

    def test_registry_when_reopened_then_records_persist(
        self, make_registry: RegistryFactory, models: Path
    ) -> None:
        with make_registry() as first:
            registered = register(first, models, "SOL", 4, sharpe_ratio=1.7)

        with make_registry() as second:
            assert second.get_model_metadata("SOL", 4) == registered

    def test_list_models_when_several_then_ordered_by_coin_and_version(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        for coin, version in [("ETH", 2), ("BTC", 2), ("ETH", 1), ("BTC", 1)]:
            register(registry, models, coin, version)

        everything = registry.list_models()
        eth = registry.list_models("ETH")

        assert [(m.coin, m.version) for m in everything] == [
            ("BTC", 1),
            ("BTC", 2),
            ("ETH", 1),
            ("ETH", 2),
        ]
        assert [(m.coin, m.version) for m in eth] == [("ETH", 1), ("ETH", 2)]

    def test_performance_metrics_when_returned_then_read_only(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        metrics = {"avg_return": 0.02}
        registered = register(registry, models, performance_metrics=metrics)
        metrics["avg_return"] = 99.0

        with pytest.raises(TypeError):
            registered.performance_metrics["avg_return"] = 1.0  # type: ignore[index]
        fetched = registry.get_model_metadata("BTC", 1)
        assert fetched is not None
        assert fetched.performance_metrics["avg_return"] == 0.02

    def test_register_model_when_path_relative_then_resolved_under_storage_path(
        self, registry: ModelRegistry
    ) -> None:
        write_model(registry.storage_path, "ADA/model_v1.pkl", b"ada")

        registered = registry.register_model(
            coin="ADA", version=1, sharpe_ratio=1.0, win_rate=0.5, model_path="ADA/model_v1.pkl"
        )

        expected = (registry.storage_path / "ADA/model_v1.pkl").absolute()
        assert Path(registered.model_path) == expected
        assert registry.get_model_path("ADA", 1) == expected

    # -- active models -----------------------------------------------------------------------

    def test_get_active_models_when_several_then_ranked_by_sharpe_then_newer_version(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        register(registry, models, "BTC", 1, sharpe_ratio=1.5)
        register(registry, models, "BTC", 2, sharpe_ratio=2.5)
        register(registry, models, "BTC", 3, sharpe_ratio=0.5)
        register(registry, models, "BTC", 4, sharpe_ratio=2.5)
        register(registry, models, "BTC", 5, sharpe_ratio=-0.3)

        ranked = registry.get_active_models(coin="BTC")

        assert [m.version for m in ranked] == [4, 2, 1, 3, 5]

    def test_get_active_models_when_filtered_by_coin_and_regime_then_only_matches(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        register(registry, models, "BTC", 1, regime="trending", sharpe_ratio=1.0)
        register(registry, models, "BTC", 2, regime="ranging", sharpe_ratio=3.0)
        register(registry, models, "BTC", 3, regime=None, sharpe_ratio=4.0)
        register(registry, models, "ETH", 1, regime="trending", sharpe_ratio=2.0)

        btc_trending = registry.get_active_models(coin="BTC", regime="trending", limit=5)
        all_trending = registry.get_active_models(regime="trending")
        everything = registry.get_active_models(limit=None)

        assert [(m.coin, m.version) for m in btc_trending] == [("BTC", 1)]
        assert [(m.coin, m.version) for m in all_trending] == [("ETH", 1), ("BTC", 1)]
        assert [(m.coin, m.version) for m in everything] == [
            ("BTC", 3),
            ("BTC", 2),
            ("ETH", 1),
            ("BTC", 1),
        ]

    def test_get_active_models_when_limit_given_then_returns_best_n(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        for version in range(1, 8):
            register(registry, models, "BTC", version, sharpe_ratio=float(version))

        best_three = registry.get_active_models(coin="BTC", limit=3)
        default = registry.get_active_models(coin="BTC")
        unlimited = registry.get_active_models(coin="BTC", limit=None)

        assert [m.version for m in best_three] == [7, 6, 5]
        assert len(default) == 7
        assert len(unlimited) == 7

    def test_get_active_models_when_inactive_or_retired_then_excluded(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        register(registry, models, "BTC", 1, is_active=True)
        register(registry, models, "BTC", 2, is_active=False)
        register(registry, models, "BTC", 3, is_active=True)
        registry.retire_model("BTC", 3)

        active = registry.get_active_models(coin="BTC")

        assert [m.version for m in active] == [1]

    # -- status ------------------------------------------------------------------------------

    def test_set_model_active_when_toggled_then_status_and_listing_follow(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        registered = register(registry, models, "BTC", 1, is_active=False)

        activated = registry.set_model_active("BTC", version=1, is_active=True)
        listed_active = registry.get_active_models(coin="BTC")
        deactivated = registry.set_model_active("BTC", version=1, is_active=False)
        listed_after = registry.get_active_models(coin="BTC")

        assert activated.is_active is True
        assert activated.created_at == registered.created_at
        assert activated.updated_at > registered.updated_at
        assert [m.version for m in listed_active] == [1]
        assert deactivated.status is ModelStatus.INACTIVE
        assert listed_after == []
        fetched = registry.get_model_metadata("BTC", 1)
        assert fetched == deactivated

    def test_set_model_active_when_one_version_activated_then_others_keep_status(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        register(registry, models, "BTC", 1, is_active=True)
        register(registry, models, "BTC", 2, is_active=False)

        registry.set_model_active("BTC", 2, True)

        assert [m.version for m in registry.get_active_models(coin="BTC")] == [2, 1]

    def test_set_model_active_when_unknown_then_raises_model_not_found(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        register(registry, models, "BTC", 1)

        with pytest.raises(ModelNotFound, match="'BTC' version 2"):
            registry.set_model_active("BTC", 2, True)
        with pytest.raises(ModelNotFound):
            registry.set_model_active("XRP", 1, False)

    def test_set_model_active_when_retired_then_raises_and_stays_retired(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        register(registry, models, "BTC", 1)
        retired = registry.retire_model("BTC", 1)

        with pytest.raises(InvalidStatusTransition, match="retired"):
            registry.set_model_active("BTC", 1, True)

        assert retired.status is ModelStatus.RETIRED
        fetched = registry.get_model_metadata("BTC", 1)
        assert fetched is not None
        assert fetched.status is ModelStatus.RETIRED
        assert registry.retire_model("BTC", 1).status is ModelStatus.RETIRED

    # -- uniqueness --------------------------------------------------------------------------

    def test_register_model_when_duplicate_then_raises_and_first_record_stands(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        first = register(registry, models, "BTC", 1, sharpe_ratio=2.5)

        with pytest.raises(ModelAlreadyRegistered, match="'BTC' version 1 is already registered"):
            register(registry, models, "BTC", 1, sharpe_ratio=9.9, is_active=False)

        assert registry.list_models("BTC") == [first]

    def test_register_model_when_eight_registries_race_same_version_then_exactly_one_wins(
        self, make_registry: RegistryFactory, models: Path
    ) -> None:
        racers, rounds = 8, 10
        registries = [make_registry() for _ in range(racers)]
        for index in range(racers):
            write_model(models, f"race/model_{index}.pkl", f"model {index}".encode())

        def race_once(version: int) -> list[object]:
            barrier = threading.Barrier(racers)
            outcomes: list[object] = [None] * racers

            def race(index: int) -> None:
                barrier.wait()
                try:
                    outcomes[index] = registries[index].register_model(
                        coin="BTC",
                        version=version,
                        sharpe_ratio=float(index),
                        win_rate=0.5,
                        model_path=models / f"race/model_{index}.pkl",
                        is_active=True,
                    )
                except Exception as exc:
                    outcomes[index] = exc

            threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            return outcomes

        for version in range(1, rounds + 1):
            outcomes = race_once(version)

            winners = [o for o in outcomes if isinstance(o, ModelMetadata)]
            losers = [o for o in outcomes if isinstance(o, ModelAlreadyRegistered)]
            assert len(winners) == 1, (version, outcomes)
            assert len(losers) == racers - 1, (version, outcomes)
            assert registries[0].get_model_metadata("BTC", version) == winners[0]
            assert registries[0].get_model_path("BTC", version) == Path(winners[0].model_path)
        assert [m.version for m in registries[0].list_models("BTC")] == list(range(1, rounds + 1))

    # -- integrity ---------------------------------------------------------------------------

    def test_get_model_path_when_file_intact_then_returns_path_and_bytes(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        registered = register(registry, models, "BTC", 1)

        path = registry.get_model_path("BTC", version=1)
        data = registry.load_model_bytes("BTC")

        assert path == Path(registered.model_path)
        assert data == Path(registered.model_path).read_bytes()

    def test_get_model_path_when_file_tampered_then_raises_integrity_error(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        registered = register(registry, models, "BTC", 1)
        Path(registered.model_path).write_bytes(b"a different model")

        with pytest.raises(ModelIntegrityError, match="refusing") as caught:
            registry.get_model_path("BTC", 1)
        with pytest.raises(ModelIntegrityError):
            registry.load_model_bytes("BTC", 1)

        assert caught.value.expected == registered.sha256
        assert caught.value.actual == hashlib.sha256(b"a different model").hexdigest()

    def test_get_model_path_when_file_deleted_then_raises_model_file_missing(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        registered = register(registry, models, "BTC", 1)
        Path(registered.model_path).unlink()

        with pytest.raises(ModelFileMissing, match="missing"):
            registry.get_model_path("BTC", 1)

    def test_get_model_path_when_unknown_then_raises_model_not_found(
        self, registry: ModelRegistry
    ) -> None:
        with pytest.raises(ModelNotFound, match="'BTC' version 1 is not registered"):
            registry.get_model_path("BTC", 1)
        with pytest.raises(ModelNotFound, match="'BTC' is not registered"):
            registry.get_model_path("BTC")

    def test_register_model_when_file_missing_then_raises_and_records_nothing(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        with pytest.raises(ModelFileMissing, match="does not exist"):
            registry.register_model(
                coin="BTC",
                version=1,
                sharpe_ratio=1.0,
                win_rate=0.5,
                model_path=models / "nope.pkl",
            )

        assert registry.get_model_metadata("BTC") is None

    def test_register_model_when_sha256_given_for_absent_file_then_verified_once_written(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        content = b"model shipped later"
        digest = hashlib.sha256(content).hexdigest()
        path = models / "later.pkl"
        registry.register_model(
            coin="BTC", version=1, sharpe_ratio=1.0, win_rate=0.5, model_path=path, sha256=digest
        )

        with pytest.raises(ModelFileMissing):
            registry.get_model_path("BTC", 1)
        path.write_bytes(content)

        assert registry.get_model_path("BTC", 1) == path

    def test_register_model_when_sha256_given_differs_from_file_then_raises(
        self, registry: ModelRegistry, models: Path
    ) -> None:
        path = write_model(models, "x.pkl", b"real content")

        with pytest.raises(ModelIntegrityError, match="not the given"):
            registry.register_model(
                coin="BTC",
                version=1,
                sharpe_ratio=1.0,
                win_rate=0.5,
                model_path=path,
                sha256=hashlib.sha256(b"other").hexdigest(),
            )
        assert registry.get_model_metadata("BTC", 1) is None

    # -- validation --------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("version", -1, "version must be >= 1"),
            ("version", 0, "version must be >= 1"),
            ("version", 1.5, "version must be an integer"),
            ("version", True, "version must be an integer"),
            ("sharpe_ratio", math.nan, "sharpe_ratio must be finite"),
            ("sharpe_ratio", math.inf, "sharpe_ratio must be finite"),
            ("sharpe_ratio", "2.5", "sharpe_ratio must be a number"),
            ("win_rate", -0.01, r"win_rate must be within \[0, 1\]"),
            ("win_rate", 1.5, r"win_rate must be within \[0, 1\]"),
            ("win_rate", math.nan, "win_rate must be finite"),
            ("coin", "", "coin must be"),
            ("coin", "BT C", "coin must be"),
            ("coin", "../etc", "coin must be"),
            ("regime", "", "regime must be"),
            ("performance_metrics", {"x": math.nan}, "performance_metrics must be JSON"),
            ("performance_metrics", {"x": object()}, "performance_metrics must be JSON"),
            ("performance_metrics", {1: 2.0}, "keys must be strings"),
            ("is_active", "yes", "is_active must be a bool"),
            ("sha256", "abc", "sha256 must be 64 lowercase hex"),
        ],
    )
    def test_register_model_when_argument_invalid_then_raises_and_records_nothing(
        self, registry: ModelRegistry, models: Path, field: str, value: object, message: str
    ) -> None:
        path = write_model(models, "m.pkl")
        kwargs: dict[str, Any] = {
            "coin": "BTC",
            "version": 1,
            "sharpe_ratio": 1.0,
            "win_rate": 0.5,
            "model_path": path,
        }
        kwargs[field] = value

        with pytest.raises(InvalidModelMetadata, match=message):
            registry.register_model(**kwargs)

        assert registry.list_models() == []

    def test_get_active_models_when_limit_below_one_then_raises(
        self, registry: ModelRegistry
    ) -> None:
        with pytest.raises(InvalidModelMetadata, match="limit must be >= 1"):
            registry.get_active_models(limit=0)

    # -- lifecycle ---------------------------------------------------------------------------

    def test_registry_when_closed_then_calls_raise_registry_closed(
        self, make_registry: RegistryFactory, models: Path
    ) -> None:
        registry = make_registry()
        register(registry, models)
        registry.close()
        registry.close()

        with pytest.raises(RegistryClosed):
            registry.get_model_metadata("BTC")


class TestFileRegistryContract(RegistryContract):
    @pytest.fixture
    def make_registry(self, tmp_path: Path) -> Iterator[RegistryFactory]:
        made: list[ModelRegistry] = []
        clock = SteppingClock()

        def make() -> ModelRegistry:
            registry = ModelRegistry(storage_path=tmp_path / "store", metadata_db=None, clock=clock)
            made.append(registry)
            return registry

        yield make
        for registry in made:
            registry.close()

    def test_registry_when_metadata_db_empty_then_uses_file_store(
        self, registry: ModelRegistry
    ) -> None:
        assert isinstance(registry.store, FileModelRegistryStore)
        assert registry.store.root == registry.storage_path / "registry"


# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------


def _drop_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_password(dsn: str, password: str, **overrides: Any) -> str:
    params = conninfo_to_dict(dsn)
    params.update(password=password, **overrides)
    return make_conninfo("", **params)


def _everything_said_about(exc: BaseException) -> str:
    return "\n".join([str(exc), repr(exc), "".join(traceback.format_exception(exc)), str(exc.args)])


@pytest.fixture
def pg_schema(postgres_dsn: str) -> Iterator[str]:
    schema = f"test_registry_{uuid.uuid4().hex[:12]}"
    yield schema
    _drop_schema(postgres_dsn, schema)


class TestPostgresRegistryContract(RegistryContract):
    @pytest.fixture
    def make_registry(
        self, tmp_path: Path, postgres_dsn: str, pg_schema: str
    ) -> Iterator[RegistryFactory]:
        made: list[ModelRegistry] = []
        clock = SteppingClock()

        def make() -> ModelRegistry:
            registry = ModelRegistry(
                storage_path=tmp_path / "store",
                metadata_db=postgres_dsn,
                schema=pg_schema,
                clock=clock,
                pool_max_size=4,
            )
            made.append(registry)
            return registry

        yield make
        for registry in made:
            registry.close()

    def test_registry_when_metadata_db_is_dsn_then_uses_postgres_in_its_schema(
        self, registry: ModelRegistry, models: Path, postgres_dsn: str, pg_schema: str
    ) -> None:
        register(registry, models, "BTC", 1)

        with psycopg.connect(postgres_dsn) as conn:
            rows = conn.execute(f'SELECT coin, version FROM "{pg_schema}".models').fetchall()

        assert isinstance(registry.store, PostgresModelRegistryStore)
        assert rows == [("BTC", 1)]

    def test_registry_when_constructed_then_does_not_connect(
        self, postgres_dsn: str, pg_schema: str
    ) -> None:
        ModelRegistry(storage_path="/models/trained", metadata_db=postgres_dsn, schema=pg_schema)

        with psycopg.connect(postgres_dsn) as conn:
            found = conn.execute(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (pg_schema,)
            ).fetchone()
        assert found is None

    def test_migrate_when_applied_twice_then_idempotent(
        self, postgres_dsn: str, pg_schema: str
    ) -> None:
        store = PostgresModelRegistryStore(postgres_dsn, schema=pg_schema)
        store.open()
        first = list(store.applied_migrations)

        with psycopg.connect(postgres_dsn) as conn:
            again = store.migrate(conn)
            again_more = store.migrate(conn)
            rows = conn.execute(
                f'SELECT version, name FROM "{pg_schema}".schema_migrations ORDER BY version'
            ).fetchall()
        store.close()

        expected = [(m.version, m.name) for m in load_migrations()]
        assert first == [f"{v:03d}_{n}" for v, n in expected]
        assert again == []
        assert again_more == []
        assert rows == expected

    def test_open_when_many_processes_start_together_then_migrations_applied_once(
        self, postgres_dsn: str, pg_schema: str
    ) -> None:
        starters = 6
        stores = [
            PostgresModelRegistryStore(postgres_dsn, schema=pg_schema, min_size=0)
            for _ in range(starters)
        ]
        barrier = threading.Barrier(starters)
        errors: list[BaseException] = []

        def start(store: PostgresModelRegistryStore) -> None:
            barrier.wait()
            try:
                store.open()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        applied = [s.applied_migrations for s in stores]
        for s in stores:
            s.close()

        assert errors == []
        assert sorted(len(a) for a in applied) == [0] * (starters - 1) + [len(load_migrations())]

    def test_open_when_applied_migration_was_edited_then_raises_migration_error(
        self, postgres_dsn: str, pg_schema: str
    ) -> None:
        with PostgresModelRegistryStore(postgres_dsn, schema=pg_schema) as store:
            store.open()
        with psycopg.connect(postgres_dsn) as conn:
            conn.execute(f"UPDATE \"{pg_schema}\".schema_migrations SET checksum = 'edited'")

        with (
            PostgresModelRegistryStore(postgres_dsn, schema=pg_schema) as again,
            pytest.raises(MigrationError, match="changed after it was applied"),
        ):
            again.open()

    def test_open_when_server_unreachable_then_error_names_host_and_port_not_password(
        self, postgres_dsn: str
    ) -> None:
        password = "Unreachable-S3cret-pw"
        port = _closed_port()
        dsn = f"postgresql://trader:{password}@127.0.0.1:{port}/huracan_models"
        registry = ModelRegistry(storage_path="/models/trained", metadata_db=dsn)

        with pytest.raises(RegistryUnavailable) as caught:
            registry.get_model_metadata("BTC")

        said = _everything_said_about(caught.value)
        assert f"127.0.0.1:{port}" in str(caught.value)
        assert "huracan_models" in str(caught.value)
        assert password not in said
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__ is True

    def test_open_when_password_wrong_then_error_does_not_contain_it(
        self, postgres_dsn: str, pg_schema: str
    ) -> None:
        password = "Wr0ng-Passw0rd-xyz"
        dsn = _with_password(postgres_dsn, password)
        store = PostgresModelRegistryStore(dsn, schema=pg_schema, connect_timeout=3)

        with pytest.raises(RegistryUnavailable, match="authentication failed") as caught:
            store.open()

        assert password not in _everything_said_about(caught.value)

    def test_repr_when_dsn_has_password_then_redacted(self, postgres_dsn: str) -> None:
        password = "Repr-S3cret-pw"
        url = f"postgresql://trader:{password}@db.internal:6543/huracan_models"
        keywords = _with_password(postgres_dsn, password)

        shown = [
            repr(ModelRegistry(storage_path="/m", metadata_db=url)),
            repr(PostgresModelRegistryStore(url)),
            str(PostgresModelRegistryStore(keywords)),
            PostgresModelRegistryStore(keywords).redacted_dsn,
            repr(vars(PostgresModelRegistryStore(url))),
        ]

        for text in shown:
            assert password not in text
            assert "***" in text or "**********" in text
        assert "db.internal:6543/huracan_models" in shown[0]

    def test_logs_when_registering_and_failing_then_never_contain_password(
        self,
        postgres_dsn: str,
        pg_schema: str,
        models: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        wrong = "Logged-Wr0ng-pw"
        unreachable = f"postgresql://trader:{wrong}@127.0.0.1:{_closed_port()}/db"
        caplog.set_level(logging.DEBUG)
        with ModelRegistry(metadata_db=postgres_dsn, schema=pg_schema) as registry:
            Path(register(registry, models, "BTC", 1).model_path).write_bytes(b"tampered")
            with pytest.raises(ModelIntegrityError):
                registry.get_model_path("BTC", 1)
        with pytest.raises(RegistryUnavailable):
            ModelRegistry(metadata_db=unreachable).open()

        real_password = conninfo_to_dict(postgres_dsn)["password"]
        text = "\n".join(r.getMessage() for r in caplog.records)
        assert any("registered model BTC v1" in r.getMessage() for r in caplog.records)
        assert wrong not in text
        assert f":{real_password}@" not in text
        assert f"password={real_password}" not in text

    def test_registry_when_server_drops_its_connections_then_next_call_succeeds(
        self, postgres_dsn: str, pg_schema: str, models: Path
    ) -> None:
        app = f"registry-test-{uuid.uuid4().hex[:8]}"
        store = PostgresModelRegistryStore(
            postgres_dsn, schema=pg_schema, min_size=2, application_name=app
        )
        with ModelRegistry(store=store) as registry:
            registered = register(registry, models, "BTC", 1)
            with psycopg.connect(postgres_dsn, autocommit=True) as admin:
                killed = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    (app,),
                ).fetchone()

            fetched = registry.get_model_metadata("BTC", 1)

        assert killed is not None
        assert killed[0] >= 1
        assert fetched == registered
