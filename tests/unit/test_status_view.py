"""huracan.observability.status: parsing and rendering, on payloads recorded from a live worker
(tests/unit/payloads/status: /metrics, /risk, /health after 2,000 ticks and one dead letter)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from rich.console import Console

from huracan.observability.status import (
    Metrics,
    Snapshot,
    histogram_quantile,
    hop_latency,
    rates,
    render,
    run,
    take_snapshot,
    utilisation_bar,
)

DATA = Path(__file__).parent / "payloads" / "status"
METRICS = (DATA / "metrics.txt").read_bytes()
RISK = (DATA / "risk.json").read_bytes()
HEALTH = (DATA / "health.json").read_bytes()


def fetcher(views: dict[str, tuple[int, bytes] | None]):
    calls: list[str] = []

    def fetch(url: str) -> tuple[int, bytes] | None:
        calls.append(url)
        for path, answer in views.items():
            if url.endswith(path):
                return answer
        return None

    fetch.calls = calls  # type: ignore[attr-defined]
    return fetch


def recorded(**changes: tuple[int, bytes] | None):
    views: dict[str, tuple[int, bytes] | None] = {
        "/metrics": (200, METRICS),
        "/risk": (200, RISK),
        "/health": (200, HEALTH),
    }
    views.update({f"/{k}": v for k, v in changes.items()})
    return fetcher(views)


def text_of(renderable) -> str:
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(renderable)
    return out.getvalue()


def snapshot(at: float, text: str) -> Snapshot:
    return Snapshot("http://w", at, Metrics.parse(text))


def test_metrics_when_recorded_exposition_parsed_then_counters_sum_by_label() -> None:
    metrics = Metrics.parse(METRICS.decode())

    assert metrics.sum_by("huracan_risk_decisions_total", "decision") == {
        "APPROVE": 111.0,
        "BLOCK": 82.0,
        "THROTTLE": 404.0,
    }
    assert metrics.value("huracan_breaker_tripped", breaker="kill_switch") == 0.0
    assert metrics.value("huracan_soft_throttle_threshold_pct") == 80.0
    assert metrics.series("huracan_no_such_metric") == []


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.5, 0.1), (0.75, 0.15), (1.0, 0.2), (0.0, 0.0)],
)
def test_histogram_quantile_when_inside_a_bucket_then_interpolated_linearly(
    q: float, expected: float
) -> None:
    buckets = [(0.1, 50.0), (0.2, 100.0), (math.inf, 100.0)]

    assert histogram_quantile(q, buckets) == pytest.approx(expected)


def test_histogram_quantile_when_in_the_inf_bucket_then_the_largest_finite_bound() -> None:
    assert histogram_quantile(0.99, [(0.1, 1.0), (math.inf, 10.0)]) == 0.1


def test_histogram_quantile_when_no_observations_then_none() -> None:
    assert histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None
    assert histogram_quantile(0.5, []) is None


def test_rates_when_two_snapshots_then_per_second_by_label_and_none_without_a_first() -> None:
    before = snapshot(10.0, 'huracan_executions_total{action="OPEN"} 10\n')
    after = snapshot(
        12.0,
        'huracan_executions_total{action="OPEN"} 30\nhuracan_executions_total{action="CLOSE"} 4\n',
    )

    assert rates(before, after, "huracan_executions_total", "action") == {
        "CLOSE": (4.0, 2.0),
        "OPEN": (30.0, 10.0),
    }
    assert rates(None, after, "huracan_executions_total", "action")["OPEN"] == (30.0, None)


def _latency_text(fast: int, slow: int) -> str:
    total = fast + slow
    return (
        "# TYPE huracan_latency_seconds histogram\n"
        f'huracan_latency_seconds_bucket{{le="0.01",path="tick_to_signal"}} {fast}\n'
        f'huracan_latency_seconds_bucket{{le="1.0",path="tick_to_signal"}} {total}\n'
        f'huracan_latency_seconds_bucket{{le="+Inf",path="tick_to_signal"}} {total}\n'
        f'huracan_latency_seconds_count{{path="tick_to_signal"}} {total}\n'
        f'huracan_latency_seconds_sum{{path="tick_to_signal"}} 1\n'
    )


def test_hop_latency_when_new_observations_between_snapshots_then_recent_window() -> None:
    before = snapshot(0.0, _latency_text(fast=100, slow=0))
    after = snapshot(1.0, _latency_text(fast=100, slow=100))

    p50, p99, window = hop_latency(before, after, "tick_to_signal")

    # the recent 100 were all slow: the window's quantiles are in the slow bucket
    assert window == "recent"
    assert p50 == pytest.approx(0.505)
    assert p99 == pytest.approx(0.01 + 0.99 * 99 / 100)
    # over the whole life, half were fast
    assert hop_latency(None, after, "tick_to_signal")[:1] == (pytest.approx(0.01),)
    assert hop_latency(None, after, "tick_to_signal")[2] == "all"
    assert hop_latency(after, after, "tick_to_signal")[2] == "all"
    assert hop_latency(None, after, "signal_to_decision") == (None, None, "all")


@pytest.mark.parametrize(
    ("pct", "style", "cells"),
    [(10.0, "green", 2), (80.0, "yellow", 16), (100.0, "red", 20), (250.0, "red", 20)],
)
def test_utilisation_bar_when_below_soft_at_soft_and_past_hard_then_green_yellow_red(
    pct: float, style: str, cells: int
) -> None:
    bar = utilisation_bar(pct, soft_pct=80.0, width=20)

    assert bar.plain.count("█") == cells
    assert len(bar.plain.split(" ")[0]) == 20
    assert bar.spans[-1].style == style  # the percentage, coloured like the bar
    assert f"{pct:.1f}%" in bar.plain


def test_render_when_recorded_payloads_then_every_section_shows_the_workers_state() -> None:
    fetch = recorded()
    first = take_snapshot("http://w:1", fetch=fetch, clock=lambda: 0.0)
    second = take_snapshot("http://w:1", fetch=fetch, clock=lambda: 2.0)

    text = text_of(render(first, second))

    assert "OK" in text
    assert "160.00%" in text  # global exposure
    assert "Meme" in text  # sectors
    assert "coinbase" in text  # exchanges
    assert "max_active_trades" in text
    assert "kill_switch" in text
    assert "TRIPPED" not in text
    for kind in ("APPROVE", "THROTTLE", "BLOCK", "OPEN", "CLOSE"):
        assert kind in text
    assert "0.0/s" in text  # the same payload twice: no new decisions
    for hop in ("tick_to_signal", "signal_to_decision", "decision_to_execution"):
        assert hop in text
    assert "< 10 ms" in text
    assert "market-data" in text
    assert "coin: bad_magic" in text


def test_render_when_kill_switch_tripped_and_health_503_then_degraded_and_tripped() -> None:
    risk = json.loads(RISK)
    risk["breakers"]["kill_switch"] = {"tripped": True, "reason": "drill", "tripped_at": 1.0}
    health = json.loads(HEALTH)
    health["ok"] = False
    fetch = recorded(
        risk=(200, json.dumps(risk).encode()), health=(503, json.dumps(health).encode())
    )

    text = text_of(render(None, take_snapshot("http://w:1", fetch=fetch)))

    assert "DEGRADED" in text
    assert "TRIPPED" in text
    assert "drill" in text


def test_render_when_worker_does_not_hold_the_sequencer_then_says_so_without_exposure() -> None:
    fetch = recorded(risk=(404, b'{"error": "this worker does not hold the risk sequencer"}'))

    snap = take_snapshot("http://w:1", fetch=fetch)
    text = text_of(render(None, snap))

    assert snap.risk is None
    assert snap.errors == ()
    assert "does not hold the risk sequencer" in text
    assert "160.00%" not in text


def test_run_when_once_and_worker_answers_then_two_reads_one_print_exit_0() -> None:
    fetch = recorded()
    slept: list[float] = []
    out = io.StringIO()

    code = run(
        "http://w:1",
        once=True,
        interval=0.5,
        console=Console(file=out, width=160, color_system=None),
        fetch=fetch,
        sleep=slept.append,
    )

    assert code == 0
    assert slept == [0.5]
    assert len(fetch.calls) == 6  # /metrics, /risk, /health twice
    assert out.getvalue().count("huracan status") == 1


def test_run_when_once_and_worker_unreachable_then_unreachable_and_exit_1() -> None:
    out = io.StringIO()

    code = run(
        "http://w:1",
        once=True,
        interval=0.5,
        console=Console(file=out, width=160, color_system=None),
        fetch=fetcher({}),
        sleep=lambda s: None,
    )

    assert code == 1
    assert "UNREACHABLE" in out.getvalue()
    assert "/metrics: unreachable" in out.getvalue()


def test_run_when_live_then_refreshes_until_the_iterations_are_done() -> None:
    fetch = recorded()
    slept: list[float] = []

    code = run(
        "http://w:1",
        once=False,
        interval=2.0,
        console=Console(file=io.StringIO(), width=160, color_system=None),
        fetch=fetch,
        sleep=slept.append,
        iterations=3,
    )

    assert code == 0
    assert slept == [2.0, 2.0, 2.0]
    assert len(fetch.calls) == 12


def test_take_snapshot_when_metrics_is_not_an_exposition_then_error_recorded_not_raised() -> None:
    fetch = recorded(metrics=(200, b"this is {not prometheus"))

    snap = take_snapshot("http://w:1", fetch=fetch)

    assert not snap.reachable
    assert any(e.startswith("/metrics:") for e in snap.errors)


def test_render_when_worker_reports_reduce_only_then_header_says_so() -> None:
    text = METRICS + b"# TYPE huracan_reduce_only gauge\nhuracan_reduce_only 1.0\n"
    fetch = recorded(metrics=(200, text))

    shown = text_of(render(None, take_snapshot("http://w:1", fetch=fetch)))

    assert "REDUCE-ONLY" in shown
    assert "REDUCE-ONLY" not in text_of(render(None, take_snapshot("http://w:1", fetch=recorded())))
