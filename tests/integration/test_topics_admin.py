"""ensure_topics against the real broker: creation, read-back, idempotence, drift, growth."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from huracan.config import HuracanConfig, build_config
from huracan.streams.dead_letter import build_dead_letter, encode_dead_letter
from huracan.streams.errors import SerdeError, TopicAdminError
from huracan.streams.serde import make_serde
from huracan.streams.topics import TopicCatalog, ensure_topics
from tests.waiting import wait_until

PARTITIONS = {
    "market_data": 3,
    "features": 2,
    "signals": 2,
    "cost_updates": 2,
    "trade_requests": 1,
    "risk_decisions": 1,
    "executions": 3,
    "control": 1,
    "dead_letter": 2,
}


def _config(bootstrap: str, prefix: str, **kafka: Any) -> HuracanConfig:
    section = {
        "bootstrap_servers": bootstrap,
        "topic_prefix": prefix,
        "partitions": PARTITIONS,
        "retention_ms": 86_400_000,
        "dead_letter_retention_ms": 3_600_000,
        **kafka,
    }
    return build_config({"kafka": section}, environ={})


@pytest.fixture
def prefix(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> Iterator[str]:
    """A fresh topic prefix; its topics are deleted afterwards."""
    name = unique_name("topics")
    yield name
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    ours = [t for t in admin.list_topics(timeout=10).topics if t.startswith(name + ".")]
    if ours:
        for future in admin.delete_topics(ours, operation_timeout=30).values():
            future.result(timeout=30)


def _described(bootstrap: str, topics: list[str]) -> dict[str, dict[str, str]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, t) for t in topics])
    return {r.name: {k: v.value for k, v in f.result(30).items()} for r, f in futures.items()}


def _partitions(bootstrap: str) -> dict[str, int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return {n: len(t.partitions) for n, t in admin.list_topics(timeout=10).topics.items()}


def test_ensure_topics_when_missing_then_created_with_configured_settings(
    kafka_bootstrap: str, prefix: str
) -> None:
    # arrange
    config = _config(kafka_bootstrap, prefix)
    catalog = TopicCatalog.from_config(config)

    # act
    reports = ensure_topics(config)

    # assert: reports
    assert [r.topic for r in reports] == catalog.names
    assert {r.status for r in reports} == {"created"}
    # assert: what the broker holds
    on_broker = _partitions(kafka_bootstrap)
    configs = _described(kafka_bootstrap, catalog.names)
    for spec in catalog:
        assert on_broker[spec.name] == spec.partitions, spec.name
        assert configs[spec.name]["cleanup.policy"] == "delete"
        assert configs[spec.name]["min.insync.replicas"] == "1"
    dead_letter = f"{prefix}.dead-letter"
    assert configs[dead_letter]["retention.ms"] == "3600000"
    assert configs[dead_letter]["max.message.bytes"] == str(2 * 1024 * 1024)
    assert configs[f"{prefix}.executions"]["retention.ms"] == "86400000"
    assert on_broker[f"{prefix}.trade-requests"] == 1


def test_ensure_topics_when_run_twice_then_second_reports_exists_and_ok(
    kafka_bootstrap: str, prefix: str
) -> None:
    # arrange
    config = _config(kafka_bootstrap, prefix)
    ensure_topics(config)

    # act
    second = ensure_topics(config)

    # assert
    assert {r.status for r in second} == {"exists"}
    assert all(r.ok for r in second), [r for r in second if not r.ok]
    assert [r.partitions for r in second] == [
        s.partitions for s in TopicCatalog.from_config(config)
    ]


def test_ensure_topics_when_existing_topic_differs_then_reports_drift_and_leaves_it(
    kafka_bootstrap: str, prefix: str
) -> None:
    # arrange: market-data pre-created by hand with 1 partition and another retention
    topic = f"{prefix}.market-data"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    new = NewTopic(topic, num_partitions=1, replication_factor=1, config={"retention.ms": "1000"})
    admin.create_topics([new])[topic].result(30)
    config = _config(kafka_bootstrap, prefix)

    # act
    reports = {r.topic: r for r in ensure_topics(config)}

    # assert
    report = reports[topic]
    assert report.status == "exists"
    assert (report.partitions, report.expected_partitions) == (1, 3)
    assert not report.partitions_match
    assert report.config_drift["retention.ms"] == ("1000", "86400000")
    assert _partitions(kafka_bootstrap)[topic] == 1
    assert reports[f"{prefix}.features"].status == "created"


def test_ensure_topics_when_grow_asked_then_adds_partitions_but_never_shrinks(
    kafka_bootstrap: str, prefix: str
) -> None:
    # arrange: one topic with too few partitions, one with too many
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    few, many = f"{prefix}.market-data", f"{prefix}.signals"
    futures = admin.create_topics(
        [NewTopic(few, num_partitions=1, replication_factor=1), NewTopic(many, 5, 1)]
    )
    for f in futures.values():
        f.result(30)
    config = _config(kafka_bootstrap, prefix)

    # act
    reports = {r.topic: r for r in ensure_topics(config, grow_partitions=True)}

    # assert
    assert reports[few].status == "grown"
    assert reports[few].partitions == 3
    assert reports[many].status == "exists"
    assert (reports[many].partitions, reports[many].expected_partitions) == (5, 2)
    wait_until(lambda: _partitions(kafka_bootstrap)[few] == 3, 30, what="partitions grown")
    assert _partitions(kafka_bootstrap)[many] == 5


def test_ensure_topics_when_admin_factory_given_then_uses_it(
    kafka_bootstrap: str, prefix: str
) -> None:
    # arrange
    seen: list[dict[str, Any]] = []

    def factory(conf: dict[str, Any]) -> AdminClient:
        seen.append(conf)
        return AdminClient(conf)

    # act
    reports = ensure_topics(_config(kafka_bootstrap, prefix), admin_factory=factory)

    # assert
    assert seen == [{"bootstrap.servers": kafka_bootstrap, "client.id": "huracan-topic-admin"}]
    assert len(reports) == 9


def test_ensure_topics_when_replication_impossible_then_topic_admin_error_names_topic(
    kafka_bootstrap: str, prefix: str
) -> None:
    config = _config(kafka_bootstrap, prefix, replication_factor=3)  # one broker only
    with pytest.raises(TopicAdminError, match=rf"{prefix}\.[a-z-]+"):
        ensure_topics(config)


def test_ensure_topics_when_broker_unreachable_then_topic_admin_error() -> None:
    # arrange: a quiet client (librdkafka would log every refused connection)
    config = _config("127.0.0.1:1", "test.unreachable")

    def quiet(conf: dict[str, Any]) -> AdminClient:
        return AdminClient({**conf, "log_level": 0})

    # act / assert
    with pytest.raises(TopicAdminError, match=r"127\.0\.0\.1:1"):
        ensure_topics(config, admin_factory=quiet, timeout_s=2.0)


def _consume(bootstrap: str, topic: str, n: int) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: list[Any] = []

    def poll() -> bool:
        msg = consumer.poll(0.2)
        if msg is not None:
            if msg.error():
                raise KafkaException(msg.error())
            got.append(msg)
        return len(got) >= n

    try:
        wait_until(poll, 30, interval=0, what=f"{n} records on {topic}")
    finally:
        consumer.close()
    return got


def test_catalog_topics_when_serde_records_produced_then_consumed_back_and_dead_lettered(
    kafka_bootstrap: str, prefix: str
) -> None:
    # arrange
    config = _config(kafka_bootstrap, prefix)
    ensure_topics(config)
    serde = make_serde(config)
    catalog = serde.catalog.topics
    spec = catalog.for_event_type("MarketTick")
    tick = {
        "event_id": "tick-1",
        "correlation_id": "tick-1",
        "causation_id": None,
        "coin": "BTC",
        "exchange": "binance",
        "ts": 1_700_000_000_000_000,
        "bid": 1.0,
        "ask": 1.1,
        "last": 1.05,
        "volume": 2.0,
        "seq": 1,
    }
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(spec.name, key=spec.record_key(tick), value=serde.encode("MarketTick", tick))
    producer.produce(spec.name, key=b"BTC", value=b"\x00not-avro")
    producer.flush(30)

    # act: a consumer decodes, dead-letters what it cannot
    decoded, dead = [], []
    for msg in _consume(kafka_bootstrap, spec.name, 2):
        try:
            decoded.append(serde.decode(msg.value(), expected="MarketTick"))
        except SerdeError as exc:
            event = build_dead_letter(
                value=msg.value(),
                topic=msg.topic(),
                partition=msg.partition(),
                offset=msg.offset(),
                key=msg.key(),
                error=exc,
                consumer="test",
                failed_at_us=1,
            )
            key, value = encode_dead_letter(serde, event)
            producer.produce(f"{prefix}.dead-letter", key=key, value=value)
            dead.append(msg)
    producer.flush(30)
    letters = _consume(kafka_bootstrap, f"{prefix}.dead-letter", 1)

    # assert
    assert decoded == [tick]
    letter = serde.decode(letters[0].value(), expected="DeadLetter")
    assert letter["original_value"] == b"\x00not-avro"
    assert letter["reason"] == "bad_magic"
    assert (letter["source_topic"], letter["source_offset"]) == (spec.name, dead[0].offset())
    assert letters[0].key() == b"BTC"


def test_ensure_topics_when_prefix_argument_then_overrides_config_prefix(
    kafka_bootstrap: str, prefix: str
) -> None:
    # arrange: a config whose own prefix must not be used
    config = _config(kafka_bootstrap, "must.not.be.used")

    # act
    reports = ensure_topics(config, prefix=prefix)

    # assert
    assert all(r.topic.startswith(prefix + ".") for r in reports)
    on_broker = _partitions(kafka_bootstrap)
    assert all(r.topic in on_broker for r in reports)
    assert not any(t.startswith("must.not.be.used.") for t in on_broker)
