"""Replay through Kafka on the real broker: the same decisions as the in-process engine."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from huracan.backtest.errors import KafkaReplayTimeout
from huracan.backtest.kafka_replay import replay_via_kafka
from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator
from huracan.streams.serde import make_serde
from tests.integration.pipeline_support import engine_run, pipeline_config

T0 = 1_767_225_600_000_000


def _topics(bootstrap: str, prefix: str) -> list[str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]


def test_replay_via_kafka_when_ticks_replayed_then_engine_decisions_and_executions_byte_for_byte(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # arrange: the engine over the ticks in event-time order; the replay gets them shuffled
    cfg = pipeline_config(kafka_bootstrap, "unused-by-the-replay")
    ticks = list(MarketSimulator(universe(20), seed=31, start_ts_us=T0, rate=500).ticks(2_000))
    engine, decisions, executions = engine_run(cfg, ticks)
    assert {d["decision"] for d in decisions} >= {"APPROVE", "BLOCK"}
    assert {e["action"] for e in executions} == {"OPEN", "CLOSE"}
    shuffled = ticks[:]
    random.Random(7).shuffle(shuffled)

    # act
    out = replay_via_kafka(cfg, shuffled, workdir=tmp_path, timeout_s=300)

    # assert: the same facts, the same bytes, the same order
    serde = make_serde(cfg)
    assert [serde.encode("RiskDecision", d) for d in out.decisions] == [
        serde.encode("RiskDecision", d) for d in decisions
    ]
    assert [serde.encode("Execution", e) for e in out.executions] == [
        serde.encode("Execution", e) for e in executions
    ]
    stats = engine.stats
    assert (out.ticks, out.features, out.signals, out.requests, out.dead_letters) == (
        len(ticks), stats.features, stats.signals, stats.requests, 0,
    )  # fmt: skip
    assert out.prefix.startswith("replay-")
    assert _topics(kafka_bootstrap, out.prefix) == []  # deleted
    assert list(tmp_path.glob("worker-*.log"))  # the caller's work directory is kept


def test_replay_via_kafka_when_time_runs_out_then_timeout_error_and_topics_deleted(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # arrange
    cfg = pipeline_config(kafka_bootstrap, "unused-by-the-replay")
    ticks = list(MarketSimulator(universe(5), seed=32, start_ts_us=T0, rate=500).ticks(200))

    # act: far too little time to start a worker and drain the pipeline
    with pytest.raises(KafkaReplayTimeout, match=r"did not (start|drain) within 2 s") as caught:
        replay_via_kafka(cfg, ticks, workdir=tmp_path, timeout_s=2.0)

    # assert: the topics it created are gone
    found = re.search(r"(replay-\d+-[0-9a-f]+)\.\*", str(caught.value))
    assert found is not None
    assert _topics(kafka_bootstrap, found.group(1)) == []
