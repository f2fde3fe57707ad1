"""Registry-backed signal models over the file store: artifact format, loading, refresh, failure."""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from huracan.config import build_config
from huracan.domain.features import FeatureParams, FeatureState, FeatureVector, update
from huracan.domain.signals import BaselineMomentumModel, BaselineParams, Signal
from huracan.domain.universe import universe
from huracan.models import (
    ARTIFACT_FORMAT,
    ArtifactExists,
    LinearModel,
    LinearParams,
    ModelArtifactError,
    MomentumModel,
    RegistryModels,
    UnknownModelType,
    UnsupportedArtifactVersion,
    dump_artifact,
    load_model,
    parse_artifact,
    register_linear_model,
    register_momentum_model,
    save_model_artifact,
)
from huracan.simulate import MarketSimulator
from huracan.storage import (
    FileModelRegistryStore,
    ModelMetadata,
    ModelRegistry,
    ModelStatus,
    RegistryUnavailable,
)
from huracan.wiring import build_engine
from tests.waiting import wait_until

STRICT = BaselineParams(entry_z=2.5, edge_per_z_bps=6.0, base_size_usd=2_500.0, warmup_ticks=50)


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class FlakyStore:
    """A file store that can be switched to 'unreachable' (every call raises) and back."""

    def __init__(self, inner: FileModelRegistryStore) -> None:
        self.inner = inner
        self.down = False
        self.gets = 0
        self.listing = threading.Event()  # set while list_active runs
        self.gate = threading.Event()  # list_active waits for it
        self.gate.set()

    def _check(self) -> None:
        if self.down:
            raise RegistryUnavailable("registry store unreachable (test)")

    def open(self) -> None:
        self._check()
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def add(self, metadata: ModelMetadata) -> None:
        self._check()
        self.inner.add(metadata)

    def get(self, coin: str, version: int | None) -> ModelMetadata | None:
        self._check()
        self.gets += 1
        return self.inner.get(coin, version)

    def list_active(
        self, coin: str | None, regime: str | None, limit: int | None
    ) -> list[ModelMetadata]:
        self._check()
        self.listing.set()
        try:
            assert self.gate.wait(timeout=30), "test never opened the gate"
            return self.inner.list_active(coin, regime, limit)
        finally:
            self.listing.clear()

    def list_models(self, coin: str | None) -> list[ModelMetadata]:
        self._check()
        return self.inner.list_models(coin)

    def set_status(
        self, coin: str, version: int, status: ModelStatus, updated_at: datetime
    ) -> ModelMetadata:
        self._check()
        return self.inner.set_status(coin, version, status, updated_at)


@pytest.fixture
def store(tmp_path: Path) -> FlakyStore:
    return FlakyStore(FileModelRegistryStore(tmp_path / "registry", fsync=False))


@pytest.fixture
def registry(tmp_path: Path, store: FlakyStore) -> Iterator[ModelRegistry]:
    with ModelRegistry(storage_path=tmp_path / "models", store=store) as reg:
        yield reg


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def models(registry: ModelRegistry, clock: FakeClock) -> RegistryModels:
    return RegistryModels(registry, refresh_s=30.0, clock=clock)


def feature_stream(coin: str = "BTC", n: int = 3_000) -> list[FeatureVector]:
    """A deterministic stream of one coin's feature vectors (simulated ticks, fixed seed)."""
    coins = [c for c in universe(4) if c.symbol == coin]
    state = FeatureState()
    out: list[FeatureVector] = []
    for t in MarketSimulator(coins, seed=7, rate=100.0).ticks(n):
        fv = update(
            state, FeatureParams(),
            coin=t["coin"], exchange=t["exchange"], ts=t["ts"], seq=t["seq"], bid=t["bid"],
            ask=t["ask"], last=t["last"], volume=t["volume"], event_id=t["event_id"],
            correlation_id=t["correlation_id"],
        )  # fmt: skip
        assert fv is not None
        out.append(fv)
    return out


def signals_of(model: Any, stream: list[FeatureVector]) -> list[Signal]:
    return [s for s in (model.evaluate(f) for f in stream) if s is not None]


def artifact(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(dump_artifact("momentum", BaselineParams()))
    doc.update(changes)
    return doc


def write_raw(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


# ---------------------------------------------------------------------------------------------
# Artifact format
# ---------------------------------------------------------------------------------------------


def test_dump_artifact_when_momentum_params_then_documented_shape_and_loads_back() -> None:
    data = dump_artifact("momentum", STRICT)

    doc = json.loads(data)
    model = load_model(data, "BTC:momentum@1")

    assert doc["format"] == ARTIFACT_FORMAT == "huracan.signal-model"
    assert doc["format_version"] == 1
    assert doc["type"] == "momentum"
    assert doc["params"]["entry_z"] == 2.5
    assert isinstance(model, MomentumModel)
    assert model.params == STRICT
    assert model.version == "BTC:momentum@1"


def test_parse_artifact_when_type_unknown_then_unknown_model_type_names_type() -> None:
    with pytest.raises(UnknownModelType, match="'xgboost'") as caught:
        parse_artifact(json.dumps(artifact(type="xgboost")).encode())

    assert caught.value.field == "type"


@pytest.mark.parametrize(
    ("params_change", "field", "message"),
    [
        ({"entry_z": 0}, "params.entry_z", "must be > 0"),
        ({"entry_z": "1.5"}, "params.entry_z", "finite number"),
        ({"warmup_ticks": 2.5}, "params.warmup_ticks", "non-negative integer"),
        ({"warmup_ticks": True}, "params.warmup_ticks", "non-negative integer"),
        ({"max_size_multiple": 0.5}, "params.max_size_multiple", ">= 1.0"),
        ({"min_volatility_bps": -1.0}, "params.min_volatility_bps", "> 0.0"),
        ({"leverage": 10}, "params.leverage", "not a parameter"),
    ],
)
def test_parse_artifact_when_param_bad_then_error_names_the_field(
    params_change: dict[str, Any], field: str, message: str
) -> None:
    doc = artifact()
    doc["params"].update(params_change)

    with pytest.raises(ModelArtifactError, match=message) as caught:
        parse_artifact(json.dumps(doc).encode())

    assert caught.value.field == field
    assert field in str(caught.value)


def test_parse_artifact_when_param_missing_then_error_names_it() -> None:
    doc = artifact()
    del doc["params"]["base_size_usd"]

    with pytest.raises(ModelArtifactError, match=r"params\.base_size_usd is missing"):
        parse_artifact(json.dumps(doc).encode())


@pytest.mark.parametrize(
    ("data", "error", "field"),
    [
        (b"\x80\x81", ModelArtifactError, ""),
        (b"not json", ModelArtifactError, ""),
        (b"[1, 2]", ModelArtifactError, ""),
        (b'{"format": "pickle"}', UnsupportedArtifactVersion, "format"),
        (json.dumps(artifact(format_version=2)).encode(), UnsupportedArtifactVersion,
         "format_version"),
        (json.dumps(artifact(code="__import__('os')")).encode(), ModelArtifactError, "code"),
        (json.dumps(artifact()).replace('"entry_z": 1.5', '"entry_z": NaN').encode(),
         ModelArtifactError, ""),
        (json.dumps(artifact()).replace('"type": "momentum"',
         '"type": "momentum", "type": "linear"').encode(), ModelArtifactError, "type"),
        (json.dumps(artifact(params=[1])).encode(), ModelArtifactError, "params"),
    ],
)  # fmt: skip
def test_parse_artifact_when_document_malformed_then_specific_error(
    data: bytes, error: type[ModelArtifactError], field: str
) -> None:
    with pytest.raises(error) as caught:
        parse_artifact(data)

    assert caught.value.field == field


def test_parse_artifact_when_larger_than_limit_then_refused_before_parsing() -> None:
    with pytest.raises(ModelArtifactError, match="bytes, more than"):
        parse_artifact(b" " * (2 << 20))


def test_linear_model_when_evaluated_then_z_is_weighted_sum_with_baseline_mapping() -> None:
    params = LinearParams(weights={"momentum_bps": 0.5, "ret_bps": -0.25}, bias=0.1, warmup_ticks=0)
    model = load_model(dump_artifact("linear", params), "ETH:linear@2")
    stream = feature_stream("ETH", 400)

    signals = signals_of(model, stream)

    assert isinstance(model, LinearModel)
    assert signals
    for s in signals:
        f = next(f for f in stream if f.event_id == s.causation_id)
        z = 0.1 + 0.5 * f.momentum_bps - 0.25 * f.ret_bps
        assert abs(z) >= params.entry_z
        assert s.direction == ("LONG" if z > 0 else "SHORT")
        assert s.edge_bps == pytest.approx(min(4.0 * abs(z), 60.0))
        assert s.size_usd == pytest.approx(10_000.0 * min(abs(z) / 1.5, 3.0))
        assert s.model_version == "ETH:linear@2"


def test_parse_artifact_when_linear_weighs_unknown_feature_then_error_names_it() -> None:
    doc = json.loads(dump_artifact("linear", LinearParams(weights={"momentum_bps": 1.0})))
    doc["params"]["weights"]["mid"] = 1.0

    with pytest.raises(ModelArtifactError, match="not a feature") as caught:
        parse_artifact(json.dumps(doc).encode())

    assert caught.value.field == "params.weights.mid"


def test_save_model_artifact_when_file_exists_then_refuses_and_keeps_it(tmp_path: Path) -> None:
    path = save_model_artifact(tmp_path / "BTC" / "m.json", "momentum", BaselineParams())
    before = path.read_bytes()

    with pytest.raises(ArtifactExists):
        save_model_artifact(path, "momentum", STRICT)

    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]


def test_save_model_artifact_when_params_bad_then_nothing_written(tmp_path: Path) -> None:
    with pytest.raises(ModelArtifactError, match=r"params\.entry_z"):
        save_model_artifact(tmp_path / "m.json", "momentum", replace(STRICT, entry_z=-1.0))

    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------------------------


def test_evaluate_when_momentum_params_differ_then_signals_differ_from_baseline() -> None:
    stream = feature_stream()
    loaded = load_model(dump_artifact("momentum", STRICT), "BTC:momentum@1")

    baseline = signals_of(BaselineMomentumModel(), stream)
    registry_made = signals_of(loaded, stream)
    again = signals_of(load_model(dump_artifact("momentum", STRICT), "BTC:momentum@1"), stream)

    assert baseline
    assert registry_made
    assert len(registry_made) < len(baseline)  # a higher entry threshold trades less
    assert {s.event_id for s in registry_made} < {s.event_id for s in baseline}
    assert all(s.size_usd <= 3 * 2_500.0 for s in registry_made)
    assert {s.model_version for s in baseline} == {"baseline-momentum-v1"}
    assert {s.model_version for s in registry_made} == {"BTC:momentum@1"}
    assert registry_made == again  # deterministic


def test_evaluate_when_momentum_params_are_defaults_then_same_signals_as_baseline() -> None:
    stream = feature_stream(n=1_000)
    loaded = load_model(dump_artifact("momentum", BaselineParams()), "BTC:momentum@1")

    ours = signals_of(loaded, stream)
    base = signals_of(BaselineMomentumModel(), stream)

    assert ours == [replace(s, model_version="BTC:momentum@1") for s in base]


# ---------------------------------------------------------------------------------------------
# RegistryModels
# ---------------------------------------------------------------------------------------------


def test_call_when_never_refreshed_then_none_for_every_coin(
    registry: ModelRegistry, models: RegistryModels
) -> None:
    register_momentum_model(registry, "BTC", STRICT)

    assert models("BTC") is None
    assert models.status().last_refresh_ok is None


def test_call_when_coin_has_active_model_then_serves_it_and_none_for_others(
    registry: ModelRegistry, models: RegistryModels
) -> None:
    register_momentum_model(registry, "BTC", STRICT, sharpe_ratio=1.2)
    register_momentum_model(registry, "ETH", STRICT, activate=False)

    assert models.refresh() is True

    btc = models("BTC")
    assert isinstance(btc, MomentumModel)
    assert btc.params == STRICT
    assert btc.version == "BTC:momentum@1"
    assert models("ETH") is None  # registered but inactive -> baseline
    assert models("SOL") is None  # no model at all -> baseline
    status = models.status()
    assert status.healthy
    assert dict(status.models) == {"BTC": "BTC:momentum@1"}


def test_refresh_when_artifact_invalid_then_rejected_with_field_and_not_cached(
    registry: ModelRegistry, models: RegistryModels, tmp_path: Path
) -> None:
    doc = artifact()
    doc["params"]["entry_z"] = -3
    path = write_raw(tmp_path / "models" / "BTC" / "bad.json", doc)
    registry.register_model("BTC", 1, 1.0, 0.5, model_path=path, is_active=True)

    models.refresh()

    assert models("BTC") is None
    status = models.status()
    assert status.last_refresh_ok is True
    assert not status.healthy
    assert "params.entry_z" in status.load_errors["BTC"]
    assert "version 1" in status.load_errors["BTC"]
    assert status.models_loaded == 0


def test_refresh_when_file_altered_after_registration_then_rejected(
    registry: ModelRegistry, models: RegistryModels
) -> None:
    meta = register_momentum_model(registry, "BTC", STRICT)
    Path(meta.model_path).write_bytes(dump_artifact("momentum", replace(STRICT, entry_z=0.1)))

    models.refresh()

    assert models("BTC") is None
    assert "sha256" in models.status().load_errors["BTC"]


def test_refresh_when_best_version_bad_then_next_active_version_served(
    registry: ModelRegistry, models: RegistryModels, tmp_path: Path
) -> None:
    register_momentum_model(registry, "BTC", STRICT, sharpe_ratio=0.8)
    bad = write_raw(tmp_path / "models" / "BTC" / "v2.json", artifact(type="torch"))
    registry.register_model("BTC", 2, 2.0, 0.5, model_path=bad, is_active=True)

    models.refresh()

    btc = models("BTC")
    assert btc is not None
    assert btc.version == "BTC:momentum@1"
    assert "torch" in models.status().load_errors["BTC"]


def test_refresh_when_several_active_versions_then_best_sharpe_served(
    registry: ModelRegistry, models: RegistryModels
) -> None:
    register_momentum_model(registry, "BTC", STRICT, sharpe_ratio=2.0)
    register_momentum_model(registry, "BTC", BaselineParams(), sharpe_ratio=1.0)

    models.refresh()

    btc = models("BTC")
    assert btc is not None
    assert btc.version == "BTC:momentum@1"


def test_refresh_if_due_when_interval_not_elapsed_then_registry_not_read(
    registry: ModelRegistry, models: RegistryModels, clock: FakeClock
) -> None:
    register_momentum_model(registry, "BTC", STRICT)
    assert models.refresh_if_due() is True
    register_momentum_model(registry, "ETH", STRICT)

    clock.now += 29.0
    ran = models.refresh_if_due()

    assert ran is False
    assert models("ETH") is None
    assert models.status().refreshes == 1


def test_refresh_if_due_when_interval_elapsed_then_new_active_version_picked_up(
    registry: ModelRegistry, models: RegistryModels, clock: FakeClock
) -> None:
    register_momentum_model(registry, "BTC", STRICT)
    models.refresh_if_due()
    newer = BaselineParams(entry_z=1.0)
    register_momentum_model(registry, "BTC", newer, activate=False)
    registry.set_model_active("BTC", 1, is_active=False)
    registry.set_model_active("BTC", 2)

    clock.now += 30.0
    ran = models.refresh_if_due()

    btc = models("BTC")
    assert ran is True
    assert isinstance(btc, MomentumModel)
    assert (btc.version, btc.params) == ("BTC:momentum@2", newer)


def test_refresh_when_model_deactivated_then_coin_back_to_baseline(
    registry: ModelRegistry, models: RegistryModels
) -> None:
    register_momentum_model(registry, "BTC", STRICT)
    models.refresh()

    registry.retire_model("BTC", 1)
    models.refresh()

    assert models("BTC") is None
    assert models.status().models_loaded == 0


def test_refresh_when_nothing_changed_then_artifact_not_read_again(
    registry: ModelRegistry, models: RegistryModels, store: FlakyStore
) -> None:
    register_momentum_model(registry, "BTC", STRICT)
    models.refresh()
    first, reads = models("BTC"), store.gets

    models.refresh()
    models.refresh()

    assert models("BTC") is first
    assert store.gets == reads  # load_model_bytes (a store.get) happened once, in the first refresh


def test_refresh_when_registry_unreachable_then_keeps_models_and_reports_failure(
    registry: ModelRegistry, models: RegistryModels, store: FlakyStore, clock: FakeClock
) -> None:
    register_momentum_model(registry, "BTC", STRICT)
    models.refresh()
    served = models("BTC")
    store.down = True

    clock.now += 45.0
    ok = models.refresh()

    status = models.status()
    assert ok is False
    assert models("BTC") is served
    assert status.last_refresh_ok is False
    assert not status.healthy
    assert "RegistryUnavailable" in str(status.last_error)
    assert status.models_loaded == 1
    assert status.last_success_age_s == 45.0
    assert status.last_attempt_age_s == 0.0
    assert (status.refreshes, status.failures) == (2, 1)


def test_refresh_when_registry_back_after_failure_then_status_ok_and_changes_applied(
    registry: ModelRegistry, models: RegistryModels, store: FlakyStore
) -> None:
    register_momentum_model(registry, "BTC", STRICT)
    models.refresh()
    store.down = True
    models.refresh()
    store.down = False
    register_momentum_model(registry, "ETH", STRICT)

    ok = models.refresh()

    assert ok is True
    assert models.status().healthy
    assert models.status().last_error is None
    assert set(models.status().models) == {"BTC", "ETH"}


def test_refresh_when_registry_down_from_start_then_baseline_and_never_raises(
    registry: ModelRegistry, models: RegistryModels, store: FlakyStore
) -> None:
    store.down = True

    assert models.refresh() is False
    assert models("BTC") is None
    assert models.status().as_dict()["last_refresh_ok"] is False
    json.dumps(models.status().as_dict())


async def test_refresh_async_when_due_then_runs_off_loop_and_loads(
    registry: ModelRegistry, models: RegistryModels
) -> None:
    register_momentum_model(registry, "BTC", STRICT)

    ran = await asyncio.wait_for(models.refresh_async(), timeout=10)

    assert ran is True
    assert models("BTC") is not None


def test_register_momentum_model_when_versions_exist_then_next_version_and_own_file(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    first = register_momentum_model(registry, "BTC", STRICT)
    second = register_linear_model(registry, "BTC", LinearParams(weights={"momentum_bps": 0.2}))

    assert (first.version, second.version) == (1, 2)
    assert Path(first.model_path) == tmp_path / "models" / "BTC" / "momentum_v1.json"
    assert Path(second.model_path) == tmp_path / "models" / "BTC" / "linear_v2.json"
    assert first.is_active
    assert second.is_active
    assert registry.load_model_bytes("BTC", 1) == dump_artifact("momentum", STRICT)


def test_engine_when_coin_has_registry_model_then_its_signals_carry_the_model_version(
    registry: ModelRegistry, models: RegistryModels
) -> None:
    register_momentum_model(registry, "BTC", replace(STRICT, entry_z=1.0))
    models.refresh()
    engine = build_engine(build_config({}, environ={}))
    engine.models = models
    signals: list[Signal] = []

    for tick in MarketSimulator(universe(4), seed=3, rate=100.0).ticks(8_000):
        out = engine.on_tick(tick)
        if out.signal is not None:
            signals.append(out.signal)
    engine.finish()

    by_coin = {s.coin: {x.model_version for x in signals if x.coin == s.coin} for s in signals}
    assert by_coin["BTC"] == {"BTC:momentum@1"}
    assert by_coin["ETH"] == {"baseline-momentum-v1"}
    assert not any(math.isnan(s.edge_bps) for s in signals)


def test_from_config_when_file_store_configured_then_uses_it_and_refresh_interval(
    tmp_path: Path, clock: FakeClock
) -> None:
    section = {"storage_path": str(tmp_path / "models"), "metadata_db": "", "refresh_seconds": 5}
    cfg = build_config({"engine": {"model_registry": section}}, environ={})
    with ModelRegistry(storage_path=tmp_path / "models") as publisher:
        register_momentum_model(publisher, "BTC", STRICT)
    models = RegistryModels.from_config(cfg, clock=clock)

    models.refresh_if_due()
    clock.now += 5.0
    ran = models.refresh_if_due()
    models.close()

    assert isinstance(models.registry.store, FileModelRegistryStore)
    assert models.refresh_s == 5.0
    assert ran is True
    btc = models("BTC")
    assert btc is not None
    assert btc.version == "BTC:momentum@1"


def test_refresh_if_due_when_refresh_already_running_then_returns_without_waiting(
    registry: ModelRegistry, models: RegistryModels, store: FlakyStore, clock: FakeClock
) -> None:
    register_momentum_model(registry, "BTC", STRICT)
    store.gate.clear()
    slow = threading.Thread(target=models.refresh)
    slow.start()
    wait_until(store.listing.is_set, timeout=10, what="the slow refresh to reach the registry")
    clock.now += 3_600.0

    ran = models.refresh_if_due()
    store.gate.set()
    slow.join(timeout=10)

    assert ran is False
    assert models.status().refreshes == 1
    assert models("BTC") is not None
