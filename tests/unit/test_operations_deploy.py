"""deploy/: the Grafana dashboards and the Prometheus alert rules, checked without services.

What the worker really exports is checked live by tests/integration/test_operations_live.py;
here every name is checked against the metrics huracan.observability.metrics registers, and the
files against the compose wiring that loads them."""

from __future__ import annotations

import pytest
import yaml
from prometheus_client import REGISTRY

from huracan.observability import metrics  # noqa: F401 - registers the worker's metrics
from tests import deploy_queries as dq

REPO = dq.REPO


def _registered_sample_names() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        for suffix in ("_total", "_bucket", "_count", "_sum", "_created", "_info"):
            names.add(family.name + suffix)
    return names


def test_dashboards_when_loaded_then_at_least_one_with_panels_and_targets() -> None:
    boards = dq.dashboards()

    assert boards
    for path, dash in boards:
        assert dq.panels(dash), path
        for panel in dq.panels(dash):
            assert panel.get("targets"), f"{path.name}/{panel['title']} has no query"
            assert panel.get("description"), f"{path.name}/{panel['title']} says not what it shows"


def test_dashboards_when_panels_laid_out_then_ids_unique_and_inside_the_grid() -> None:
    for path, dash in dq.dashboards():
        ids = [p["id"] for p in dq._panels(dash["panels"])]
        assert len(ids) == len(set(ids)), path
        for p in dq._panels(dash["panels"]):
            pos = p["gridPos"]
            assert pos["x"] >= 0, (path.name, p["title"])
            assert pos["x"] + pos["w"] <= 24, (path.name, p["title"])


def test_dashboards_when_queries_name_metrics_then_each_is_one_the_worker_registers() -> None:
    registered = _registered_sample_names() | {"up"}  # up: Prometheus' own, per target
    queries = dq.panel_queries() + dq.annotation_queries() + dq.alert_queries()
    queries += [dq.Query(v.where, v.selector) for v in dq.variables()]

    unknown = {
        (q.where, name)
        for q in queries
        for name in dq.metric_names(q.expr)
        if name not in registered
    }

    assert unknown == set()


def test_dashboards_when_queries_use_variables_then_each_is_defined() -> None:
    for path, dash in dq.dashboards():
        defined = {v["name"] for v in dash["templating"]["list"]} | set(dq.BUILTINS)
        exprs = [t["expr"] for p in dq.panels(dash) for t in p["targets"]]
        exprs += [v["query"]["query"] for v in dash["templating"]["list"]]
        used = set().union(*(dq.used_variables(e) for e in exprs))
        assert used <= defined, (path.name, used - defined)
        assert {"app_id", "topic_prefix"} <= defined, path.name


def test_dashboards_when_datasource_named_then_it_is_the_provisioned_uid() -> None:
    provisioned = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uids = {d["uid"] for d in provisioned["datasources"]}
    for path, dash in dq.dashboards():
        for panel in dq.panels(dash):
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in uids, (path.name, panel["title"])


def test_compose_when_grafana_and_prometheus_start_then_dashboards_and_rules_are_mounted() -> None:
    services = yaml.safe_load((REPO / "docker-compose.kafka.yml").read_text())["services"]
    provider = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/dashboards/huracan.yml").read_text()
    )
    prom_config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())

    grafana_mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in services["grafana"]["volumes"])
    prom_mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in services["prometheus"]["volumes"])

    dashboards_dir = provider["providers"][0]["options"]["path"]
    assert grafana_mounts["./deploy/grafana/dashboards"] == dashboards_dir
    assert prom_mounts["./deploy/prometheus/alerts.yml"] == "/etc/prometheus/alerts.yml"
    assert prom_config["rule_files"] == ["alerts.yml"]
    for host_path in [*grafana_mounts, *prom_mounts]:
        assert (REPO / host_path).exists(), host_path


def test_alert_rules_when_loaded_then_each_has_severity_summary_and_a_runbook_in_the_docs() -> None:
    docs = (REPO / "docs/operations.md").read_text().lower()
    rules = dq.alert_rules()

    assert {r["alert"] for r in rules} >= {
        "HuracanWorkerDown",
        "HuracanKillSwitchOn",
        "HuracanBreakerTripped",
        "HuracanDeadLettersRising",
        "HuracanConsumerLagGrowing",
        "HuracanSignalLatencySLOBreached",
        "HuracanModelRefused",
    }
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        runbook = rule["annotations"]["runbook"]
        page, anchor = runbook.split("#")
        assert page == "docs/operations.md", rule["alert"]
        assert f"### {anchor}" in docs, f"no runbook section for {rule['alert']}"


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('up{job="huracan-worker"} == 0', ['up{job="huracan-worker"}']),
        (
            'sum by (instance, le) (rate(huracan_latency_seconds_bucket{path="x"}[5m])) > 0.1',
            ['huracan_latency_seconds_bucket{path="x"}'],
        ),
        (
            "huracan_models_refused > 0 and on(instance) group_left up",
            ["huracan_models_refused", "up"],
        ),
    ],
)
def test_selectors_when_expression_parsed_then_metric_selectors_found(
    expr: str, expected: list[str]
) -> None:
    assert dq.selectors(expr) == expected


def test_substitute_when_variables_and_builtins_then_replaced_and_unknown_raises() -> None:
    expr = 'rate(x{instance=~"$instance", topic=~"${topic_prefix}.*"}[$__rate_interval])'

    out = dq.substitute(expr, {"instance": "a:1", "topic_prefix": "p"})

    assert out == 'rate(x{instance=~"a:1", topic=~"p.*"}[1m])'
    with pytest.raises(KeyError):
        dq.substitute("$nobody", {})
