"""Backtest runner: recorded history through the in-process engine, and what it adds up to.

The fast path of a replay: ticks read from the Parquet archive or from a topic
(:func:`load_ticks`) go through :func:`huracan.wiring.build_engine` — the same core, configured
the same way, as the Faust pipeline — in ``(ts, coin, seq)`` order (:func:`replay_ticks`). The
decisions and executions it makes are exactly the records the live pipeline would write, so a
backtest over the ticks a live run processed reproduces that run byte for byte
(``tests/integration/test_backtest_parity.py``). :func:`run_backtest` adds the report
(:mod:`huracan.backtest.report`), :func:`run_whatif` runs the same ticks under two configs and
compares them (:mod:`huracan.backtest.whatif`), :func:`write_outputs` writes the files.

What a replay folds, and what it does not:

* **Ticks** (``MarketTick``), from the archive (``<root>/<coin>/YYYYMMDD.parquet``) or the
  market-data topic, merged across coins by ``(ts, coin, seq)``.
* **Cost updates** (``CostUpdate``: spread, fee, funding), from the archive
  (``<root>/_cost_update/…``, when ``huracan archive --topics cost-updates`` wrote it) or the
  cost-updates topic: every update with ``ts`` before the end of the range (also those before
  its start: they set the cost book the range starts with), applied before the first tick with
  a ``ts`` at or after theirs. The live coin agent folds a coin's cost updates in the order its
  consumer receives the two topics, which Kafka does not tie to event time; a replay matches
  live exactly when each update reached the agent before the first tick with a later ``ts``
  (the case when updates are produced ahead of the ticks they apply to).
* **Not folded**: control events (limit changes, kill switch, breaker resets) and equity
  updates on the control topic. A live run that had any diverges from its replay from that
  event on.

Records the live pipeline would dead-letter are skipped here and counted
(:attr:`ReplayResult.invalid_ticks`, :attr:`ReplayResult.invalid_cost_updates`).

Funding in the report: ``huracan/config.py`` has no per-coin funding rates (only
``engine.cost_model.funding_interval_hours``), so the rates come from the ``FUNDING`` cost
updates the replay folded — each coin's last rate, charged over each trade's holding time at
the configured interval — and are empty (no funding charged) when the history holds none.

Times (``start``/``end``) are half open, ``start <= ts < end``, and may be given as a
:class:`~datetime.datetime` (naive = UTC), an ISO 8601 string (``2026-01-01``,
``2026-01-01T10:00:00Z``, ``…+02:00``; without an offset it is UTC) or int epoch microseconds
(:func:`parse_time`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import yaml
from pydantic import BaseModel

from huracan.backtest.errors import BacktestError, EmptyBacktest, InvalidBacktestInput
from huracan.backtest.report import (
    MARK_INTERVAL_US,
    BacktestReport,
    Mark,
    QuoteMarks,
    build_report,
    write_equity_png,
)
from huracan.backtest.whatif import WhatIfDiff, compare_runs
from huracan.config import HuracanConfig, build_config
from huracan.domain.engine import EngineStats, TradingEngine
from huracan.domain.errors import CostError
from huracan.domain.features import FeatureError
from huracan.storage.archive_errors import NoDataInRange
from huracan.storage.history import ArchiveReader, read_archive, read_topic
from huracan.wiring import build_engine, coin_sectors

if TYPE_CHECKING:
    from huracan.domain.signals import SignalModel

Source = Literal["archive", "topic"]
SOURCES: Final = ("archive", "topic")
TimeInput = datetime | str | int | None
Models = Callable[[str], "SignalModel | None"]

#: file names :func:`write_outputs` writes into its folder
REPORT_FILE: Final = "report.json"
DECISIONS_FILE: Final = "decisions.jsonl"
EXECUTIONS_FILE: Final = "executions.jsonl"
EQUITY_FILE: Final = "equity.png"

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: ``--set`` shorthands: the first part of a key → the dotted section it stands for
_KEY_ALIASES: Final[Mapping[str, str]] = {
    "risk": "engine.risk",
    "cost_model": "engine.cost_model",
    "costs": "engine.cost_model",
}


# --- parsing arguments --------------------------------------------------------------------------


def parse_time(value: TimeInput, what: str = "time") -> int | None:
    """``value`` as int epoch microseconds (``None`` stays ``None``).

    Accepts an aware datetime, a naive one (taken as UTC), int epoch microseconds, a string of
    digits (epoch microseconds) or an ISO 8601 date or date-time (without an offset: UTC).
    Raises :class:`InvalidBacktestInput` naming ``what`` and the value otherwise.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidBacktestInput(f"{what}: {value!r} is not a time")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidBacktestInput(
                f"{what}: {value!r} is not an ISO 8601 time (e.g. 2026-01-01 or "
                "2026-01-01T10:00:00Z) or epoch microseconds"
            ) from None
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        delta = aware - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    raise InvalidBacktestInput(f"{what}: {value!r} is not a datetime, ISO string or int")


def parse_offsets(text: str) -> dict[int, int]:
    """``"P:O,P:O"`` (partition:offset pairs) as ``{partition: offset}``.

    Raises :class:`InvalidBacktestInput` for a pair without ``:``, a part that is not a
    non-negative integer, or a partition given twice.
    """
    out: dict[int, int] = {}
    for raw in text.split(","):
        pair = raw.strip()
        if not pair:
            continue
        part, sep, off = pair.partition(":")
        if not sep:
            raise InvalidBacktestInput(f"offsets: {pair!r} is not PARTITION:OFFSET")
        try:
            partition, offset = int(part), int(off)
        except ValueError:
            raise InvalidBacktestInput(
                f"offsets: {pair!r} is not PARTITION:OFFSET with integers"
            ) from None
        if partition < 0 or offset < 0:
            raise InvalidBacktestInput(f"offsets: {pair!r} has a negative number")
        if partition in out:
            raise InvalidBacktestInput(f"offsets: partition {partition} is given twice")
        out[partition] = offset
    if not out:
        raise InvalidBacktestInput(f"offsets: {text!r} names no PARTITION:OFFSET pair")
    return out


def parse_coins(text: str | Iterable[str] | None) -> list[str] | None:
    """Coins from ``"BTC,ETH"`` or an iterable, upper-cased, de-duplicated in order; ``None``
    (all coins) for ``None`` or an empty list."""
    if text is None:
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    coins = list(dict.fromkeys(p.strip().upper() for p in parts if p.strip()))
    return coins or None


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` as ``(key, value)``; the value is parsed as a YAML scalar (``150``,
    ``0.5``, ``true``, ``net``), as the ``HURACAN__…`` environment overrides are.

    Raises :class:`InvalidBacktestInput` when there is no ``=`` or no key.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InvalidBacktestInput(f"{text!r} is not KEY=VALUE (e.g. risk.max_active_trades=20)")
    raw = raw.strip()
    try:
        value = yaml.safe_load(raw) if raw else raw
    except yaml.YAMLError:
        value = raw
    return key, value


def resolve_config_key(key: str) -> str:
    """The full dotted config key of ``key``, checked against :class:`HuracanConfig`.

    ``engine.risk.x`` is taken as is; ``risk.x`` stands for ``engine.risk.x``, ``costs.x`` and
    ``cost_model.x`` for ``engine.cost_model.x``, and a field of ``engine`` alone
    (``equity_usd``) for ``engine.<field>``. Raises :class:`InvalidBacktestInput` naming the
    key and the keys that exist there when it is unknown or names a whole section.
    """
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise InvalidBacktestInput(f"empty config key {key!r}")
    top = HuracanConfig.model_fields
    if parts[0] in _KEY_ALIASES:
        parts = _KEY_ALIASES[parts[0]].split(".") + parts[1:]
    elif parts[0] not in top:
        parts = ["engine", *parts]
    model: type[BaseModel] = HuracanConfig
    for i, part in enumerate(parts):
        fields = model.model_fields
        where = ".".join(parts[:i]) or "the config"
        if part not in fields:
            raise InvalidBacktestInput(
                f"unknown config key {key!r}: {where} has no {part!r} (it has: {', '.join(fields)})"
            )
        annotation = fields[part].annotation
        is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        last = i == len(parts) - 1
        if last and is_section:
            raise InvalidBacktestInput(
                f"config key {key!r} is a section; set one of its keys "
                f"({', '.join(annotation.model_fields)})"  # type: ignore[union-attr]
            )
        if not last:
            if not is_section:
                raise InvalidBacktestInput(
                    f"unknown config key {key!r}: {'.'.join(parts[: i + 1])} is not a section"
                )
            model = annotation  # type: ignore[assignment]
    return ".".join(parts)


def override_config(
    cfg: HuracanConfig, assignments: Mapping[str, Any] | Iterable[tuple[str, Any]]
) -> HuracanConfig:
    """A copy of ``cfg`` with each ``key → value`` set, validated like a loaded config.

    Keys as :func:`resolve_config_key` takes them. Raises :class:`InvalidBacktestInput` for an
    unknown key and :class:`huracan.config.ConfigError` (naming the key) for a bad value.
    """
    pairs = assignments.items() if isinstance(assignments, Mapping) else assignments
    data: dict[str, Any] = cfg.model_dump(mode="python")
    for key, value in pairs:
        path = resolve_config_key(key).split(".")
        node = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return build_config(data, environ={}, source="overrides")


# --- loading history ----------------------------------------------------------------------------


def _check_coins_in_universe(
    cfg: HuracanConfig, coins: Sequence[str] | None, archive: Path | None = None
) -> None:
    """The engine knows the sector of the configured universe's coins only (the risk
    controller refuses a request without one), so other coins cannot be replayed."""
    if coins is None:
        return
    known = coin_sectors(cfg)
    unknown = [c for c in coins if c not in known]
    if not unknown:
        return
    shown = ", ".join(unknown[:10]) + (f", … ({len(unknown)} in all)" if len(unknown) > 10 else "")
    universe_text = f"the universe of engine.max_coins={cfg.engine.max_coins} coins"
    if archive is not None:
        raise InvalidBacktestInput(
            f"the archive {archive} holds coin(s) outside {universe_text}: {shown}; "
            "choose coins with --coins or raise engine.max_coins"
        )
    raise InvalidBacktestInput(f"unknown coin(s) {shown}: not in {universe_text}")


def _check_source(
    source: str, root: str | Path | None, start_offsets: Mapping[int, int] | None
) -> None:
    if source not in SOURCES:
        raise InvalidBacktestInput(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if source == "archive" and root is None:
        raise InvalidBacktestInput("an archive replay needs the archive root (--root)")
    if source == "archive" and start_offsets is not None:
        raise InvalidBacktestInput("start offsets (--offsets) apply to --from topic only")


def load_ticks(
    cfg: HuracanConfig,
    *,
    source: Source | str = "archive",
    root: str | Path | None = None,
    coins: str | Iterable[str] | None = None,
    start: TimeInput = None,
    end: TimeInput = None,
    start_offsets: Mapping[int, int] | None = None,
    topic_options: Mapping[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """The ticks of ``coins`` (all when ``None``) in ``[start, end)``, merged by
    ``(ts, coin, seq)``: from the archive under ``root`` or from the market-data topic of
    ``cfg`` (from ``start_offsets`` when given, else located by time with ``offsets_for_times``;
    bounded by the high watermarks taken now).

    The checks run now: :class:`InvalidBacktestInput` for a bad source, time or coin (a coin
    outside the configured universe, asked for or — without ``coins`` — archived), and the
    history readers' errors —
    :class:`~huracan.storage.archive_errors.ArchiveNotFound`,
    :class:`~huracan.storage.archive_errors.UnknownCoin` (never archived),
    :class:`~huracan.storage.archive_errors.NoDataInRange`,
    :class:`~huracan.storage.archive_errors.TopicReadError`. Iterating may raise
    :class:`~huracan.storage.archive_errors.ArchiveFileCorrupt` (naming the file) and
    ``NoDataInRange`` when nothing in range matched. ``topic_options`` are passed on to
    :func:`~huracan.storage.history.read_topic` (``idle_timeout_s``, ``consumer_factory``…).
    """
    _check_source(source, root, start_offsets)
    wanted = parse_coins(coins)
    _check_coins_in_universe(cfg, wanted)
    start_us, end_us = parse_time(start, "start"), parse_time(end, "end")
    if start_us is not None and end_us is not None and start_us >= end_us:
        raise NoDataInRange(
            f"empty time range: start {_iso(start_us)} is not before end {_iso(end_us)}"
        )
    if source == "archive":
        assert root is not None  # _check_source
        if wanted is None:
            _check_coins_in_universe(cfg, ArchiveReader(root).coins(), Path(root))
        return read_archive(root, wanted, start_us, end_us, merge=True)
    return read_topic(
        cfg,
        "MarketTick",
        start_offsets=start_offsets,
        start_time=start_us,
        end_time=end_us,
        coins=wanted,
        merge=True,
        **(topic_options or {}),
    )


def _iso(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / 1e6, tz=UTC).isoformat()


def load_cost_updates(
    cfg: HuracanConfig,
    *,
    source: Source | str = "archive",
    root: str | Path | None = None,
    coins: str | Iterable[str] | None = None,
    end: TimeInput = None,
    topic_options: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every recorded ``CostUpdate`` of ``coins`` with ``ts < end``, sorted by
    ``(ts, coin, event_id)``; empty when the history holds none (no ``_cost_update`` folder in
    the archive, nothing on the topic). Coins never updated are simply absent.

    Raises the history readers' errors other than "no data" (a corrupt file, Kafka failures).
    """
    _check_source(source, root, None)
    wanted = parse_coins(coins)
    end_us = parse_time(end, "end")
    try:
        if source == "archive":
            assert root is not None  # _check_source
            reader = ArchiveReader(root, "CostUpdate")
            archived = set(reader.coins())
            pick = sorted(archived) if wanted is None else [c for c in wanted if c in archived]
            if not pick:
                return []
            events: Iterable[dict[str, Any]] = reader.events(pick, None, end_us, merge=True)
        else:
            events = read_topic(
                cfg, "CostUpdate", end_time=end_us, coins=wanted, merge=True,
                **(topic_options or {}),
            )  # fmt: skip
        records = list(events)
    except NoDataInRange:
        return []
    records.sort(key=lambda r: (r["ts"], r["coin"], r["event_id"]))
    return records


# --- replaying ----------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    """What one replay made, in the order the engine made it.

    ``decisions``/``executions``: the ``RiskDecision``/``Execution`` records, exactly as the
    pipeline would write them. ``requests``: trade requests made (OPEN and CLOSE). ``ticks``:
    ticks replayed (duplicates included, invalid ones not); ``coins``: the coins ticked,
    sorted; ``start_us``/``end_us``: the first and last tick's ``ts``; ``last_quotes``: each
    coin's last ``(bid, ask)``; ``cost_rejections``: signals the cost check dropped, by
    reason; ``funding_rate_bps``: each coin's funding rate at the end (from cost updates);
    ``cost_updates``: cost updates folded; ``invalid_*``: records skipped as the pipeline
    would dead-letter them.
    """

    decisions: list[dict[str, Any]]
    executions: list[dict[str, Any]]
    requests: int
    stats: EngineStats
    ticks: int
    coins: tuple[str, ...]
    start_us: int
    end_us: int
    last_quotes: dict[str, tuple[float, float]]
    cost_rejections: dict[str, int]
    funding_rate_bps: dict[str, float] = field(default_factory=dict)
    #: each coin's funding rate changes ``(ts_us, rate_bps)`` as folded (the report charges
    #: the rate in force over each trade's life)
    funding_schedule: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    #: price marks for the mark-to-market equity curve (each coin's last quote per second)
    marks: list[Mark] = field(default_factory=list)
    cost_updates: int = 0
    invalid_ticks: int = 0
    invalid_cost_updates: int = 0

    @property
    def decisions_by_outcome(self) -> dict[str, int]:
        """Decisions counted by outcome (APPROVE, THROTTLE, BLOCK, in that order first)."""
        counts = Counter(str(d["decision"]) for d in self.decisions)
        out = {k: counts.pop(k, 0) for k in ("APPROVE", "THROTTLE", "BLOCK")}
        out.update(sorted(counts.items()))
        return out

    def summary(self) -> dict[str, Any]:
        """The counts as JSON-ready data (``huracan replay --json``)."""
        return {
            "ticks": self.ticks,
            "duplicate_ticks": self.stats.duplicate_ticks,
            "invalid_ticks": self.invalid_ticks,
            "coins": len(self.coins),
            "start_us": self.start_us,
            "end_us": self.end_us,
            "cost_updates": self.cost_updates,
            "invalid_cost_updates": self.invalid_cost_updates,
            "features": self.stats.features,
            "signals": self.stats.signals,
            "cost_rejections": dict(sorted(self.cost_rejections.items())),
            "requests": self.requests,
            "decisions": len(self.decisions),
            "decisions_by_outcome": self.decisions_by_outcome,
            "decisions_by_reason": dict(sorted(self.stats.decision_reasons.items())),
            "executions": len(self.executions),
            "execution_errors": self.stats.execution_errors,
        }


def new_engine(cfg: HuracanConfig, models: Models | None = None) -> TradingEngine:
    """:func:`huracan.wiring.build_engine` for ``cfg``, serving ``models`` (coin → model or
    ``None`` for the baseline) when given."""
    return build_engine(cfg, models=models)


def replay_ticks(
    cfg: HuracanConfig,
    ticks: Iterable[Mapping[str, Any]],
    *,
    models: Models | None = None,
    cost_updates: Iterable[Mapping[str, Any]] | None = None,
) -> ReplayResult:
    """Replay ``ticks`` (in ``(ts, coin, seq)`` order) through a fresh engine for ``cfg``.

    Steps:

    1. build the engine (:func:`new_engine`);
    2. for each tick: fold the ``cost_updates`` (sorted by ``ts``) with a ``ts`` at or before
       the tick's; then ``on_tick``, collecting the decisions and executions it releases. A
       tick or cost update the domain rejects as invalid (bad quote or volume, unknown cost
       kind: :class:`FeatureError`, :class:`CostError`) is skipped and counted, as the coin
       agent dead-letters it;
    3. ``finish()``: decide every request still held.

    Raises :class:`EmptyBacktest` when ``ticks`` is empty; whatever iterating ``ticks``
    raises (the history readers' errors); and any other error of the engine or a model as is
    (live dead-letters a tick whose model raises; a replay stops on it). An invalid tick
    releases nothing: ``on_tick`` validates it before it decides what the tick's time
    releases, so skipping it loses no decision.
    """
    engine = new_engine(cfg, models)
    updates = iter(sorted(cost_updates or (), key=lambda r: r["ts"]))
    pending = next(updates, None)
    decisions: list[dict[str, Any]] = []
    executions: list[dict[str, Any]] = []
    quotes: dict[str, tuple[float, float]] = {}
    first_us: int | None = None
    last_us: int | None = None
    folded = bad_ticks = bad_updates = 0
    schedule: dict[str, list[tuple[int, float]]] = {}
    marks = QuoteMarks(MARK_INTERVAL_US)
    for tick in ticks:
        ts = int(tick["ts"])
        while pending is not None and pending["ts"] <= ts:
            try:
                engine.on_cost_update(pending)
                folded += 1
                if pending["kind"] == "FUNDING":
                    schedule.setdefault(str(pending["coin"]), []).append(
                        (int(pending["ts"]), float(pending["funding_rate_bps"]))
                    )
            except CostError:
                bad_updates += 1
            pending = next(updates, None)
        try:
            out = engine.on_tick(tick)
        except (FeatureError, CostError):
            bad_ticks += 1
            continue
        if out.decisions:
            decisions += out.decisions
        if out.executions:
            executions += out.executions
        if out.features is not None:
            quotes[str(tick["coin"])] = (float(tick["bid"]), float(tick["ask"]))
            marks.add(ts, str(tick["coin"]), float(tick["bid"]), float(tick["ask"]))
        first_us = ts if first_us is None else min(first_us, ts)
        last_us = ts if last_us is None else max(last_us, ts)
    out = engine.finish()
    decisions += out.decisions
    executions += out.executions
    stats = engine.stats
    if first_us is None or last_us is None:
        raise EmptyBacktest(
            "no ticks to replay" + (f" ({bad_ticks} invalid ticks skipped)" if bad_ticks else "")
        )
    funding: dict[str, float] = {}
    for coin in engine.costs.symbols():
        rate = engine.costs.funding_rate(coin)
        if rate is not None:
            funding[coin] = rate
    return ReplayResult(
        decisions=decisions,
        executions=executions,
        requests=stats.requests,
        stats=stats,
        ticks=stats.ticks - bad_ticks,
        coins=tuple(sorted(engine.feature_state)),
        start_us=first_us,
        end_us=last_us,
        last_quotes=quotes,
        cost_rejections=dict(stats.cost_rejections),
        funding_rate_bps=funding,
        funding_schedule=schedule,
        marks=marks.marks(),
        cost_updates=folded,
        invalid_ticks=bad_ticks,
        invalid_cost_updates=bad_updates,
    )


def report_for(cfg: HuracanConfig, result: ReplayResult) -> BacktestReport:
    """The :class:`BacktestReport` of ``result``: starting equity ``engine.equity_usd``,
    funding at the rates in force (``result.funding_schedule``) per
    ``engine.cost_model.funding_interval_hours``, equity marked to market at ``result.marks``."""
    return build_report(
        decisions=result.decisions,
        executions=result.executions,
        equity_usd=cfg.engine.equity_usd,
        start_us=result.start_us,
        end_us=result.end_us,
        ticks=result.ticks,
        coins=result.coins,
        funding_rates=result.funding_schedule,
        funding_interval_hours=cfg.engine.cost_model.funding_interval_hours,
        cost_rejections=result.cost_rejections,
        last_quotes=result.last_quotes,
        marks=result.marks,
        mark_interval_us=MARK_INTERVAL_US,
    )


def _history(
    cfg: HuracanConfig,
    source: Source | str,
    root: str | Path | None,
    coins: str | Iterable[str] | None,
    start: TimeInput,
    end: TimeInput,
    start_offsets: Mapping[int, int] | None,
    cost_updates: bool,
    topic_options: Mapping[str, Any] | None,
) -> tuple[Iterator[dict[str, Any]], list[dict[str, Any]]]:
    ticks = load_ticks(
        cfg, source=source, root=root, coins=coins, start=start, end=end,
        start_offsets=start_offsets, topic_options=topic_options,
    )  # fmt: skip
    costs: list[dict[str, Any]] = []
    if cost_updates:
        costs = load_cost_updates(
            cfg, source=source, root=root, coins=coins, end=end, topic_options=topic_options
        )
    return ticks, costs


def run_replay(
    cfg: HuracanConfig,
    *,
    source: Source | str = "archive",
    root: str | Path | None = None,
    coins: str | Iterable[str] | None = None,
    start: TimeInput = None,
    end: TimeInput = None,
    start_offsets: Mapping[int, int] | None = None,
    cost_updates: bool = True,
    models: Models | None = None,
    topic_options: Mapping[str, Any] | None = None,
) -> ReplayResult:
    """Replay the history :func:`load_ticks` selects (plus, with ``cost_updates``, the
    recorded cost updates: :func:`load_cost_updates`) through the engine for ``cfg``.

    Raises what :func:`load_ticks`, :func:`load_cost_updates` and :func:`replay_ticks` raise.
    """
    ticks, costs = _history(
        cfg, source, root, coins, start, end, start_offsets, cost_updates, topic_options
    )
    return replay_ticks(cfg, ticks, models=models, cost_updates=costs)


def run_backtest(
    cfg: HuracanConfig,
    *,
    source: Source | str = "archive",
    root: str | Path | None = None,
    coins: str | Iterable[str] | None = None,
    start: TimeInput = None,
    end: TimeInput = None,
    start_offsets: Mapping[int, int] | None = None,
    cost_updates: bool = True,
    models: Models | None = None,
    topic_options: Mapping[str, Any] | None = None,
) -> tuple[ReplayResult, BacktestReport]:
    """:func:`run_replay` and its report (:func:`report_for`).

    Raises what :func:`run_replay` raises, and :class:`InvalidBacktestInput` from the report
    for unusable records.
    """
    result = run_replay(
        cfg, source=source, root=root, coins=coins, start=start, end=end,
        start_offsets=start_offsets, cost_updates=cost_updates, models=models,
        topic_options=topic_options,
    )  # fmt: skip
    return result, report_for(cfg, result)


@dataclass(frozen=True)
class WhatIfRun:
    """Two replays of the same ticks and their comparison."""

    base: ReplayResult
    base_report: BacktestReport
    other: ReplayResult
    other_report: BacktestReport
    diff: WhatIfDiff


def run_whatif(
    cfg: HuracanConfig,
    other_cfg: HuracanConfig,
    *,
    source: Source | str = "archive",
    root: str | Path | None = None,
    coins: str | Iterable[str] | None = None,
    start: TimeInput = None,
    end: TimeInput = None,
    start_offsets: Mapping[int, int] | None = None,
    cost_updates: bool = True,
    models: Models | None = None,
    topic_options: Mapping[str, Any] | None = None,
    examples: int = 10,
    base_label: str = "configured",
    other_label: str = "what-if",
) -> WhatIfRun:
    """Replay the same history (arguments as :func:`run_backtest`) under ``cfg`` and under
    ``other_cfg``, and compare the two runs (:func:`~huracan.backtest.whatif.compare_runs`).

    The ticks and cost updates are read once, held in memory, and replayed through two
    engines. Reading (topic, universe check) follows ``cfg``; ``other_cfg`` should differ in
    engine settings only (limits, costs, equity). Raises what :func:`run_backtest` raises.
    """
    tick_iter, costs = _history(
        cfg, source, root, coins, start, end, start_offsets, cost_updates, topic_options
    )
    ticks = list(tick_iter)
    base = replay_ticks(cfg, ticks, models=models, cost_updates=costs)
    other = replay_ticks(other_cfg, ticks, models=models, cost_updates=costs)
    base_report, other_report = report_for(cfg, base), report_for(other_cfg, other)
    diff = compare_runs(
        base.decisions,
        base_report,
        other.decisions,
        other_report,
        examples=examples,
        base_label=base_label,
        other_label=other_label,
    )
    return WhatIfRun(base, base_report, other, other_report, diff)


# --- outputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputPaths:
    """The files :func:`write_outputs` wrote (``equity_png`` is ``None`` when not drawn)."""

    report_json: Path
    decisions_jsonl: Path
    executions_jsonl: Path
    equity_png: Path | None


def _write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    """Write ``path`` through a temp file in its folder, fsynced and renamed over it."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
            delete=False,
        ) as fh:  # fmt: skip
            tmp = fh.name
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise BacktestError(f"{path}: cannot write: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``records`` to ``path``, one JSON object per line in the given order and with
    each record's own key order (floats as Python's shortest round-trip repr, so the records
    read back equal the originals). Atomic. Raises :class:`BacktestError` naming the path."""
    target = Path(path)

    def write(fh: Any) -> None:
        for record in records:
            fh.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False))
            fh.write("\n")

    _write_atomic(target, write)
    return target


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a file :func:`write_jsonl` wrote."""
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_outputs(
    result: ReplayResult,
    report: BacktestReport,
    out_dir: str | Path,
    *,
    chart: bool = True,
    title: str | None = None,
) -> OutputPaths:
    """Write ``report.json`` (:meth:`BacktestReport.to_json`), ``decisions.jsonl`` and
    ``executions.jsonl`` (:func:`write_jsonl`: exactly the engine's records, in order) and,
    with ``chart``, ``equity.png`` into ``out_dir`` (created if missing). Each file is
    written atomically. Raises :class:`BacktestError` (the chart: :class:`ChartError`) naming
    the file that could not be written."""
    folder = Path(out_dir)
    report_path = folder / REPORT_FILE
    text = report.to_json()
    _write_atomic(report_path, lambda fh: fh.write(text + "\n"))
    decisions = write_jsonl(folder / DECISIONS_FILE, result.decisions)
    executions = write_jsonl(folder / EXECUTIONS_FILE, result.executions)
    png = write_equity_png(report, folder / EQUITY_FILE, title=title) if chart else None
    return OutputPaths(report_path, decisions, executions, png)


__all__ = [
    "DECISIONS_FILE",
    "EQUITY_FILE",
    "EXECUTIONS_FILE",
    "REPORT_FILE",
    "SOURCES",
    "OutputPaths",
    "ReplayResult",
    "WhatIfRun",
    "load_cost_updates",
    "load_ticks",
    "new_engine",
    "override_config",
    "parse_assignment",
    "parse_coins",
    "parse_offsets",
    "parse_time",
    "read_jsonl",
    "replay_ticks",
    "report_for",
    "resolve_config_key",
    "run_backtest",
    "run_replay",
    "run_whatif",
    "write_jsonl",
    "write_outputs",
]
