"""Signals from the model registry: the worker trades each coin's active model, as replay does."""

from __future__ import annotations

from pathlib import Path

from huracan.domain.signals import BaselineParams
from huracan.domain.universe import universe
from huracan.models import RegistryModels, register_momentum_model
from huracan.simulate import MarketSimulator
from huracan.storage import ModelRegistry
from huracan.streams.serde import make_serde
from huracan.wiring import build_engine
from tests.integration.pipeline_support import (
    create_topics,
    http_json,
    pipeline_config,
    publish_ticks,
    read_topic,
    running_worker,
    topic_counts,
)
from tests.waiting import wait_until

T0 = 1_767_225_600_000_000


def _lag(port: int, topic: str) -> dict[int, float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        int(s.labels["partition"]): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "huracan_consumer_lag" and s.labels["topic"] == topic
    }


def test_pipeline_when_coin_has_active_registry_model_then_its_signals_come_from_it(
    kafka_bootstrap: str, tmp_path: Path, unique_name
) -> None:
    # arrange: BTC gets an eager momentum model (entry at |z| >= 0.5, not the baseline's 1.5)
    base = pipeline_config(kafka_bootstrap, unique_name("models"))
    registry_cfg = base.engine.model_registry.model_copy(
        update={"storage_path": str(tmp_path / "models")}
    )
    cfg = base.model_copy(
        update={"engine": base.engine.model_copy(update={"model_registry": registry_cfg})}
    )
    create_topics(cfg)
    registry = ModelRegistry.from_config(cfg)
    register_momentum_model(registry, "BTC", BaselineParams(entry_z=0.5), sharpe_ratio=1.4)
    ticks = list(MarketSimulator(universe(8), seed=21, start_ts_us=T0, rate=500).ticks(2_000))
    models = RegistryModels.from_config(cfg)
    assert models.refresh()
    engine = build_engine(cfg, models=models)
    signals = []
    for t in ticks:
        out = engine.on_tick(t)
        if out.signal is not None:
            signals.append(out.signal)
    baseline_btc = 0
    plain = build_engine(cfg)
    for t in ticks:
        out = plain.on_tick(t)
        baseline_btc += out.signal is not None and out.signal.coin == "BTC"
    btc = [s for s in signals if s.coin == "BTC"]
    assert btc
    assert {s.model_version for s in btc} == {"BTC:momentum@1"}
    assert len(btc) > baseline_btc  # the registry model really differs from the baseline

    # act
    with running_worker(cfg, tmp_path / "worker") as (_proc, port):
        publish_ticks(cfg, ticks)
        wait_until(lambda: topic_counts(cfg)["Signal"] >= len(signals), 120, what="signals")
        health = http_json(port, "/health")
        live = read_topic(cfg, "Signal")
        # the consumer-lag gauge covers every market-data partition and drains to zero
        tick_topic = f"{cfg.kafka.topic_prefix}.market-data"
        wait_until(
            lambda: _lag(port, tick_topic) == {p: 0.0 for p in range(4)}, 60,
            what="consumer lag 0 on every market-data partition",
        )  # fmt: skip

    # assert: the same signals, byte for byte, and /health lists the model
    serde = make_serde(cfg)
    expected = sorted(serde.encode("Signal", s.to_record()) for s in signals)
    assert sorted(serde.encode("Signal", s) for s in live) == expected
    assert health["models"]["models"] == {"BTC": "BTC:momentum@1"}
    assert health["models"]["healthy"] is True
