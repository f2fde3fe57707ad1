"""The dashboard and the alert rules against a live worker, and ``huracan status --once``.

One worker runs the pipeline on topics of its own; a native Prometheus (the project's launcher,
``scripts/services.sh prometheus-up``) scrapes it every second and evaluates
deploy/prometheus/alerts.yml. The scenario: ticks flow (decisions, executions, latencies, lag),
one malformed record is dead-lettered, and the kill switch is engaged by a control event. Then
every panel query, variable and rule (read from deploy/, see tests/deploy_queries.py) is
evaluated through Prometheus' HTTP API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from huracan.config import HuracanConfig
from huracan.domain.signals import BaselineParams
from huracan.domain.universe import universe
from huracan.models import register_momentum_model
from huracan.simulate import MarketSimulator
from huracan.storage import ModelRegistry
from huracan.streams.serde import make_serde
from huracan.streams.topics import TopicCatalog
from huracan.worker_process import free_port
from tests import deploy_queries as dq
from tests.conftest import SESSION
from tests.integration.pipeline_support import (
    create_topics,
    http_json,
    pipeline_config,
    publish_ticks,
    running_worker,
    topic_counts,
)
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "scripts" / "services.sh"
N_TICKS = 2_000


@contextmanager
def native_prometheus(target: str, workdir: Path) -> Iterator[str]:
    """A Prometheus from ``scripts/services.sh prometheus-up`` on a free loopback port,
    scraping ``target`` every second; yields its base URL and stops it on exit."""
    env = {
        **os.environ,
        "HURACAN_PROMETHEUS_PORT": str(free_port()),
        "HURACAN_PROMETHEUS_DIR": str(workdir),
        "HURACAN_PROMETHEUS_INTERVAL": "1s",
    }
    up = subprocess.run(
        [str(SERVICES), "prometheus-up", target], env=env, capture_output=True, text=True
    )
    assert up.returncode == 0, up.stderr
    try:
        yield f"http://127.0.0.1:{env['HURACAN_PROMETHEUS_PORT']}"
    finally:
        subprocess.run([str(SERVICES), "prometheus-down"], env=env, capture_output=True)


def prom_api(base: str, path: str, **params: str) -> dict[str, Any]:
    url = f"{base}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as r:
        body: dict[str, Any] = json.loads(r.read())
    assert body["status"] == "success", body
    return body


def instant(base: str, expr: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = prom_api(base, "query", query=expr)["data"]["result"]
    return result


def firing(base: str) -> set[str]:
    alerts = prom_api(base, "alerts")["data"]["alerts"]
    return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}


@dataclass(frozen=True)
class LiveWorker:
    cfg: HuracanConfig
    port: int
    prometheus: str

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.port}"

    def variables(self) -> dict[str, str]:
        return {
            "app_id": self.cfg.faust.app_id,
            "topic_prefix": self.cfg.kafka.topic_prefix,
            "instance": self.instance,
        }


def _control(cfg: HuracanConfig, command: str) -> None:
    serde = make_serde(cfg)
    topic = TopicCatalog.from_config(cfg).for_event_type("ControlEvent").name
    event_id = f"ctl-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": cfg.kafka.bootstrap_servers})
    producer.produce(
        topic,
        key=b"control",
        value=serde.encode(
            "ControlEvent",
            {"event_id": event_id, "correlation_id": event_id, "causation_id": None,
             "command": command, "key": None, "value": None, "ts": int(time.time() * 1e6),
             "operator": "test", "reason": "operations drill"},
        ),
    )  # fmt: skip
    assert producer.flush(10) == 0


def _register_tampered_model(cfg: HuracanConfig, coin: str) -> None:
    """An active model for ``coin`` whose artifact changed after it was registered: the worker
    refuses it (sha256 mismatch) and trades the baseline for that coin."""
    with ModelRegistry.from_config(cfg) as registry:
        meta = register_momentum_model(registry, coin, BaselineParams())
    path = Path(meta.model_path)
    if not path.is_absolute():
        path = Path(cfg.engine.model_registry.storage_path) / path
    path.write_bytes(path.read_bytes() + b" ")


@pytest.fixture(scope="module")
def live(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveWorker]:
    """The scenario, run once for the module: a refused model, ticks, a dead letter, the kill
    switch on."""
    prefix = f"test.ops.{SESSION}{uuid.uuid4().hex[:6]}"
    cfg = pipeline_config(kafka_bootstrap, prefix, partitions=2)
    create_topics(cfg)
    _register_tampered_model(cfg, "ETH")
    workdir = tmp_path_factory.mktemp("ops")
    # ticks stamped now, so that the tick_to_* latencies are real ones
    start = int(time.time() * 1e6)
    ticks = list(MarketSimulator(universe(20), seed=5, start_ts_us=start, rate=500).ticks(N_TICKS))
    with (
        running_worker(cfg, workdir / "worker") as (_proc, port),
        native_prometheus(f"127.0.0.1:{port}", workdir / "prometheus") as prometheus,
    ):
        publish_ticks(cfg, ticks)
        market = TopicCatalog.from_config(cfg).for_event_type("MarketTick").name
        producer = Producer({"bootstrap.servers": cfg.kafka.bootstrap_servers})
        producer.produce(market, key=b"BTC", value=b"not avro at all")
        assert producer.flush(10) == 0
        wait_until(
            lambda: (
                (c := topic_counts(cfg))["FeatureVector"] == N_TICKS
                and c["DeadLetter"] >= 1
                and c["Execution"] > 0
            ),
            180,
            interval=1.0,
            what="every tick processed, the bad record dead-lettered, executions made",
        )
        _control(cfg, "KILL_SWITCH_ON")
        wait_until(
            lambda: (
                (http_json(port, "/risk") or {})
                .get("breakers", {})
                .get("kill_switch", {})
                .get("tripped")
            ),
            60,
            interval=0.5,
            what="the kill switch applied by the sequencer",
        )
        yield LiveWorker(cfg, port, prometheus)


def test_alerts_when_kill_switch_on_a_record_dead_lettered_and_a_model_refused_then_they_fire(
    live: LiveWorker,
) -> None:
    # act: Prometheus scrapes and evaluates the rules every second
    def all_fire() -> bool:
        now = firing(live.prometheus)
        print("firing:", sorted(now))  # shown when the wait fails
        return {"HuracanKillSwitchOn", "HuracanDeadLettersRising", "HuracanModelRefused"} <= now

    fired = wait_until(all_fire, 60, interval=1.0, what="the three alerts to fire")

    # assert: firing for this worker, and the breakers that are not tripped do not fire
    assert fired
    alerts = prom_api(live.prometheus, "alerts")["data"]["alerts"]
    kill = [a for a in alerts if a["labels"]["alertname"] == "HuracanKillSwitchOn"]
    assert [a["labels"]["instance"] for a in kill] == [live.instance]
    assert "HuracanBreakerTripped" not in firing(live.prometheus)
    assert "HuracanWorkerDown" not in firing(live.prometheus)
    assert "HuracanModelRegistryUnreachable" not in firing(live.prometheus)


def test_dashboard_when_evaluated_against_the_live_worker_then_every_panel_query_returns_data(
    live: LiveWorker,
) -> None:
    # arrange: every panel target of every dashboard in deploy/grafana/dashboards
    queries = dq.panel_queries()
    assert len(queries) > 20
    values = live.variables()

    # act: rates need two scrapes inside their window; wait until every query has data
    def all_have_data() -> bool:
        empty = [
            f"{q.where}: {q.expr}"
            for q in queries
            if not instant(live.prometheus, dq.substitute(q.expr, values))
        ]
        print("panels without data:", *empty, sep="\n  ")  # shown when the wait fails
        return not empty

    wait_until(all_have_data, 60, interval=1.0, what="data for every panel (see stdout)")

    # assert: and each of their selectors matches a series of this worker
    for q in queries + dq.annotation_queries():
        for selector in dq.selectors(dq.substitute(q.expr, values)):
            assert instant(live.prometheus, selector), f"{q.where}: {selector}"


def test_dashboard_when_variables_evaluated_then_they_list_this_workers_app_and_prefix(
    live: LiveWorker,
) -> None:
    values = live.variables()
    for var in dq.variables():
        # act
        series = instant(live.prometheus, dq.substitute(var.selector, values))

        # assert
        found = {s["metric"].get(var.label) for s in series}
        assert values[var.name] in found, (var, found)


def test_alert_rules_when_evaluated_then_every_selector_has_data_and_every_expression_runs(
    live: LiveWorker,
) -> None:
    rules = dq.alert_queries()
    assert rules

    for q in rules:
        # every metric and label matcher the rule names exists on the live worker
        for selector in dq.selectors(q.expr):
            wait_until(
                lambda s=selector: instant(live.prometheus, s),
                30,
                interval=1.0,
                what=f"{q.where}: {selector}",
            )
        # and the whole expression is valid PromQL that Prometheus evaluates
        instant(live.prometheus, q.expr)
    rule_health = {
        r["name"]: r["health"]
        for g in prom_api(live.prometheus, "rules")["data"]["groups"]
        for r in g["rules"]
    }
    assert set(rule_health) == {r["alert"] for r in dq.alert_rules()}
    assert set(rule_health.values()) == {"ok"}


def test_status_when_once_against_a_live_worker_then_prints_a_snapshot_of_it(
    live: LiveWorker,
) -> None:
    # act
    out = subprocess.run(
        [str(Path(sys.executable).with_name("huracan")), "status", "--once",
         "--url", f"http://{live.instance}", "--interval", "0.5"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "160", "NO_COLOR": "1"},
    )  # fmt: skip

    # assert
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"http://{live.instance}" in text
    for expected in ("global", "kill_switch", "TRIPPED", "APPROVE", "OPEN", "tick_to_signal",
                     "< 100 ms", f"{live.cfg.kafka.topic_prefix}.market-data",
                     "1 refused"):  # fmt: skip
        assert expected in text, expected
    letters = instant(live.prometheus, "huracan_dead_letters_total")
    assert letters
    for series in letters:
        assert f"{series['metric']['agent']}: {series['metric']['reason']}" in text


def test_status_when_once_and_no_worker_answers_then_exits_1() -> None:
    out = subprocess.run(
        [str(Path(sys.executable).with_name("huracan")), "status", "--once",
         "--url", f"http://127.0.0.1:{free_port()}", "--interval", "0.1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert out.returncode == 1
    assert "UNREACHABLE" in out.stdout
