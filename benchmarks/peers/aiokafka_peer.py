"""Raw aiokafka peer (at least once): a subscribed ``AIOKafkaConsumer`` → :class:`TickWork` →
an ``AIOKafkaProducer``, on asyncio's default event loop.

Batches of up to ``BATCH`` records (``getmany``); every output is handed to ``send`` (which
returns once the record is in the producer's buffer); every ``CHECKPOINT_S`` (and at the end)
the producer is flushed and then the consumed offsets are committed.

Clients are built by :func:`make_consumer` and :func:`make_producer`, one function per kind.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence

import aiokafka
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from benchmarks.peers.common import (
    BATCH,
    CHECKPOINT_S,
    FIRST_RECORD_TIMEOUT_S,
    PeerResult,
    PeerSpec,
    TickWork,
    Window,
)

#: aiokafka's per-partition batch (its default is 16 KiB) and linger (the confluent peers' 5 ms)
MAX_BATCH_BYTES = 262_144
LINGER_MS = 5


def make_consumer(spec: PeerSpec) -> AIOKafkaConsumer:
    """The peer's consumer: its own group, from the earliest offset, no automatic commits."""
    return AIOKafkaConsumer(
        spec.source_topic,
        bootstrap_servers=spec.bootstrap,
        group_id=spec.group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=BATCH,
    )


def make_producer(spec: PeerSpec) -> AIOKafkaProducer:
    """The peer's producer: idempotent, batched like the confluent peers'."""
    return AIOKafkaProducer(
        bootstrap_servers=spec.bootstrap,
        enable_idempotence=True,
        linger_ms=LINGER_MS,
        max_batch_size=MAX_BATCH_BYTES,
    )


async def run(spec: PeerSpec, work: TickWork, window: Window) -> None:
    consumer = make_consumer(spec)
    producer = make_producer(spec)
    await producer.start()
    await consumer.start()
    try:
        seen = 0
        checkpoint = time.monotonic()
        deadline = time.monotonic() + FIRST_RECORD_TIMEOUT_S
        send = producer.send
        while seen < spec.ticks:
            batches = await consumer.getmany(
                timeout_ms=1000, max_records=min(BATCH, spec.ticks - seen)
            )
            if not batches:
                if not window.opened and time.monotonic() > deadline:
                    raise RuntimeError(f"no record in {FIRST_RECORD_TIMEOUT_S:.0f} s")
                continue
            window.open()
            for records in batches.values():
                for msg in records:
                    for topic, key, value in work.on_value(msg.value):
                        await send(topic, value, key=key)
                seen += len(records)
            if time.monotonic() - checkpoint >= CHECKPOINT_S:
                await producer.flush()
                await consumer.commit()
                checkpoint = time.monotonic()
        for topic, key, value in work.encoded(work.finish()):
            await send(topic, value, key=key)
        await producer.flush()
        await consumer.commit()
        window.close()
    finally:
        await consumer.stop()
        await producer.stop()


def main(argv: Sequence[str]) -> int:
    spec = PeerSpec.from_argv(argv)
    if spec.commit_every:
        raise SystemExit("--commit-every is for the Quix Streams peer")
    if spec.guarantee != "at_least_once":
        raise SystemExit("the aiokafka peer runs at least once only")
    work = TickWork(spec.config())
    window = Window()
    asyncio.run(run(spec, work, window))
    PeerResult(
        peer="aiokafka",
        guarantee=spec.guarantee,
        ticks=spec.ticks,
        seconds=window.seconds,
        cpu_seconds=window.cpu,
        sent=dict(work.sent),
        client={"aiokafka": aiokafka.__version__},
        settings={
            "batch": BATCH,
            "checkpoint_s": CHECKPOINT_S,
            "linger_ms": LINGER_MS,
            "max_batch_size": MAX_BATCH_BYTES,
        },
    ).write(spec.result_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
