"""Backtest runner: recorded history through the in-process engine, and what it adds up to.

The parts: :mod:`huracan.backtest.arguments` (parsing times, offsets, coins, ``--set``),
:mod:`huracan.backtest.history_input` (loading ticks and cost updates),
:mod:`huracan.backtest.replay` (replaying, reports, what-if) and
:mod:`huracan.backtest.outputs` (the files). This module keeps every public name importable.

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

from huracan.backtest.arguments import (
    TimeInput,
    override_config,
    parse_assignment,
    parse_coins,
    parse_offsets,
    parse_time,
    resolve_config_key,
)
from huracan.backtest.history_input import SOURCES, Source, load_cost_updates, load_ticks
from huracan.backtest.outputs import (
    DECISIONS_FILE,
    EQUITY_FILE,
    EXECUTIONS_FILE,
    REPORT_FILE,
    OutputPaths,
    read_jsonl,
    write_jsonl,
    write_outputs,
)
from huracan.backtest.replay import (
    Models,
    ReplayResult,
    WhatIfRun,
    new_engine,
    replay_ticks,
    report_for,
    run_backtest,
    run_replay,
    run_whatif,
)

__all__ = [
    "DECISIONS_FILE",
    "EQUITY_FILE",
    "EXECUTIONS_FILE",
    "REPORT_FILE",
    "SOURCES",
    "Models",
    "OutputPaths",
    "ReplayResult",
    "Source",
    "TimeInput",
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
