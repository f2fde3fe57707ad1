"""``huracan demo``: the whole engine on synthetic ticks, and what it made.

:func:`run_pipeline_demo` is the main job (``make demo``): check the services, create a fresh
topic catalog ``demo-<time>.*``, start ``faust -A huracan worker`` on it, publish synthetic ticks,
wait until the pipeline has drained (:func:`~huracan.runtime.drain.wait_until_drained`), print
the counts, decisions by outcome and reason, exposure and latencies, then stop the worker and
delete the topics. Its steps are in its docstring; docs/demo.md shows a recorded run.

``huracan demo --foundation`` runs :func:`run_foundation_demo` instead, no agents: check the
services, create the catalog, produce synthetic ticks for the first ``engine.active_coins``
coins with the configured serde and an idempotent producer, read exactly those offsets back with
an independent ``read_committed`` consumer, and check every tick arrived whole and in per-coin
order. It proves the catalog, the serde and the broker end to end.

The drain wait and the ``/metrics`` parsing live in :mod:`huracan.runtime.drain` (shared with
the Kafka replay and the benchmarks); their names stay importable from here.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, TopicPartition
from rich.console import Console
from rich.table import Table

from huracan.config import HuracanConfig
from huracan.observability.health import check_all
from huracan.runtime.drain import ORDER_COUNTERS, DrainResult, parse_metrics, wait_until_drained
from huracan.simulate import MarketSimulator
from huracan.streams.clients import make_consumer, make_producer
from huracan.streams.serde import make_serde
from huracan.streams.topics import TopicCatalog, delete_topics, ensure_topics
from huracan.wiring import coin_universe


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
    configured = coin_universe(config)
    coins = configured.first(min(config.engine.active_coins, len(configured)))
    coins.sort(key=lambda c: c.symbol != coin)  # the requested coin first, if present
    sim = MarketSimulator(coins, seed=int(time.time()))
    producer = make_producer(config, "demo", overrides={"linger.ms": 5})
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
    consumer = make_consumer(config, "demo-reader", group_id=f"huracan-demo-{uuid.uuid4().hex[:8]}")
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


# ------------------------------------------------------------------------------ pipeline demo


@dataclass
class PipelineDemoSummary:
    ok: bool
    ticks: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, tuple[float, float]] = field(default_factory=dict)
    risk: dict[str, object] = field(default_factory=dict)
    metrics_url: str = ""
    topic_prefix: str = ""


def run_pipeline_demo(
    config: HuracanConfig,
    *,
    coins: int = 100,
    rate: float = 2_000.0,
    duration: float = 15.0,
    settle_timeout: float = 180.0,
    workdir: Path | None = None,
    keep_topics: bool = False,
    console: Console | None = None,
) -> PipelineDemoSummary:
    """The main job: services, topics, a worker, synthetic ticks, and a summary of what happened.

    Steps:

    1. check the services (stop, naming the ones down);
    2. create a fresh topic catalog ``demo-<time>.*`` so the figures are this run's alone;
    3. start ``faust -A huracan worker`` for it as a child process;
    4. publish ``rate × duration`` ticks for ``coins`` coins (progress bar);
    5. wait until every tick has its features and every trade request its decision (no request
       held for ordering, decisions = requests the coin agent sent, counts stable; bounded by
       ``settle_timeout``), then read ``/metrics`` and ``/risk``;
    6. stop the worker and delete the demo's topics (unless ``keep_topics``), print the summary.
    """
    import json
    import shutil
    import tempfile

    from huracan.publish import publish_ticks_with_progress
    from huracan.runtime.worker_launcher import running_worker

    out = console or Console()
    results = check_all(config)
    down = [r.name for r in results if not r.ok]
    if down:
        out.print(f"[red]services down: {', '.join(down)} — start them with `make up`[/red]")
        return PipelineDemoSummary(ok=False)
    prefix = f"demo-{int(time.time())}"
    cfg = config.model_copy(
        update={
            "kafka": config.kafka.model_copy(update={"topic_prefix": prefix}),
            "faust": config.faust.model_copy(update={"app_id": prefix}),
        }
    )
    ensure_topics(cfg)
    out.print(f"  topics: {prefix}.* created")
    own_dir = workdir is None
    work = workdir or Path(tempfile.mkdtemp(prefix="huracan-demo-"))
    summary = PipelineDemoSummary(ok=False, topic_prefix=prefix)
    try:
        with running_worker(cfg, work) as worker:
            summary.metrics_url = f"http://127.0.0.1:{worker.port}/metrics"
            out.print(f"  worker up: pid {worker.process.pid}, {summary.metrics_url}")
            report = publish_ticks_with_progress(
                cfg, out, coins=coins, rate=rate, duration=duration
            )
            summary.ticks = report.ticks
            with out.status("waiting for the pipeline to drain…"):
                drain = wait_until_drained(cfg, worker, report.ticks, timeout_s=settle_timeout)
            summary.counts = drain.counts
            parsed = parse_metrics((worker.get("/metrics") or b"").decode())
            summary.decisions = parsed["decisions"]  # type: ignore[assignment]
            summary.latency_ms = parsed["latency_ms"]  # type: ignore[assignment]
            risk_body = worker.get("/risk")
            summary.risk = json.loads(risk_body) if risk_body else {}
            summary.ok = drain.drained
    finally:
        if not keep_topics:
            delete_topics(cfg)
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)
    _print_pipeline_summary(out, summary)
    return summary


def _print_pipeline_summary(out: Console, s: PipelineDemoSummary) -> None:
    c = s.counts
    table = Table(title="Huracan demo")
    table.add_column("stage")
    table.add_column("records", justify="right")
    for label, key in (
        ("ticks published", None),
        ("feature vectors", "FeatureVector"),
        ("signals", "Signal"),
        ("trade requests", "TradeRequest"),
        ("risk decisions", "RiskDecision"),
        ("executions", "Execution"),
        ("dead letters", "DeadLetter"),
    ):
        table.add_row(label, f"{s.ticks if key is None else c.get(key, 0):,}")
    out.print(table)
    dec = Table(title="decisions by outcome / reason")
    dec.add_column("outcome / reason")
    dec.add_column("count", justify="right")
    for k, v in sorted(s.decisions.items(), key=lambda kv: -kv[1]):
        dec.add_row(k, f"{v:,.0f}")
    out.print(dec)
    risk: dict[str, Any] = dict(s.risk)
    if risk.get("per_sector"):
        exp = Table(title="exposure (% of equity)")
        exp.add_column("scope")
        exp.add_column("name")
        exp.add_column("exposure %", justify="right")
        exp.add_column("limit used %", justify="right")
        g = risk["global"]
        exp.add_row(
            "global", "total", f"{g['total_exposure_pct']:.2f}", f"{g['utilization_pct']:.1f}"
        )
        for scope in ("per_sector", "per_exchange"):
            for name, d in sorted(risk[scope].items()):
                exp.add_row(
                    scope[4:], name, f"{d['exposure_pct']:.2f}", f"{d['utilization_pct']:.1f}"
                )
        out.print(exp)
    lat = Table(title="latency (ms, from histogram buckets: upper bounds)")
    lat.add_column("path")
    lat.add_column("p50", justify="right")
    lat.add_column("p99", justify="right")
    for path, (p50, p99) in sorted(s.latency_ms.items()):
        lat.add_row(path, f"{p50:g}", f"{p99:g}")
    out.print(lat)
    out.print(f"metrics were served at {s.metrics_url} (the worker has stopped)")
    if not s.ok:
        out.print("[red]the pipeline did not drain within the settle timeout[/red]")


__all__ = [
    "ORDER_COUNTERS",
    "DemoSummary",
    "DrainResult",
    "PipelineDemoSummary",
    "delete_topics",
    "parse_metrics",
    "run_foundation_demo",
    "run_pipeline_demo",
    "wait_until_drained",
]
