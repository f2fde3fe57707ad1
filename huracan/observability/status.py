"""``huracan status``: what an operator without Grafana looks at, from a worker's web views.

A :class:`Snapshot` is one read of a worker's ``/risk``, ``/health`` and ``/metrics``;
:func:`render` turns two snapshots (the earlier one gives rates and windowed latencies) into a
rich renderable: health, exposure by level with utilisation bars against the soft and hard
limits, breakers, decisions and executions per second, latency per hop against the spec's
targets, consumer lag and dead letters. :func:`run` shows it once or refreshes it live.

Nothing here raises for a worker that is down or a view that is missing: the snapshot records
what could not be read, and the view says so.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

#: the spec's latency targets (Latency: signal < 100 ms, risk check < 10 ms, order < 50 ms)
LATENCY_TARGETS_S: Mapping[str, float | None] = {
    "tick_to_signal": 0.1,
    "signal_to_decision": 0.01,
    "decision_to_execution": 0.05,
    "tick_to_execution": None,
}
DEFAULT_SOFT_THRESHOLD_PCT = 80.0
BAR_WIDTH = 20

Labels = tuple[tuple[str, str], ...]


def _labels(mapping: Mapping[str, str]) -> Labels:
    return tuple(sorted(mapping.items()))


@dataclass(frozen=True)
class Metrics:
    """Samples of a Prometheus text exposition, by sample name (``…_total``, ``…_bucket``)."""

    samples: Mapping[str, Mapping[Labels, float]]

    @classmethod
    def parse(cls, text: str) -> Metrics:
        """Parse the text format; raises ``ValueError`` for text that is not one."""
        out: dict[str, dict[Labels, float]] = defaultdict(dict)
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[s.name][_labels(s.labels)] = float(s.value)
        return cls(dict(out))

    def series(self, name: str) -> list[tuple[dict[str, str], float]]:
        """Every ``(labels, value)`` of sample ``name`` (empty when the worker has none)."""
        return [(dict(k), v) for k, v in self.samples.get(name, {}).items()]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one series of ``name`` with exactly ``labels``, or ``None``."""
        return self.samples.get(name, {}).get(_labels(labels))

    def sum_by(self, name: str, label: str) -> dict[str, float]:
        """``sum by (label) (name)``."""
        out: dict[str, float] = defaultdict(float)
        for labels, v in self.series(name):
            out[labels.get(label, "")] += v
        return dict(out)


@dataclass(frozen=True)
class Snapshot:
    """One read of a worker: ``risk`` is ``None`` when the worker does not hold the sequencer
    (404) or could not be read; ``errors`` names every view that could not be read."""

    url: str
    taken_at: float
    metrics: Metrics
    risk: Mapping[str, Any] | None = None
    health: Mapping[str, Any] | None = None
    errors: tuple[str, ...] = ()

    @property
    def reachable(self) -> bool:
        """True when at least ``/metrics`` answered."""
        return bool(self.metrics.samples)


Fetcher = Callable[[str], tuple[int, bytes] | None]


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes] | None:
    """``(status, body)`` of a GET (also for an HTTP error status), ``None`` when unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - an operator's URL
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())
    except (OSError, ValueError):
        return None


def take_snapshot(
    base_url: str, *, fetch: Fetcher = http_get, clock: Callable[[], float] = time.monotonic
) -> Snapshot:
    """Read ``/metrics``, ``/risk`` and ``/health`` of the worker at ``base_url``."""
    base = base_url.rstrip("/")
    errors: list[str] = []
    metrics = Metrics({})
    got = fetch(base + "/metrics")
    if got is None or got[0] != 200:
        errors.append(f"/metrics: {'unreachable' if got is None else f'HTTP {got[0]}'}")
    else:
        try:
            metrics = Metrics.parse(got[1].decode("utf-8", "replace"))
        except ValueError as exc:
            errors.append(f"/metrics: {exc}")
    taken_at = clock()
    risk = _json_view(fetch, base, "/risk", errors, ok_statuses=(200,), quiet_statuses=(404,))
    health = _json_view(fetch, base, "/health", errors, ok_statuses=(200, 503))
    return Snapshot(base, taken_at, metrics, risk, health, tuple(errors))


def _json_view(
    fetch: Fetcher,
    base: str,
    path: str,
    errors: list[str],
    *,
    ok_statuses: tuple[int, ...],
    quiet_statuses: tuple[int, ...] = (),
) -> Mapping[str, Any] | None:
    got = fetch(base + path)
    if got is None:
        errors.append(f"{path}: unreachable")
        return None
    status, body = got
    if status in quiet_statuses:
        return None
    if status not in ok_statuses:
        errors.append(f"{path}: HTTP {status}")
        return None
    try:
        data = json.loads(body)
    except ValueError:
        errors.append(f"{path}: not JSON")
        return None
    return data if isinstance(data, dict) else None


# ---------------------------------------------------------------------------------- arithmetic


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of cumulative ``(le, count)`` buckets, interpolated linearly inside a
    bucket as Prometheus does; ``None`` without observations. A quantile in the ``+Inf`` bucket
    is the largest finite bound."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return lower_bound
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound


def latency_buckets(metrics: Metrics, path: str) -> dict[float, float]:
    """``{le: cumulative count}`` of ``huracan_latency_seconds`` for one hop."""
    out: dict[float, float] = {}
    for labels, v in metrics.series("huracan_latency_seconds_bucket"):
        if labels.get("path") == path:
            out[float(labels["le"])] = v
    return out


def rates(
    prev: Snapshot | None, cur: Snapshot, name: str, label: str
) -> dict[str, tuple[float, float | None]]:
    """``{label value: (total, per second)}`` of counter ``name`` summed by ``label``; the
    rate is ``None`` without an earlier snapshot (or after a worker restart reset it)."""
    now = cur.metrics.sum_by(name, label)
    before = prev.metrics.sum_by(name, label) if prev is not None else {}
    dt = cur.taken_at - prev.taken_at if prev is not None else 0.0
    out: dict[str, tuple[float, float | None]] = {}
    for key, total in sorted(now.items()):
        rate: float | None = None
        if prev is not None and dt > 0:
            delta = total - before.get(key, 0.0)
            rate = delta / dt if delta >= 0 else None
        out[key] = (total, rate)
    return out


def hop_latency(
    prev: Snapshot | None, cur: Snapshot, path: str
) -> tuple[float | None, float | None, str]:
    """``(p50, p99, window)`` of one hop: over the observations between the two snapshots
    (``window="recent"``), or since the worker started when there were none (``"all"``)."""
    now = latency_buckets(cur.metrics, path)
    if prev is not None:
        before = latency_buckets(prev.metrics, path)
        delta = [(le, c - before.get(le, 0.0)) for le, c in now.items()]
        if delta and max(c for _, c in delta) > 0 and min(c for _, c in delta) >= 0:
            return histogram_quantile(0.5, delta), histogram_quantile(0.99, delta), "recent"
    items = list(now.items())
    return histogram_quantile(0.5, items), histogram_quantile(0.99, items), "all"


# ------------------------------------------------------------------------------------ rendering


def utilisation_bar(pct: float, soft_pct: float, width: int = BAR_WIDTH) -> Text:
    """A bar of ``width`` cells for a utilisation in % of the hard limit: green below the soft
    threshold, yellow from it, red at or past the hard limit (100%)."""
    shown = max(0.0, min(pct, 100.0))
    filled = round(shown * width / 100.0)
    style = "red" if pct >= 100.0 else "yellow" if pct >= soft_pct else "green"
    bar = Text("█" * filled, style=style)
    bar.append("░" * (width - filled), style="dim")
    bar.append(f" {pct:5.1f}%", style=style)
    return bar


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:,.1f} ms"


def _rate(r: float | None) -> str:
    return "–" if r is None else f"{r:,.1f}/s"


def _header(cur: Snapshot) -> RenderableType:
    health = cur.health or {}
    ok = health.get("ok")
    state = (
        Text("UNREACHABLE", style="bold red")
        if not cur.reachable
        else Text("OK", style="bold green")
        if ok
        else Text("DEGRADED", style="bold red")
        if ok is False
        else Text("health unknown", style="yellow")
    )
    line = Text.assemble(("worker ", "bold"), (cur.url, "cyan"), "  ", state)
    # the latency watchdog's mode (issue 17), once the worker exports it
    if cur.metrics.value("huracan_reduce_only") == 1:
        line.append("  REDUCE-ONLY (closes only)", style="bold yellow")
    services = health.get("services") or {}
    if services:
        line.append("   services: ")
        for name, s in services.items():
            line.append(f"{name} ", style="green" if s.get("ok") else "bold red")
    models = health.get("models") or {}
    if models:
        refused = len(models.get("load_errors") or {})
        line.append(f"  models: {models.get('models_loaded', 0)} loaded")
        if refused:
            line.append(f", {refused} refused", style="bold red")
        if models.get("last_refresh_ok") is False:
            line.append(", registry refresh failing", style="bold red")
    if cur.risk is None and cur.reachable:
        line.append("\nthis worker does not hold the risk sequencer: no exposure here", "yellow")
    for err in cur.errors:
        line.append(f"\n{err}", style="red")
    return line


def _exposure(cur: Snapshot) -> Table | None:
    risk = cur.risk
    if risk is None:
        return None
    soft = cur.metrics.value("huracan_soft_throttle_threshold_pct") or DEFAULT_SOFT_THRESHOLD_PCT
    table = Table(title="exposure (% of equity) and limit utilisation", expand=True)
    for col in ("level", "name", "exposure", "limit"):
        table.add_column(col, justify="right" if col in ("exposure", "limit") else "left")
    table.add_column(f"utilisation (soft {soft:.0f}%, hard 100%)")
    g = risk.get("global", {})
    table.add_row(
        "global",
        "total",
        f"{g.get('total_exposure_pct', 0.0):.2f}%",
        f"{g.get('limit_pct', 0.0):.0f}%",
        utilisation_bar(float(g.get("utilization_pct", 0.0)), soft),
    )
    for level in ("sector", "exchange", "coin"):
        buckets: Mapping[str, Mapping[str, Any]] = risk.get(f"per_{level}", {}) or {}
        ranked = sorted(buckets.items(), key=lambda kv: -float(kv[1].get("utilization_pct", 0)))
        limit = 5 if level == "coin" else len(ranked)
        for name, b in ranked[:limit]:
            table.add_row(
                level,
                name,
                f"{b.get('exposure_pct', 0.0):.2f}%",
                f"{b.get('limit_pct', 0.0):.0f}%",
                utilisation_bar(float(b.get("utilization_pct", 0.0)), soft),
            )
        if level == "coin" and len(ranked) > limit:
            table.add_row("coin", f"… {len(ranked) - limit} more", "", "", "")
    for name, t in (risk.get("trade_limits") or {}).items():
        table.add_row(
            "trades",
            name,
            str(t.get("count", 0)),
            str(t.get("limit", "")),
            utilisation_bar(float(t.get("utilization_pct", 0.0)), soft),
        )
    return table


def _breakers(cur: Snapshot) -> Table:
    breakers = (cur.risk or {}).get("breakers") or (cur.health or {}).get("breakers") or {}
    table = Table(title="breakers", expand=True)
    for col in ("breaker", "state", "reason"):
        table.add_column(col)
    if not breakers:
        from_metrics = cur.metrics.series("huracan_breaker_tripped")
        breakers = {
            labels["breaker"]: {"tripped": bool(v), "reason": None} for labels, v in from_metrics
        }
    for name, b in sorted(breakers.items()):
        state = Text("TRIPPED", "bold red") if b.get("tripped") else Text("ok", "green")
        table.add_row(name, state, str(b.get("reason") or ""))
    if not breakers:
        table.add_row("–", Text("unknown (no sequencer here)", "yellow"), "")
    return table


def _flow(prev: Snapshot | None, cur: Snapshot) -> Table:
    table = Table(title="decisions and executions", expand=True)
    for col in ("what", "kind", "per second", "total"):
        table.add_column(col, justify="right" if col in ("per second", "total") else "left")
    for what, name, label in (
        ("decisions", "huracan_risk_decisions_total", "decision"),
        ("executions", "huracan_executions_total", "action"),
        ("control", "huracan_control_events_total", "command"),
    ):
        for key, (total, rate) in rates(prev, cur, name, label).items():
            style = "red" if key in ("BLOCK",) else "yellow" if key == "THROTTLE" else ""
            table.add_row(what, Text(key, style=style), _rate(rate), f"{total:,.0f}")
    errors = cur.metrics.value("huracan_execution_errors_total")
    if errors:
        table.add_row("executions", Text("errors", "red"), "", f"{errors:,.0f}")
    return table


def _latency(prev: Snapshot | None, cur: Snapshot) -> Table:
    table = Table(title="latency per hop", expand=True)
    for col in ("hop", "p50", "p99", "target", "window"):
        table.add_column(col, justify="left" if col in ("hop", "window") else "right")
    for path, target in LATENCY_TARGETS_S.items():
        p50, p99, window = hop_latency(prev, cur, path)
        over = target is not None and p99 is not None and p99 > target
        table.add_row(
            path,
            _ms(p50),
            Text(_ms(p99), style="bold red" if over else ""),
            "–" if target is None else f"< {target * 1000:.0f} ms",
            window if p99 is not None else "no data",
        )
    return table


def _lag(cur: Snapshot) -> Table:
    table = Table(title="consumer lag (records)", expand=True)
    for col in ("topic", "partitions", "total", "max"):
        table.add_column(col, justify="left" if col == "topic" else "right")
    per_topic: dict[str, list[float]] = defaultdict(list)
    for labels, v in cur.metrics.series("huracan_consumer_lag"):
        per_topic[labels.get("topic", "")].append(v)
    for topic, values in sorted(per_topic.items()):
        total = sum(values)
        table.add_row(
            topic,
            str(len(values)),
            Text(f"{total:,.0f}", style="yellow" if total > 1000 else ""),
            f"{max(values):,.0f}",
        )
    if not per_topic:
        table.add_row("–", "", "", "")
    return table


def _dead_letters(prev: Snapshot | None, cur: Snapshot) -> Table:
    table = Table(title="dead letters", expand=True)
    for col in ("agent: reason", "per second", "total"):
        table.add_column(col, justify="left" if col.startswith("agent") else "right")
    now: dict[str, float] = defaultdict(float)
    for labels, v in cur.metrics.series("huracan_dead_letters_total"):
        now[f"{labels.get('agent', '')}: {labels.get('reason', '')}"] += v
    before: dict[str, float] = defaultdict(float)
    if prev is not None:
        for labels, v in prev.metrics.series("huracan_dead_letters_total"):
            before[f"{labels.get('agent', '')}: {labels.get('reason', '')}"] += v
    dt = cur.taken_at - prev.taken_at if prev is not None else 0.0
    for key, total in sorted(now.items()):
        rate = (total - before[key]) / dt if prev is not None and dt > 0 else None
        table.add_row(Text(key, style="red"), _rate(rate), f"{total:,.0f}")
    if not now:
        table.add_row(Text("none", style="green"), "", "0")
    return table


def render(prev: Snapshot | None, cur: Snapshot) -> RenderableType:
    """The status view of ``cur`` (``prev``, an earlier snapshot, gives rates and recent
    latencies)."""
    parts: list[RenderableType] = [_header(cur)]
    if cur.reachable:
        exposure = _exposure(cur)
        if exposure is not None:
            parts.append(exposure)
        parts += [
            _breakers(cur),
            _flow(prev, cur),
            _latency(prev, cur),
            _lag(cur),
            _dead_letters(prev, cur),
        ]
    return Panel(Group(*parts), title="huracan status", border_style="blue")


def run(
    base_url: str,
    *,
    once: bool,
    interval: float,
    console: Console,
    fetch: Fetcher = http_get,
    sleep: Callable[[float], None] = time.sleep,
    iterations: int | None = None,
) -> int:
    """Show the status of the worker at ``base_url``.

    ``once``: two snapshots ``interval`` seconds apart (for rates), printed once; returns 1
    when the worker's ``/metrics`` did not answer, else 0. Otherwise refresh every ``interval``
    seconds until interrupted (or ``iterations`` refreshes) and return 0.
    """
    prev = take_snapshot(base_url, fetch=fetch)
    if once:
        cur = prev
        if prev.reachable:
            sleep(interval)
            cur = take_snapshot(base_url, fetch=fetch)
        console.print(render(prev if cur is not prev else None, cur))
        return 0 if cur.reachable else 1
    done = 0
    with Live(render(None, prev), console=console, refresh_per_second=4, screen=False) as live:
        try:
            while iterations is None or done < iterations:
                sleep(interval)
                cur = take_snapshot(base_url, fetch=fetch)
                live.update(render(prev, cur))
                prev = cur
                done += 1
        except KeyboardInterrupt:
            pass
    return 0
