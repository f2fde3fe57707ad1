"""``huracan archive | replay | backtest | whatif``: the history commands of the command line.

:func:`register` adds them to the main app (``huracan/cli.py``). Each command loads the config
like the others (``--config``, ``HURACAN__section__key`` overrides) and turns every expected
failure — a missing or corrupt archive, an empty range, an unknown coin, a bad time, offset or
config key, an unreachable broker — into one line on stderr and a non-zero exit:

* exit 2: the arguments or the config are unusable (bad time, offsets, coin, ``--set`` key or
  value, options that do not go together);
* exit 1: the history or the services are (no archive, no data in range, a corrupt file,
  Kafka errors, nothing to report).

Anything unexpected is reported the same way (its type and message); set ``HURACAN_DEBUG=1``
to get the traceback instead. This module imports nothing heavy at import time: pyarrow,
confluent-kafka and matplotlib are loaded by the command that needs them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from huracan.streams.clients import quiet_consumer, quiet_producer

if TYPE_CHECKING:
    from huracan.backtest.run import ReplayResult
    from huracan.config import HuracanConfig
    from huracan.storage.archiver import ArchiveReport

console = Console()
err_console = Console(stderr=True)

#: the topics ``huracan archive`` archives unless ``--topics`` says otherwise
DEFAULT_ARCHIVE_TOPICS: Final = "market-data,executions,risk-decisions"

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (default: config/base.yaml)."),
]
RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="Archive root folder (<root>/<coin>/YYYYMMDD.parquet); default: the config's "
        "storage.archive.root when it has one.",
    ),
]
FromOption = Annotated[
    str,
    typer.Option(
        "--from", help="Where the ticks come from: 'archive' (--root) or 'topic' (market-data)."
    ),
]
CoinsOption = Annotated[
    str | None, typer.Option("--coins", help="Comma-separated coins (default: all).")
]
StartOption = Annotated[
    str | None,
    typer.Option(
        "--start",
        help="First event time, inclusive: ISO 8601 (UTC unless it has an offset) or epoch µs.",
    ),
]
EndOption = Annotated[
    str | None,
    typer.Option("--end", help="End event time, exclusive: ISO 8601 or epoch µs."),
]
OffsetsOption = Annotated[
    str | None,
    typer.Option(
        "--offsets",
        help="--from topic only: start offsets PARTITION:OFFSET,… (only those partitions).",
    ),
]
CostUpdatesOption = Annotated[
    bool,
    typer.Option(
        "--cost-updates/--no-cost-updates",
        help="Also fold the recorded cost updates (spread, fees, funding).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
ModelsOption = Annotated[
    str,
    typer.Option(
        "--models",
        help="'registry': each coin's active model from engine.model_registry, as the live "
        "worker trades (default); 'baseline': the built-in model for every coin.",
    ),
]
ReadTimeoutOption = Annotated[
    float,
    typer.Option(
        "--read-timeout",
        help="--from topic: seconds without progress (or without a broker) before giving up.",
        min=0.1,
    ),
]


# --- failing cleanly ----------------------------------------------------------------------------


def _one_line(message: str) -> str:
    """Multi-line messages (a config error lists one bad key a line) joined into one."""
    out = ""
    for part in (p.strip() for p in str(message).splitlines()):
        if part:
            out += (" " if out.endswith(":") else "; ") + part if out else part
    return out


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: <message>`` as one line on stderr; return the ``typer.Exit`` to raise.

    Unlike ``huracan.cli._fail`` it escapes Rich markup (archive messages hold ``[…)``
    ranges) and never wraps the line.
    """
    err_console.print(f"[red]error:[/red] {escape(_one_line(message))}", soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def reported_errors(cfg: HuracanConfig | None = None) -> Iterator[None]:
    """Turn the expected errors of the history commands into :func:`fail` (see the module
    docstring for the exit codes); ``typer.Exit`` passes through."""
    from confluent_kafka import KafkaException

    from huracan.backtest.errors import BacktestError, InvalidBacktestInput
    from huracan.config import ConfigError
    from huracan.storage.archive_errors import ArchiveError, TopicReadError, UnknownCoin
    from huracan.streams.errors import StreamsError

    where = f" (Kafka at {cfg.kafka.bootstrap_servers})" if cfg is not None else ""
    try:
        yield
    except typer.Exit:
        raise
    except (InvalidBacktestInput, UnknownCoin) as exc:
        raise fail(str(exc), 2) from None
    except ConfigError as exc:
        raise fail(f"config error: {exc}", 2) from None
    except TopicReadError as exc:
        raise fail(f"{exc}{where}") from None
    except (ArchiveError, BacktestError) as exc:
        raise fail(str(exc)) from None
    except KafkaException as exc:
        raise fail(f"Kafka error{where}: {exc}") from None
    except StreamsError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")) from None
    except Exception as exc:  # the contract is "one line, never a traceback"
        if os.environ.get("HURACAN_DEBUG"):
            raise
        raise fail(
            f"unexpected {type(exc).__name__}: {exc} (HURACAN_DEBUG=1 shows where)"
        ) from None


def _load_config(path: Path | None) -> HuracanConfig:
    from huracan.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise fail(f"config error: {exc}", 2) from None


def _archive_root(cfg: HuracanConfig, root: Path | None, required: bool = True) -> Path | None:
    """``--root``, else the config's ``storage.archive.root`` when the config has one."""
    if root is not None:
        return root
    configured = getattr(getattr(getattr(cfg, "storage", None), "archive", None), "root", None)
    if configured:
        return Path(str(configured))
    if required:
        raise fail("--root is required (the config names no storage.archive.root)", 2)
    return None


def _models(cfg: HuracanConfig, which: str) -> Any:
    """The signal models a replay serves: the registry's active ones (what the live worker
    loads), or ``None`` for the baseline. An unreachable registry is an error, not a silent
    fallback: the replay would not make the live decisions."""
    if which == "baseline":
        return None
    if which != "registry":
        raise fail(f"--models must be 'registry' or 'baseline', got {which!r}", 2)
    from huracan.models import RegistryModels

    models = RegistryModels.from_config(cfg)
    if not models.refresh():
        error = models.status().last_error
        models.close()
        raise fail(
            f"model registry unreachable ({error}); replay with --models baseline to use the "
            "built-in model for every coin"
        )
    return models


def _source_args(
    cfg: HuracanConfig,
    source: str,
    root: Path | None,
    coins: str | None,
    start: str | None,
    end: str | None,
    offsets: str | None,
    read_timeout: float,
) -> dict[str, Any]:
    """The keyword arguments of :func:`huracan.backtest.run.load_ticks`, checked."""
    from huracan.backtest.run import SOURCES, parse_coins, parse_offsets, parse_time

    if source not in SOURCES:
        raise fail(f"--from must be one of {', '.join(SOURCES)}, got {source!r}", 2)
    if source == "topic" and root is not None:
        raise fail("--root applies to --from archive only", 2)
    if source == "archive" and offsets is not None:
        raise fail("--offsets applies to --from topic only", 2)
    return {
        "source": source,
        "root": _archive_root(cfg, root) if source == "archive" else None,
        "coins": parse_coins(coins),
        "start": parse_time(start, "--start"),
        "end": parse_time(end, "--end"),
        "start_offsets": parse_offsets(offsets) if offsets is not None else None,
        "topic_options": {"consumer_factory": quiet_consumer, "idle_timeout_s": read_timeout},
    }


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def _iso(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / 1e6, tz=UTC).isoformat(timespec="milliseconds")


# --- archive ------------------------------------------------------------------------------------


def _archive_event_types(cfg: HuracanConfig, topics: str) -> list[tuple[str, str]]:
    """``(topic name, event type)`` for each of ``topics``: catalog suffixes
    (``market-data``), full topic names or event types (``MarketTick``)."""
    from huracan.streams.errors import UnknownEventType
    from huracan.streams.topics import TopicCatalog, topic_name

    catalog = TopicCatalog.from_config(cfg)
    out: list[tuple[str, str]] = []
    for raw in topics.split(","):
        name = raw.strip()
        if not name:
            continue
        spec = None
        for candidate in (name, topic_name(catalog.prefix, name)):
            if candidate in catalog.names:
                spec = catalog.by_name(candidate)
                break
        if spec is None:
            try:
                spec = catalog.for_event_type(name)
            except UnknownEventType:
                suffixes = [n.removeprefix(f"{catalog.prefix}.") for n in catalog.names]
                raise fail(
                    f"--topics: unknown topic {name!r}; the catalog has {', '.join(suffixes)}", 2
                ) from None
        if (spec.name, spec.event_type) not in out:
            out.append((spec.name, spec.event_type))
    if not out:
        raise fail("--topics names no topic", 2)
    return out


def _archive_report_dict(report: ArchiveReport) -> dict[str, Any]:
    return {
        "topic": report.topic,
        "event_type": report.event_type,
        "root": str(report.root),
        "files": [
            {
                "path": str(f.path),
                "coin": f.coin,
                "day": f.day.isoformat(),
                "rows": f.rows,
                "added": f.added,
            }
            for f in report.files
        ],
        "consumed": report.consumed,
        "archived": report.archived,
        "duplicates": report.duplicates,
        "dead_letters": report.dead_letters,
        "offsets": {str(p): list(v) for p, v in report.offsets.items()},
        "committed": {str(p): o for p, o in report.committed.items()},
        "complete": report.complete,
    }


def archive(
    config: ConfigOption = None,
    root: RootOption = None,
    topics: Annotated[
        str,
        typer.Option(
            "--topics",
            help="Comma-separated topics to archive (catalog names such as market-data, or "
            "event types such as MarketTick).",
        ),
    ] = DEFAULT_ARCHIVE_TOPICS,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--from-beginning",
            help="Start at the archiver group's committed offsets instead of the beginning "
            "(files de-duplicate either way).",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds without progress before giving up.")
    ] = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Archive topics into <root>/<coin>/YYYYMMDD.parquet up to their current end offsets."""
    cfg = _load_config(config)
    target = _archive_root(cfg, root)
    assert target is not None
    wanted = _archive_event_types(cfg, topics)
    reports = []
    with reported_errors(cfg):
        from huracan.storage.archiver import archive_topic

        for _topic, event_type in wanted:
            reports.append(
                archive_topic(
                    cfg,
                    topic_event_type=event_type,
                    root=target,
                    from_beginning=not resume,
                    idle_timeout_s=timeout,
                    consumer_factory=quiet_consumer,
                    producer_factory=quiet_producer,
                )
            )
    if as_json:
        _print_json([_archive_report_dict(r) for r in reports])
        return
    table = Table(title=f"archived into {target}", title_justify="left")
    for name in ("topic", "files", "rows added", "consumed", "duplicates", "dead letters"):
        table.add_column(name, justify="left" if name == "topic" else "right")
    table.add_column("offsets (partition: first–last)")
    for r in reports:
        offsets = ", ".join(f"{p}: {a}–{b}" for p, (a, b) in r.offsets.items()) or "—"
        table.add_row(
            r.topic, f"{r.files_written:,}", f"{r.archived:,}", f"{r.consumed:,}",
            f"{r.duplicates:,}", f"{r.dead_letters:,}", offsets,
        )  # fmt: skip
    console.print(table)
    for r in reports:
        if not r.complete:
            err_console.print(f"warning: {escape(r.topic)} did not reach its end offsets")


# --- replay -------------------------------------------------------------------------------------


def _counts_table(
    title: str, rows: Sequence[tuple[str, int]], by_outcome: Mapping[str, int]
) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("count", justify="right")
    for name, value in rows:
        table.add_row(name, f"{value:,}")
    for outcome, value in by_outcome.items():
        table.add_row(f"  {outcome}", f"{value:,}")
    return table


def _outcomes(decisions: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    from collections import Counter

    counts = Counter(str(d["decision"]) for d in decisions)
    out = {k: counts.pop(k, 0) for k in ("APPROVE", "THROTTLE", "BLOCK")}
    out.update(sorted(counts.items()))
    return out


def _replay_table(result: ReplayResult) -> Table:
    s = result.stats
    rows = [
        ("ticks", result.ticks),
        ("coins", len(result.coins)),
        ("cost updates folded", result.cost_updates),
        ("features", s.features),
        ("signals", s.signals),
        ("signals dropped by the cost check", sum(result.cost_rejections.values())),
        ("trade requests", result.requests),
        ("risk decisions", len(result.decisions)),
    ]
    table = _counts_table(
        f"replay {_iso(result.start_us)} → {_iso(result.end_us)}",
        rows,
        result.decisions_by_outcome,
    )
    table.add_row("executions", f"{len(result.executions):,}")
    for name, value in (
        ("duplicate ticks", s.duplicate_ticks),
        ("invalid ticks skipped", result.invalid_ticks),
        ("invalid cost updates skipped", result.invalid_cost_updates),
        ("execution errors", s.execution_errors),
    ):
        if value:
            table.add_row(name, f"{value:,}")
    return table


def replay(
    config: ConfigOption = None,
    source: FromOption = "archive",
    root: RootOption = None,
    coins: CoinsOption = None,
    start: StartOption = None,
    end: EndOption = None,
    offsets: OffsetsOption = None,
    read_timeout: ReadTimeoutOption = 30.0,
    via: Annotated[
        str,
        typer.Option(
            "--via",
            help="'engine': in process (fast); 'kafka': through a worker on fresh topics "
            "(full fidelity; ticks only).",
        ),
    ] = "engine",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write decisions.jsonl and executions.jsonl here."),
    ] = None,
    cost_updates: CostUpdatesOption = True,
    timeout: Annotated[
        float, typer.Option("--timeout", help="--via kafka: seconds to wait for the drain.")
    ] = 600.0,
    keep_topics: Annotated[
        bool, typer.Option("--keep-topics", help="--via kafka: keep the replay's topics.")
    ] = False,
    models: ModelsOption = "registry",
    as_json: JsonOption = False,
) -> None:
    """Push recorded ticks through the engine and print what it made."""
    cfg = _load_config(config)
    if via not in ("engine", "kafka"):
        raise fail(f"--via must be 'engine' or 'kafka', got {via!r}", 2)
    with reported_errors(cfg):
        args = _source_args(cfg, source, root, coins, start, end, offsets, read_timeout)
        if via == "kafka":
            _replay_via_kafka(cfg, args, out, timeout, keep_topics, as_json)
            return
        from huracan.backtest.run import run_replay

        result = run_replay(cfg, cost_updates=cost_updates, models=_models(cfg, models), **args)
        paths = _write_records(out, result.decisions, result.executions)
    if as_json:
        _print_json({**result.summary(), "files": [str(p) for p in paths]})
        return
    console.print(_replay_table(result))
    for p in paths:
        console.print(f"wrote {escape(str(p))}")


def _write_records(
    out: Path | None,
    decisions: Sequence[Mapping[str, Any]],
    executions: Sequence[Mapping[str, Any]],
) -> list[Path]:
    if out is None:
        return []
    from huracan.backtest.run import DECISIONS_FILE, EXECUTIONS_FILE, write_jsonl

    return [
        write_jsonl(out / DECISIONS_FILE, decisions),
        write_jsonl(out / EXECUTIONS_FILE, executions),
    ]


def _replay_via_kafka(
    cfg: HuracanConfig,
    args: dict[str, Any],
    out: Path | None,
    timeout: float,
    keep_topics: bool,
    as_json: bool,
) -> None:
    """``huracan replay --via kafka``: the ticks through a worker on fresh topics
    (:func:`huracan.backtest.kafka_replay.replay_via_kafka`). Cost updates are not
    republished: the worker's cost book starts from the configured defaults."""
    from huracan.backtest.run import load_ticks

    try:
        from huracan.backtest.kafka_replay import replay_via_kafka
    except ImportError as exc:
        raise fail(f"--via kafka is not available: {exc}") from None
    ticks = list(load_ticks(cfg, **args))
    result = replay_via_kafka(
        cfg, ticks, console=None if as_json else console, timeout_s=timeout, keep_topics=keep_topics
    )
    paths = _write_records(out, result.decisions, result.executions)
    summary = {
        "prefix": result.prefix,
        "ticks": result.ticks,
        "features": result.features,
        "signals": result.signals,
        "requests": result.requests,
        "decisions": len(result.decisions),
        "decisions_by_outcome": _outcomes(result.decisions),
        "executions": len(result.executions),
        "files": [str(p) for p in paths],
    }
    if as_json:
        _print_json(summary)
        return
    table = _counts_table(
        f"replay through Kafka ({result.prefix}.*)",
        [
            ("ticks", result.ticks),
            ("features", result.features),
            ("signals", result.signals),
            ("trade requests", result.requests),
            ("risk decisions", len(result.decisions)),
        ],
        _outcomes(result.decisions),
    )
    table.add_row("executions", f"{len(result.executions):,}")
    console.print(table)
    for p in paths:
        console.print(f"wrote {escape(str(p))}")


# --- backtest -----------------------------------------------------------------------------------


def _default_out_dir() -> Path:
    return Path("backtests") / datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")


def backtest(
    config: ConfigOption = None,
    source: FromOption = "archive",
    root: RootOption = None,
    coins: CoinsOption = None,
    start: StartOption = None,
    end: EndOption = None,
    offsets: OffsetsOption = None,
    read_timeout: ReadTimeoutOption = 30.0,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for report.json, decisions.jsonl, executions.jsonl and equity.png "
            "(default: backtests/<UTC time>).",
        ),
    ] = None,
    equity_usd: Annotated[
        float | None,
        typer.Option(
            "--equity-usd",
            help="Starting equity (default: engine.equity_usd); the risk limits' percentages "
            "refer to it too.",
        ),
    ] = None,
    cost_updates: CostUpdatesOption = True,
    chart: Annotated[bool, typer.Option("--chart/--no-chart", help="Draw equity.png.")] = True,
    top_coins: Annotated[int, typer.Option("--top-coins", help="Coins in the table.")] = 10,
    models: ModelsOption = "registry",
    as_json: JsonOption = False,
) -> None:
    """Backtest recorded history: PnL net of fees and funding, Sharpe, drawdown, decisions."""
    cfg = _load_config(config)
    with reported_errors(cfg):
        from huracan.backtest.run import override_config, run_backtest, write_outputs

        if equity_usd is not None:
            cfg = override_config(cfg, {"engine.equity_usd": equity_usd})
        args = _source_args(cfg, source, root, coins, start, end, offsets, read_timeout)
        result, report = run_backtest(
            cfg, cost_updates=cost_updates, models=_models(cfg, models), **args
        )
        paths = write_outputs(result, report, out or _default_out_dir(), chart=chart)
    files = [paths.report_json, paths.decisions_jsonl, paths.executions_jsonl]
    if paths.equity_png is not None:
        files.append(paths.equity_png)
    if as_json:
        _print_json({"report": report.to_dict(), "files": [str(p) for p in files]})
        return
    from huracan.backtest.report import render_report

    render_report(report, console, top_coins=top_coins)
    for p in files:
        console.print(f"wrote {escape(str(p))}")


# --- whatif -------------------------------------------------------------------------------------


def whatif(
    config: ConfigOption = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="KEY=VALUE for the what-if run, repeatable: risk.max_active_trades=20, "
            "costs.default_taker_fee_bps=7.5, engine.equity_usd=5e5 (risk.* = engine.risk.*, "
            "costs.* = engine.cost_model.*).",
        ),
    ] = None,
    other_config: Annotated[
        Path | None,
        typer.Option("--other-config", help="A whole config file for the what-if run."),
    ] = None,
    source: FromOption = "archive",
    root: RootOption = None,
    coins: CoinsOption = None,
    start: StartOption = None,
    end: EndOption = None,
    offsets: OffsetsOption = None,
    read_timeout: ReadTimeoutOption = 30.0,
    cost_updates: CostUpdatesOption = True,
    examples: Annotated[
        int, typer.Option("--examples", help="Changed decisions to list.", min=0)
    ] = 10,
    models: ModelsOption = "registry",
    as_json: JsonOption = False,
) -> None:
    """Re-run recorded history with other limits or costs; print what changes."""
    cfg = _load_config(config)
    if not set_ and other_config is None:
        raise fail("nothing to compare: give --set KEY=VALUE or --other-config FILE", 2)
    with reported_errors(cfg):
        from huracan.backtest.run import override_config, parse_assignment, run_whatif
        from huracan.backtest.whatif import render_whatif

        assignments = [parse_assignment(s) for s in set_ or []]
        base_dump = cfg.model_dump(mode="json")
        other = _load_config(other_config) if other_config is not None else cfg
        other = override_config(other, assignments)
        changes = _changed_keys(base_dump, other.model_dump(mode="json"))
        args = _source_args(cfg, source, root, coins, start, end, offsets, read_timeout)
        run = run_whatif(
            cfg, other, cost_updates=cost_updates, examples=examples,
            models=_models(cfg, models), **args,
        )  # fmt: skip
    if as_json:
        _print_json(
            {
                "changes": [{"key": k, "base": b, "other": o} for k, b, o in changes],
                "diff": run.diff.to_dict(),
            }
        )
        return
    if changes:
        table = Table(title="Settings changed", title_justify="left")
        for name in ("key", run.diff.base_label, run.diff.other_label):
            table.add_column(name)
        for key, b, o in changes:
            table.add_row(key, escape(json.dumps(b)), escape(json.dumps(o)))
        console.print(table)
    else:
        console.print("the what-if config equals the configured one: expect no difference")
    render_whatif(run.diff, console)


def _changed_keys(
    base: Mapping[str, Any], other: Mapping[str, Any], prefix: str = ""
) -> list[tuple[str, Any, Any]]:
    """The dotted keys whose values differ between two config dumps, sorted."""
    out: list[tuple[str, Any, Any]] = []
    for key in sorted(set(base) | set(other)):
        b, o = base.get(key), other.get(key)
        path = f"{prefix}{key}"
        if isinstance(b, Mapping) and isinstance(o, Mapping):
            out += _changed_keys(b, o, path + ".")
        elif b != o:
            out.append((path, b, o))
    return out


# --- registration -------------------------------------------------------------------------------

COMMANDS: Final[Mapping[str, Callable[..., None]]] = {
    "archive": archive,
    "replay": replay,
    "backtest": backtest,
    "whatif": whatif,
}


def register(app: typer.Typer) -> None:
    """Add ``archive``, ``replay``, ``backtest`` and ``whatif`` to ``app``."""
    for name, fn in COMMANDS.items():
        app.command(name)(fn)
