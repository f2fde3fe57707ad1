"""``huracan sweep``: the what-if over a grid — every grid point one full backtest, one task.

Steps of :func:`run_sweep`:

1. check every axis key against the config (:func:`huracan.backtest.run.resolve_config_key`)
   and build every point's config once here, so a bad key or value fails before any task runs;
2. expand the grid (:func:`huracan.research.grid.expand_grid`) and submit one
   :func:`huracan.research.tasks.sweep_point` task per point — the archive path, the coins, the
   period, the base config as a dict and the point's overrides; each task reads the period from
   the archive itself and replays it through the same engine as ``huracan backtest``;
3. collect one result per point (the executor returns each exactly once), rank the axes by
   their influence on the metric (:func:`huracan.research.grid.influence_ranking`).

:func:`write_sweep_outputs` writes ``sweep.json`` (every point and the ranking) and
``sweep_heatmap.png`` (the metric averaged over the other axes, by the two most influential
axes); :func:`render_sweep` prints the table.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.table import Table

from huracan.backtest.run import override_config, parse_coins, resolve_config_key
from huracan.config import HuracanConfig
from huracan.research.errors import InvalidGrid
from huracan.research.executor import TaskExecutor, keyed
from huracan.research.grid import expand_grid, influence_ranking, pivot
from huracan.research.retrain import check_coins
from huracan.research.tasks import METRICS, sweep_point

SWEEP_JSON: Final = "sweep.json"
SWEEP_PNG: Final = "sweep_heatmap.png"
#: metrics a sweep can rank by
RANKABLE: Final = ("pnl_net_usd", "sharpe", "win_rate", "max_drawdown_pct", "return_pct")

Progress = Callable[[int, int], None]


@dataclass
class SweepResult:
    """Every point's figures (in point order), the axes ranked by influence on ``metric``."""

    grid: dict[str, list[Any]]
    metric: str
    points: list[dict[str, Any]]
    ranking: list[tuple[str, float]]
    seconds: float
    workers: int
    period: dict[str, Any] = field(default_factory=dict)

    @property
    def top_axes(self) -> list[str]:
        """The two most influential axes (one when the grid has one)."""
        return [k for k, _ in self.ranking[:2]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "grid": self.grid,
            "metric": self.metric,
            "period": self.period,
            "seconds": self.seconds,
            "workers": self.workers,
            "influence": [{"key": k, "share": s} for k, s in self.ranking],
            "points": self.points,
        }


def check_grid(cfg: HuracanConfig, grid: Mapping[str, Sequence[Any]]) -> None:
    """Raise for an unknown axis key (:class:`InvalidGrid`) or a value the config refuses
    (:class:`huracan.config.ConfigError`, naming the key), before anything runs."""
    for key in grid:
        try:
            resolve_config_key(key)
        except ValueError as exc:
            raise InvalidGrid(str(exc)) from None
    for point in expand_grid(grid):
        override_config(cfg, point.values)


def run_sweep(
    cfg: HuracanConfig,
    executor: TaskExecutor,
    *,
    grid: Mapping[str, Sequence[Any]],
    root: str | Path,
    coins: str | Sequence[str] | None = None,
    start: int | None = None,
    end: int | None = None,
    metric: str = "pnl_net_usd",
    cost_updates: bool = True,
    progress: Progress | None = None,
) -> SweepResult:
    """Run every point of ``grid`` over ``[start, end)`` of the archive at ``root`` (see the
    module docstring). Raises :class:`InvalidGrid`, ``ConfigError`` and what the executor
    raises (:class:`~huracan.research.errors.TaskFailed` naming the point)."""
    if metric not in RANKABLE:
        raise InvalidGrid(f"metric must be one of {', '.join(RANKABLE)}, got {metric!r}")
    check_grid(cfg, grid)
    points = expand_grid(grid)
    base = cfg.redacted()
    wanted = parse_coins(coins)
    if wanted is not None:
        check_coins(cfg, wanted)
    specs = keyed(
        (
            p.point_id,
            {
                "root": str(Path(root).resolve()),
                "coins": wanted,
                "start": start,
                "end": end,
                "config": base,
                "overrides": dict(p.values),
                "point_id": p.point_id,
                "cost_updates": cost_updates,
            },
        )
        for p in points
    )
    t0 = time.perf_counter()
    done = executor.run(
        sweep_point,
        specs,
        on_done=(lambda _k, _r, n, total: progress(n, total)) if progress else None,
    )
    seconds = time.perf_counter() - t0
    rows = [done[p.point_id] for p in points]
    ranking = influence_ranking([p.values for p in points], [r[metric] for r in rows], list(grid))
    return SweepResult(
        grid={k: list(v) for k, v in grid.items()},
        metric=metric,
        points=rows,
        ranking=ranking,
        seconds=seconds,
        workers=executor.workers,
        period={"root": str(root), "coins": wanted, "start_us": start, "end_us": end},
    )


def _fmt(value: Any, spec: str = ",.2f") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def render_sweep(result: SweepResult, console: Console, *, top: int | None = None) -> None:
    """The points as a table, best ``metric`` first (``top`` rows when given), and the
    influence ranking."""
    keys = list(result.grid)
    table = Table(
        title=f"sweep: {len(result.points)} points, best {result.metric} first",
        caption="axes: " + ", ".join(f"{i + 1}={k}" for i, k in enumerate(keys)),
    )
    table.add_column("point")
    for i, k in enumerate(keys):
        table.add_column(f"{i + 1}:{k.rsplit('.', 1)[-1][:14]}", justify="right")
    for header in ("pnl net $", "sharpe", "win", "max dd %", "trades"):
        table.add_column(header, justify="right")
    descending = result.metric != "max_drawdown_pct"

    def order(row: Mapping[str, Any]) -> float:
        v = row[result.metric]
        if v is None:
            return float("inf")
        return -float(v) if descending else float(v)

    rows = sorted(result.points, key=order)
    for row in rows[:top] if top else rows:
        table.add_row(
            row["point_id"],
            *(_fmt(row["values"][k], "g") for k in keys),
            _fmt(row["pnl_net_usd"], ",.0f"),
            _fmt(row["sharpe"], ".2f"),
            _fmt(row["win_rate"], ".2f"),
            _fmt(row["max_drawdown_pct"], ".2f"),
            _fmt(row["trades_closed"]),
        )
    console.print(table)
    infl = Table(title=f"influence on {result.metric} (share of its variance explained)")
    infl.add_column("axis")
    infl.add_column("share", justify="right")
    for k, s in result.ranking:
        infl.add_row(k, f"{s:.3f}")
    console.print(infl)


def _write_atomic(path: Path, write: Callable[[Any], None], mode: str = "w") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_heatmap(result: SweepResult, path: str | Path, *, dpi: int = 100) -> Path:
    """The metric (mean over the other axes) by the two most influential axes, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    target = Path(path)
    top = result.top_axes
    row_key, col_key = top[0], (top[1] if len(top) > 1 else None)
    rows, cols, cells = pivot(
        [p["values"] for p in result.points],
        [p[result.metric] for p in result.points],
        row_key,
        col_key,
    )
    nan = float("nan")
    data = [[nan if c is None else c for c in r] for r in cells]
    size = (max(6.5, 2.8 + 1.2 * len(cols)), max(3.6, 1.8 + 0.6 * len(rows)))
    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = ax.imshow(data, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.set_xlabel(col_key or "")
    ax.set_ylabel(row_key)
    for i, r in enumerate(cells):
        for j, c in enumerate(r):
            ax.text(j, i, "—" if c is None else f"{c:,.0f}" if abs(c) >= 100 else f"{c:.3g}",
                    ha="center", va="center", fontsize=8)  # fmt: skip
    shares = dict(result.ranking)
    ax.set_title(
        f"{result.metric}, mean over the other axes\n"
        f"rows {row_key} ({shares[row_key]:.0%} of its variance)"
        + (f"\ncolumns {col_key} ({shares[col_key]:.0%})" if col_key else ""),
        fontsize=9,
    )
    fig.colorbar(image, ax=ax, label=result.metric)
    fig.set_layout_engine("tight")
    _write_atomic(target, lambda fh: fig.savefig(fh, format="png"), mode="wb")
    return target


def write_sweep_outputs(result: SweepResult, out_dir: str | Path) -> tuple[Path, Path]:
    """``sweep.json`` and ``sweep_heatmap.png`` into ``out_dir``; their paths."""
    out = Path(out_dir)
    json_path = out / SWEEP_JSON
    text = json.dumps(result.to_dict(), indent=2, default=str)  # axis order kept
    _write_atomic(json_path, lambda fh: fh.write(text + "\n"))
    return json_path, write_heatmap(result, out / SWEEP_PNG)


__all__ = [
    "METRICS",
    "RANKABLE",
    "SWEEP_JSON",
    "SWEEP_PNG",
    "SweepResult",
    "check_grid",
    "render_sweep",
    "run_sweep",
    "write_heatmap",
    "write_sweep_outputs",
]
