"""Every PromQL query in deploy/: the Grafana dashboards' panels, variables and annotations and
the Prometheus alert rules, read from the files themselves so that a new panel or rule is
covered by the tests without naming it anywhere else."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"

#: Grafana's built-in variables, as a test evaluates them
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "10m"}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
#: a vector selector of a metric the worker (huracan_*, process_*) or Prometheus (up) makes
_SELECTOR = re.compile(r"\b(huracan_[a-z0-9_]+|process_[a-z0-9_]+|up)\b(\{[^}]*\})?")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),\s*)?(\w+)\)\s*$", re.S)


@dataclass(frozen=True)
class Query:
    """One query: where it comes from (``dashboard/panel/refId``, ``alert/<name>``) and its
    PromQL. ``instant`` marks a panel target Grafana evaluates at one instant."""

    where: str
    expr: str
    instant: bool = False


@dataclass(frozen=True)
class Variable:
    """A dashboard template variable defined by ``label_values(selector, label)``."""

    where: str
    name: str
    selector: str
    label: str


def dashboards() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, json.loads(p.read_text())) for p in sorted(DASHBOARDS.glob("*.json"))]


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included (rows themselves excluded)."""
    return [p for p in _panels(dashboard.get("panels", [])) if p.get("type") != "row"]


def panel_queries() -> list[Query]:
    out = []
    for path, dash in dashboards():
        for panel in panels(dash):
            for target in panel.get("targets", []):
                where = f"{path.name}/{panel['title']}/{target.get('refId', '?')}"
                out.append(Query(where, target["expr"], bool(target.get("instant"))))
    return out


def annotation_queries() -> list[Query]:
    out = []
    for path, dash in dashboards():
        for ann in dash.get("annotations", {}).get("list", []):
            if ann.get("expr"):
                out.append(Query(f"{path.name}/annotation/{ann['name']}", ann["expr"]))
    return out


def variables() -> list[Variable]:
    out = []
    for path, dash in dashboards():
        for var in dash.get("templating", {}).get("list", []):
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            match = _LABEL_VALUES.match(query)
            assert match, f"{path.name}: variable {var['name']} is not label_values(...): {query}"
            out.append(Variable(path.name, var["name"], match.group(1) or "", match.group(2)))
    return out


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alert_queries() -> list[Query]:
    return [Query(f"alert/{r['alert']}", r["expr"]) for r in alert_rules()]


def selectors(expr: str) -> list[str]:
    """The vector selectors (metric name and label matchers) in ``expr``."""
    return [name + (matchers or "") for name, matchers in _SELECTOR.findall(expr)]


def metric_names(expr: str) -> set[str]:
    return {name for name, _ in _SELECTOR.findall(expr)}


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """``expr`` with ``$name`` and ``${name}`` (and ``${name:format}``) replaced by ``values``
    or Grafana's built-ins; raises ``KeyError`` for a variable no one defines."""
    merged = {**BUILTINS, **values}

    def one(match: re.Match[str]) -> str:
        return merged[match.group(1) or match.group(2)]

    return _VARIABLE.sub(one, expr)


def used_variables(expr: str) -> set[str]:
    return {a or b for a, b in _VARIABLE.findall(expr)}
