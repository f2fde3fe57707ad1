"""``huracan retrain`` and ``huracan sweep``: the research commands of the command line.

:func:`register` adds them to the main app (``huracan/cli.py`` only wires). Like the history
commands, every expected failure is one line on stderr and a non-zero exit — 2 for unusable
arguments or config (a bad grid, key, value, time or period), 1 for the archive, the registry
or the cluster — and ``HURACAN_DEBUG=1`` shows the traceback of anything unexpected. Dask is
imported by the command that runs, not at import time.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from huracan.config import HuracanConfig
    from huracan.research.executor import TaskExecutor

console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (default: config/base.yaml)."),
]
RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="Archive root (<root>/<coin>/YYYYMMDD.parquet), readable at the same path on "
        "every worker; default: the config's storage.archive.root.",
    ),
]
SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Dask scheduler address (tcp://HOST:8786); default research.scheduler, else a "
        "local cluster; 'serial' runs every task in this process.",
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers", help="Local cluster worker processes (default research.local_workers)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON instead.")]


def fail(message: str, code: int = 1) -> typer.Exit:
    """``error: <message>`` as one line on stderr; the ``typer.Exit`` to raise."""
    text = "; ".join(p.strip() for p in str(message).splitlines() if p.strip())
    err_console.print(f"[red]error:[/red] {escape(text)}", soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Expected errors as :func:`fail` (module docstring for the codes)."""
    from huracan.backtest.errors import BacktestError, InvalidBacktestInput
    from huracan.config import ConfigError
    from huracan.research.errors import ExecutorError, InvalidGrid, InvalidPeriod
    from huracan.storage.archive_errors import ArchiveError, UnknownCoin
    from huracan.storage.errors import RegistryError

    try:
        yield
    except typer.Exit:
        raise
    except (InvalidBacktestInput, UnknownCoin, InvalidGrid, InvalidPeriod) as exc:
        raise fail(str(exc), 2) from None
    except ConfigError as exc:
        raise fail(f"config error: {exc}", 2) from None
    except (ArchiveError, BacktestError, ExecutorError, RegistryError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")) from None
    except Exception as exc:  # the contract is "one line, never a traceback"
        if os.environ.get("HURACAN_DEBUG"):
            raise
        raise fail(
            f"unexpected {type(exc).__name__}: {exc} (HURACAN_DEBUG=1 shows where)"
        ) from None


def _load(path: Path | None) -> HuracanConfig:
    from huracan.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise fail(f"config error: {exc}", 2) from None


def _root(cfg: HuracanConfig, root: Path | None) -> Path:
    if root is not None:
        return root
    return Path(cfg.storage.archive.root)


def _executor(cfg: HuracanConfig, scheduler: str | None, workers: int | None) -> TaskExecutor:
    from huracan.research.executor import make_executor

    # the local cluster's shutdown chatter ("worker process still alive…, killing") is not news
    logging.getLogger("distributed").setLevel(logging.ERROR)

    address = scheduler if scheduler is not None else cfg.research.scheduler
    n = workers if workers is not None else cfg.research.local_workers
    if n < 1:
        raise fail("--workers must be >= 1", 2)
    return make_executor(address, local_workers=n)


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet,
        transient=False,
    )


def _time(value: str | None, what: str) -> int | None:
    from huracan.backtest.run import parse_time

    return parse_time(value, what)


def _default_out(name: str) -> Path:
    return Path("out") / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def retrain(
    coins: Annotated[str, typer.Option("--coins", help="Comma-separated coins to retrain.")],
    start: Annotated[str, typer.Option("--start", help="Period start (ISO 8601 or epoch µs).")],
    end: Annotated[str, typer.Option("--end", help="Period end, exclusive.")],
    config: ConfigOption = None,
    root: RootOption = None,
    folds: Annotated[
        int | None, typer.Option("--folds", help="Walk-forward folds (default research.folds).")
    ] = None,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Fit and evaluate, register nothing.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write retrain.json into this folder.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Refit each coin's models walk-forward, test them out of sample, register them, and
    promote one only when it beats the coin's active model by research.promotion_margin_sharpe."""
    from huracan.backtest.run import override_config, parse_coins
    from huracan.research.retrain import render_retrain, run_retrain

    cfg = _load(config)
    with reported_errors():
        if folds is not None:
            cfg = override_config(cfg, {"research.folds": folds})
        wanted = parse_coins(coins) or []
        start_us, end_us = _time(start, "start"), _time(end, "end")
        assert start_us is not None
        assert end_us is not None
        from huracan.storage.model_registry import ModelRegistry

        # read for the incumbents even in a dry run; written only without --dry-run
        registry: Any = ModelRegistry.from_config(cfg)
        try:
            with _executor(cfg, scheduler, workers) as executor, _progress(as_json) as bar:
                tasks: dict[str, Any] = {}

                def progress(phase: str, done: int, total: int) -> None:
                    if phase not in tasks:
                        tasks[phase] = bar.add_task(phase, total=total)
                    bar.update(tasks[phase], completed=done)

                result = run_retrain(
                    cfg, executor, registry, root=_root(cfg, root), coins=wanted,
                    start=start_us, end=end_us, dry_run=dry_run, progress=progress,
                )  # fmt: skip
        finally:
            registry.close()
        data = result.to_dict()
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "retrain.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    if as_json:
        console.print_json(json.dumps(data, default=str))
        return
    render_retrain(result, console)
    n = len(result.promoted)
    console.print(
        f"{len(result.candidates)} candidates for {len(wanted)} coin(s), {n} promoted"
        + (" (dry run: nothing registered)" if dry_run else "")
    )


def sweep(
    config: ConfigOption = None,
    root: RootOption = None,
    coins: Annotated[
        str | None, typer.Option("--coins", help="Comma-separated coins (default: all).")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="Period start (ISO 8601 or epoch µs).")
    ] = None,
    end: Annotated[str | None, typer.Option("--end", help="Period end, exclusive.")] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            "-g",
            help="An axis KEY=V1,V2,… (repeat it); keys as --set takes them: risk.*, costs.*, "
            "exits.* or full dotted keys. Default: a 3×3×3 grid of one risk limit, one cost "
            "parameter and one exit rule.",
        ),
    ] = None,
    metric: Annotated[
        str, typer.Option("--metric", help="What influence and the table rank by.")
    ] = "pnl_net_usd",
    scheduler: SchedulerOption = None,
    workers: WorkersOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder for sweep.json and sweep_heatmap.png (default: out/sweep-<time>)."
        ),
    ] = None,
    top: Annotated[int | None, typer.Option("--top", help="Show only the best N points.")] = None,
    no_cost_updates: Annotated[
        bool, typer.Option("--no-cost-updates", help="Ignore archived cost updates.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """The what-if over a grid of risk limits, costs and exit rules: every point a full
    backtest of the same period, run as one Dask task; a table, JSON and a heatmap."""
    from huracan.research.grid import DEFAULT_GRID, parse_grid
    from huracan.research.sweep import render_sweep, run_sweep, write_sweep_outputs

    cfg = _load(config)
    with reported_errors():
        axes = parse_grid(grid) if grid else dict(DEFAULT_GRID)
        start_us, end_us = _time(start, "start"), _time(end, "end")
        with _executor(cfg, scheduler, workers) as executor, _progress(as_json) as bar:
            task = bar.add_task("sweep", total=None)
            result = run_sweep(
                cfg, executor, grid=axes, root=_root(cfg, root), coins=coins, start=start_us,
                end=end_us, metric=metric, cost_updates=not no_cost_updates,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )  # fmt: skip
        json_path, png_path = write_sweep_outputs(result, out or _default_out("sweep"))
    if as_json:
        console.print_json(json.dumps(result.to_dict(), default=str))
        return
    render_sweep(result, console, top=top)
    console.print(
        f"{len(result.points)} points in {result.seconds:.1f}s on {result.workers} worker(s); "
        f"wrote {json_path} and {png_path}"
    )


def register(app: typer.Typer) -> None:
    """Add ``retrain`` and ``sweep`` to ``app``."""
    app.command("retrain")(retrain)
    app.command("sweep")(sweep)
