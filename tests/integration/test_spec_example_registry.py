"""The spec's Model Registry usage example, run as written against a real PostgreSQL.

Changed from the spec: the import line and the paths — a temporary directory instead of
``/models/trained`` (with the model file written first; the registry hashes it), and the test
database's DSN instead of ``postgresql://user:pass@localhost/huracan_models``, with
``options=-c search_path=<a schema of its own>`` so that runs do not share records.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from huracan.storage import ModelRegistry, PostgresModelRegistryStore


@pytest.fixture
def metadata_db(postgres_dsn: str) -> Iterator[str]:
    schema = f"test_spec_registry_{uuid.uuid4().hex[:12]}"
    yield make_conninfo(postgres_dsn, options=f"-c search_path={schema}")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_spec_example_when_run_against_postgres_then_prints_what_it_registered(
    tmp_path: Path, metadata_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    storage_path = tmp_path / "models" / "trained"
    model_file = storage_path / "BTC" / "model_v1.pkl"
    model_file.parent.mkdir(parents=True)
    model_file.write_bytes(b"pickled BTC model v1")

    # --- the spec's example, from here on as written -------------------------------------
    # Create model registry
    registry = ModelRegistry(
        storage_path=str(storage_path),
        metadata_db=metadata_db,
    )

    # Register model
    metadata = registry.register_model(
        coin="BTC",
        version=1,
        sharpe_ratio=2.5,
        win_rate=0.75,
        regime="trending",
        performance_metrics={"avg_return": 0.02, "max_drawdown": 0.05},
        model_path=str(model_file),
        is_active=True,
    )

    # Get model metadata
    metadata = registry.get_model_metadata("BTC", version=1)
    print(f"Sharpe: {metadata.sharpe_ratio}, Win rate: {metadata.win_rate}")

    # Get active models
    active_models = registry.get_active_models(coin="BTC", regime="trending", limit=5)
    for model in active_models:
        print(f"Version {model.version}: Sharpe={model.sharpe_ratio}")

    # Set model active
    registry.set_model_active("BTC", version=1, is_active=True)

    # Get model path
    model_path = registry.get_model_path("BTC", version=1)
    print(f"Model path: {model_path}")
    # --- end of the spec's example ---------------------------------------------------------

    assert capsys.readouterr().out.splitlines() == [
        "Sharpe: 2.5, Win rate: 0.75",
        "Version 1: Sharpe=2.5",
        f"Model path: {model_file}",
    ]
    assert isinstance(registry.store, PostgresModelRegistryStore)
    assert registry.store.schema.startswith("test_spec_registry_")
    registry.close()
