"""Transactional topics on the real broker: what the engine counts and recovers under
exactly_once (RecordCounter, the recovery's marker probe)."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from faust.types import TP

from huracan.agents.faust_fixes.recovery import ends_in_marker
from huracan.streams.topics import RecordCounter, TopicCatalog, record_counts
from tests.integration.pipeline_support import create_topics, pipeline_config


def _transactional(bootstrap: str) -> Producer:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": f"counter-{uuid.uuid4().hex}"}
    )
    producer.init_transactions(30)
    return producer


def _produce(producer: Producer, topic: str, partition: int, n: int) -> None:
    for i in range(n):
        producer.produce(topic, value=b"x%d" % i, partition=partition)
    producer.flush(30)


def test_record_counter_when_transactions_commit_abort_or_stay_open_then_committed_only(
    kafka_bootstrap: str, unique_name
) -> None:
    # arrange: features partition 0 gets 5 committed and 3 aborted records; partition 1 gets
    # 2 records of a transaction left open, then 4 committed in a later one
    cfg = pipeline_config(kafka_bootstrap, unique_name("count"), guarantee="exactly_once")
    create_topics(cfg)
    topic = TopicCatalog.from_config(cfg).for_event_type("FeatureVector").name
    a, b = _transactional(kafka_bootstrap), _transactional(kafka_bootstrap)
    a.begin_transaction()
    _produce(a, topic, 0, 5)
    a.commit_transaction(30)
    a.begin_transaction()
    _produce(a, topic, 0, 3)
    a.abort_transaction(30)
    b.begin_transaction()
    _produce(b, topic, 1, 2)

    with RecordCounter(cfg) as counter:
        # act / assert: the open transaction is not counted, markers and aborted records neither
        assert counter.counts()["FeatureVector"] == 5
        b.commit_transaction(30)
        b.begin_transaction()
        _produce(b, topic, 1, 4)
        b.commit_transaction(30)
        # asked again, it reads only what came since
        assert counter.counts()["FeatureVector"] == 11
        assert counter.counts()["Signal"] == 0
    assert record_counts(cfg)["FeatureVector"] == 11
    # at least once the high watermarks are the count: 5 + 3 + 2 + 4 records and 4 markers
    alo = pipeline_config(kafka_bootstrap, cfg.kafka.topic_prefix, guarantee="at_least_once")
    assert record_counts(alo)["FeatureVector"] == 18


def test_ends_in_marker_when_partitions_end_in_commit_abort_or_data_then_markers_only(
    kafka_bootstrap: str, unique_name
) -> None:
    # arrange: p0 a committed transaction, p1 plain records, p2 an aborted transaction,
    # p3 a committed transaction and then one left open (its stable offset is before it)
    topic = unique_name("markers")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(topic, 4, 1)]).values():
        future.result(30)
    tx, open_tx = _transactional(kafka_bootstrap), _transactional(kafka_bootstrap)
    tx.begin_transaction()
    _produce(tx, topic, 0, 3)
    tx.commit_transaction(30)
    plain = Producer({"bootstrap.servers": kafka_bootstrap})
    _produce(plain, topic, 1, 3)
    tx.begin_transaction()
    _produce(tx, topic, 2, 3)
    tx.abort_transaction(30)
    tx.begin_transaction()
    _produce(tx, topic, 3, 3)
    tx.commit_transaction(30)
    open_tx.begin_transaction()
    _produce(open_tx, topic, 3, 2)
    reader = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": "probe-test",
         "isolation.level": "read_committed"}
    )  # fmt: skip
    stable = {
        TP(topic, p): reader.get_watermark_offsets(TopicPartition(topic, p), 10, cached=False)[1]
        for p in range(4)
    }
    reader.close()
    assert stable == {TP(topic, 0): 4, TP(topic, 1): 3, TP(topic, 2): 4, TP(topic, 3): 4}

    # act
    markers = ends_in_marker(pipeline_config(kafka_bootstrap, unique_name("probe")), stable)

    # assert
    assert markers == {TP(topic, 0), TP(topic, 2), TP(topic, 3)}
    open_tx.abort_transaction(30)
