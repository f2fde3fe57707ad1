"""Watching a worker's pipeline drain: its ``/metrics`` figures (:func:`parse_metrics`), and
waiting until every tick published has gone through (:func:`wait_until_drained`). Used by the
demo, the Kafka replay, the tests and the benchmarks; reads the broker through
:class:`~huracan.streams.topics.RecordCounter`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from huracan.config import HuracanConfig
from huracan.runtime.worker_launcher import WorkerHandle
from huracan.streams.topics import RecordCounter


def _quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """``q`` quantile from cumulative (upper bound, count) histogram buckets (upper bound)."""
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    target = q * buckets[-1][1]
    for bound, count in buckets:
        if count >= target:
            return bound
    return buckets[-1][0]


#: the worker's counters that say whether its sequencer left event-time order: late requests
#: and stall releases are 0 when every request was decided in event-time order; partitions
#: declared idle after the last tick of a finite run are expected
ORDER_COUNTERS = (
    "huracan_late_requests_total",
    "huracan_stall_releases_total",
    "huracan_idle_partitions_total",
)


def parse_metrics(text: str) -> dict[str, object]:
    """The demo's figures from the worker's ``/metrics`` text (``order``: the
    :data:`ORDER_COUNTERS`)."""
    from prometheus_client.parser import text_string_to_metric_families

    decisions: dict[str, float] = {}
    hist: dict[str, list[tuple[float, float]]] = {}
    order = dict.fromkeys(ORDER_COUNTERS, 0.0)
    requests = held = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in order:
                order[s.name] += s.value
            elif s.name == "huracan_records_out_total" and s.labels["topic"].endswith(
                ".trade-requests"
            ):
                requests += s.value
            elif s.name == "huracan_held_requests":
                held += s.value
            elif s.name == "huracan_risk_decisions_total":
                key = f"{s.labels['decision']} / {s.labels['reason']}"
                decisions[key] = decisions.get(key, 0.0) + s.value
            elif s.name == "huracan_latency_seconds_bucket":
                le = float(s.labels["le"])
                hist.setdefault(s.labels["path"], []).append((le, s.value))
    latency = {
        path: (_quantile(sorted(b), 0.5) * 1000, _quantile(sorted(b), 0.99) * 1000)
        for path, b in hist.items()
    }
    return {
        "decisions": decisions,
        "latency_ms": latency,
        "requests": int(requests),
        "held": int(held),
        "order": order,
    }


@dataclass
class DrainResult:
    """What :func:`wait_until_drained` saw last.

    ``counts``: records per event type on the catalog topics as a ``read_committed`` consumer
    sees them (:class:`~huracan.streams.topics.RecordCounter`), except ``TradeRequest``: the
    requests the coin agent sent (the topic also carries watermarks and heartbeats). ``held``:
    requests the sequencer holds for event-time order.
    """

    drained: bool
    counts: dict[str, int] = field(default_factory=dict)
    held: int = 0
    worker_exited: bool = False


def wait_until_drained(
    cfg: HuracanConfig,
    worker: WorkerHandle,
    ticks: int,
    *,
    timeout_s: float,
    interval_s: float = 1.0,
    stable_polls: int = 3,
) -> DrainResult:
    """Wait until ``worker``'s pipeline has finished with the ``ticks`` ticks published.

    Drained means: every tick has its feature vector, no trade request is held for event-time
    order, every trade request the coin agent sent has its decision, and no topic's record
    count changed over ``stable_polls`` polls ``interval_s`` apart (so the last decisions'
    executions are in). Returns when drained, when the worker process has exited
    (``worker_exited``), or after ``timeout_s`` (``drained`` false). Raises
    :class:`confluent_kafka.KafkaException` when the broker does not answer.
    """
    deadline = time.monotonic() + timeout_s
    stable, last, held = 0, None, 0
    with RecordCounter(cfg) as counter:  # under exactly_once: committed records, read once
        while True:
            if worker.process.poll() is not None:
                return DrainResult(False, last or {}, held, worker_exited=True)
            counts = counter.counts()
            counts.pop("TradeRequest", None)
            parsed = parse_metrics((worker.get("/metrics") or b"").decode())
            counts["TradeRequest"] = int(parsed["requests"])  # type: ignore[call-overload]
            held = int(parsed["held"])  # type: ignore[call-overload]
            drained = (
                counts["FeatureVector"] >= ticks
                and held == 0
                and counts["RiskDecision"] == counts["TradeRequest"]
            )
            stable = stable + 1 if drained and counts == last else 0
            last = counts
            if stable >= stable_polls:
                return DrainResult(True, counts, held)
            if time.monotonic() >= deadline:
                return DrainResult(False, counts, held)
            time.sleep(interval_s)
