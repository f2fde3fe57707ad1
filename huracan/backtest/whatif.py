"""What-if: two runs over the same data side by side, and the decisions that changed.

:func:`compare_runs` takes each run's ``RiskDecision`` records and :class:`BacktestReport` (for
example the configured risk limits against tighter ones) and returns a :class:`WhatIfDiff`:

* decisions by outcome and by reason code, ``base``, ``other`` and ``delta = other − base``;
* the report figures (net PnL, Sharpe, drawdown, trades, …) the same way; a delta is ``None``
  when either side is ``None`` (e.g. no Sharpe);
* the requests whose decision changed. Decisions are matched on ``request_id`` (the first
  record of an id counts); a request *changed* when its ``(decision, reason_code)`` differs,
  including a request decided in one run only (its missing side is ``None``; those are also
  counted in ``only_in_base`` / ``only_in_other``). ``transitions`` counts the changes by
  ``"<base decision> → <other decision>"``; ``examples`` lists the first ``examples`` changes,
  the base run's order first, then the other run's requests it did not decide.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from huracan.backtest.errors import InvalidBacktestInput
from huracan.backtest.report import OUTCOMES, BacktestReport

if TYPE_CHECKING:
    from rich.console import Console

#: report figures compared, in display order
METRICS: Final = (
    "pnl_net_usd",
    "pnl_gross_usd",
    "fees_usd",
    "funding_usd",
    "return_pct",
    "final_equity_usd",
    "sharpe",
    "max_drawdown_usd",
    "max_drawdown_pct",
    "max_exposure_usd",
    "win_rate",
    "trades_closed",
    "trades_open_at_end",
    "executions",
    "decisions",
)

Number = int | float


@dataclass(frozen=True)
class CountRow:
    """One outcome or reason: how many each run had, and ``delta = other − base``."""

    key: str
    base: int
    other: int
    delta: int

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "base": self.base, "other": self.other, "delta": self.delta}


@dataclass(frozen=True)
class MetricRow:
    """One report figure; ``delta`` is ``None`` when either side is ``None``."""

    name: str
    base: Number | None
    other: Number | None
    delta: Number | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "base": self.base, "other": self.other, "delta": self.delta}


@dataclass(frozen=True)
class DecisionChange:
    """A request decided differently; ``None`` on the side that did not decide it."""

    request_id: str
    coin: str
    base_decision: str | None
    base_reason: str | None
    other_decision: str | None
    other_reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "coin": self.coin,
            "base_decision": self.base_decision,
            "base_reason": self.base_reason,
            "other_decision": self.other_decision,
            "other_reason": self.other_reason,
        }


@dataclass(frozen=True)
class WhatIfDiff:
    """Two runs compared; see the module docstring for each part."""

    base_label: str
    other_label: str
    outcomes: tuple[CountRow, ...]
    reasons: tuple[CountRow, ...]
    metrics: tuple[MetricRow, ...]
    decisions_compared: int
    changed: int
    only_in_base: int
    only_in_other: int
    transitions: dict[str, int]
    examples: tuple[DecisionChange, ...]

    def metric(self, name: str) -> MetricRow:
        """The row of report figure ``name``; raises ``KeyError`` for an unknown name."""
        for row in self.metrics:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data in a stable key order."""
        return {
            "base_label": self.base_label,
            "other_label": self.other_label,
            "outcomes": [r.to_dict() for r in self.outcomes],
            "reasons": [r.to_dict() for r in self.reasons],
            "metrics": [r.to_dict() for r in self.metrics],
            "decisions_compared": self.decisions_compared,
            "changed": self.changed,
            "only_in_base": self.only_in_base,
            "only_in_other": self.only_in_other,
            "transitions": dict(self.transitions),
            "examples": [e.to_dict() for e in self.examples],
        }


def _by_request(decisions: Sequence[Mapping[str, Any]], label: str) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for i, d in enumerate(decisions):
        request_id = d.get("request_id")
        if request_id is None:
            raise InvalidBacktestInput(f"{label} decision #{i} has no 'request_id'")
        out.setdefault(str(request_id), d)
    return out


def _count_rows(
    base: Mapping[str, int], other: Mapping[str, int], first: Sequence[str]
) -> tuple[CountRow, ...]:
    keys = list(first) + sorted((set(base) | set(other)) - set(first))
    return tuple(
        CountRow(k, base.get(k, 0), other.get(k, 0), other.get(k, 0) - base.get(k, 0)) for k in keys
    )


def _delta(base: Number | None, other: Number | None) -> Number | None:
    return None if base is None or other is None else other - base


def compare_runs(
    base_decisions: Sequence[Mapping[str, Any]],
    base_report: BacktestReport,
    other_decisions: Sequence[Mapping[str, Any]],
    other_report: BacktestReport,
    *,
    examples: int = 10,
    base_label: str = "base",
    other_label: str = "other",
) -> WhatIfDiff:
    """Compare two runs over the same data (see the module docstring).

    Counts come from the decision lists themselves (by ``request_id``, first record wins), the
    figures from the reports. Raises :class:`InvalidBacktestInput` for a decision without a
    ``request_id`` or a negative ``examples``.
    """
    if examples < 0:
        raise InvalidBacktestInput(f"examples must be >= 0, got {examples}")
    base = _by_request(base_decisions, base_label)
    other = _by_request(other_decisions, other_label)

    outcomes = _count_rows(
        Counter(str(d.get("decision")) for d in base.values()),
        Counter(str(d.get("decision")) for d in other.values()),
        OUTCOMES,
    )
    reasons = _count_rows(
        Counter(str(d.get("reason_code")) for d in base.values()),
        Counter(str(d.get("reason_code")) for d in other.values()),
        [],
    )
    metrics = tuple(
        MetricRow(
            name,
            getattr(base_report, name),
            getattr(other_report, name),
            _delta(getattr(base_report, name), getattr(other_report, name)),
        )
        for name in METRICS
    )

    changes: list[DecisionChange] = []
    transitions: Counter[str] = Counter()
    changed = only_base = only_other = 0
    order = list(base) + [rid for rid in other if rid not in base]
    for rid in order:
        b, o = base.get(rid), other.get(rid)
        b_key = None if b is None else (str(b.get("decision")), str(b.get("reason_code")))
        o_key = None if o is None else (str(o.get("decision")), str(o.get("reason_code")))
        if b_key == o_key:
            continue
        changed += 1
        only_base += o is None
        only_other += b is None
        transitions[f"{b_key[0] if b_key else '—'} → {o_key[0] if o_key else '—'}"] += 1
        if len(changes) < examples:
            coin = (b or o or {}).get("coin")
            changes.append(
                DecisionChange(
                    request_id=rid,
                    coin=str(coin),
                    base_decision=b_key[0] if b_key else None,
                    base_reason=b_key[1] if b_key else None,
                    other_decision=o_key[0] if o_key else None,
                    other_reason=o_key[1] if o_key else None,
                )
            )
    return WhatIfDiff(
        base_label=base_label,
        other_label=other_label,
        outcomes=outcomes,
        reasons=reasons,
        metrics=metrics,
        decisions_compared=len(set(base) | set(other)),
        changed=changed,
        only_in_base=only_base,
        only_in_other=only_other,
        transitions=dict(sorted(transitions.items(), key=lambda kv: (-kv[1], kv[0]))),
        examples=tuple(changes),
    )


def _fmt(value: Number | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:+,}" if signed else f"{value:,}"
    return f"{value:+,.4f}" if signed else f"{value:,.4f}"


def render_whatif(diff: WhatIfDiff, console: Console) -> None:
    """Print ``diff`` on ``console``: figures, outcomes, reasons, transitions, examples."""
    from rich.table import Table

    b, o = diff.base_label, diff.other_label

    def side_by_side(title: str, first: str, rows: Sequence[Any], key: str) -> None:
        table = Table(title=title, title_justify="left")
        table.add_column(first)
        for name in (b, o, "Δ"):
            table.add_column(name, justify="right")
        for row in rows:
            delta = _fmt(row.delta, signed=True)
            style = "" if row.delta in (0, None) else "bold"
            table.add_row(
                getattr(row, key), _fmt(row.base), _fmt(row.other), f"[{style}]{delta}[/]"
                if style else delta
            )  # fmt: skip
        console.print(table)

    side_by_side(f"What-if: {b} vs {o}", "figure", diff.metrics, "name")
    side_by_side("Decisions by outcome", "outcome", diff.outcomes, "key")
    side_by_side("Decisions by reason", "reason", diff.reasons, "key")
    console.print(
        f"{diff.changed:,} of {diff.decisions_compared:,} requests decided differently"
        f" ({diff.only_in_base:,} only in {b}, {diff.only_in_other:,} only in {o})"
    )
    if diff.transitions:
        table = Table(title="Changes", title_justify="left")
        table.add_column(f"{b} → {o}")
        table.add_column("requests", justify="right")
        for name, count in diff.transitions.items():
            table.add_row(name, f"{count:,}")
        console.print(table)
    if diff.examples:
        table = Table(title=f"First {len(diff.examples)} changed requests", title_justify="left")
        for name in ("request", "coin", b, o):
            table.add_column(name)
        for e in diff.examples:
            table.add_row(
                e.request_id,
                e.coin,
                "—" if e.base_decision is None else f"{e.base_decision} ({e.base_reason})",
                "—" if e.other_decision is None else f"{e.other_decision} ({e.other_reason})",
            )
        console.print(table)
