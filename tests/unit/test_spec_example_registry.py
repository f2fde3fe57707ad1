"""The spec's Model Registry usage example, run as written with the file store.

Changed from the spec: the import line, the paths (a temporary directory instead of
``/models/trained``, with the model file written first — the registry hashes it) and
``metadata_db`` (``None``: the file store; the PostgreSQL run is in
``tests/integration/test_spec_example_registry.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from huracan import storage
from huracan.storage import ModelRegistry, ModelStatus


def test_spec_example_when_run_with_file_store_then_prints_what_it_registered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage_path = tmp_path / "models" / "trained"
    model_file = storage_path / "BTC" / "model_v1.pkl"
    model_file.parent.mkdir(parents=True)
    model_file.write_bytes(b"pickled BTC model v1")

    # --- the spec's example, from here on as written -------------------------------------
    # Create model registry
    registry = ModelRegistry(
        storage_path=str(storage_path),
        metadata_db=None,
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
    assert metadata.status is ModelStatus.ACTIVE
    assert isinstance(registry.store, storage.FileModelRegistryStore)
    registry.close()
