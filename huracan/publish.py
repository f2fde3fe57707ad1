"""Publishing synthetic market data to Kafka at a target rate (``huracan simulate``).

Ticks come from :class:`huracan.simulate.MarketSimulator`, are encoded once with the configured
serde and produced keyed by coin (so each coin keeps its order in its partition), with the
record timestamp set to the tick's event time. The rate is held by sleeping between batches of
``rate / 50`` ticks; when the producer cannot keep up, the achieved rate is what is reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, Producer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from huracan.config import HuracanConfig
from huracan.simulate import MarketSimulator
from huracan.streams.clients import make_producer
from huracan.streams.serde import make_serde
from huracan.streams.topics import TopicCatalog
from huracan.wiring import coin_universe


@dataclass(frozen=True)
class PublishReport:
    ticks: int
    coins: int
    seconds: float
    topic: str
    failed: int

    @property
    def rate(self) -> float:
        return self.ticks / self.seconds if self.seconds > 0 else 0.0


def produce_tick(
    producer: Producer, topic: str, tick: Mapping[str, Any], value: bytes, on_delivery: Any
) -> None:
    """Produce one encoded tick keyed by coin, record time = tick time; when the local queue is
    full, serve delivery reports until it has room (never drops, never raises BufferError)."""
    while True:
        try:
            producer.produce(
                topic,
                key=str(tick["coin"]).encode(),
                value=value,
                timestamp=int(tick["ts"]) // 1000,
                on_delivery=on_delivery,
            )
            return
        except BufferError:
            producer.poll(0.05)


def publish_ticks(
    config: HuracanConfig,
    *,
    coins: int,
    rate: float,
    duration: float,
    seed: int = 7,
    start_ts_us: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> PublishReport:
    """Publish ``rate × duration`` ticks for the first ``coins`` coins; returns what was sent.

    Raises :class:`confluent_kafka.KafkaException` when records could not be delivered.
    """
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    total = int(rate * duration)
    topic = TopicCatalog.from_config(config).for_event_type("MarketTick").name
    serde = make_serde(config)
    start = start_ts_us if start_ts_us is not None else time.time_ns() // 1000
    configured = coin_universe(config)
    if coins > len(configured):
        raise ValueError(
            f"asked for {coins} coins, the configured universe holds {len(configured)}"
        )
    sim = MarketSimulator(configured.first(coins), seed=seed, start_ts_us=start, rate=rate)
    producer = make_producer(
        config,
        "publisher",
        overrides={
            "linger.ms": 5,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            "compression.type": "lz4",
        },
    )
    failed = 0

    def on_delivery(err: object, _msg: object) -> None:
        nonlocal failed
        if err is not None:
            failed += 1

    batch = max(1, int(rate / 50))
    t0 = time.monotonic()
    sent = 0
    while sent < total:
        n = min(batch, total - sent)
        for tick in sim.ticks(n):
            value = serde.encode("MarketTick", tick, topic=topic)
            produce_tick(producer, topic, tick, value, on_delivery)
        sent += n
        producer.poll(0)
        if on_progress:
            on_progress(n)
        ahead = sent / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
    remaining = producer.flush(60)
    seconds = time.monotonic() - t0
    if remaining or failed:
        raise KafkaException(f"{remaining + failed} of {total} ticks were not delivered to {topic}")
    return PublishReport(sent, coins, seconds, topic, failed)


def publish_ticks_with_progress(
    config: HuracanConfig,
    console: Console,
    *,
    coins: int,
    rate: float,
    duration: float,
    seed: int = 7,
) -> PublishReport:
    """:func:`publish_ticks` with a rich progress bar on ``console``."""
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(
            f"ticks ({coins} coins @ {rate:,.0f}/s)", total=int(rate * duration)
        )
        return publish_ticks(
            config,
            coins=coins,
            rate=rate,
            duration=duration,
            seed=seed,
            on_progress=lambda n: progress.advance(task, n),
        )
