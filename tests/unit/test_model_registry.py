"""Model registry pieces that need no service: redaction, construction, records, the file store.

The behaviour every store shares is in tests/integration/test_model_registry_contract.py.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from huracan.config import build_config
from huracan.storage import (
    FileModelRegistryStore,
    InvalidModelMetadata,
    InvalidStatusTransition,
    ModelAlreadyRegistered,
    ModelMetadata,
    ModelRegistry,
    ModelRegistryStore,
    ModelStatus,
    PostgresModelRegistryStore,
    RegistryConfigError,
    RegistryCorrupted,
    redact_dsn,
)
from huracan.storage.model_registry import check_status_transition

T0 = datetime(2025, 1, 1, tzinfo=UTC)
SHA = "a" * 64


def metadata(coin: str = "BTC", version: int = 1, **overrides: object) -> ModelMetadata:
    fields: dict[str, object] = {
        "coin": coin,
        "version": version,
        "sharpe_ratio": 1.0,
        "win_rate": 0.5,
        "regime": "trending",
        "model_path": f"/models/{coin}/v{version}.pkl",
        "sha256": SHA,
        "status": ModelStatus.ACTIVE,
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(overrides)
    return ModelMetadata(**fields)  # type: ignore[arg-type]


# -- redaction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "postgresql://user:pass@localhost/huracan_models",
            "postgresql://user:***@localhost/huracan_models",
        ),
        ("postgres://u:p%40ss@h:5432/db", "postgres://u:***@h:5432/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("host=h password=s3cret dbname=d", "host=h password=*** dbname=d"),
        ("host=h password='s3 cret' dbname=d", "host=h password=*** dbname=d"),
        ("postgresql://h/db?user=u&password=s3cret&sslmode=require", None),
    ],
)
def test_redact_dsn_when_password_present_then_replaced(text: str, expected: str | None) -> None:
    redacted = redact_dsn(text, text)

    if expected is not None:
        assert redacted == expected
    assert "s3cret" not in redacted
    assert "pass@" not in redacted


def test_redact_dsn_when_message_repeats_password_then_scrubbed_everywhere() -> None:
    dsn = "postgresql://trader:Tr4der-pw@db:5432/models"
    message = 'auth failed for "trader" (tried Tr4der-pw); password=Tr4der-pw'

    redacted = redact_dsn(message, dsn)

    assert "Tr4der-pw" not in redacted
    assert "trader" in redacted


# -- construction ---------------------------------------------------------------------------


def test_model_registry_when_metadata_db_not_postgres_then_config_error_without_password() -> None:
    with pytest.raises(RegistryConfigError, match="'mysql'") as caught:
        ModelRegistry(storage_path="/m", metadata_db="mysql://u:Hidden-pw@h/db")

    assert "Hidden-pw" not in str(caught.value)


def test_model_registry_when_dsn_unparseable_then_config_error_without_password() -> None:
    with pytest.raises(RegistryConfigError, match="not a valid PostgreSQL DSN") as caught:
        ModelRegistry(metadata_db="host=h password=Hidden-pw port")

    assert "Hidden-pw" not in str(caught.value)


def test_model_registry_when_both_store_and_metadata_db_then_config_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryConfigError, match="either"):
        ModelRegistry(metadata_db="postgresql://u:p@h/db", store=FileModelRegistryStore(tmp_path))


def test_model_registry_when_secret_dsn_to_closed_port_then_constructs_without_connecting() -> None:
    registry = ModelRegistry(
        storage_path="/models/trained",
        metadata_db=SecretStr("postgresql://user:Secret-pw@127.0.0.1:1/huracan_models"),
    )

    assert isinstance(registry.store, PostgresModelRegistryStore)
    assert "not connected" in repr(registry)
    assert "Secret-pw" not in repr(registry)


@pytest.mark.parametrize(
    ("dsn", "schema"),
    [
        ("postgresql://u:p@h/db", "huracan_registry"),
        ("postgresql://u:p@h/db?options=-c%20search_path%3Dmy_models", "my_models"),
        ("host=h options='-c search_path=other,public'", "other"),
    ],
)
def test_postgres_store_when_dsn_sets_search_path_then_uses_it_as_schema(
    dsn: str, schema: str
) -> None:
    assert PostgresModelRegistryStore(dsn).schema == schema


def test_postgres_store_when_schema_not_identifier_then_config_error() -> None:
    with pytest.raises(RegistryConfigError, match="schema"):
        PostgresModelRegistryStore("postgresql://u:p@h/db", schema='x"; DROP TABLE y; --')


def test_from_config_when_metadata_db_empty_then_file_store_under_storage_path(
    tmp_path: Path,
) -> None:
    config = build_config(
        {"engine": {"model_registry": {"storage_path": str(tmp_path), "metadata_db": ""}}},
        environ={},
    )

    registry = ModelRegistry.from_config(config)

    assert isinstance(registry.store, FileModelRegistryStore)
    assert registry.store.root == tmp_path / "registry"


def test_from_config_when_metadata_db_set_then_postgres_store_with_pool_sizes() -> None:
    config = build_config(
        {
            "engine": {"model_registry": {"metadata_db": "postgresql://u:p@h/db"}},
            "postgres": {"pool_min_size": 0, "pool_max_size": 3},
        },
        environ={},
    )

    registry = ModelRegistry.from_config(config)

    assert isinstance(registry.store, PostgresModelRegistryStore)
    assert registry.store._max_size == 3


def test_stores_when_checked_then_satisfy_the_port(tmp_path: Path) -> None:
    assert isinstance(FileModelRegistryStore(tmp_path), ModelRegistryStore)
    assert isinstance(PostgresModelRegistryStore("postgresql://u:p@h/db"), ModelRegistryStore)


# -- records --------------------------------------------------------------------------------


def test_model_metadata_when_timestamp_naive_then_invalid() -> None:
    with pytest.raises(InvalidModelMetadata, match="created_at must be a timezone-aware"):
        metadata(created_at=datetime(2025, 1, 1))


def test_model_metadata_when_status_given_as_text_then_enum_and_hashable() -> None:
    record = metadata(status="inactive")

    assert record.status is ModelStatus.INACTIVE
    assert record.is_active is False
    assert {record: 1}[record] == 1
    assert record.to_dict()["is_active"] is False
    assert json.loads(json.dumps(record.to_dict()))["status"] == "inactive"


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        (ModelStatus.ACTIVE, ModelStatus.INACTIVE, True),
        (ModelStatus.INACTIVE, ModelStatus.ACTIVE, True),
        (ModelStatus.ACTIVE, ModelStatus.RETIRED, True),
        (ModelStatus.RETIRED, ModelStatus.RETIRED, True),
        (ModelStatus.RETIRED, ModelStatus.ACTIVE, False),
        (ModelStatus.RETIRED, ModelStatus.INACTIVE, False),
    ],
)
def test_check_status_transition_when_leaving_retired_then_refused(
    old: ModelStatus, new: ModelStatus, allowed: bool
) -> None:
    if allowed:
        check_status_transition("BTC", 1, old, new)
    else:
        with pytest.raises(InvalidStatusTransition):
            check_status_transition("BTC", 1, old, new)


# -- file store -----------------------------------------------------------------------------


def _register_in_process(root: str, index: int, start: object, results: object) -> None:
    store = FileModelRegistryStore(root)
    start.wait()  # type: ignore[attr-defined]
    try:
        store.add(metadata("BTC", 1, sharpe_ratio=float(index)))
        results.put(("ok", index))  # type: ignore[attr-defined]
    except ModelAlreadyRegistered:
        results.put(("duplicate", index))  # type: ignore[attr-defined]


def test_file_store_when_processes_race_same_version_then_exactly_one_wins(
    tmp_path: Path,
) -> None:
    ctx = multiprocessing.get_context("spawn")
    racers = 4
    start = ctx.Barrier(racers)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=_register_in_process, args=(str(tmp_path), i, start, results))
        for i in range(racers)
    ]
    for p in processes:
        p.start()
    outcomes = [results.get(timeout=60) for _ in range(racers)]
    for p in processes:
        p.join(timeout=60)

    winners = [i for kind, i in outcomes if kind == "ok"]
    assert len(winners) == 1
    assert sorted(kind for kind, _ in outcomes) == ["duplicate"] * (racers - 1) + ["ok"]
    stored = FileModelRegistryStore(tmp_path).get("BTC", 1)
    assert stored is not None
    assert stored.sharpe_ratio == float(winners[0])


def test_file_store_when_registering_and_duplicating_then_no_temp_files_left(
    tmp_path: Path,
) -> None:
    store = FileModelRegistryStore(tmp_path)
    store.add(metadata())
    with pytest.raises(ModelAlreadyRegistered):
        store.add(metadata())
    store.set_status("BTC", 1, ModelStatus.INACTIVE, T0)

    assert sorted(os.listdir(tmp_path / "BTC")) == [".lock", "v1.json"]
    record = json.loads((tmp_path / "BTC" / "v1.json").read_text())
    assert record["sha256"] == SHA
    assert record["status"] == "inactive"


def test_file_store_when_threads_change_statuses_together_then_every_change_kept(
    tmp_path: Path,
) -> None:
    store = FileModelRegistryStore(tmp_path)
    for version in range(1, 9):
        store.add(metadata("BTC", version))
    barrier = threading.Barrier(8)

    def deactivate(version: int) -> None:
        barrier.wait()
        store.set_status("BTC", version, ModelStatus.INACTIVE, T0)

    threads = [threading.Thread(target=deactivate, args=(v,)) for v in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert [m.status for m in store.list_models("BTC")] == [ModelStatus.INACTIVE] * 8


def test_file_store_when_record_corrupt_then_raises_registry_corrupted(tmp_path: Path) -> None:
    store = FileModelRegistryStore(tmp_path)
    store.add(metadata())
    (tmp_path / "BTC" / "v1.json").write_text('{"format": 1, "coin": "BTC"')

    with pytest.raises(RegistryCorrupted, match=r"v1\.json"):
        store.get("BTC", 1)


def test_file_store_when_record_in_wrong_file_then_raises_registry_corrupted(
    tmp_path: Path,
) -> None:
    store = FileModelRegistryStore(tmp_path)
    store.add(metadata("BTC", 1))
    os.rename(tmp_path / "BTC" / "v1.json", tmp_path / "BTC" / "v2.json")

    with pytest.raises(RegistryCorrupted, match="holds 'BTC' version 1"):
        store.get("BTC", 2)


def test_file_store_when_only_read_then_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "not-yet"
    registry = ModelRegistry(storage_path=root)

    assert registry.get_model_metadata("BTC") is None
    assert registry.get_active_models() == []
    assert not root.exists()
