"""Prometheus metrics of the pipeline (served at ``/metrics`` on the worker's web port).

Names are prefixed ``huracan_``. ``tick_to_*`` latencies run from the tick's event time to the
wall clock when the agent emitted the consequence, so they include every hop through Kafka (and
mean something only when ticks are stamped with the current time, as ``huracan simulate`` does);
``signal_to_decision`` and ``decision_to_execution`` run from the Kafka record timestamp of the
input (its producer's wall clock) to the emission.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

RECORDS_IN = Counter(
    "huracan_records_in_total", "Records consumed, by agent and topic", ["agent", "topic"]
)
RECORDS_OUT = Counter(
    "huracan_records_out_total", "Records produced, by agent and topic", ["agent", "topic"]
)
DEAD_LETTERS = Counter(
    "huracan_dead_letters_total", "Records sent to the dead-letter topic", ["agent", "reason"]
)
DUPLICATES = Counter(
    "huracan_duplicates_total", "Redelivered records recognised and skipped", ["agent"]
)
COST_REJECTIONS = Counter(
    "huracan_cost_rejections_total", "Signals dropped by the cost check", ["reason"]
)
DECISIONS = Counter(
    "huracan_risk_decisions_total", "Risk decisions by outcome and reason", ["decision", "reason"]
)
EXECUTIONS = Counter("huracan_executions_total", "Executions by action", ["action"])
EXECUTION_ERRORS = Counter("huracan_execution_errors_total", "Decisions that could not be filled")
EXITS = Counter("huracan_exits_total", "Close requests by exit rule", ["reason"])
CONTROL = Counter(
    "huracan_control_events_total", "Control events by command and outcome", ["command", "outcome"]
)
LATENCY = Histogram(
    "huracan_latency_seconds",
    "tick_to_signal, tick_to_execution: from the tick's event time; signal_to_decision, "
    "decision_to_execution: from the Kafka record timestamp of the request or decision",
    ["path"],
    buckets=_LATENCY_BUCKETS,
)
EXPOSURE = Gauge("huracan_exposure_pct", "Exposure in % of equity", ["scope", "name"])
UTILISATION = Gauge("huracan_limit_utilisation_pct", "Use of each limit in %", ["limit"])
CONSUMER_LAG = Gauge(
    "huracan_consumer_lag", "Records behind the high watermark", ["topic", "partition"]
)


def observe_latency(path: str, event_ts_us: int, now_s: float) -> None:
    """Record ``now - event time`` for ``path`` (negative gaps, from clock skew, are dropped)."""
    observe_since(path, event_ts_us / 1e6, now_s)


def observe_since(path: str, start_s: float, now_s: float) -> None:
    """Record ``now - start`` (seconds) for ``path``; negative gaps are dropped."""
    dt = now_s - start_s
    if dt >= 0:
        LATENCY.labels(path=path).observe(dt)


def update_exposure(summary: dict[str, Any]) -> None:
    """Set the exposure and utilisation gauges from ``get_exposure_summary()``."""
    EXPOSURE.labels(scope="global", name="total").set(summary["global"]["total_exposure_pct"])
    for scope in ("sector", "exchange"):
        for name, data in summary.get(f"per_{scope}", {}).items():
            EXPOSURE.labels(scope=scope, name=name).set(data["exposure_pct"])
    for limit, pct in summary.get("utilization_pct", {}).items():
        UTILISATION.labels(limit=limit).set(pct)


LATE_REQUESTS = Counter(
    "huracan_late_requests_total",
    "Trade requests that reached the sequencer after their event time was released",
)
STALL_RELEASES = Counter(
    "huracan_stall_releases_total",
    "Times held requests were released out of event-time order because the slowest "
    "watermark stopped moving for faust.order_stall_ms (a partition nobody owns)",
)
IDLE_PARTITIONS = Counter(
    "huracan_idle_partitions_total",
    "Times a coin agent declared a market-data partition idle (caught up and silent)",
)
HELD_REQUESTS = Gauge(
    "huracan_held_requests", "Trade requests waiting for every partition's watermark"
)
