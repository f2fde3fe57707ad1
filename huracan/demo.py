"""The foundation demo behind ``huracan demo``.

Steps:

1. check that Kafka, Redis and PostgreSQL answer (stop with the failing ones named);
2. create the topic catalog (idempotent);
3. encode synthetic ticks for the first ``engine.active_coins`` coins with the configured serde
   and produce them to ``huracan.market-data`` with an idempotent producer;
4. read exactly those offsets back with an independent ``read_committed`` consumer, decode each,
   and check every tick arrived whole and in per-coin order.

The full pipeline demo (features, signals, risk, executions) replaces steps 3-4 once the agents
land; this one proves the catalog, the serde and the broker end to end.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from rich.console import Console
from rich.table import Table

from huracan.config import HuracanConfig
from huracan.domain.universe import universe
from huracan.observability.health import check_all
from huracan.simulate import MarketSimulator
from huracan.streams.serde import make_serde
from huracan.streams.topics import TopicCatalog, ensure_topics


@dataclass
class DemoSummary:
    ok: bool
    produced: int = 0
    read_back: int = 0
    coins: int = 0
    out_of_order: int = 0
    offsets: dict[int, tuple[int, int]] = field(default_factory=dict)


def run_foundation_demo(
    config: HuracanConfig, *, coin: str = "BTC", ticks: int = 1000, console: Console | None = None
) -> DemoSummary:
    out = console or Console()

    # 1. services
    results = check_all(config)
    for r in results:
        mark = "[green]up[/green]" if r.ok else "[red]DOWN[/red]"
        out.print(f"  {r.name:<9} {mark}  {r.detail}")
    down = [r.name for r in results if not r.ok]
    if down:
        out.print(f"[red]services down: {', '.join(down)} — start them with `make up`[/red]")
        return DemoSummary(ok=False)

    # 2. topics
    reports = ensure_topics(config)
    created = [r.name for r in reports if r.action == "created"]
    out.print(f"  topics: {len(reports)} in the catalog, {len(created)} created now")

    # 3. produce
    serde = make_serde(config)
    catalog = TopicCatalog.from_config(config)
    topic = catalog.for_event_type("MarketTick").name
    coins = universe(config.engine.active_coins)
    coins.sort(key=lambda c: c.symbol != coin)  # the requested coin first, if present
    sim = MarketSimulator(coins, seed=int(time.time()))
    producer = Producer(
        {
            "bootstrap.servers": config.kafka.bootstrap_servers,
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    delivered: list[tuple[int, int]] = []
    errors: list[str] = []

    def on_delivery(err: object, msg: object) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append((msg.partition(), msg.offset()))  # type: ignore[attr-defined]

    order: list[dict[str, object]] = []
    for tick in sim.ticks(ticks):
        value = serde.encode("MarketTick", tick, topic=topic)
        producer.produce(
            topic, key=str(tick["coin"]).encode(), value=value, on_delivery=on_delivery
        )
        order.append(tick)
        producer.poll(0)
    remaining = producer.flush(30)
    if remaining or errors:
        out.print(f"[red]produce failed: {remaining} undelivered, errors: {errors[:3]}[/red]")
        return DemoSummary(ok=False, produced=len(delivered))
    out.print(f"  produced {len(delivered)} ticks for {len(coins)} coins to {topic}")

    # 4. read back exactly what was delivered
    ranges: dict[int, tuple[int, int]] = {}
    for p, o in delivered:
        lo, hi = ranges.get(p, (o, o))
        ranges[p] = (min(lo, o), max(hi, o))
    consumer = Consumer(
        {
            "bootstrap.servers": config.kafka.bootstrap_servers,
            "group.id": f"huracan-demo-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.assign([TopicPartition(topic, p, lo) for p, (lo, _) in ranges.items()])
    want = sum(hi - lo + 1 for lo, hi in ranges.values())
    got: list[dict[str, object]] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < want and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            partition, offset = msg.partition(), msg.offset()
            if partition is None or offset is None:
                continue
            lo, hi = ranges[partition]
            if lo <= offset <= hi:
                got.append(serde.decode(msg.value(), expected="MarketTick"))
    finally:
        consumer.close()
    by_id = {t["event_id"]: t for t in order}
    last_seq: dict[object, int] = {}
    out_of_order = 0
    for t in got:
        seq = int(t["seq"])  # type: ignore[call-overload]
        if seq <= last_seq.get(t["coin"], 0):
            out_of_order += 1
        last_seq[t["coin"]] = seq
    intact = all(by_id.get(t["event_id"]) == t for t in got)

    table = Table(title="foundation demo")
    table.add_column("what")
    table.add_column("value")
    table.add_row("ticks produced", str(len(delivered)))
    table.add_row("ticks read back and decoded", str(len(got)))
    table.add_row("coins", str(len(last_seq)))
    table.add_row("identical to what was sent", "yes" if intact else "NO")
    table.add_row("per-coin order violations", str(out_of_order))
    table.add_row("serde", type(serde).__name__)
    table.add_row("partitions used", str(len(ranges)))
    out.print(table)
    ok = len(got) == len(delivered) and intact and out_of_order == 0
    return DemoSummary(ok, len(delivered), len(got), len(last_seq), out_of_order, ranges)
