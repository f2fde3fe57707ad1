"""``huracan status``: a live view of a running worker (huracan/observability/status.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from huracan.config import ConfigError, load_config


def register(app: typer.Typer) -> None:
    """Add the ``status`` command to ``app``."""

    @app.command()
    def status(
        config: Annotated[
            Path | None,
            typer.Option("--config", "-c", help="YAML config file (default: config/base.yaml)."),
        ] = None,
        url: Annotated[
            str | None,
            typer.Option(help="The worker's web address (default: faust.web_host:web_port)."),
        ] = None,
        once: Annotated[
            bool, typer.Option("--once", help="Print one snapshot and exit (for scripts).")
        ] = False,
        interval: Annotated[
            float, typer.Option(help="Seconds between refreshes (and between --once's reads).")
        ] = 2.0,
    ) -> None:
        """A live view of a worker: health, exposure and limits, breakers, decisions/s,
        latency per hop, lag and dead letters (from its /risk, /health and /metrics).
        With --once, exit 1 when the worker does not answer."""
        from huracan.observability.status import run

        console = Console()
        if url is None:
            try:
                cfg = load_config(config)
            except ConfigError as exc:
                Console(stderr=True).print(f"[red]config error:[/red] {exc}")
                raise typer.Exit(2) from None
            url = f"http://{cfg.faust.web_host}:{cfg.faust.web_port}"
        if interval <= 0:
            Console(stderr=True).print("[red]error:[/red] --interval must be positive")
            raise typer.Exit(2)
        code = run(url, once=once, interval=interval, console=console)
        if code:
            raise typer.Exit(code)
