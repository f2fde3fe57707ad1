"""Raw confluent-kafka peer: a subscribed ``Consumer`` → :class:`TickWork` → a ``Producer``.

* ``--guarantee at_least_once``: batches of up to ``BATCH`` records; every ``CHECKPOINT_S``
  (and at the end) the producer is flushed and then the consumed offsets are committed, so an
  offset is committed only after the outputs of its record are delivered.
* ``--guarantee exactly_once``: one transaction per batch: ``begin_transaction`` → outputs →
  ``send_offsets_to_transaction`` (the batch's next offsets, the consumer's group metadata) →
  ``commit_transaction``. The consumer reads committed records only.

Clients are built by :func:`make_consumer` and :func:`make_producer`, one function per kind.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import confluent_kafka
from confluent_kafka import Consumer, Producer, TopicPartition

from benchmarks.peers.common import (
    BATCH,
    CHECKPOINT_S,
    FIRST_RECORD_TIMEOUT_S,
    Encoded,
    PeerResult,
    PeerSpec,
    TickWork,
    Window,
)


def make_consumer(spec: PeerSpec) -> Consumer:
    """The peer's consumer: its own group, from the earliest offset, no automatic commits."""
    return Consumer(
        {
            "bootstrap.servers": spec.bootstrap,
            "group.id": spec.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )


def make_producer(spec: PeerSpec, *, transactional_id: str | None = None) -> Producer:
    """The peer's producer (the baseline's settings); transactional with ``transactional_id``."""
    config: dict[str, Any] = {
        "bootstrap.servers": spec.bootstrap,
        "enable.idempotence": True,
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
    }
    if transactional_id is not None:
        config["transactional.id"] = transactional_id
    return Producer(config)


def produce_all(producer: Producer, items: list[Encoded]) -> None:
    for topic, key, value in items:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)


def consume_batch(consumer: Consumer, left: int, window: Window) -> list[Any]:
    """Up to ``BATCH`` records (never more than ``left``); waits for the first one."""
    deadline = time.monotonic() + FIRST_RECORD_TIMEOUT_S
    while True:
        batch = [m for m in consumer.consume(min(BATCH, left), timeout=1.0) if not m.error()]
        if batch:
            window.open()
            return batch
        if not window.opened and time.monotonic() > deadline:
            raise RuntimeError(f"no record in {FIRST_RECORD_TIMEOUT_S:.0f} s")


def run_at_least_once(spec: PeerSpec, work: TickWork, window: Window) -> None:
    consumer = make_consumer(spec)
    producer = make_producer(spec)
    try:
        consumer.subscribe([spec.source_topic])
        seen = 0
        checkpoint = time.monotonic()
        while seen < spec.ticks:
            batch = consume_batch(consumer, spec.ticks - seen, window)
            for msg in batch:
                produce_all(producer, work.on_value(msg.value()))
            seen += len(batch)
            producer.poll(0)
            if time.monotonic() - checkpoint >= CHECKPOINT_S:
                if producer.flush(60):
                    raise RuntimeError("outputs not delivered")
                consumer.commit(asynchronous=False)
                checkpoint = time.monotonic()
        produce_all(producer, work.encoded(work.finish()))
        if producer.flush(60):
            raise RuntimeError("outputs not delivered")
        consumer.commit(asynchronous=False)
        window.close()
    finally:
        consumer.close()


def run_transactional(spec: PeerSpec, work: TickWork, window: Window) -> None:
    consumer = make_consumer(spec)
    producer = make_producer(spec, transactional_id=f"{spec.group}-tx")
    try:
        producer.init_transactions(30)
        consumer.subscribe([spec.source_topic])
        seen = 0
        while seen < spec.ticks:
            batch = consume_batch(consumer, spec.ticks - seen, window)
            producer.begin_transaction()
            next_offsets: dict[tuple[str, int], int] = {}
            for msg in batch:
                produce_all(producer, work.on_value(msg.value()))
                next_offsets[(msg.topic(), msg.partition())] = msg.offset() + 1
            seen += len(batch)
            if seen >= spec.ticks:
                produce_all(producer, work.encoded(work.finish()))
            producer.send_offsets_to_transaction(
                [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()],
                consumer.consumer_group_metadata(),
                30,
            )
            producer.commit_transaction(60)
        window.close()
    finally:
        consumer.close()


def main(argv: Sequence[str]) -> int:
    spec = PeerSpec.from_argv(argv)
    if spec.commit_every:
        raise SystemExit("--commit-every is for the Quix Streams peer")
    work = TickWork(spec.config())
    window = Window()
    if spec.guarantee == "exactly_once":
        run_transactional(spec, work, window)
        settings: dict[str, Any] = {"batch": BATCH, "transaction": "one per batch"}
    else:
        run_at_least_once(spec, work, window)
        settings = {"batch": BATCH, "checkpoint_s": CHECKPOINT_S}
    PeerResult(
        peer="confluent-kafka",
        guarantee=spec.guarantee,
        ticks=spec.ticks,
        seconds=window.seconds,
        cpu_seconds=window.cpu,
        sent=dict(work.sent),
        client={"confluent-kafka": confluent_kafka.version()[0]},
        settings=settings,
    ).write(spec.result_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
