"""The spec's ``RealTimeCostModel``: the pure :class:`~huracan.domain.costs.CostBook` plus a
clock and an asyncio refresh loop.

The cost arithmetic, the formula and the rules live in :mod:`huracan.domain.costs` (read its
docstring). This shell only

* stamps updates and decisions with the time of an injectable :class:`Clock` (the wall clock
  by default), so quotes age and go stale;
* runs a refresh loop between :meth:`RealTimeCostModel.start` and :meth:`RealTimeCostModel.stop`.

What a refresh does: every ``update_interval_seconds`` it takes a :class:`CostSnapshot` at the
clock's time (each symbol's quote, spread, fees, funding, quote age, and which symbols have gone
stale), keeps it as :attr:`RealTimeCostModel.last_snapshot`, and passes it to the ``on_refresh``
hook (sync or async) — the place to publish the cost table or metrics. A hook that raises is
logged and counted in :attr:`RealTimeCostModel.hook_errors`; the loop goes on. Refreshing never
changes what the model decides: staleness is judged at the time of each call.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from huracan.domain.clock import Clock
from huracan.domain.costs import (
    CostBook,
    CostBreakdown,
    CostCheck,
    CostSettings,
    CostSnapshot,
    SymbolRanking,
    TradeDirection,
)
from huracan.domain.errors import InvalidCostSettingsError

__all__ = ["RealTimeCostModel", "RefreshHook", "WallClock"]

log = logging.getLogger(__name__)

#: called with each refresh's snapshot; may be a coroutine function
RefreshHook = Callable[[CostSnapshot], Awaitable[None] | None]


class WallClock:
    """The system clock: ``time.time()``."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()


class RealTimeCostModel:
    """Real-time spread, fee and funding tracking with edge-after-cost decisions.

    Accepts the spec's keyword arguments and every ``engine.cost_model`` key, so
    ``RealTimeCostModel(**config["engine"]["cost_model"])`` works. Defaults are those of
    :class:`~huracan.domain.costs.CostSettings` (``expected_holding_hours=None`` too: the
    exit rules' default time limit); ``update_interval_seconds`` (default 60) is the
    refresh period. Raises :class:`InvalidCostSettingsError` naming a bad setting.

    Methods taking ``timestamp=None`` stamp the update with ``clock.now()``. Symbols without a
    quote: ``should_trade`` is ``False`` (reason ``no_quote``), ``calculate_edge_after_cost``
    raises :class:`~huracan.domain.errors.NoQuoteError`, ranking leaves them out.
    """

    def __init__(
        self,
        update_interval_seconds: float = 60.0,
        min_edge_after_cost_bps: float = 5.0,
        default_maker_fee_bps: float = 2.0,
        default_taker_fee_bps: float = 5.0,
        stale_after_seconds: float = 30.0,
        expected_holding_hours: float | None = None,
        funding_interval_hours: float = 8.0,
        *,
        maker_spread_cost_bps: float = 0.0,
        legs: int = 2,
        clock: Clock | None = None,
        on_refresh: RefreshHook | None = None,
    ) -> None:
        if (
            not isinstance(update_interval_seconds, int | float)
            or isinstance(update_interval_seconds, bool)
            or not math.isfinite(update_interval_seconds)
            or update_interval_seconds <= 0
        ):
            raise InvalidCostSettingsError(
                f"update_interval_seconds must be a finite number > 0, "
                f"got {update_interval_seconds!r}"
            )
        self._interval = float(update_interval_seconds)
        self._book = CostBook(
            CostSettings(
                min_edge_after_cost_bps=min_edge_after_cost_bps,
                default_maker_fee_bps=default_maker_fee_bps,
                default_taker_fee_bps=default_taker_fee_bps,
                stale_after_seconds=stale_after_seconds,
                expected_holding_hours=(
                    CostSettings().expected_holding_hours
                    if expected_holding_hours is None
                    else expected_holding_hours
                ),
                funding_interval_hours=funding_interval_hours,
                maker_spread_cost_bps=maker_spread_cost_bps,
                legs=legs,
            )
        )
        self._clock: Clock = clock if clock is not None else WallClock()
        self._on_refresh = on_refresh
        self._task: asyncio.Task[None] | None = None
        self._last_snapshot: CostSnapshot | None = None
        self._refresh_count = 0
        self._hook_errors = 0

    # -- configuration and state -------------------------------------------------------------

    @property
    def book(self) -> CostBook:
        """The pure core holding the state (serialize it with ``book.to_dict()``)."""
        return self._book

    @property
    def settings(self) -> CostSettings:
        return self._book.settings

    @property
    def update_interval_seconds(self) -> float:
        return self._interval

    @property
    def clock(self) -> Clock:
        return self._clock

    # -- updates -----------------------------------------------------------------------------

    def update_spread(
        self, symbol: str, bid: float, ask: float, timestamp: float | None = None
    ) -> bool:
        """Record ``symbol``'s best bid/ask (see :meth:`CostBook.update_spread`)."""
        ts = self._clock.now() if timestamp is None else timestamp
        return self._book.update_spread(symbol, bid, ask, ts)

    def update_fees(self, symbol: str, maker_bps: float, taker_bps: float) -> None:
        """Set ``symbol``'s maker and taker fees in bps."""
        self._book.update_fees(symbol, maker_bps, taker_bps)

    def update_funding_rate(
        self, symbol: str, funding_rate_bps: float, timestamp: float | None = None
    ) -> None:
        """Set ``symbol``'s funding rate in bps per funding interval (positive: longs pay)."""
        ts = self._clock.now() if timestamp is None else timestamp
        self._book.update_funding_rate(symbol, funding_rate_bps, ts)

    # -- decisions ---------------------------------------------------------------------------

    def calculate_edge_after_cost(
        self,
        symbol: str,
        edge_bps: float,
        use_maker: bool = False,
        include_funding: bool = True,
        direction: TradeDirection | None = None,
    ) -> float:
        """``edge_bps`` minus the symbol's cost in bps (formula in :mod:`huracan.domain.costs`).

        Ignores staleness (use :meth:`check_trade_cost`). Raises ``NoQuoteError`` without a
        quote, ``InvalidCostRequestError`` for a non-finite edge or a bad direction.
        """
        return self._book.edge_after_cost(symbol, edge_bps, use_maker, include_funding, direction)

    def get_cost_breakdown(
        self,
        symbol: str,
        use_maker: bool = False,
        include_funding: bool = True,
        direction: TradeDirection | None = None,
    ) -> CostBreakdown:
        """The parts of the symbol's cost (spread leg, fee, funding, total) in bps."""
        return self._book.breakdown(symbol, use_maker, include_funding, direction)

    def check_trade_cost(
        self,
        symbol: str,
        edge_bps: float,
        use_maker: bool = False,
        include_funding: bool = True,
        direction: TradeDirection | None = None,
    ) -> CostCheck:
        """Whether the trade passes the cost threshold now, with a reason code."""
        return self._book.check_trade_cost(
            symbol, edge_bps, self._clock.now(), use_maker, include_funding, direction
        )

    def should_trade(
        self,
        symbol: str,
        edge_bps: float,
        use_maker: bool = False,
        include_funding: bool = True,
        direction: TradeDirection | None = None,
    ) -> bool:
        """``True`` when the symbol has a fresh quote and its edge after cost is at least
        ``min_edge_after_cost_bps``; :meth:`check_trade_cost` gives the reason."""
        return self.check_trade_cost(symbol, edge_bps, use_maker, include_funding, direction).ok

    def rank_symbols_by_cost_efficiency(
        self,
        symbols: Iterable[str],
        edges_bps: Mapping[str, float],
        use_maker: bool = False,
        include_funding: bool = True,
    ) -> list[SymbolRanking]:
        """Symbols with a fresh quote ranked by net edge after cost in bps, best first (rank 1).

        See :meth:`CostBook.rank_symbols` for the order and :class:`SymbolRanking` for the
        fields (``symbol``, ``edge_after_cost_bps``, ``cost_efficiency``, ``rank``…).
        """
        return self._book.rank_symbols(
            symbols, edges_bps, self._clock.now(), use_maker, include_funding
        )

    def stale_symbols(self) -> list[str]:
        """Symbols whose quote is stale now."""
        return self._book.stale_symbols(self._clock.now())

    # -- refresh loop ------------------------------------------------------------------------

    def refresh(self) -> CostSnapshot:
        """Take a snapshot now and keep it as :attr:`last_snapshot` (does not call the hook)."""
        snapshot = self._book.snapshot(self._clock.now())
        self._last_snapshot = snapshot
        self._refresh_count += 1
        return snapshot

    @property
    def last_snapshot(self) -> CostSnapshot | None:
        return self._last_snapshot

    @property
    def refresh_count(self) -> int:
        return self._refresh_count

    @property
    def hook_errors(self) -> int:
        return self._hook_errors

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Refresh once (so :attr:`last_snapshot` is set on return), then keep refreshing
        every ``update_interval_seconds`` in a background task until :meth:`stop`.

        Idempotent: a second call while running does nothing. Must be called in a running
        event loop.
        """
        if self.running:
            return
        await self._refresh_and_notify()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="huracan-cost-model-refresh"
        )

    async def stop(self) -> None:
        """Stop the refresh loop and wait for it to end. Idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def __aenter__(self) -> RealTimeCostModel:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._refresh_and_notify()

    async def _refresh_and_notify(self) -> None:
        snapshot = self.refresh()
        hook = self._on_refresh
        if hook is None:
            return
        try:
            result: Any = hook(snapshot)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            self._hook_errors += 1
            log.exception("cost model refresh hook failed (refresh %d)", self._refresh_count)

    def __repr__(self) -> str:
        return (
            f"RealTimeCostModel(symbols={len(self._book.symbols())}, "
            f"interval={self._interval}s, running={self.running})"
        )
