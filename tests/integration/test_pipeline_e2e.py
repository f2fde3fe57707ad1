"""The whole engine under `faust -A huracan worker` on the real broker, checked from outside."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer

from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator
from huracan.streams.serde import make_serde
from huracan.streams.topics import TopicCatalog
from tests.integration.pipeline_support import (
    create_topics,
    engine_run,
    http_json,
    pipeline_config,
    publish_ticks,
    read_topic,
    running_worker,
    topic_counts,
)
from tests.waiting import wait_until

N_TICKS = 3_000
T0 = 1_767_225_600_000_000


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_pipeline_when_ticks_flow_then_same_decisions_and_executions_as_the_engine_byte_for_byte(
    kafka_bootstrap: str, tmp_path: Path, unique_name, guarantee: str
) -> None:
    # arrange: the in-process engine over the same ticks says what live must do
    cfg = pipeline_config(kafka_bootstrap, unique_name("e2e"), guarantee=guarantee)
    create_topics(cfg)
    serde = make_serde(cfg)
    ticks = list(MarketSimulator(universe(20), seed=5, start_ts_us=T0, rate=500).ticks(N_TICKS))
    engine, expected_decisions, expected_executions = engine_run(cfg, ticks)
    assert engine.stats.signals > 0
    assert {d["decision"] for d in expected_decisions} >= {"APPROVE", "BLOCK"}
    assert {e["action"] for e in expected_executions} == {"OPEN", "CLOSE"}

    with running_worker(cfg, tmp_path) as (_proc, port):
        # act
        publish_ticks(cfg, ticks)

        # assert: every fact arrives, exactly once
        wait_until(
            lambda: topic_counts(cfg)["FeatureVector"] == N_TICKS,
            120,
            interval=0.5,
            what="features",
        )
        wait_until(
            lambda: topic_counts(cfg)["RiskDecision"] == len(expected_decisions),
            180,
            interval=1.0,
            what="every trade request decided",
        )
        wait_until(
            lambda: topic_counts(cfg)["Execution"] == len(expected_executions),
            120,
            interval=1.0,
            what="every approved decision executed",
        )
        risk = http_json(port, "/risk")
        consumer = http_json(port, "/consumer")
        counts = topic_counts(cfg)
        features = read_topic(cfg, "FeatureVector")
        signals = read_topic(cfg, "Signal")
        requests = read_topic(cfg, "TradeRequest")
        decisions = read_topic(cfg, "RiskDecision")
        executions = read_topic(cfg, "Execution")

    # read_committed: each fact once (exactly once also holds here at least once: no failure)
    assert len(features) == len({f["event_id"] for f in features}) == N_TICKS
    assert len(requests) == len({r["request_id"] for r in requests}) == len(expected_decisions)
    assert len(signals) == engine.stats.signals
    # the one-partition decision log is the engine's, in the same order, byte for byte
    assert [serde.encode("RiskDecision", d) for d in decisions] == [
        serde.encode("RiskDecision", d) for d in expected_decisions
    ]
    # executions are spread over coin partitions: the same records, byte for byte
    assert sorted(serde.encode("Execution", e) for e in executions) == sorted(
        serde.encode("Execution", e) for e in expected_executions
    )
    # exposure held by the sequencer equals the fold of the executions topic
    open_trades: set[str] = set()
    for e in sorted(executions, key=lambda e: (e["ts"], e["action"] != "OPEN")):
        if e["action"] == "OPEN":
            open_trades.add(e["trade_id"])
        else:
            open_trades.discard(e["trade_id"])
    assert risk["active_trades"] == len(open_trades)
    assert counts["DeadLetter"] == 0
    # /consumer: every market-data partition assigned and fetched, none held back, buffers empty
    market = TopicCatalog.from_config(cfg).for_event_type("MarketTick").name
    assert {p for p in consumer["assigned"] if p.startswith(market + ":")} == {
        f"{market}:{i}" for i in range(cfg.kafka.partitions.market_data)
    }
    assert set(consumer["assigned"]) - set(consumer["paused"]) <= set(consumer["active"])
    assert consumer["buffered"] == []
    assert consumer["flow_active"] is True
    assert consumer["streams"]
    # drained: nothing waits in a stream buffer but, at most, a sequencer heartbeat or two
    assert sum(v["size"] for v in consumer["streams"].values()) <= 2


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_pipeline_when_malformed_records_then_dead_lettered_and_the_rest_processed(
    kafka_bootstrap: str, tmp_path: Path, unique_name, guarantee: str
) -> None:
    # arrange
    cfg = pipeline_config(kafka_bootstrap, unique_name("dlq"), partitions=2, guarantee=guarantee)
    create_topics(cfg)
    ticks = list(MarketSimulator(universe(5), seed=9, start_ts_us=T0, rate=500).ticks(400))
    topic = TopicCatalog.from_config(cfg).for_event_type("MarketTick").name
    bad = [b"", b"\xc3\x01garbage", b"not avro at all", b"\x00\x00\x00\x00\x07junk"]

    with running_worker(cfg, tmp_path) as _:
        # act: good ticks with malformed records in between
        publish_ticks(cfg, ticks[:200])
        producer = Producer({"bootstrap.servers": cfg.kafka.bootstrap_servers})
        for i, value in enumerate(bad):
            producer.produce(topic, key=b"BTC", value=value, partition=i % 2)
        assert producer.flush(10) == 0
        publish_ticks(cfg, ticks[200:])

        # assert
        wait_until(
            lambda: topic_counts(cfg)["FeatureVector"] == 400, 120, interval=0.5, what="features"
        )
        wait_until(
            lambda: topic_counts(cfg)["DeadLetter"] >= len(bad),
            60,
            interval=0.5,
            what="dead letters",
        )
        letters = read_topic(cfg, "DeadLetter")

    # the coin agent dead-letters each bad record once, with its bytes
    mine = [d for d in letters if d["consumer"] == "coin" and d["source_topic"] == topic]
    assert sorted(d["original_value"] for d in mine) == sorted(bad)
    assert all(d["reason"] for d in mine)
    assert len(letters) == len(bad)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_pipeline_when_kill_switch_event_then_next_open_requests_blocked(
    kafka_bootstrap: str, tmp_path: Path, unique_name, guarantee: str
) -> None:
    # arrange
    cfg = pipeline_config(kafka_bootstrap, unique_name("kill"), partitions=2, guarantee=guarantee)
    create_topics(cfg)
    serde = make_serde(cfg)
    catalog = TopicCatalog.from_config(cfg)
    producer = Producer({"bootstrap.servers": cfg.kafka.bootstrap_servers})

    def request(n: int) -> bytes:
        return serde.encode(
            "TradeRequest",
            {"event_id": f"treq:{n}", "correlation_id": f"c{n}", "causation_id": None,
             "request_id": f"manual-{n}", "coin": "BTC", "ts": T0 + n, "signal_ts": T0 + n,
             "direction": "LONG", "size_usd": 1_000.0, "exchange": "binance", "sector": "L1",
             "edge_bps": 20.0, "edge_after_cost_bps": 10.0, "intent": "OPEN", "trade_id": None,
             "model_version": "manual", "bid": 100.0, "ask": 100.1, "exit_reason": None},
        )  # fmt: skip

    requests_topic = catalog.for_event_type("TradeRequest").name
    control_topic = catalog.for_event_type("ControlEvent").name
    with running_worker(cfg, tmp_path) as (_proc, port):
        # act: one request, the kill switch, one more request
        producer.produce(requests_topic, key=b"BTC", value=request(1))
        producer.flush(10)
        wait_until(
            lambda: topic_counts(cfg)["RiskDecision"] == 1, 60, interval=0.5, what="first decision"
        )
        producer.produce(
            control_topic,
            key=b"control",
            value=serde.encode(
                "ControlEvent",
                {
                    "event_id": "ctl-1",
                    "correlation_id": "ctl-1",
                    "causation_id": None,
                    "command": "KILL_SWITCH_ON",
                    "key": None,
                    "value": None,
                    "ts": T0 + 10,
                    "operator": "test",
                    "reason": "drill",
                },
            ),
        )
        producer.flush(10)
        wait_until(
            lambda: (
                (http_json(port, "/risk") or {})
                .get("breakers", {})
                .get("kill_switch", {})
                .get("tripped")
            ),
            60,
            what="the kill switch to be applied",
        )
        producer.produce(requests_topic, key=b"BTC", value=request(2))
        producer.flush(10)
        wait_until(
            lambda: topic_counts(cfg)["RiskDecision"] == 2, 60, interval=0.5, what="second decision"
        )
        decisions = {d["request_id"]: d for d in read_topic(cfg, "RiskDecision")}
        health = http_json(port, "/health")

    # assert
    assert decisions["manual-1"]["decision"] == "APPROVE"
    assert decisions["manual-2"]["decision"] == "BLOCK"
    assert decisions["manual-2"]["reason_code"] == "kill_switch"
    assert health["ok"] is False
    assert health["breakers"]["kill_switch"]["tripped"] is True
