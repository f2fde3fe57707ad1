"""The work every peer does, how a peer is told what to do, and what it reports.

The work, per tick: decode the record with the project's serde → ``build_engine(cfg).on_tick``
→ encode each output (features, signal, trade requests, decisions, executions) with the same
serde → hand it to the peer's producer, keyed by coin, to the output topic of its event type.
At the end of the topic, ``finish()`` decides the requests the engine still holds. This is
the work of :func:`benchmarks.bench_pipeline.baseline_run`, split in the three steps a stream
framework calls separately (deserializer, processing function, serializer).

The timed window is the peer's own: from the first record it receives (after its group
has joined and its partitions are assigned) to the moment every output is delivered (at
least once) or its last transaction is committed (exactly once). CPU seconds are
``getrusage(RUSAGE_SELF)`` over the same window: every thread of the process, librdkafka's
included.

Nothing here imports a Kafka client: this module runs in the project's venv and in the Quix
Streams venv (which has an older confluent-kafka).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from huracan.config import HuracanConfig, build_config
from huracan.domain.engine import EngineOutput
from huracan.streams.serde import make_serde
from huracan.streams.topics import TopicCatalog
from huracan.wiring import build_engine

#: the engine's outputs, in the order the worker emits them
OUTPUT_TYPES = ("FeatureVector", "Signal", "TradeRequest", "RiskDecision", "Execution")
GUARANTEES = ("at_least_once", "exactly_once")
#: records a raw peer takes at once (as the baseline and the worker's ``faust.batch_size``)
BATCH = 500
#: at least once: a raw peer flushes its producer and commits its offsets this often
CHECKPOINT_S = 1.0
#: a peer that has not received its first record by then gives up
FIRST_RECORD_TIMEOUT_S = 60.0

#: an output ready for a producer: (topic, key, Avro value)
Encoded = tuple[str, bytes, bytes]
#: an output before encoding: (event type, key, record)
Pending = tuple[str, bytes, dict[str, Any]]


@dataclass(frozen=True)
class PeerSpec:
    """What the benchmark asks of one peer run (passed as command-line arguments).

    ``out_prefix``: the topic prefix of the run's output topics (the benchmark creates them);
    ``group``: the consumer group, new for every run; ``ticks``: records in ``source_topic``,
    all of which the peer processes before it stops."""

    bootstrap: str
    source_topic: str
    out_prefix: str
    group: str
    ticks: int
    guarantee: str
    result_path: Path
    #: Quix Streams' ``commit_every`` (0: its default); the raw peers refuse anything else
    commit_every: int = 0

    def to_argv(self) -> list[str]:
        return [
            *("--bootstrap", self.bootstrap, "--source-topic", self.source_topic),
            *("--out-prefix", self.out_prefix, "--group", self.group),
            *("--ticks", str(self.ticks), "--guarantee", self.guarantee),
            *("--result", str(self.result_path), "--commit-every", str(self.commit_every)),
        ]

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> PeerSpec:
        p = argparse.ArgumentParser(description=__doc__)
        p.add_argument("--bootstrap", required=True)
        p.add_argument("--source-topic", required=True)
        p.add_argument("--out-prefix", required=True)
        p.add_argument("--group", required=True)
        p.add_argument("--ticks", type=int, required=True)
        p.add_argument("--guarantee", choices=GUARANTEES, required=True)
        p.add_argument("--result", type=Path, required=True)
        p.add_argument("--commit-every", type=int, default=0)
        a = p.parse_args(list(argv))
        return cls(
            a.bootstrap,
            a.source_topic,
            a.out_prefix,
            a.group,
            a.ticks,
            a.guarantee,
            a.result,
            a.commit_every,
        )

    def config(self) -> HuracanConfig:
        """The base config (``HURACAN__…`` overrides applied) on the run's output topics."""
        return build_config(
            {"kafka": {"topic_prefix": self.out_prefix, "bootstrap_servers": self.bootstrap}},
            environ=os.environ,
        )


class TickWork:
    """decode → engine → encode for one peer: the same objects and calls as the baseline."""

    def __init__(self, cfg: HuracanConfig) -> None:
        self.serde = make_serde(cfg)
        self.engine = build_engine(cfg)
        catalog = TopicCatalog.from_config(cfg)
        self.topics = {e: catalog.for_event_type(e).name for e in OUTPUT_TYPES}
        self.sent: Counter[str] = Counter()

    def decode(self, value: bytes) -> dict[str, Any]:
        return self.serde.decode(value, expected="MarketTick")

    def step(self, tick: dict[str, Any]) -> list[Pending]:
        """The engine's outputs for one decoded tick, in emit order."""
        return self.pending(self.engine.on_tick(tick))

    def finish(self) -> list[Pending]:
        """The requests the engine still holds, decided (call once, after the last tick)."""
        return self.pending(self.engine.finish())

    def pending(self, out: EngineOutput) -> list[Pending]:
        items: list[Pending] = []
        if out.features is not None:
            items.append(("FeatureVector", out.features.coin.encode(), out.features.to_record()))
        if out.signal is not None:
            items.append(("Signal", out.signal.coin.encode(), out.signal.to_record()))
        items += [("TradeRequest", str(r["coin"]).encode(), r) for r in out.requests]
        items += [("RiskDecision", str(d["coin"]).encode(), d) for d in out.decisions]
        items += [("Execution", str(x["coin"]).encode(), x) for x in out.executions]
        return items

    def encode(self, event_type: str, record: dict[str, Any]) -> bytes:
        self.sent[event_type] += 1
        topic = self.topics[event_type]
        return self.serde.encode(event_type, record, topic=topic)

    def encoded(self, items: list[Pending]) -> list[Encoded]:
        return [(self.topics[e], key, self.encode(e, record)) for e, key, record in items]

    def on_value(self, value: bytes) -> list[Encoded]:
        """All three steps for one raw record."""
        return self.encoded(self.step(self.decode(value)))


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far, all threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass
class PeerResult:
    """A peer run's report, written as JSON to ``PeerSpec.result_path``."""

    peer: str
    guarantee: str
    ticks: int
    seconds: float
    cpu_seconds: float
    sent: dict[str, int]
    client: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ticks / self.seconds if self.seconds > 0 else float("nan")

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> PeerResult:
        return cls(**json.loads(path.read_text()))


class Window:
    """The timed window: opened at the first record, closed when everything is out."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.cpu0 = 0.0
        self.seconds = 0.0
        self.cpu = 0.0

    def open(self) -> None:
        if self.t0 is None:
            self.t0 = time.perf_counter()
            self.cpu0 = cpu_seconds()

    @property
    def opened(self) -> bool:
        return self.t0 is not None

    def close(self) -> None:
        if self.t0 is None:
            raise RuntimeError("the peer received no record")
        self.seconds = time.perf_counter() - self.t0
        self.cpu = cpu_seconds() - self.cpu0
