"""Peers on the same work: raw confluent-kafka, raw aiokafka and Quix Streams, one run.

One market-data topic (400 coins, 12 partitions, the base config) is filled once with ``N``
synthetic ticks (:func:`benchmarks.bench_pipeline.simulated_ticks`, Avro with the project's
serde). Then each peer, one after the other and each with a consumer group of its own, reads
the whole topic and does the same work per tick: decode with the project's serde →
``build_engine(cfg).on_tick`` → encode the outputs (features, signals, trade requests, risk
decisions, executions) with the same serde → produce them, keyed by coin, to output topics of
its own (fresh per run, deleted afterwards). :mod:`benchmarks.peers.common` holds that work;
each peer is a child process (:mod:`benchmarks.peers`):

=============================  ===============  ===========================================
peer                           guarantee        how
=============================  ===============  ===========================================
raw confluent-kafka            at least once    batches of 500; flush, then commit, every 1 s
raw confluent-kafka            exactly once     a transaction per batch of 500, offsets by
                                                ``send_offsets_to_transaction``
raw aiokafka                   at least once    ``getmany`` 500; flush, then commit, every 1 s
Quix Streams                   at least once    ``apply(expand=True)`` → ``to_topic``; defaults
Quix Streams                   exactly once     the same, ``processing_guarantee=exactly-once``
Quix Streams                   exactly once     the same with ``commit_every=500``: a
                                                transaction per 500 records, as the raw loop
=============================  ===============  ===========================================

Quix Streams runs in its own venv (:mod:`benchmarks.peers.env`, built on first use from
``benchmarks/peers/requirements-quix.txt``): it pins an older confluent-kafka than ours.

Per run: ticks/s = ``N`` / the peer's own window (first record received → every output
delivered, or the last transaction committed); CPU seconds = the peer process's user + system
time over that window (all threads, librdkafka's included), and the whole process's too
(``wait4``, start-up and group join included). The run's risk decisions and executions are
then read back from its output topics (committed records only) and compared with the
in-process engine's over the same ticks (:func:`benchmarks.bench_pipeline.expected_outputs`):
every trade request must get its decision, so the decision count must be the engine's (a run
whose count differs fails the benchmark). The execution count and whether the records are
byte-identical are reported, not required: a peer reads the 12 partitions interleaved as its
client delivers them, so the sequencer decides the requests in another order than the single
in-process pass over the ticks in time order, and an approval depends on the exposure the
requests decided before it left (the Faust worker orders requests by event time across
partitions first, which is why it makes the engine's decisions byte for byte).
The 1-min load average before and after each run is saved beside it: the machine is shared.
The peers take turns (round 1: every peer, round 2: every peer, …) so a change of load hits
them all. Each peer's figure is the median of ``REPEATS`` runs.

``HURACAN_BENCH_QUICK=1`` runs a smaller version for iterating (see :mod:`benchmarks.harness`).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.bench_pipeline import (
    COINS,
    Expected,
    bench_config,
    delete_topics,
    encode_ticks,
    expected_outputs,
    new_prefix,
    publish_all,
    read_outputs,
    simulated_ticks,
    topic_name,
)
from benchmarks.harness import QUICK, Report
from benchmarks.peers.common import PeerResult, PeerSpec, TickWork
from benchmarks.peers.env import REPO, ensure_quix_env, installed_versions, peer_environ
from huracan.config import HuracanConfig
from huracan.streams.serde import make_serde
from huracan.streams.topics import ensure_topics

N = 20_000 if QUICK else 100_000
REPEATS = 1 if QUICK else 3
#: a peer process that has not finished by then is killed and its run fails
RUN_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Peer:
    """One row of the table: which module runs with which guarantee in which venv."""

    name: str
    guarantee: str
    module: str
    venv: str  # "project" or "quix"
    #: Quix Streams' ``commit_every`` (0: its default, a checkpoint every 5 s)
    commit_every: int = 0

    @property
    def slug(self) -> str:
        kind = self.module.rsplit(".", 1)[-1].removesuffix("_peer")
        every = f"-every{self.commit_every}" if self.commit_every else ""
        return f"{kind}-{self.guarantee}{every}"

    @property
    def mode(self) -> str:
        """The guarantee as the table shows it (with a commit cadence other than the default)."""
        every = f", commit every {self.commit_every}" if self.commit_every else ""
        return self.guarantee.replace("_", " ") + every

    @property
    def label(self) -> str:
        return f"{self.name}, {self.mode}"


PEERS = (
    Peer("raw confluent-kafka", "at_least_once", "benchmarks.peers.confluent_peer", "project"),
    Peer("raw confluent-kafka", "exactly_once", "benchmarks.peers.confluent_peer", "project"),
    Peer("raw aiokafka", "at_least_once", "benchmarks.peers.aiokafka_peer", "project"),
    Peer("Quix Streams", "at_least_once", "benchmarks.peers.quix_peer", "quix"),
    Peer("Quix Streams", "exactly_once", "benchmarks.peers.quix_peer", "quix"),
    # a transaction per 500 records, as the raw transactional loop (Quix's default: every 5 s)
    Peer("Quix Streams", "exactly_once", "benchmarks.peers.quix_peer", "quix", commit_every=500),
)
#: the row the others are compared with
REFERENCE = PEERS[0]


@dataclass
class PeerRun:
    """One run of one peer: its own report, the process's CPU, the load, the parity check."""

    peer: Peer
    ok: bool
    rate: float = float("nan")
    seconds: float = float("nan")
    cpu_seconds: float = float("nan")
    process_cpu_seconds: float = float("nan")
    load_before: float = float("nan")
    load_after: float = float("nan")
    parity: dict[str, Any] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)
    client: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def row(self) -> dict[str, Any]:
        return {
            "peer": self.peer.label,
            "ok": self.ok,
            "ticks_per_s": self.rate,
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
            "process_cpu_seconds": self.process_cpu_seconds,
            "load_1m_before": self.load_before,
            "load_1m_after": self.load_after,
            "parity": self.parity,
            "sent": self.sent,
            "client": self.client,
            "settings": self.settings,
            **({"error": self.error} if self.error else {}),
        }


@dataclass(frozen=True)
class PeerSummary:
    """A peer's medians over its runs (failed runs left out; ``runs`` counts the good ones)."""

    rate: float
    cpu_seconds: float
    ticks_per_cpu_second: float
    cores: float
    runs: int
    all_ok: bool


def summarise(runs: list[PeerRun], ticks: int) -> PeerSummary:
    """Medians of a peer's good runs: ticks/s, CPU seconds over the window, ticks per CPU
    second (``ticks`` / median CPU seconds) and cores busy (median CPU / median window)."""
    good = [r for r in runs if r.ok]
    if not good:
        nan = float("nan")
        return PeerSummary(nan, nan, nan, nan, 0, False)
    cpu = statistics.median(r.cpu_seconds for r in good)
    seconds = statistics.median(r.seconds for r in good)
    return PeerSummary(
        rate=statistics.median(r.rate for r in good),
        cpu_seconds=cpu,
        ticks_per_cpu_second=ticks / cpu if cpu > 0 else float("nan"),
        cores=cpu / seconds if seconds > 0 else float("nan"),
        runs=len(good),
        all_ok=len(good) == len(runs),
    )


def compare_outputs(
    expected: Expected, decisions: list[bytes], executions: list[bytes]
) -> dict[str, Any]:
    """The parity check of one run: the decision count must be the engine's; the execution
    count and whether both are byte-identical are reported (they depend on the order in which
    the sequencer saw the requests)."""
    live_d, live_x = Counter(decisions), Counter(executions)
    return {
        "decisions": len(decisions),
        "executions": len(executions),
        "same_decision_count": len(decisions) == expected.decisions,
        "same_execution_count": len(executions) == expected.executions,
        "byte_identical": live_d == expected.decisions_bytes
        and live_x == expected.executions_bytes,
    }


def ratio(value: float, reference: float) -> str:
    """``value`` / ``reference`` as ``0.62x`` (blank when either is missing)."""
    if not (value == value and reference == reference) or reference <= 0:  # NaN-safe
        return ""
    return f"{value / reference:.2f}x"


def table_row(peer: Peer, s: PeerSummary, reference: float, decisions: int) -> list[Any]:
    """A peer's row: name, guarantee, medians, ratio to the reference, decisions check."""
    return [
        peer.name,
        peer.mode,
        s.rate,
        ratio(s.rate, reference),
        s.cpu_seconds,
        s.ticks_per_cpu_second,
        round(s.cores, 2),
        f"{decisions:,} in every run" if s.all_ok else "MISMATCH or failed run",
    ]


def runs_text(runs: list[PeerRun]) -> str:
    """``12,345 @ 1.20; failed; …``: each run's ticks/s and the load before it."""
    return "; ".join(f"{r.rate:,.0f} @ {r.load_before:.2f}" if r.ok else "failed" for r in runs)


# ------------------------------------------------------------------------------ one run


def peer_python(peer: Peer, quix: Path | None) -> Path:
    if peer.venv == "quix":
        if quix is None:
            raise RuntimeError("the Quix Streams venv is not available")
        return quix
    return Path(sys.executable)


def wait_process(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Wait for ``proc`` (killing it after ``timeout``): (exit code, its CPU seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.05)


def run_peer(
    peer: Peer,
    source: HuracanConfig,
    expected: Expected,
    workdir: Path,
    python: Path,
) -> PeerRun:
    """One run of ``peer`` over ``source``'s market-data topic, on output topics of its own."""
    out_cfg = bench_config(new_prefix(f"peer-{peer.slug.replace('_', '')}"))
    prefix = out_cfg.kafka.topic_prefix
    ensure_topics(out_cfg)
    spec = PeerSpec(
        bootstrap=source.kafka.bootstrap_servers,
        source_topic=topic_name(source, "MarketTick"),
        out_prefix=prefix,
        group=f"{prefix}-group",
        ticks=N,
        guarantee=peer.guarantee,
        commit_every=peer.commit_every,
        result_path=workdir / f"{prefix}.json",
    )
    log = workdir / f"{prefix}.log"
    run = PeerRun(peer, ok=False, load_before=os.getloadavg()[0])
    try:
        with log.open("wb") as out:
            proc = subprocess.Popen(  # noqa: S603 - our own module in one of our venvs
                [str(python), "-m", peer.module, *spec.to_argv()],
                cwd=REPO,
                env=peer_environ(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            code, run.process_cpu_seconds = wait_process(proc, RUN_TIMEOUT_S)
        run.load_after = os.getloadavg()[0]
        if code != 0 or not spec.result_path.exists():
            tail = log.read_text(errors="replace")[-2000:]
            run.error = f"exit {code}: {tail}"
            print(f"  {peer.label}: failed (exit {code}), log {log}", file=sys.stderr)
            return run
        result = PeerResult.read(spec.result_path)
        run.rate, run.seconds, run.cpu_seconds = result.rate, result.seconds, result.cpu_seconds
        run.sent, run.client, run.settings = result.sent, result.client, result.settings
        serde = make_serde(out_cfg)
        run.parity = compare_outputs(
            expected,
            [o.value for o in read_outputs(out_cfg, "RiskDecision", serde)],
            [o.value for o in read_outputs(out_cfg, "Execution", serde)],
        )
        run.ok = run.parity["same_decision_count"]
        print(
            f"  {peer.label}: {run.rate:,.0f} ticks/s, {run.cpu_seconds:.1f} CPU s, "
            f"load {run.load_before:.2f}→{run.load_after:.2f}, decisions "
            f"{run.parity['decisions']:,}/{expected.decisions:,}",
            flush=True,
        )
        return run
    finally:
        delete_topics(out_cfg)


def work_alone(cfg: HuracanConfig, ticks: list[dict[str, Any]]) -> tuple[float, float]:
    """decode → engine → encode over the encoded ticks in this process, no Kafka: (ticks/s,
    ticks per CPU second) — the ceiling of any peer on one core."""
    values = [value for _key, value, _ts in encode_ticks(cfg, ticks)]
    work = TickWork(cfg)
    t0, cpu0 = time.perf_counter(), time.process_time()
    for value in values:
        work.on_value(value)
    work.encoded(work.finish())
    cpu = time.process_time() - cpu0
    return len(values) / (time.perf_counter() - t0), len(values) / cpu


# ------------------------------------------------------------------------------ main


def main() -> int:
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="huracan-bench-peers-"))
    cfg0 = bench_config("bench-expected")
    report = Report(
        "peers",
        ["peer", "guarantee", "ticks/s", "vs raw", "CPU s", "ticks/CPU s", "cores", "decisions"],
    )
    extra: dict[str, Any] = {"coins": COINS, "ticks": N, "repeats": REPEATS, "partitions": 12}
    extra["commit"] = git_commit()  # at the start: the code that runs
    quix: Path | None = None
    try:
        quix = ensure_quix_env()
    except (OSError, subprocess.CalledProcessError) as exc:
        report.notes.append(f"WARNING: no Quix Streams venv ({exc}): its rows are missing")
    peers = [p for p in PEERS if p.venv == "project" or quix is not None]
    ok = quix is not None
    try:
        ticks = simulated_ticks(N)
        expected = expected_outputs(cfg0, ticks)
        extra["expected"] = expected.summary()
        extra["engine_alone_rate"] = len(ticks) / expected.seconds
        extra["work_alone_rate"], extra["work_alone_per_cpu_second"] = work_alone(cfg0, ticks)
        extra["versions"] = {
            "project": installed_versions(
                Path(sys.executable), ("confluent-kafka", "aiokafka", "fastavro")
            ),
            **(
                {"quix": installed_versions(quix, ("quixstreams", "confluent-kafka", "fastavro"))}
                if quix
                else {}
            ),
        }
        src = bench_config(new_prefix("peers-src"))
        ensure_topics(src)
        runs: dict[Peer, list[PeerRun]] = {p: [] for p in peers}
        try:
            publish_all(src, ticks)
            for round_no in range(REPEATS):
                print(f"  round {round_no + 1} of {REPEATS}", flush=True)
                for peer in peers:
                    python = peer_python(peer, quix)
                    runs[peer].append(run_peer(peer, src, expected, workdir, python))
        finally:
            delete_topics(src)

        summaries = {p: summarise(rs, N) for p, rs in runs.items()}
        ok &= all(s.all_ok for s in summaries.values())
        reference = summaries[REFERENCE].rate
        for peer, summary in summaries.items():
            report.add(*table_row(peer, summary, reference, expected.decisions))
        work_rate = extra["work_alone_rate"]
        work_cpu = extra["work_alone_per_cpu_second"]
        report.add(
            "decode→engine→encode, no Kafka", "", work_rate, ratio(work_rate, reference), "",
            work_cpu,
        )  # fmt: skip
        report.add("engine alone, no serde", "", extra["engine_alone_rate"], "")
        extra["runs"] = {p.label: [r.row() for r in rs] for p, rs in runs.items()}
        extra["medians"] = {
            p.label: {
                "ticks_per_s": s.rate,
                "cpu_seconds": s.cpu_seconds,
                "ticks_per_cpu_second": s.ticks_per_cpu_second,
                "cores_busy": s.cores,
                "good_runs": s.runs,
            }
            for p, s in summaries.items()
        }
        identical = all(r.parity.get("byte_identical") for rs in runs.values() for r in rs)
        report.notes.append(
            f"{N:,} ticks, {COINS} coins, 12 market-data partitions, one topic read by every "
            f"peer with a group of its own; median of {REPEATS} runs per peer, peers taking "
            "turns; ticks/s and CPU s over the peer's own window (first record → all outputs "
            "delivered or committed); cores busy = CPU s / window."
        )
        executions = sorted({r.parity["executions"] for rs in runs.values() for r in rs if r.ok})
        report.notes.append(
            f"every run made as many risk decisions as the in-process engine "
            f"({expected.decisions:,}); "
            + (
                "byte for byte, executions too"
                if identical
                else f"executions {', '.join(f'{x:,}' for x in executions)} against the "
                f"engine's {expected.executions:,}: the peers decide requests in the order "
                "their client delivers the partitions, not in event time (extra.runs: parity)"
            )
            if ok
            else "WARNING: a run failed or its decision count differs from the engine's "
            "(see extra.runs)"
        )
        report.notes.append(
            "runs (ticks/s @ the machine's 1-min load average before the run; 2 cores, shared):"
        )
        report.notes += [f"  {p.label}: {runs_text(rs)}" for p, rs in runs.items()]
        report.notes.append(f"measured on commit {extra['commit']}")
        report.notes.append(f"total benchmark time {time.perf_counter() - started:.0f} s")
        report.extra = extra
        report.emit()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


def git_commit() -> str:
    """The commit the benchmark runs on (``+dirty`` with uncommitted changes)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


if __name__ == "__main__":
    raise SystemExit(main())
