"""The ``huracan`` command line.

Every command loads the config (``--config``, default ``config/base.yaml``, with
``HURACAN__section__key`` overrides), reports a bad config by naming the key, and exits non-zero
on failure with a one-line reason instead of a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from huracan.cli_history import register as register_history_commands
from huracan.cli_status import register as register_status_command
from huracan.config import ConfigError, HuracanConfig, load_config
from huracan.research.cli import register as register_research_commands

app = typer.Typer(
    name="huracan",
    help="Huracan: an event-sourced crypto trading engine on Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
topics_app = typer.Typer(help="The Kafka topic catalog.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(config_app, name="config")
register_history_commands(app)  # archive, replay, backtest, whatif (huracan/cli_history.py)
register_status_command(app)  # status (huracan/cli_status.py)
register_research_commands(app)  # retrain, sweep (huracan/research/cli.py)

console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (default: config/base.yaml)."),
]


def _load(path: Path | None) -> HuracanConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        err_console.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from None


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@config_app.command("show")
def config_show(config: ConfigOption = None) -> None:
    """Print the effective configuration as JSON, secrets redacted."""
    cfg = _load(config)
    console.print_json(json.dumps(cfg.redacted(), default=str))


@app.command()
def health(config: ConfigOption = None) -> None:
    """Check Kafka, Redis and PostgreSQL; exit 1 when any is down."""
    from huracan.observability.health import check_all

    cfg = _load(config)
    results = check_all(cfg)
    table = Table(title="health")
    for col in ("service", "status", "ms", "detail"):
        table.add_column(col)
    for r in results:
        status = "[green]up[/green]" if r.ok else "[red]DOWN[/red]"
        table.add_row(r.name, status, f"{r.latency_ms:.0f}", r.detail)
    console.print(table)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@topics_app.command("create")
def topics_create(
    config: ConfigOption = None,
    prefix: Annotated[
        str | None, typer.Option(help="Topic name prefix (default: kafka.topic_prefix).")
    ] = None,
    grow_partitions: Annotated[
        bool, typer.Option(help="Add partitions to existing topics that have fewer than config.")
    ] = False,
) -> None:
    """Create every topic of the catalog that is missing (idempotent) and report each."""
    from huracan.streams.topics import ensure_topics

    cfg = _load(config)
    try:
        reports = ensure_topics(cfg, prefix=prefix, grow_partitions=grow_partitions)
    except Exception as exc:  # noqa: BLE001 - report, don't trace
        raise _fail(f"could not create topics on {cfg.kafka.bootstrap_servers}: {exc}") from None
    table = Table(title=f"topics on {cfg.kafka.bootstrap_servers}")
    for col in ("topic", "action", "partitions", "cleanup", "retention.ms", "note"):
        table.add_column(col)
    for r in reports:
        table.add_row(
            r.name,
            r.action,
            str(r.partitions),
            r.cleanup_policy,
            str(r.retention_ms),
            r.note or "",
        )
    console.print(table)


@topics_app.command("list")
def topics_list(config: ConfigOption = None) -> None:
    """List the catalog: topic, value schema, key, partitions, policy."""
    from huracan.streams.topics import topic_catalog

    cfg = _load(config)
    table = Table(title="topic catalog")
    for col in ("topic", "value", "key", "partitions", "cleanup", "retention.ms"):
        table.add_column(col)
    for spec in topic_catalog(cfg):
        table.add_row(
            spec.name,
            spec.value_schema,
            spec.key,
            str(spec.partitions),
            spec.cleanup_policy,
            str(spec.retention_ms),
        )
    console.print(table)


@app.command()
def simulate(
    config: ConfigOption = None,
    coins: Annotated[int, typer.Option(help="Coins to tick (the first N of the universe).")] = 400,
    rate: Annotated[float, typer.Option(help="Ticks per second to publish.")] = 10_000.0,
    duration: Annotated[float, typer.Option(help="Seconds to publish for.")] = 60.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same ticks).")] = 7,
) -> None:
    """Publish synthetic random-walk ticks to the market-data topic, with a progress bar."""
    from huracan.domain.universe import MAX_UNIVERSE
    from huracan.publish import publish_ticks_with_progress

    cfg = _load(config)
    if not 1 <= coins <= MAX_UNIVERSE:
        raise _fail(f"--coins must be within 1..{MAX_UNIVERSE}", 2)
    if rate <= 0 or duration <= 0:
        raise _fail("--rate and --duration must be positive", 2)
    try:
        report = publish_ticks_with_progress(
            cfg, console, coins=coins, rate=rate, duration=duration, seed=seed
        )
    except Exception as exc:  # noqa: BLE001 - report, don't trace
        raise _fail(f"publishing failed: {exc}") from None
    console.print(
        f"published {report.ticks:,} ticks for {report.coins} coins to {report.topic} "
        f"in {report.seconds:.1f}s ({report.rate:,.0f} ticks/s)"
    )


@app.command()
def demo(
    config: ConfigOption = None,
    coins: Annotated[int, typer.Option(help="Coins to tick.")] = 100,
    rate: Annotated[float, typer.Option(help="Ticks per second.")] = 2_000.0,
    duration: Annotated[float, typer.Option(help="Seconds of ticks.")] = 15.0,
    keep_topics: Annotated[bool, typer.Option(help="Keep the demo's topics afterwards.")] = False,
    foundation: Annotated[
        bool, typer.Option(help="Only the foundation check: one round trip through the catalog.")
    ] = False,
) -> None:
    """The main job: a worker, synthetic ticks through the whole engine, and a summary."""
    from huracan.demo import run_foundation_demo, run_pipeline_demo

    cfg = _load(config)
    try:
        if foundation:
            ok = run_foundation_demo(cfg, console=console).ok
        else:
            ok = run_pipeline_demo(
                cfg,
                coins=coins,
                rate=rate,
                duration=duration,
                keep_topics=keep_topics,
                console=console,
            ).ok
    except Exception as exc:  # noqa: BLE001 - report, don't trace
        raise _fail(str(exc)) from None
    if not ok:
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    return app(args=argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
