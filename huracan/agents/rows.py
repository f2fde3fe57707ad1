"""The rows of the agents' tables: their keys, their values, and the migrations of old formats.

Every table value is JSON (the changelog is read back at recovery). The layout:

* ``coin-state`` (one partition per market-data partition): key = the coin, value = a
  :class:`CoinState` row ``{"features", "costs", "positions"}``;
* ``risk-state`` (one partition, written by the sequencer only):

  - ``"global"``: ``{"sequencer": RiskSequencer.to_dict(include_seen=False),
    "order": EventTimeOrder.to_dict() without "held"}``;
  - ``"held:<request_id>"``: one request the sequencer holds (a backlog holds thousands; one row
    with all of them would pass Kafka's record limit);
  - ``"seen:<id>"``: one id of the de-duplication window, its number the value;

* ``exchange-state`` (one partition, written by the execution agent only): ``"paper"`` =
  ``PaperExchange.to_dict(include_filled=False)``, and ``"filled:<execution id>"`` = its number,
  one key per remembered id of the exchange's window.

Old formats read and migrated: a ``global`` row whose sequencer carries its window (``"seen"``)
and a ``paper`` row that carries ``"filled"`` (both written whole before the windows were split
into rows): the window is loaded from the row and journalled whole, so the next write moves it
to one key per id. This module imports no Faust; what it reads is ``(key, value)`` pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from huracan.domain.costs import CostBook, CostSettings
from huracan.domain.execution import ExitRules, PaperExchange, PaperExchangeParams, PositionMonitor
from huracan.domain.features import FeatureState
from huracan.domain.ordering import EventTimeOrder
from huracan.domain.risk_desk import DeskChanges, RiskDesk
from huracan.domain.sequencer import RiskSequencer

#: the risk-state row of the sequencer and the order (without held requests and window)
RISK_KEY = "global"
#: one risk-state key per held request
HELD_PREFIX = "held:"
#: one risk-state key per id of the sequencer's de-duplication window
SEEN_PREFIX = "seen:"
#: one exchange-state key per id of the paper exchange's window of filled execution ids
FILLED_PREFIX = "filled:"
#: the exchange-state row of the paper exchange (without its window)
EXCHANGE_KEY = "paper"
#: the largest single-writer state row (the risk-state changelog's ``max.message.bytes``; the
#: app's ``producer_max_request_size`` must be at least this): the global risk row carries every
#: open trade, and a book of thousands can pass Kafka's default 1 MiB
STATE_ROW_MAX_BYTES = 16 * 1024 * 1024

#: one row to write: ``(key, value)``; a value of ``None`` deletes the row
Row = tuple[str, Any]


@dataclass
class CoinState:
    """One coin's row of the ``coin-state`` table."""

    features: FeatureState
    costs: CostBook
    monitor: PositionMonitor

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": self.features.to_row(),
            "costs": self.costs.to_dict(),
            "positions": self.monitor.to_dict(),
        }

    @classmethod
    def load(cls, row: Any, settings: CostSettings, rules: ExitRules) -> CoinState:
        """The state of a stored row; a missing (or empty) row is a coin seen for the first
        time."""
        if not row:
            return cls(FeatureState(), CostBook(settings), PositionMonitor(rules))
        return cls(
            FeatureState.from_row(row["features"]) if row["features"] else FeatureState(),
            CostBook.from_dict(row["costs"]),
            PositionMonitor.from_dict(row["positions"], rules),
        )


def numbered_keys(items: Iterable[tuple[Any, Any]], prefix: str) -> list[tuple[str, int]]:
    """The ``(id, number)`` pairs stored under ``prefix`` (a window's rows)."""
    return [
        (str(k)[len(prefix) :], int(v))
        for k, v in items
        if v is not None and str(k).startswith(prefix)
    ]


def window_rows(
    prefix: str, changes: tuple[list[tuple[str, int]], list[str]]
) -> tuple[list[Row], list[str]]:
    """A de-duplication window's changes (huracan.domain.dedupe) as rows: ``(writes,
    deletes)``, one key per id. The caller writes first, then deletes each key still present
    (an id remembered and forgotten in one batch is written, then deleted)."""
    remembered, forgotten = changes
    return [(prefix + key, n) for key, n in remembered], [prefix + key for key in forgotten]


# -- risk-state ----------------------------------------------------------------------------


def load_risk_desk(
    stored: Mapping[str, Any] | None,
    items: Iterable[tuple[Any, Any]],
    *,
    new_sequencer: Callable[[], RiskSequencer],
    partitions: int,
    idle_us: int,
    wake_grace_us: int,
) -> RiskDesk:
    """The desk stored in the risk-state table: ``stored`` is its ``global`` row (``None``: a
    fresh desk from ``new_sequencer``), ``items`` every row. The order takes ``idle_us`` and
    ``wake_grace_us`` from the configuration in force, not from the row. The sequencer's window
    is journalled, whole when it came from an old-format row."""
    held: dict[str, Any] = {}
    seen: list[tuple[str, int]] = []
    for k, v in items:
        key = str(k)
        if v is None:
            continue
        if key.startswith(HELD_PREFIX):
            held[key[len(HELD_PREFIX) :]] = v
        elif key.startswith(SEEN_PREFIX):
            seen.append((key[len(SEEN_PREFIX) :], int(v)))
    if stored is not None:
        legacy = "seen" in stored["sequencer"]  # the window in the row, as before
        seq = RiskSequencer.from_dict(stored["sequencer"], seen=None if legacy else seen)
        seq.journal_seen(include_current=legacy)
        order = EventTimeOrder.from_dict({"held": list(held.values()), **stored["order"]})
        order.idle_us, order.wake_grace_us = idle_us, wake_grace_us
    else:
        seq = new_sequencer()
        seq.journal_seen()
        order = EventTimeOrder(partitions=partitions, idle_us=idle_us, wake_grace_us=wake_grace_us)
    return RiskDesk(seq, order, stored_held=held)


def held_rows(changes: DeskChanges) -> tuple[list[Row], list[str]]:
    """The held-request rows of a batch's :class:`DeskChanges`: ``(rows to write, keys to
    delete)``."""
    writes = [(HELD_PREFIX + rid, row) for rid, row in changes.held_added.items()]
    return writes, [HELD_PREFIX + rid for rid in changes.held_removed]


def seen_changes(changes: DeskChanges) -> tuple[list[tuple[str, int]], list[str]]:
    """The sequencer's window changes of :class:`DeskChanges`, for :func:`window_rows`."""
    return changes.seen_remembered, changes.seen_forgotten


def global_row(changes: DeskChanges) -> Row:
    """The ``global`` risk-state row of :class:`DeskChanges`."""
    return RISK_KEY, {"sequencer": changes.sequencer, "order": changes.order}


# -- exchange-state ------------------------------------------------------------------------


def load_exchange(
    stored: Mapping[str, Any] | None,
    items: Iterable[tuple[Any, Any]],
    params: PaperExchangeParams | None = None,
) -> PaperExchange:
    """The paper exchange stored in the exchange-state table: ``stored`` is its ``paper`` row
    (``None``: a fresh exchange), ``items`` every row (read only for the new format). Its
    window is journalled, whole when it came from an old-format row."""
    if stored is None:
        exchange = PaperExchange(params)
        exchange.journal_filled()
        return exchange
    legacy = "filled" in stored  # the window in the row, as before
    filled = None if legacy else numbered_keys(items, FILLED_PREFIX)
    exchange = PaperExchange.from_dict(stored, params, filled=filled)
    exchange.journal_filled(include_current=legacy)
    return exchange


def exchange_row(exchange: PaperExchange) -> Row:
    """The ``paper`` exchange-state row."""
    return EXCHANGE_KEY, exchange.to_dict(include_filled=False)
