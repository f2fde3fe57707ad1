"""Sweep grids: ``KEY=V1,V2,…`` axes expanded into points, and which axis mattered most.

A grid is an ordered mapping of config keys (as ``huracan whatif --set`` takes them:
``risk.max_active_trades``, ``costs.min_edge_after_cost_bps``, ``exits.take_profit_bps`` or a
full dotted key) to the values to try. :func:`expand_grid` makes the full factorial: every
combination once, the last axis varying fastest, each point with a stable id
(``p000``, ``p001``, …).

Influence (:func:`influence_ranking`) is the share of the variance of a metric across the points
that an axis explains on its own — the between-group sum of squares of the metric grouped by
the axis's value over the total sum of squares (η², the main effect of a one-way analysis of
variance)::

    influence(k) = Σ_v n_v (mean_v − mean)² / Σ_i (m_i − mean)²

In a full factorial the main effects of different axes do not overlap, so the shares add up to
at most 1; the rest is interaction. An axis with one value, or a metric that never changes,
has influence 0.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from huracan.research.errors import InvalidGrid

#: what ``huracan sweep`` varies when no ``--grid`` is given: one risk limit, one cost
#: parameter, one exit rule (3 × 3 × 3 = 27 points)
DEFAULT_GRID: Mapping[str, tuple[Any, ...]] = {
    "risk.per_coin_max_exposure_pct": (10.0, 20.0, 40.0),
    "costs.min_edge_after_cost_bps": (2.0, 5.0, 10.0),
    "exits.take_profit_bps": (15.0, 30.0, 60.0),
}


@dataclass(frozen=True)
class GridPoint:
    """One combination: ``point_id`` and ``{key: value}`` in the grid's axis order."""

    point_id: str
    values: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"point_id": self.point_id, "values": dict(self.values)}


def _scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def parse_axis(text: str) -> tuple[str, tuple[Any, ...]]:
    """``"KEY=V1,V2,…"`` as ``(key, values)``; values parsed as YAML scalars (``10``,
    ``0.5``, ``true``). Raises :class:`InvalidGrid` without ``=``, key or values, or with a
    value given twice."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InvalidGrid(f"{text!r} is not KEY=V1,V2,... (e.g. risk.max_active_trades=10,20)")
    values = tuple(_scalar(v.strip()) for v in raw.split(",") if v.strip())
    if not values:
        raise InvalidGrid(f"{key}: no values in {text!r}")
    if len({repr(v) for v in values}) != len(values):
        raise InvalidGrid(f"{key}: a value is given twice in {text!r}")
    return key, values


def parse_grid(texts: Iterable[str]) -> dict[str, tuple[Any, ...]]:
    """Axes from ``KEY=V1,V2`` texts, in order; :class:`InvalidGrid` when a key repeats."""
    grid: dict[str, tuple[Any, ...]] = {}
    for text in texts:
        key, values = parse_axis(text)
        if key in grid:
            raise InvalidGrid(f"{key} is given twice")
        grid[key] = values
    return grid


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[GridPoint]:
    """Every combination of the axes' values once (the last axis fastest), ids ``p000``….

    Raises :class:`InvalidGrid` for no axes or an empty axis."""
    if not grid:
        raise InvalidGrid("the grid has no axes")
    for key, values in grid.items():
        if len(values) == 0:
            raise InvalidGrid(f"{key}: no values")
    keys = list(grid)
    combos = list(itertools.product(*(grid[k] for k in keys)))
    width = max(3, len(str(len(combos) - 1)))
    return [
        GridPoint(f"p{i:0{width}d}", dict(zip(keys, combo, strict=True)))
        for i, combo in enumerate(combos)
    ]


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def influence_ranking(
    points: Sequence[Mapping[str, Any]], metric: Sequence[float | None], keys: Sequence[str]
) -> list[tuple[str, float]]:
    """``[(key, influence)]``, most influential first (ties keep ``keys`` order).

    ``points[i]`` holds the values of point ``i`` (``{key: value}``), ``metric[i]`` its metric;
    points whose metric is ``None`` or not finite are left out. See the module docstring."""
    pairs = [(p, m) for p, m in zip(points, metric, strict=True) if _finite(m) is not None]
    values = [float(m) for _, m in pairs if m is not None]
    n = len(values)
    scores: list[tuple[str, float]] = []
    if n == 0:
        return [(k, 0.0) for k in keys]
    mean = sum(values) / n
    total = sum((v - mean) ** 2 for v in values)
    for key in keys:
        groups: dict[str, list[float]] = {}
        for (point, _), v in zip(pairs, values, strict=True):
            groups.setdefault(repr(point[key]), []).append(v)
        between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
        scores.append((key, between / total if total > 0 else 0.0))
    order = {k: i for i, k in enumerate(keys)}
    return sorted(scores, key=lambda kv: (-kv[1], order[kv[0]]))


def pivot(
    points: Sequence[Mapping[str, Any]],
    metric: Sequence[float | None],
    row_key: str,
    col_key: str | None,
) -> tuple[list[Any], list[Any], list[list[float | None]]]:
    """The metric averaged over the other axes, by ``row_key`` × ``col_key`` value:
    ``(row values, column values, cells)``, values in first-seen order; a cell with no finite
    metric is ``None``. ``col_key=None`` gives one column."""
    rows: list[Any] = []
    cols: list[Any] = []
    sums: dict[tuple[int, int], list[float]] = {}
    for point, m in zip(points, metric, strict=True):
        r = point[row_key]
        c = point[col_key] if col_key is not None else ""
        if r not in rows:
            rows.append(r)
        if c not in cols:
            cols.append(c)
        f = _finite(m)
        if f is not None:
            sums.setdefault((rows.index(r), cols.index(c)), []).append(f)
    cells: list[list[float | None]] = [
        [
            (sum(sums[(i, j)]) / len(sums[(i, j)])) if (i, j) in sums else None
            for j in range(len(cols))
        ]
        for i in range(len(rows))
    ]
    return rows, cols, cells


__all__ = [
    "DEFAULT_GRID",
    "GridPoint",
    "expand_grid",
    "influence_ranking",
    "parse_axis",
    "parse_grid",
    "pivot",
]
