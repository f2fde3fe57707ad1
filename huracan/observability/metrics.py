"""Prometheus metrics of the pipeline (served at ``/metrics`` on the worker's web port).

Names are prefixed ``huracan_``. ``tick_to_*`` latencies run from the tick's event time to the
wall clock when the agent emitted the consequence, so they include every hop through Kafka (and
mean something only when ticks are stamped with the current time, as ``huracan simulate`` does);
``signal_to_decision`` and ``decision_to_execution`` run from the Kafka record timestamp of the
input (its producer's wall clock) to the emission.
"""

from __future__ import annotations

from collections.abc import Mapping
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


#: the (scope, name) exposure series set so far: a bucket that empties is left out of the
#: summary, and its series must then fall to 0 instead of keeping its last value
_EXPOSURE_SHOWN: set[tuple[str, str]] = set()


def update_exposure(summary: Mapping[str, Any]) -> None:
    """Set the exposure and utilisation gauges from ``get_exposure_summary()``.

    A sector or exchange whose exposure went back to nothing is set to 0 (the summary leaves
    empty buckets out)."""
    EXPOSURE.labels(scope="global", name="total").set(summary["global"]["total_exposure_pct"])
    now: set[tuple[str, str]] = set()
    for scope in ("sector", "exchange"):
        for name, data in summary.get(f"per_{scope}", {}).items():
            EXPOSURE.labels(scope=scope, name=name).set(data["exposure_pct"])
            now.add((scope, name))
    for scope, name in _EXPOSURE_SHOWN - now:
        EXPOSURE.labels(scope=scope, name=name).set(0.0)
    _EXPOSURE_SHOWN.update(now)
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


# ------------------------------------------------------------------------------------------
# State read at scrape time (huracan.application's /metrics view sets these before it renders)
# ------------------------------------------------------------------------------------------

WORKER_INFO = Gauge(
    "huracan_worker_info",
    "Always 1; the labels say which app id and topic prefix this worker runs",
    ["app_id", "topic_prefix"],
)
SEQUENCER_OWNED = Gauge(
    "huracan_risk_sequencer_owned",
    "1 when this worker holds the risk sequencer's partition (and so its risk state)",
)
BREAKER_TRIPPED = Gauge(
    "huracan_breaker_tripped", "1 while the circuit breaker is tripped, else 0", ["breaker"]
)
EXPOSURE_LIMIT = Gauge(
    "huracan_exposure_limit_pct",
    "Exposure limits in % of equity, by scope (global, coin, sector, exchange) and kind "
    "(hard: BLOCK past it; soft: THROTTLE past it, soft_throttle_threshold_pct of the hard one)",
    ["scope", "kind"],
)
SOFT_THRESHOLD = Gauge(
    "huracan_soft_throttle_threshold_pct",
    "Utilisation of any limit, in %, past which requests are throttled",
)
EQUITY = Gauge("huracan_equity_usd", "Account equity the risk limits are a percentage of")
DRAWDOWN = Gauge("huracan_drawdown_pct", "Drawdown from peak equity, in %")
DRAWDOWN_LIMIT = Gauge(
    "huracan_drawdown_limit_pct", "Drawdown, in %, that trips the drawdown breaker"
)
TRADES = Gauge(
    "huracan_trades", "Open positions (active) and approved reservations not yet filled "
    "(in_flight)", ["state"]
)  # fmt: skip
MODELS_LOADED = Gauge("huracan_models_loaded", "Coins trading a model from the registry")
MODELS_REFUSED = Gauge(
    "huracan_models_refused",
    "Coins whose best active registry model was refused (sha256 mismatch, unreadable, "
    "unknown type) and that trade an older version or the baseline instead",
)
MODEL_REFRESH_OK = Gauge(
    "huracan_model_refresh_ok",
    "1 when the last registry refresh reached the registry, 0 when it failed "
    "(-1 before the first refresh)",
)
MODEL_REFRESH_FAILURES = Gauge(
    "huracan_model_refresh_failures", "Registry refreshes that failed since the worker started"
)


def set_worker_info(app_id: str, topic_prefix: str) -> None:
    """Label this process's series with the app it runs (``huracan_worker_info``)."""
    WORKER_INFO.labels(app_id=app_id, topic_prefix=topic_prefix).set(1)


def update_risk_state(summary: Mapping[str, Any] | None, limits: Mapping[str, Any]) -> None:
    """Set breaker, limit, equity and trade gauges from ``get_exposure_summary()`` and the
    limits in force (``RiskLimits.to_dict()``); ``summary=None`` (this worker does not hold the
    sequencer) sets only ``huracan_risk_sequencer_owned`` to 0."""
    if summary is None:
        SEQUENCER_OWNED.set(0)
        return
    SEQUENCER_OWNED.set(1)
    update_exposure(summary)
    for name, state in summary.get("breakers", {}).items():
        BREAKER_TRIPPED.labels(breaker=name).set(1 if state["tripped"] else 0)
    soft = float(limits["soft_throttle_threshold_pct"])
    SOFT_THRESHOLD.set(soft)
    for scope in ("global", "coin", "sector", "exchange"):
        key = "global_max_exposure_pct" if scope == "global" else f"per_{scope}_max_exposure_pct"
        hard = float(limits[key])
        EXPOSURE_LIMIT.labels(scope=scope, kind="hard").set(hard)
        EXPOSURE_LIMIT.labels(scope=scope, kind="soft").set(hard * soft / 100.0)
    EQUITY.set(float(summary["equity_usd"]))
    DRAWDOWN.set(float(summary["drawdown_pct"]))
    DRAWDOWN_LIMIT.set(float(limits["max_drawdown_pct"]))
    TRADES.labels(state="active").set(int(summary["active_trades"]))
    TRADES.labels(state="in_flight").set(int(summary["in_flight_trades"]))


def update_models(status: Mapping[str, Any]) -> None:
    """Set the model gauges from ``RegistryModels.status().as_dict()``."""
    MODELS_LOADED.set(int(status["models_loaded"]))
    MODELS_REFUSED.set(len(status.get("load_errors") or {}))
    ok = status.get("last_refresh_ok")
    MODEL_REFRESH_OK.set(-1 if ok is None else int(bool(ok)))
    MODEL_REFRESH_FAILURES.set(int(status.get("failures", 0)))
