"""The whole pipeline under ``faust -A huracan worker`` next to a raw confluent-kafka loop, one run.

400 coins, one worker, 12 market-data partitions (the base config), fresh topics per run
(prefix ``bench-<kind>-<time>-…``, deleted afterwards, with the worker's changelog topics).

a. **Throughput.** A worker is started and waited for (its "Worker ready": partitions assigned,
   tables recovered); then ``N`` ticks and ``PAD`` more, encoded beforehand, are produced to
   market-data as fast as librdkafka takes them (a fraction of a second), and the worker works
   through the backlog as fast as it can. (Publishing first and starting the worker on the
   backlog measured the same rates, but in a few runs the worker skipped the first records of a
   partition that it had fetched while it was still recovering its tables; that start-up race
   is reported separately and kept out of the throughput figures.) The trailing ``PAD`` ticks
   only move every partition's watermark past the last measured tick, so the sequencer releases
   the measured requests by event time instead of waiting ``faust.order_idle_ms`` for every
   partition to be declared idle at the end of a finite backlog (an artefact no continuous
   stream has); they are not counted. The run
   is complete when the worker has made exactly the in-process engine's
   (:func:`huracan.wiring.build_engine`) decisions and executions for all the ticks — compared
   record by record, byte for byte, as the Avro encoding of each — and a run that does not is
   reported as a failure. Times come from the broker: each output record's timestamp is its
   producer's wall clock, so ``coin stage`` = N / (feature of the last measured tick − first
   feature) and ``through execution`` = N / (last decision or execution of a measured tick −
   first feature). Median over ``REPEATS`` runs, each on its own topics and consumer group.
b. **Latency.** A worker is started and waited for (its "Worker ready": partitions assigned and
   tables recovered); ticks are then published at ``LAT_RATE`` per second, stamped with the
   wall clock (:func:`huracan.publish.publish_ticks`), for ``LAT_SECONDS`` plus ``LAT_PAD_S``
   (the padding plays the role of ``PAD`` above). Latency per measured tick = the Kafka
   timestamp of the record the worker produced − the tick's event time: tick→feature from the
   features topic, tick→execution from the executions topic (an execution's tick time is its
   decision's ``ts``; this includes the sequencer's event-time ordering wait). When the worker
   cannot sustain ``LAT_RATE``, a second pass runs at a rate it sustains (0.6 × the measured
   throughput), and the note says so. Both passes also check parity with the engine.
c. **Baseline.** One loop in this process: a raw confluent-kafka ``Consumer`` (batches of
   500) → the same serde → ``build_engine(cfg).on_tick`` per tick (``finish()`` at the end) →
   the same five outputs (features, signals, trade requests, decisions, executions) encoded
   with the same serde and produced with a confluent-kafka ``Producer``; timed from the first
   record consumed to the last output delivered. It keeps no changelog and sends no watermarks
   (the worker does both), and it consumes partitions interleaved, so its order buffer sees a
   few late requests: the same work per tick, not the same guarantees.
d. **Profile.** One more throughput run with ``py-spy record --nonblocking`` attached to the
   worker (sampling, 100 Hz, CPU-active samples only): the top functions by inclusive samples
   go to ``results/pipeline_profile.txt``, self time by package into the JSON, the collapsed
   stacks (flame graph input) to ``results/pipeline_profile.collapsed.txt``. py-spy needs
   ptrace rights on the worker (root, or ``kernel.yama.ptrace_scope`` 0); without them the JSON
   says so and the other figures stand.

``HURACAN_BENCH_QUICK=1`` runs a smaller version for iterating (see :mod:`benchmarks.harness`).
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

from confluent_kafka import Producer, TopicPartition

from benchmarks.harness import QUICK, Report, results_dir
from huracan.config import HuracanConfig, build_config
from huracan.domain.universe import universe
from huracan.publish import publish_ticks
from huracan.runtime.drain import parse_metrics
from huracan.runtime.worker_launcher import WorkerHandle, running_worker
from huracan.simulate import MarketSimulator
from huracan.streams.clients import make_admin, make_consumer, make_producer
from huracan.streams.serde import Serde, make_serde
from huracan.streams.topics import RecordCounter, TopicCatalog, ensure_topics
from huracan.wiring import build_engine

COINS = 400
#: a tick as produced: (key, Avro value, record timestamp in ms)
EncodedTick = tuple[bytes, bytes, int]
#: quick mode (``HURACAN_BENCH_QUICK=1``, for iterating): fewer ticks, one run, nothing saved
N = 16_000 if QUICK else 60_000
#: trailing ticks that move every partition's watermark past the measured ones (not counted)
PAD = 1_200
REPEATS = 1 if QUICK else 3
LAT_RATE = 10_000.0
LAT_SECONDS = 4.0 if QUICK else 10.0
LAT_PAD_S = 0.5
DRAIN_TIMEOUT_S = 180.0
READY_TIMEOUT_S = 90.0


# ------------------------------------------------------------------------------ topics & config


def bench_config(prefix: str) -> HuracanConfig:
    """The base config on topics ``<prefix>.*`` with app id ``prefix`` (service addresses and
    ``HURACAN__…`` overrides from the environment)."""
    return build_config(
        {"kafka": {"topic_prefix": prefix}, "faust": {"app_id": prefix}},
        environ=os.environ,
    )


def new_prefix(kind: str) -> str:
    return f"bench-{kind}-{int(time.time())}-{uuid.uuid4().hex[:6]}"


def delete_topics(cfg: HuracanConfig) -> None:
    """Delete every topic whose name starts with the config's prefix (the catalog's and the
    worker's changelog topics, which are named after the app id = the prefix)."""
    admin = make_admin(cfg, "bench-cleaner")
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
    # idempotent: a retried request must not reorder a coin's ticks
    producer: Producer = make_producer(
        cfg,
        "bench-publisher",
        overrides={
            "linger.ms": 5,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
        },
    )
    return producer


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


def encode_ticks(cfg: HuracanConfig, ticks: Iterable[dict[str, Any]]) -> list[EncodedTick]:
    """``(key, value, timestamp ms)`` of each tick, as :func:`publish_all` produces them."""
    serde = make_serde(cfg)
    topic = topic_name(cfg, "MarketTick")
    return [
        (
            str(t["coin"]).encode(),
            serde.encode("MarketTick", t, topic=topic),
            int(t["ts"]) // 1000,
        )
        for t in ticks
    ]


def publish_all(cfg: HuracanConfig, ticks: Iterable[dict[str, Any]] | list[EncodedTick]) -> int:
    """Produce ``ticks`` (dicts, or :func:`encode_ticks` output) to market-data as fast as
    possible, keyed by coin, with the tick's event time as the record timestamp; the count."""
    topic = topic_name(cfg, "MarketTick")
    items = list(ticks)
    encoded = (
        items if items and isinstance(items[0], tuple) else encode_ticks(cfg, items)  # type: ignore[arg-type]
    )
    producer = _producer(cfg)
    n = 0
    for key, value, ts_ms in encoded:  # type: ignore[misc]
        _produce(producer, topic, key, value, timestamp=ts_ms)
        n += 1
        if n % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60):
        raise RuntimeError(f"ticks not delivered to {topic}")
    return n


@dataclass
class Expected:
    """What the in-process engine makes of the ticks (the worker must make the same).

    ``decisions_bytes``/``executions_bytes``: each output's Avro encoding, as a multiset."""

    decisions: int
    executions: int
    signals: int
    requests: int
    seconds: float
    decisions_bytes: Counter[bytes] = field(default_factory=Counter, repr=False)
    executions_bytes: Counter[bytes] = field(default_factory=Counter, repr=False)

    def summary(self) -> dict[str, Any]:
        return {
            "decisions": self.decisions,
            "executions": self.executions,
            "signals": self.signals,
            "requests": self.requests,
            "engine_seconds": self.seconds,
        }


def expected_outputs(cfg: HuracanConfig, ticks: list[dict[str, Any]]) -> Expected:
    serde = make_serde(cfg)
    engine = build_engine(cfg)
    decisions: list[dict[str, Any]] = []
    executions: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for t in ticks:
        out = engine.on_tick(t)
        if out.decisions:
            decisions += out.decisions
            executions += out.executions
    out = engine.finish()
    dt = time.perf_counter() - t0
    decisions += out.decisions
    executions += out.executions
    return Expected(
        len(decisions),
        len(executions),
        engine.stats.signals,
        engine.stats.requests,
        dt,
        Counter(serde.encode("RiskDecision", d) for d in decisions),
        Counter(serde.encode("Execution", x) for x in executions),
    )


# ------------------------------------------------------------------------------ reading outputs


@dataclass
class Output:
    """One record the worker produced: its broker timestamp (s), raw value and decoded record."""

    kafka_ts: float
    value: bytes
    record: dict[str, Any]


def read_outputs(cfg: HuracanConfig, event_type: str, serde: Serde) -> list[Output]:
    """Every record of one catalog topic (punctuation such as watermarks skipped)."""
    topic = topic_name(cfg, event_type)
    consumer = make_consumer(
        cfg,
        "bench-reader",
        group_id=f"bench-read-{uuid.uuid4().hex[:8]}",
        overrides={"enable.partition.eof": True},
    )
    out: list[Output] = []
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        eof: set[int] = set()
        deadline = time.monotonic() + 120
        while len(eof) < len(parts) and time.monotonic() < deadline:
            for msg in consumer.consume(2000, timeout=2.0) or []:
                if msg.error():
                    eof.add(msg.partition())
                    continue
                decoded = serde.decode_event(msg.value())
                if decoded.event_type != event_type:
                    continue
                out.append(Output(msg.timestamp()[1] / 1000.0, msg.value(), decoded.record))
    finally:
        consumer.close()
    return out


@dataclass
class Outputs:
    features: list[Output]
    decisions: list[Output]
    executions: list[Output]

    @classmethod
    def read(cls, cfg: HuracanConfig) -> Outputs:
        serde = make_serde(cfg)
        return cls(
            read_outputs(cfg, "FeatureVector", serde),
            read_outputs(cfg, "RiskDecision", serde),
            read_outputs(cfg, "Execution", serde),
        )

    def parity(self, expected: Expected) -> dict[str, Any]:
        """Whether the decisions and executions are exactly the engine's (byte for byte)."""
        live_d = Counter(o.value for o in self.decisions)
        live_x = Counter(o.value for o in self.executions)
        return {
            "same_decisions": live_d == expected.decisions_bytes,
            "same_executions": live_x == expected.executions_bytes,
            "decisions": sum(live_d.values()),
            "executions": sum(live_x.values()),
            "missing_decisions": sum((expected.decisions_bytes - live_d).values()),
            "extra_decisions": sum((live_d - expected.decisions_bytes).values()),
            "missing_executions": sum((expected.executions_bytes - live_x).values()),
            "extra_executions": sum((live_x - expected.executions_bytes).values()),
        }

    def tick_times(self) -> dict[str, int]:
        """Each decision's tick time by request id (an execution's tick time is its
        decision's ``ts``: the execution's own ``ts`` adds the paper exchange's latency)."""
        return {str(o.record["request_id"]): int(o.record["ts"]) for o in self.decisions}


def order_counters(worker: WorkerHandle) -> dict[str, float]:
    """Late requests, stall releases and idle partitions so far (drain.ORDER_COUNTERS)."""
    order: dict[str, float] = parse_metrics((worker.get("/metrics") or b"").decode())["order"]  # type: ignore[assignment]
    return order


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# ------------------------------------------------------------------------------ the worker runs


def wait_drained(
    cfg: HuracanConfig, *, ticks: int, expected: Expected, timeout: float = DRAIN_TIMEOUT_S
) -> tuple[bool, dict[str, int]]:
    """Poll (every 0.25 s) until every tick has its features and there are as many decisions
    and executions as the engine made. (drained?, last counts)."""
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    with RecordCounter(cfg) as counter:  # under exactly_once: committed records, read once
        while time.monotonic() < deadline:
            counts = counter.counts()
            if (
                counts["FeatureVector"] >= ticks
                and counts["RiskDecision"] >= expected.decisions
                and counts["Execution"] >= expected.executions
            ):
                return True, counts
            time.sleep(0.25)
    return False, counts


def wait_ready(worker: WorkerHandle, timeout: float = READY_TIMEOUT_S) -> bool:
    """Wait for the worker's "Worker ready" (faust's recovery service logs it once partitions
    are assigned and tables recovered: from then on it consumes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "Worker ready" in worker.log_path.read_text(errors="replace"):
            return True
        if worker.process.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def dump_stuck_worker(worker: WorkerHandle, counts: dict[str, int]) -> Path | None:
    """A worker that did not finish in time: its threads' stacks (``py-spy dump``) and the
    counts it had reached, into ``results/pipeline_stuck_<pid>.txt``, for diagnosis."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        return None
    dump = subprocess.run(  # noqa: S603 - py-spy from our own venv
        [exe, "dump", "--pid", str(worker.process.pid)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = results_dir() / f"pipeline_stuck_{worker.process.pid}.txt"
    out.write_text(f"counts {counts}\nlog {worker.log_path}\n\n{dump.stdout}{dump.stderr}")
    print(f"  a worker did not finish: stacks in {out}", file=sys.stderr)
    return out


@dataclass
class WorkerRun:
    ticks: int
    coin_stage_rate: float
    through_execution_rate: float
    seconds: float
    counts: dict[str, int]
    drained: bool
    parity: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.drained and self.parity["same_decisions"] and self.parity["same_executions"]

    def row(self) -> dict[str, Any]:
        return {
            "coin_stage_rate": self.coin_stage_rate,
            "through_execution_rate": self.through_execution_rate,
            "seconds": self.seconds,
            "drained": self.drained,
            "parity": self.parity,
            "counts": self.counts,
            "order": self.metrics.get("order"),
        }


def throughput_run(
    ticks: list[dict[str, Any]],
    measured: int,
    expected: Expected,
    workdir: Path,
    *,
    profile_to: Path | None = None,
) -> WorkerRun:
    """Publish ``ticks`` to fresh topics, start a worker, wait until it has made everything
    the engine makes, and measure the first ``measured`` ticks from the broker's timestamps
    (see the module docstring)."""
    cfg = bench_config(new_prefix("pipe"))
    ensure_topics(cfg)
    encoded = encode_ticks(cfg, ticks)
    spy: subprocess.Popen[bytes] | None = None
    try:
        with running_worker(cfg, workdir / cfg.kafka.topic_prefix) as worker:
            if not wait_ready(worker):
                raise RuntimeError(f"worker not ready after {READY_TIMEOUT_S:.0f} s")
            if profile_to is not None:
                spy = start_profiler(worker.process.pid, profile_to)
            publish_all(cfg, encoded)
            drained, counts = wait_drained(cfg, ticks=len(ticks), expected=expected)
            if spy is not None:
                stop_profiler(spy)
            if not drained:
                dump_stuck_worker(worker, counts)
            metrics = parse_metrics((worker.get("/metrics") or b"").decode())
            metrics["order"] = order_counters(worker)
        outputs = Outputs.read(cfg)
        cutoff = int(ticks[measured - 1]["ts"])
        first = min(o.kafka_ts for o in outputs.features)
        last_feature = max(o.kafka_ts for o in outputs.features if o.record["ts"] <= cutoff)
        tick_ts = outputs.tick_times()
        last_out = max(
            [last_feature]
            + [o.kafka_ts for o in outputs.decisions if o.record["ts"] <= cutoff]
            + [
                o.kafka_ts
                for o in outputs.executions
                if tick_ts.get(str(o.record["request_id"]), cutoff + 1) <= cutoff
            ]
        )
        return WorkerRun(
            ticks=measured,
            coin_stage_rate=measured / (last_feature - first),
            through_execution_rate=measured / (last_out - first),
            seconds=last_out - first,
            counts=counts,
            drained=drained,
            parity=outputs.parity(expected),
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
    parity: dict[str, Any]
    feature_ms: list[float]
    execution_ms: list[float]

    @property
    def ok(self) -> bool:
        return self.drained and self.parity["same_decisions"] and self.parity["same_executions"]

    def row(self) -> dict[str, Any]:
        f, e = self.feature_ms, self.execution_ms
        return {
            "target_rate": self.target_rate,
            "achieved_publish_rate": self.achieved_rate,
            "ticks": self.ticks,
            "measured_features": len(f),
            "measured_executions": len(e),
            "tick_to_feature_p50_ms": percentile(f, 0.5),
            "tick_to_feature_p99_ms": percentile(f, 0.99),
            "tick_to_execution_p50_ms": percentile(e, 0.5),
            "tick_to_execution_p99_ms": percentile(e, 0.99),
            "tick_to_execution_max_ms": max(e) if e else float("nan"),
            "drained": self.drained,
            "parity": self.parity,
        }


def latency_run(rate: float, seconds: float, workdir: Path, *, seed: int = 11) -> LatencyRun:
    """A ready worker first, then ticks at ``rate`` stamped with the wall clock; latencies of
    the ticks of the first ``seconds`` from the output topics' timestamps."""
    cfg = bench_config(new_prefix("lat"))
    ensure_topics(cfg)
    try:
        with running_worker(cfg, workdir / cfg.kafka.topic_prefix) as worker:
            if not wait_ready(worker):
                raise RuntimeError(f"worker not ready after {READY_TIMEOUT_S:.0f} s")
            start = time.time_ns() // 1000
            total = seconds + LAT_PAD_S
            sent = publish_ticks(
                cfg, coins=COINS, rate=rate, duration=total, seed=seed, start_ts_us=start
            )
            ticks = list(
                MarketSimulator(universe(COINS), seed=seed, start_ts_us=start, rate=rate).ticks(
                    sent.ticks
                )
            )
            expected = expected_outputs(cfg, ticks)
            drained, counts = wait_drained(cfg, ticks=sent.ticks, expected=expected)
            if not drained:
                dump_stuck_worker(worker, counts)
        outputs = Outputs.read(cfg)
        cutoff = start + int(seconds * 1e6)
        feature_ms = [
            1000.0 * o.kafka_ts - o.record["ts"] / 1000.0
            for o in outputs.features
            if o.record["ts"] < cutoff
        ]
        tick_ts = outputs.tick_times()
        execution_ms = []
        for o in outputs.executions:
            ts = tick_ts.get(str(o.record["request_id"]))
            if ts is not None and ts < cutoff:
                execution_ms.append(1000.0 * o.kafka_ts - ts / 1000.0)
        return LatencyRun(
            rate,
            sent.rate,
            sent.ticks,
            drained,
            outputs.parity(expected),
            feature_ms,
            execution_ms,
        )
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
    consumer = make_consumer(
        source,
        "bench-baseline",
        group_id=f"bench-base-{uuid.uuid4().hex[:8]}",
        overrides={"fetch.min.bytes": 1},
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
            # never ask for more than is left: consume() waits its whole timeout for a batch
            # it cannot fill, which would add seconds to the baseline's time at the end
            batch = consumer.consume(min(500, n - seen), timeout=5.0)
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
    missing (it comes with the dev extras: ``pip install -e '.[dev]'``)."""
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


def summarise_profile(raw: Path, top: int = 30) -> tuple[str, dict[str, Any]]:
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
    if not total:
        return "py-spy recorded no samples\n", {"error": "py-spy recorded no samples"}

    def short(frame: str) -> str:
        m = _FRAME.match(frame)
        return f"{m['func']} ({m['file']}:{m['line']})" if m else frame

    lines = [
        f"py-spy samples of the worker while it worked through a backlog of ticks: {total} "
        "CPU-active samples at 100 Hz.",
        "Inclusive % = share of samples with the function anywhere on the stack "
        "(py-spy's 'total'); self % = as the leaf. 'Handle._run' self time is the C parts",
        "of asyncio (task steps, futures) that py-spy cannot see into.",
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
    lines += ["", "top self time:"]
    for frame, n in own.most_common(20):
        lines.append(f"{100 * n / total:11.1f}  {short(frame)}")
    lines += ["", "self time by package:"]
    for pkg, n in by_package.most_common(15):
        lines.append(f"{100 * n / total:11.1f}  {pkg}")
    summary = {
        "samples": total,
        "top_inclusive": [
            {"function": short(f), "inclusive_pct": round(100 * n / total, 1)} for f, n in rows[:15]
        ],
        "top_self": [
            {"function": short(f), "self_pct": round(100 * n / total, 1)}
            for f, n in own.most_common(15)
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
    out_dir = results_dir()
    cfg0 = bench_config("bench-expected")
    guarantee = cfg0.faust.processing_guarantee
    # HURACAN__faust__processing_guarantee=exactly_once measures the transactional pipeline
    name = "pipeline" if guarantee == "at_least_once" else "pipeline-exactly-once"
    report = Report(name, ["path", "ticks/s", "p50 ms", "p99 ms", "vs baseline"])
    extra: dict[str, Any] = {
        "processing_guarantee": guarantee,
        "coins": COINS,
        "ticks": N,
        "padding_ticks": PAD,
        "repeats": REPEATS,
        "batch_size": cfg0.faust.batch_size,
        "order_idle_ms": cfg0.faust.order_idle_ms,
    }
    ok = True
    try:
        ticks = simulated_ticks(N + PAD)
        expected = expected_outputs(cfg0, ticks)
        extra["expected"] = expected.summary()

        # c. the baseline, on a topic of its own with the same ticks
        src = bench_config(new_prefix("src"))
        ensure_topics(src)
        try:
            publish_all(src, ticks)
            base_runs = [baseline_run(src, len(ticks)) for _ in range(REPEATS)]
        finally:
            delete_topics(src)
        base_rate = statistics.median(r for r, _ in base_runs)
        extra["baseline"] = {"rates": [r for r, _ in base_runs], "outputs": base_runs[0][1]}

        # a. throughput
        runs = [throughput_run(ticks, N, expected, workdir) for _ in range(REPEATS)]
        ok &= all(r.ok for r in runs)
        coin_rate = _median(runs, lambda r: r.coin_stage_rate)
        full_rate = _median(runs, lambda r: r.through_execution_rate)
        extra["faust_runs"] = [r.row() for r in runs]
        extra["worker_metrics"] = runs[-1].metrics

        # d. profile (one more run, not counted in the median)
        raw = workdir / "profile.txt"
        prof_run = throughput_run(ticks, N, expected, workdir, profile_to=raw)
        ok &= prof_run.ok
        if raw.exists() and raw.stat().st_size:
            text, summary = summarise_profile(raw)
            (out_dir / f"{name}_profile.txt").write_text(text)
            shutil.copyfile(raw, out_dir / f"{name}_profile.collapsed.txt")
            summary["rate_while_profiled"] = prof_run.through_execution_rate
            extra["profile"] = summary
        else:
            extra["profile"] = {"error": "py-spy produced no output (not installed, or ptrace)"}

        # b. latency at a fixed rate (and at a sustainable one if that rate is too high)
        lat_runs = [latency_run(LAT_RATE, LAT_SECONDS, workdir)]
        if full_rate < LAT_RATE:
            sustainable = round(0.6 * full_rate, -2)
            lat_runs.append(latency_run(sustainable, LAT_SECONDS, workdir))
        ok &= all(r.ok for r in lat_runs)
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
        report.add(
            "in-process engine alone (no Kafka, no serde)",
            len(ticks) / expected.seconds,
            "",
            "",
            "",
        )
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
            f"{N:,} measured ticks (+{PAD:,} padding), {COINS} coins, 12 market-data partitions, "
            f"one worker, {guarantee}, batch_size {cfg0.faust.batch_size}, order_idle_ms "
            f"{cfg0.faust.order_idle_ms}; throughput = median of {REPEATS} runs, from the output "
            "records' broker timestamps (first feature to last output of a measured tick)."
        )
        report.notes.append(
            "every worker run made exactly the in-process engine's decisions and executions, "
            f"byte for byte ({expected.decisions:,} / {expected.executions:,} for the throughput "
            "runs)"
            if ok
            else "WARNING: a run did not drain or differs from the engine "
            "(see extra.faust_runs / extra.latency: parity)"
        )
        if full_rate < LAT_RATE:
            report.notes.append(
                f"the worker does not sustain {LAT_RATE:,.0f} ticks/s (≈{full_rate:,.0f}/s): at "
                "that rate latency is queueing; the second latency row is at a rate it sustains."
            )
        report.notes.append(
            f"latency: ticks of the first {LAT_SECONDS:.0f} s of each run (then {LAT_PAD_S} s of "
            "padding ticks), worker ready before the first tick."
        )
        if "top_self" in extra["profile"]:
            pk = extra["profile"]["self_by_package_pct"]
            report.notes.append(
                "profile (self time by package, %): "
                + ", ".join(f"{k} {v}" for k, v in list(pk.items())[:6])
                + f" — top functions in {out_dir / f'{name}_profile.txt'}"
            )
        report.notes.append(f"total benchmark time {time.perf_counter() - started:.0f} s")
        report.extra = extra
        report.emit()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
