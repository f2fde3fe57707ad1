"""The whole pipeline under ``faust -A huracan worker`` next to a raw confluent-kafka loop, one run.

400 coins, one worker, 12 market-data partitions (the base config), fresh topics per phase
(prefix ``bench-pipe-<time>-…``, deleted afterwards, with the worker's changelog topics).

a. **Throughput.** ``N`` ticks are published to market-data *before* the worker starts; the
   worker then consumes them as fast as it can. The run is over when the features topic holds
   ``N`` records and the decisions and executions topics hold exactly as many records as the
   in-process engine (:func:`huracan.wiring.build_engine`) makes for the same ticks (live and
   replay decide the same). Times come from the broker, not from polling: each output record's
   timestamp is its producer's wall clock, so ``coin stage`` = N / (last feature − first
   feature) and ``through execution`` = N / (last decision or execution − first feature).
   Median over ``REPEATS`` runs, each on its own topics and consumer group.
b. **Latency.** A worker is started first; ticks are then published at ``LAT_RATE`` per second
   stamped with the wall clock (:func:`huracan.publish.publish_ticks`). Latency per record =
   its Kafka timestamp (when the agent produced it) − the tick's event time: tick→feature from
   the features topic, tick→execution from the executions topic (this includes the
   sequencer's event-time ordering wait). When the worker cannot sustain ``LAT_RATE``, a second
   pass runs at a rate it sustains (a fraction of the measured throughput), and the note says so.
c. **Baseline.** One loop in this process: a raw confluent-kafka ``Consumer`` (batches of
   500) → the same serde → ``build_engine(cfg).on_tick`` per tick (``finish()`` at the end) →
   the same five outputs (features, signals, trade requests, decisions, executions) encoded
   with the same serde and produced with a confluent-kafka ``Producer``; timed from the first
   record consumed to the last output delivered. It keeps no changelog and sends no watermarks
   (the worker does both), and it consumes partitions interleaved, so its order buffer sees a
   few late requests: the same work per tick, not the same guarantees.
d. **Profile.** One more throughput run with ``py-spy record --nonblocking`` attached to the
   worker (sampling, 100 Hz, CPU-active samples only): the top-25 functions by inclusive
   samples go to ``results/pipeline_profile.txt``, self time by package into the JSON.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from benchmarks.harness import RESULTS_DIR, Report
from huracan.config import HuracanConfig, build_config
from huracan.demo import parse_metrics
from huracan.domain.universe import universe
from huracan.publish import publish_ticks
from huracan.simulate import MarketSimulator
from huracan.streams.serde import Serde, make_serde
from huracan.streams.topics import TopicCatalog, ensure_topics, record_counts
from huracan.wiring import build_engine
from huracan.worker_process import WorkerHandle, running_worker

COINS = 400
N = 40_000
REPEATS = 2
LAT_RATE = 10_000.0
LAT_SECONDS = 5.0
#: the sequencer releases the last held requests after this long without a watermark
ORDER_IDLE_MS = 250
DRAIN_TIMEOUT_S = 150.0


# ------------------------------------------------------------------------------ topics & config


def bench_config(prefix: str) -> HuracanConfig:
    """The base config on topics ``<prefix>.*`` with app id ``prefix`` (service addresses and
    ``HURACAN__…`` overrides from the environment)."""
    return build_config(
        {
            "kafka": {"topic_prefix": prefix},
            "faust": {"app_id": prefix, "order_idle_ms": ORDER_IDLE_MS},
        },
        environ=os.environ,
    )


def new_prefix(kind: str) -> str:
    return f"bench-{kind}-{int(time.time())}-{uuid.uuid4().hex[:6]}"


def delete_topics(cfg: HuracanConfig) -> None:
    """Delete every topic whose name starts with the config's prefix (the catalog's and the
    worker's changelog topics, which are named after the app id = the prefix)."""
    admin = AdminClient({"bootstrap.servers": cfg.kafka.bootstrap_servers})
    prefix = cfg.kafka.topic_prefix
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001 - cleanup goes on; say what stayed
                print(f"  could not delete a topic of {prefix}: {exc}", file=sys.stderr)


def topic_name(cfg: HuracanConfig, event_type: str) -> str:
    return TopicCatalog.from_config(cfg).for_event_type(event_type).name


def _producer(cfg: HuracanConfig) -> Producer:
    return Producer(
        {
            "bootstrap.servers": cfg.kafka.bootstrap_servers,
            "linger.ms": 5,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def _produce(producer: Producer, topic: str, key: bytes, value: bytes, **kw: Any) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value, **kw)
            return
        except BufferError:
            producer.poll(0.05)


def simulated_ticks(
    n: int, *, seed: int = 7, start_ts_us: int | None = None
) -> list[dict[str, Any]]:
    """``n`` ticks for ``COINS`` coins (event time from now unless ``start_ts_us``)."""
    start = start_ts_us if start_ts_us is not None else time.time_ns() // 1000
    return list(MarketSimulator(universe(COINS), seed=seed, start_ts_us=start).ticks(n))


def publish_all(cfg: HuracanConfig, ticks: Iterable[dict[str, Any]]) -> int:
    """Produce ``ticks`` to market-data as fast as possible (keyed by coin); the count."""
    serde = make_serde(cfg)
    topic = topic_name(cfg, "MarketTick")
    producer = _producer(cfg)
    n = 0
    for tick in ticks:
        _produce(
            producer,
            topic,
            str(tick["coin"]).encode(),
            serde.encode("MarketTick", tick, topic=topic),
            timestamp=int(tick["ts"]) // 1000,
        )
        n += 1
        if n % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60):
        raise RuntimeError(f"ticks not delivered to {topic}")
    return n


@dataclass
class Expected:
    """What the in-process engine makes of the ticks (the worker must make the same)."""

    decisions: int
    executions: int
    signals: int
    requests: int
    seconds: float


def expected_outputs(cfg: HuracanConfig, ticks: list[dict[str, Any]]) -> Expected:
    engine = build_engine(cfg)
    decisions = executions = 0
    t0 = time.perf_counter()
    for t in ticks:
        out = engine.on_tick(t)
        decisions += len(out.decisions)
        executions += len(out.executions)
    out = engine.finish()
    dt = time.perf_counter() - t0
    decisions += len(out.decisions)
    executions += len(out.executions)
    return Expected(decisions, executions, engine.stats.signals, engine.stats.requests, dt)


# ------------------------------------------------------------------------------ broker timestamps


def _edge_timestamps(cfg: HuracanConfig, topic: str, last: bool) -> list[float]:
    """Kafka timestamps (s) of the first (or last) record of each non-empty partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": cfg.kafka.bootstrap_servers,
            "group.id": f"bench-edges-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        assign = []
        for p in parts:
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if hi > lo:
                assign.append(TopicPartition(topic, p, hi - 1 if last else lo))
        consumer.assign(assign)
        out: dict[int, float] = {}
        deadline = time.monotonic() + 30
        while len(out) < len(assign) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            out.setdefault(msg.partition(), msg.timestamp()[1] / 1000.0)
        return list(out.values())
    finally:
        consumer.close()


def read_topic_latencies(
    cfg: HuracanConfig, event_type: str, serde: Serde
) -> tuple[list[float], int]:
    """(Kafka timestamp − record ``ts``) in ms for every record of one topic, and the count."""
    topic = topic_name(cfg, event_type)
    consumer = Consumer(
        {
            "bootstrap.servers": cfg.kafka.bootstrap_servers,
            "group.id": f"bench-lat-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    lat: list[float] = []
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        eof: set[int] = set()
        while len(eof) < len(parts):
            for msg in consumer.consume(1000, timeout=2.0) or []:
                if msg.error():
                    eof.add(msg.partition())
                    continue
                rec = serde.decode(msg.value(), expected=event_type)
                lat.append(msg.timestamp()[1] - rec["ts"] / 1000.0)
    finally:
        consumer.close()
    return lat, len(lat)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# ------------------------------------------------------------------------------ the worker runs


@dataclass
class WorkerRun:
    ticks: int
    coin_stage_rate: float
    through_execution_rate: float
    seconds: float
    counts: dict[str, int]
    drained: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)


def wait_drained(
    cfg: HuracanConfig,
    worker: WorkerHandle,
    *,
    ticks: int,
    expected: Expected | None,
    timeout: float = DRAIN_TIMEOUT_S,
) -> tuple[bool, dict[str, int]]:
    """Poll (every 0.5 s) until every tick has its features and every trade request its
    decision and execution: with ``expected``, the engine's counts; without, the worker's own
    request counter with nothing held, stable for three polls. (drained?, last counts)."""
    deadline = time.monotonic() + timeout
    last: dict[str, int] = {}
    stable = 0
    while time.monotonic() < deadline:
        counts = record_counts(cfg)
        if expected is not None:
            if (
                counts["FeatureVector"] >= ticks
                and counts["RiskDecision"] >= expected.decisions
                and counts["Execution"] >= expected.executions
            ):
                return True, counts
        else:
            parsed = parse_metrics((worker.get("/metrics") or b"").decode())
            counts["requests"] = int(parsed["requests"])
            done = (
                counts["FeatureVector"] >= ticks
                and parsed["held"] == 0
                and counts["RiskDecision"] == counts["requests"]
            )
            stable = stable + 1 if done and counts == last else 0
            if stable >= 3:
                return True, counts
        last = counts
        time.sleep(0.5)
    return False, last


def throughput_run(
    ticks: list[dict[str, Any]],
    expected: Expected,
    workdir: Path,
    *,
    profile_to: Path | None = None,
) -> WorkerRun:
    """Publish ``ticks`` to fresh topics, start a worker, wait until it has made everything
    the engine makes, and measure from the broker's timestamps (see the module docstring)."""
    cfg = bench_config(new_prefix("pipe"))
    ensure_topics(cfg)
    spy: subprocess.Popen[bytes] | None = None
    try:
        publish_all(cfg, ticks)
        with running_worker(cfg, workdir / cfg.kafka.topic_prefix) as worker:
            if profile_to is not None:
                spy = start_profiler(worker.process.pid, profile_to)
            drained, counts = wait_drained(cfg, worker, ticks=len(ticks), expected=expected)
            if spy is not None:
                stop_profiler(spy)
            metrics = parse_metrics((worker.get("/metrics") or b"").decode())
        first = min(_edge_timestamps(cfg, topic_name(cfg, "FeatureVector"), last=False))
        last_feature = max(_edge_timestamps(cfg, topic_name(cfg, "FeatureVector"), last=True))
        last_out = max(
            _edge_timestamps(cfg, topic_name(cfg, "RiskDecision"), last=True)
            + _edge_timestamps(cfg, topic_name(cfg, "Execution"), last=True)
            + [last_feature]
        )
        n = len(ticks)
        return WorkerRun(
            ticks=n,
            coin_stage_rate=n / (last_feature - first),
            through_execution_rate=n / (last_out - first),
            seconds=last_out - first,
            counts=counts,
            drained=drained,
            metrics=metrics,
        )
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
        delete_topics(cfg)


@dataclass
class LatencyRun:
    target_rate: float
    achieved_rate: float
    ticks: int
    drained: bool
    feature_ms: list[float]
    execution_ms: list[float]

    def row(self) -> dict[str, float]:
        f, e = self.feature_ms, self.execution_ms
        return {
            "target_rate": self.target_rate,
            "achieved_publish_rate": self.achieved_rate,
            "ticks": self.ticks,
            "tick_to_feature_p50_ms": percentile(f, 0.5),
            "tick_to_feature_p99_ms": percentile(f, 0.99),
            "tick_to_execution_p50_ms": percentile(e, 0.5),
            "tick_to_execution_p99_ms": percentile(e, 0.99),
            "executions": len(e),
        }


def latency_run(rate: float, seconds: float, workdir: Path) -> LatencyRun:
    """A worker first, then ticks at ``rate`` stamped with the wall clock; latencies from
    the output topics' timestamps."""
    cfg = bench_config(new_prefix("lat"))
    ensure_topics(cfg)
    try:
        with running_worker(cfg, workdir / cfg.kafka.topic_prefix) as worker:
            sent = publish_ticks(cfg, coins=COINS, rate=rate, duration=seconds, seed=11)
            drained, _ = wait_drained(cfg, worker, ticks=sent.ticks, expected=None)
        serde = make_serde(cfg)
        feature_ms, _ = read_topic_latencies(cfg, "FeatureVector", serde)
        execution_ms, _ = read_topic_latencies(cfg, "Execution", serde)
        return LatencyRun(rate, sent.rate, sent.ticks, drained, feature_ms, execution_ms)
    finally:
        delete_topics(cfg)


# ------------------------------------------------------------------------------ the baseline


def baseline_run(source: HuracanConfig, n: int) -> tuple[float, dict[str, int]]:
    """The raw confluent-kafka loop over ``source``'s market-data topic (see module docstring);
    outputs go to topics of their own. (ticks/s, records produced by event type)."""
    out_cfg = bench_config(new_prefix("base"))
    ensure_topics(out_cfg)
    serde = make_serde(out_cfg)
    names = {e: topic_name(out_cfg, e) for e in ("FeatureVector", "Signal", "TradeRequest")}
    names |= {e: topic_name(out_cfg, e) for e in ("RiskDecision", "Execution")}
    src = topic_name(source, "MarketTick")
    consumer = Consumer(
        {
            "bootstrap.servers": source.kafka.bootstrap_servers,
            "group.id": f"bench-base-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.min.bytes": 1,
        }
    )
    producer = _producer(out_cfg)
    sent: Counter[str] = Counter()
    failed = 0

    def delivered(err: object, _msg: object) -> None:
        nonlocal failed
        if err is not None:
            failed += 1

    def emit(event_type: str, key: bytes, record: dict[str, Any]) -> None:
        topic = names[event_type]
        _produce(
            producer,
            topic,
            key,
            serde.encode(event_type, record, topic=topic),
            on_delivery=delivered,
        )
        sent[event_type] += 1

    def emit_output(out: Any) -> None:
        if out.features is not None:
            key = out.features.coin.encode()
            emit("FeatureVector", key, out.features.to_record())
        if out.signal is not None:
            emit("Signal", out.signal.coin.encode(), out.signal.to_record())
        for r in out.requests:
            emit("TradeRequest", str(r["coin"]).encode(), r)
        for d in out.decisions:
            emit("RiskDecision", str(d["coin"]).encode(), d)
        for x in out.executions:
            emit("Execution", str(x["coin"]).encode(), x)

    try:
        parts = consumer.list_topics(src, timeout=10).topics[src].partitions
        consumer.assign([TopicPartition(src, p, 0) for p in parts])
        engine = build_engine(source)
        seen = 0
        t0: float | None = None
        while seen < n:
            batch = consumer.consume(500, timeout=5.0)
            if not batch:
                raise RuntimeError(f"baseline: market-data ran dry after {seen} of {n} ticks")
            if t0 is None:
                t0 = time.perf_counter()
            for msg in batch:
                if msg.error():
                    continue
                seen += 1
                emit_output(engine.on_tick(serde.decode(msg.value(), expected="MarketTick")))
            producer.poll(0)
        emit_output(engine.finish())
        if producer.flush(60) or failed:
            raise RuntimeError("baseline: outputs not delivered")
        assert t0 is not None
        return seen / (time.perf_counter() - t0), dict(sent)
    finally:
        consumer.close()
        delete_topics(out_cfg)


# ------------------------------------------------------------------------------ the profile


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """``py-spy record`` on ``pid`` into ``out`` (collapsed stacks); None when py-spy is
    missing (``pip install py-spy``)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        return None
    return subprocess.Popen(  # noqa: S603 - py-spy from our own venv
        [
            *(exe, "record", "--pid", str(pid), "--rate", "100", "--nonblocking"),
            *("--function", "--format", "raw", "--output", str(out)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop_profiler(spy: subprocess.Popen[bytes]) -> None:
    """Stop py-spy with SIGINT (it writes its output on the way out)."""
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()


_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _package_of(path: str) -> str:
    """``faust``, ``aiokafka``, ``huracan.domain``, ``asyncio``, ``<stdlib>`` … for a frame's
    path as py-spy prints it (relative to its ``sys.path`` entry)."""
    if path == "selectors.py":
        return "<waiting in select()>"
    head, sep, rest = path.partition("/")
    if not sep:
        return "faust" if head == "faust" else "<stdlib>"
    if head == "huracan":
        sub, _, _ = rest.partition("/")
        return f"huracan.{sub.removesuffix('.py')}"
    return head


#: frames of the command line and the thread/loop plumbing: on (nearly) every stack
_WRAPPERS = ("click/", "faust/cli/", "mode/worker.py", "threading.py", "mode/threads.py")
_LOOP = ("run_forever", "_run_once", "run_until_complete", "<module>")


def summarise_profile(raw: Path, top: int = 25) -> tuple[str, dict[str, Any]]:
    """Top functions by inclusive samples and self samples by package from py-spy's raw
    (collapsed-stack) output: (text table, JSON summary)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if _FRAME.match(f)]
        if not frames:
            continue
        total += count
        for f in set(frames):
            inclusive[f] += count
        own[frames[-1]] += count
        m = _FRAME.match(frames[-1])
        by_package[_package_of(m["file"] if m else "")] += count

    def short(frame: str) -> str:
        m = _FRAME.match(frame)
        return f"{m['func']} ({m['file']}:{m['line']})" if m else frame

    lines = [
        f"py-spy samples of the worker while it processed a pre-published backlog: {total} "
        "CPU-active samples at 100 Hz.",
        "Inclusive % = share of samples with the function anywhere on the stack "
        "(py-spy's 'total'); self % = as the leaf.",
        "",
        f"{'inclusive %':>11}  {'self %':>7}  function",
    ]
    rows = []
    for frame, n in inclusive.most_common():
        if len(rows) >= top:
            break
        # the command line's and the event loop's frames are on every stack: they say nothing
        if any(w in frame for w in _WRAPPERS) or any(w in frame for w in _LOOP):
            continue
        rows.append((frame, n))
        lines.append(f"{100 * n / total:11.1f}  {100 * own[frame] / total:7.1f}  {short(frame)}")
    lines += ["", "self time by package:"]
    for pkg, n in by_package.most_common(15):
        lines.append(f"{100 * n / total:11.1f}  {pkg}")
    summary = {
        "samples": total,
        "top_inclusive": [
            {"function": short(f), "inclusive_pct": round(100 * n / total, 1)} for f, n in rows[:10]
        ],
        "top_self": [
            {"function": short(f), "self_pct": round(100 * n / total, 1)}
            for f, n in own.most_common(10)
        ],
        "self_by_package_pct": {
            pkg: round(100 * n / total, 1) for pkg, n in by_package.most_common(12)
        },
    }
    return "\n".join(lines) + "\n", summary


# ------------------------------------------------------------------------------ main


def _median(runs: list[WorkerRun], attr: Callable[[WorkerRun], float]) -> float:
    return statistics.median(attr(r) for r in runs)


def main() -> int:
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="huracan-bench-pipeline-"))
    report = Report("pipeline", ["path", "ticks/s", "p50 ms", "p99 ms", "vs baseline"])
    extra: dict[str, Any] = {"coins": COINS, "ticks": N, "repeats": REPEATS}
    ok = True
    try:
        ticks = simulated_ticks(N)
        expected = expected_outputs(bench_config("bench-expected"), ticks)
        extra["expected"] = expected.__dict__

        # c. the baseline, on a topic of its own with the same ticks
        src = bench_config(new_prefix("src"))
        ensure_topics(src)
        try:
            publish_all(src, ticks)
            base_runs = [baseline_run(src, N) for _ in range(REPEATS)]
        finally:
            delete_topics(src)
        base_rate = statistics.median(r for r, _ in base_runs)
        extra["baseline"] = {"rates": [r for r, _ in base_runs], "outputs": base_runs[0][1]}

        # a. throughput
        runs = [throughput_run(ticks, expected, workdir) for _ in range(REPEATS)]
        ok &= all(r.drained for r in runs)
        coin_rate = _median(runs, lambda r: r.coin_stage_rate)
        full_rate = _median(runs, lambda r: r.through_execution_rate)
        extra["faust_runs"] = [
            {
                "coin_stage_rate": r.coin_stage_rate,
                "through_execution_rate": r.through_execution_rate,
                "seconds": r.seconds,
                "drained": r.drained,
                "counts": r.counts,
            }
            for r in runs
        ]

        # d. profile (one more run, not counted in the median)
        raw = workdir / "profile.txt"
        prof_run = throughput_run(ticks, expected, workdir, profile_to=raw)
        if raw.exists() and raw.stat().st_size:
            text, summary = summarise_profile(raw)
            (RESULTS_DIR / "pipeline_profile.txt").write_text(text)
            summary["rate_while_profiled"] = prof_run.through_execution_rate
            extra["profile"] = summary
        else:
            extra["profile"] = {"error": "py-spy produced no output (not installed, or ptrace)"}

        # b. latency at a fixed rate (and at a sustainable one if that rate is too high)
        lat_runs = [latency_run(LAT_RATE, LAT_SECONDS, workdir)]
        if full_rate < LAT_RATE:
            sustainable = round(0.6 * full_rate, -2)
            lat_runs.append(latency_run(sustainable, 10.0, workdir))
        ok &= all(r.drained for r in lat_runs)
        extra["latency"] = [r.row() for r in lat_runs]

        # the table
        report.add("baseline: confluent Consumer+serde+engine+Producer", base_rate, "", "", "1.00x")
        report.add(
            "faust worker: coin stage (features out)",
            coin_rate,
            "",
            "",
            f"{coin_rate / base_rate:.2f}x",
        )
        report.add(
            "faust worker: through execution",
            full_rate,
            "",
            "",
            f"{full_rate / base_rate:.2f}x",
        )
        report.add("in-process engine alone (no Kafka, no serde)", N / expected.seconds, "", "", "")
        for r in lat_runs:
            row = r.row()
            label = f"latency @ {r.target_rate:,.0f}/s (published {r.achieved_rate:,.0f}/s)"
            report.add(
                label + ": tick→feature",
                "",
                row["tick_to_feature_p50_ms"],
                row["tick_to_feature_p99_ms"],
                "",
            )
            report.add(
                label + ": tick→execution",
                "",
                row["tick_to_execution_p50_ms"],
                row["tick_to_execution_p99_ms"],
                "",
            )
        report.notes.append(
            f"{N:,} ticks, {COINS} coins, 12 market-data partitions, one worker, batch_size "
            f"{bench_config('x').faust.batch_size}; throughput = median of {REPEATS} runs, "
            "from the output records' broker timestamps (first feature to last output)."
        )
        report.notes.append(
            "every run made exactly the in-process engine's decisions and executions "
            f"({expected.decisions:,} / {expected.executions:,})"
            if ok
            else "WARNING: a run did not drain (see extra.faust_runs / extra.latency)"
        )
        if full_rate < LAT_RATE:
            report.notes.append(
                f"the worker does not sustain {LAT_RATE:,.0f} ticks/s (≈{full_rate:,.0f}/s): at "
                "that rate latency is queueing; the second latency row is at a rate it sustains."
            )
        if "top_self" in extra["profile"]:
            pk = extra["profile"]["self_by_package_pct"]
            report.notes.append(
                "profile (self time by package, %): "
                + ", ".join(f"{k} {v}" for k, v in list(pk.items())[:6])
                + " — top-25 in benchmarks/results/pipeline_profile.txt"
            )
        report.notes.append(f"total benchmark time {time.perf_counter() - started:.0f} s")
        report.extra = extra
        report.emit()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
