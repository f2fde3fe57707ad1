"""Transactions on the real single-node broker, from both client libraries the engine uses.

confluent-kafka (librdkafka) drives the tools and benchmarks; aiokafka is what Faust runs on.
Both must see committed records and never see aborted ones with ``read_committed``.
"""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioTopicPartition
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def _create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    for f in futures.values():
        f.result(timeout=30)


def _read_all(bootstrap: str, topic: str, isolation: str, expect_at_least: int) -> list[bytes]:
    """Read the topic from the start until it is drained; return the values seen."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    eof = False
    idle_polls = 0
    try:
        while idle_polls < 20 and not (eof and len(values) >= expect_at_least):
            msg = consumer.poll(0.5)
            if msg is None:
                idle_polls += 1
                continue
            if msg.error():
                if msg.error().code() == -191:  # _PARTITION_EOF
                    eof = True
                    idle_polls += 1
                    continue
                raise KafkaException(msg.error())
            values.append(msg.value())
    finally:
        consumer.close()
    return values


def test_confluent_transaction_when_committed_then_visible_and_aborted_then_invisible(
    kafka_bootstrap: str, unique_name
) -> None:
    # arrange
    topic = unique_name("txn")
    _create_topic(kafka_bootstrap, topic)
    producer = Producer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "transactional.id": f"huracan-test-{uuid.uuid4().hex[:8]}",
            "enable.idempotence": True,
        }
    )
    producer.init_transactions(30)

    # act: one committed transaction, one aborted, one committed
    producer.begin_transaction()
    for i in range(3):
        producer.produce(topic, key=b"BTC", value=f"committed-a-{i}".encode())
    producer.commit_transaction(30)

    producer.begin_transaction()
    for i in range(3):
        producer.produce(topic, key=b"BTC", value=f"aborted-{i}".encode())
    producer.flush(10)
    producer.abort_transaction(30)

    producer.begin_transaction()
    producer.produce(topic, key=b"ETH", value=b"committed-b-0")
    producer.commit_transaction(30)

    # assert
    committed = _read_all(kafka_bootstrap, topic, "read_committed", expect_at_least=4)
    assert committed == [
        b"committed-a-0",
        b"committed-a-1",
        b"committed-a-2",
        b"committed-b-0",
    ]
    uncommitted = _read_all(kafka_bootstrap, topic, "read_uncommitted", expect_at_least=7)
    assert sorted(v for v in uncommitted if v.startswith(b"aborted")) == [
        b"aborted-0",
        b"aborted-1",
        b"aborted-2",
    ]


def test_confluent_transaction_when_offsets_sent_then_consume_transform_produce_is_atomic(
    kafka_bootstrap: str, unique_name
) -> None:
    """The read-process-write step the risk sequencer relies on: output and input offsets
    commit together, or neither does."""
    # arrange
    source, sink = unique_name("src"), unique_name("sink")
    _create_topic(kafka_bootstrap, source)
    _create_topic(kafka_bootstrap, sink)
    seed = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(5):
        seed.produce(source, value=str(i).encode())
    seed.flush(10)
    group = f"xform-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([source])
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"xform-{group}"}
    )
    producer.init_transactions(30)
    got = []
    while len(got) < 5:
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            got.append(msg)

    # act: first attempt aborted (as a crash would), second committed
    for attempt in ("abort", "commit"):
        producer.begin_transaction()
        for m in got:
            producer.produce(sink, value=b"x" + m.value())
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
        )
        if attempt == "abort":
            producer.flush(10)
            producer.abort_transaction(30)
        else:
            producer.commit_transaction(30)
    consumer.close()

    # assert: exactly one copy of the output, and the group's offset moved past the input
    assert _read_all(kafka_bootstrap, sink, "read_committed", 5) == [
        b"x0",
        b"x1",
        b"x2",
        b"x3",
        b"x4",
    ]
    check = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    from confluent_kafka import TopicPartition

    committed = check.committed([TopicPartition(source, 0)], timeout=10)
    check.close()
    assert committed[0].offset == 5


async def _aio_read(bootstrap: str, topic: str, isolation: str, want: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level=isolation,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tp = AioTopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes] = []
        while True:
            batch = await consumer.getmany(tp, timeout_ms=500)
            for records in batch.values():
                values.extend(r.value for r in records)
            position = await consumer.position(tp)
            if position >= end and len(values) >= want:
                break
            if position >= end and not batch:
                break
        return values
    finally:
        await consumer.stop()


async def test_aiokafka_transaction_when_aborted_then_invisible_to_read_committed(
    kafka_bootstrap: str, unique_name
) -> None:
    # arrange
    topic = unique_name("aiotxn")
    _create_topic(kafka_bootstrap, topic)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        transactional_id=f"huracan-aio-{uuid.uuid4().hex[:8]}",
        enable_idempotence=True,
    )
    await producer.start()
    try:
        # act
        async with producer.transaction():
            for i in range(3):
                await producer.send(topic, key=b"SOL", value=f"committed-{i}".encode())

        await producer.begin_transaction()
        for i in range(2):
            await producer.send(topic, key=b"SOL", value=f"aborted-{i}".encode())
        await producer.flush()
        await producer.abort_transaction()

        async with producer.transaction():
            await producer.send(topic, key=b"SOL", value=b"committed-3")
    finally:
        await producer.stop()

    # assert
    committed = await asyncio.wait_for(_aio_read(kafka_bootstrap, topic, "read_committed", 4), 60)
    assert committed == [b"committed-0", b"committed-1", b"committed-2", b"committed-3"]
    everything = await asyncio.wait_for(
        _aio_read(kafka_bootstrap, topic, "read_uncommitted", 6), 60
    )
    assert [v for v in everything if v.startswith(b"aborted")] == [b"aborted-0", b"aborted-1"]
