"""Paper execution and exits: deterministic fills and the rules that close trades.

:class:`PaperExchange` fills risk decisions as market (taker) orders against the quote carried
by the request: a buy at the ask, a sell at the bid, moved by the depth model, paying the coin's
taker fee from the cost book (``PaperExchangeParams.taker_fee_bps`` when no book is given). The
fill's event time is the decision's plus ``latency_us``. Ids are derived (``execution_id =
"exe:<request_id>"``) and an execution id already filled is ignored, so a redelivered decision
never makes a second execution. A close's ``realized_pnl_usd`` is net of both legs' fees::

    long:  pnl = units × (exit_price − entry_price) − entry_fees − exit_fees
    short: pnl = units × (entry_price − exit_price) − entry_fees − exit_fees

Depth model (ticks carry no quoted size, so the size at the touch is a parameter): the first
``quoted_size_usd`` of an order fills at the touch; beyond it the average price moves away by
``impact_bps`` per further ``quoted_size_usd``::

    slippage_bps = impact_bps × max(notional − quoted_size_usd, 0) / quoted_size_usd
    buy price    = ask × (1 + slippage_bps / 10 000)
    sell price   = bid × (1 − slippage_bps / 10 000)

:class:`ExitRules` decide when an open trade is closed, checked on every tick of its coin and on
every signal. ``return`` is the move of the mid since the entry mid, in the trade's favour
(``mid / entry_mid − 1`` for a long, ``entry_mid / mid − 1`` for a short, in bps): the entry
spread is not counted (the cost check charged it already), so an unchanged quote never stops a
trade out, whatever its spread::

    take_profit   return ≥ take_profit_bps
    stop_loss     return ≤ −stop_loss_bps
    time_limit    held ≥ max_holding_us
    reversal      a signal in the opposite direction

:class:`PositionMonitor` keeps the trades the coin's OPEN requests asked for (see
:meth:`PositionMonitor.on_request`) and emits one CLOSE trade request per trade
(``request_id = "close:<trade_id>"``), never two.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from huracan.domain.dedupe import DedupeWindow
from huracan.domain.errors import DomainError

LONG: Final = "LONG"
SHORT: Final = "SHORT"


class ExecutionError(DomainError, ValueError):
    """A decision that cannot be filled: no usable quote, unknown trade to close."""


class TakerFees(Protocol):
    """Where the paper exchange reads a coin's fees (a :class:`~huracan.domain.costs.CostBook`:
    ``(maker_bps, taker_bps)``)."""

    def fees(self, symbol: str) -> tuple[float, float]: ...


@dataclass(frozen=True, slots=True)
class PaperExchangeParams:
    """How paper fills are priced (the same defaults as ``engine.paper_exchange``).

    ``taker_fee_bps`` (5) is used only without a cost book; ``latency_us`` (50 ms) of event
    time; ``quoted_size_usd`` (100k) assumed at the touch; ``impact_bps`` (10) per further
    quoted size (module docstring). Raises :class:`ValueError` naming a bad field.
    """

    taker_fee_bps: float = 5.0
    latency_us: int = 50_000
    quoted_size_usd: float = 100_000.0
    impact_bps: float = 10.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.taker_fee_bps):
            raise ValueError(f"taker_fee_bps must be finite, got {self.taker_fee_bps!r}")
        if self.latency_us < 0:
            raise ValueError(f"latency_us must be >= 0, got {self.latency_us!r}")
        if not (math.isfinite(self.quoted_size_usd) and self.quoted_size_usd > 0):
            raise ValueError(f"quoted_size_usd must be > 0, got {self.quoted_size_usd!r}")
        if not (math.isfinite(self.impact_bps) and self.impact_bps >= 0):
            raise ValueError(f"impact_bps must be >= 0, got {self.impact_bps!r}")

    def slippage_bps(self, notional_usd: float) -> float:
        """The average price impact of an order of ``notional_usd``, in bps."""
        excess = notional_usd - self.quoted_size_usd
        return self.impact_bps * excess / self.quoted_size_usd if excess > 0 else 0.0


@dataclass(slots=True)
class Position:
    """An open trade as the exchange and the exit rules see it."""

    trade_id: str
    coin: str
    exchange: str
    sector: str | None
    direction: str
    units: float
    entry_price: float
    size_usd: float
    entry_fees_usd: float
    opened_ts: int
    closing: bool = False
    #: the mid of the quote at entry (the exit rules measure from it); 0 = unknown (state
    #: written before it existed: the entry price stands in)
    entry_mid: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Position:
        return cls(**{k: data[k] for k in cls.__slots__ if k in data})

    @property
    def reference_mid(self) -> float:
        """The price the exit rules measure returns from: the entry mid when known."""
        return self.entry_mid if self.entry_mid > 0 else self.entry_price


class PaperExchange:
    """Fills decisions deterministically; see the module docstring."""

    def __init__(
        self,
        params: PaperExchangeParams | None = None,
        dedupe_window: int = 100_000,
        *,
        costs: TakerFees | None = None,
    ):
        self.params = params or PaperExchangeParams()
        self.costs = costs
        self.positions: dict[str, Position] = {}
        self._filled = DedupeWindow(dedupe_window)
        self.duplicates = 0

    def fill(self, decision: Mapping[str, Any]) -> dict[str, Any] | None:
        """The Execution record for an approved ``decision``; ``None`` when nothing is to fill.

        Nothing is filled for a BLOCK, a zero approved size, or an execution id already filled.
        Raises :class:`ExecutionError` (state unchanged) for a missing or crossed quote or a
        close of a trade this exchange does not hold.
        """
        if decision["decision"] == "BLOCK" or not decision.get("approved_size_usd"):
            return None
        request_id = str(decision["request_id"])
        execution_id = f"exe:{request_id}"
        if execution_id in self._filled:
            self.duplicates += 1
            return None
        bid, ask = decision.get("bid"), decision.get("ask")
        if not (isinstance(bid, float | int) and isinstance(ask, float | int)) or not (
            0 < bid <= ask and math.isfinite(ask)
        ):
            raise ExecutionError(f"{request_id}: no usable quote (bid={bid}, ask={ask})")
        coin = str(decision["coin"])
        fee_rate = self.taker_fee_bps(coin) / 1e4
        ts = int(decision["ts"]) + self.params.latency_us
        trade_id = str(decision["trade_id"])
        base = {
            "event_id": execution_id,
            "correlation_id": decision.get("correlation_id") or request_id,
            "causation_id": decision.get("event_id"),
            "execution_id": execution_id,
            "trade_id": trade_id,
            "request_id": request_id,
            "coin": decision["coin"],
            "exchange": decision["exchange"],
            "sector": decision.get("sector"),
            "ts": ts,
            "liquidity": "TAKER",
        }
        if decision.get("intent") == "CLOSE":
            pos = self.positions.get(trade_id)
            if pos is None:
                raise ExecutionError(f"{request_id}: no open position {trade_id!r} to close")
            touch = float(bid) if pos.direction == LONG else float(ask)
            slip = self.params.slippage_bps(pos.units * touch) / 1e4
            price = touch * (1.0 - slip) if pos.direction == LONG else touch * (1.0 + slip)
            notional = pos.units * price
            fees = notional * fee_rate
            gross = pos.units * (price - pos.entry_price)
            if pos.direction == SHORT:
                gross = -gross
            del self.positions[trade_id]
            self._filled.add(execution_id)
            return {
                **base,
                "side": "SELL" if pos.direction == LONG else "BUY",
                "direction": pos.direction,
                "size": pos.units,
                "size_usd": notional,
                "price": price,
                "fees_usd": fees,
                "action": "CLOSE",
                "realized_pnl_usd": gross - pos.entry_fees_usd - fees,
            }
        direction = str(decision["direction"])
        if direction not in (LONG, SHORT):
            raise ExecutionError(f"{request_id}: cannot open direction {direction!r}")
        notional = float(decision["approved_size_usd"])
        slip = self.params.slippage_bps(notional) / 1e4
        price = float(ask) * (1.0 + slip) if direction == LONG else float(bid) * (1.0 - slip)
        units = notional / price
        fees = notional * fee_rate
        self.positions[trade_id] = Position(
            trade_id, coin, str(decision["exchange"]), decision.get("sector"),
            direction, units, price, notional, fees, ts, False, (float(bid) + float(ask)) / 2.0,
        )  # fmt: skip
        self._filled.add(execution_id)
        return {
            **base,
            "side": "BUY" if direction == LONG else "SELL",
            "direction": direction,
            "size": units,
            "size_usd": notional,
            "price": price,
            "fees_usd": fees,
            "action": "OPEN",
            "realized_pnl_usd": None,
        }

    def taker_fee_bps(self, coin: str) -> float:
        """The taker fee a fill of ``coin`` pays now: the cost book's, else the params'."""
        return self.params.taker_fee_bps if self.costs is None else self.costs.fees(coin)[1]

    def to_dict(self, *, include_filled: bool = True) -> dict[str, Any]:
        """JSON-safe state; ``include_filled=False`` leaves out the de-duplication window of
        filled execution ids (stored apart: :meth:`journal_filled`)."""
        data: dict[str, Any] = {
            "positions": [p.to_dict() for p in self.positions.values()],
            "remembered": self._filled.remembered,
        }
        if include_filled:
            data["filled"] = self._filled.to_list()
        return data

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        params: PaperExchangeParams | None = None,
        *,
        filled: Iterable[tuple[str, int]] | None = None,
        costs: TakerFees | None = None,
    ) -> PaperExchange:
        """The exchange of :meth:`to_dict`; ``filled`` (``(id, number)`` pairs) gives the
        window when it was stored apart, and takes precedence over ``data["filled"]``."""
        ex = cls(params, costs=costs)
        for p in data["positions"]:
            pos = Position.from_dict(p)
            ex.positions[pos.trade_id] = pos
        if filled is not None:
            ex._filled.load(pairs=filled)
        else:
            ex._filled.load([str(k) for k in data.get("filled", ())])
        ex._filled.remembered = max(ex._filled.remembered, int(data.get("remembered", 0)))
        return ex

    def journal_filled(self, *, include_current: bool = False) -> None:
        """Journal the filled-id window's changes (:meth:`DedupeWindow.journal`)."""
        self._filled.journal(include_current=include_current)

    def take_filled_changes(self) -> tuple[list[tuple[str, int]], list[str]]:
        """The filled-id window's ``(remembered, forgotten)`` since the last call."""
        return self._filled.take_changes()


@dataclass(frozen=True, slots=True)
class ExitRules:
    """When to close: take profit 30 bps, stop loss 20 bps (moves of the mid since entry),
    5 minutes, or a reversal; the same defaults as ``engine.exits``."""

    take_profit_bps: float = 30.0
    stop_loss_bps: float = 20.0
    max_holding_us: int = 300_000_000
    close_on_reversal: bool = True


@dataclass(slots=True)
class PositionMonitor:
    """Open trades per coin and the CLOSE requests their exits make.

    The engine and the coin agent feed it the coin's own OPEN requests (:meth:`on_request`);
    A trade leaves the book when its CLOSE request is made, so it is never closed twice."""

    rules: ExitRules = field(default_factory=ExitRules)
    positions: dict[str, dict[str, Position]] = field(default_factory=dict)

    def on_request(self, request: Mapping[str, Any]) -> None:
        """Track the trade an OPEN ``request`` asks for, as if filled at its own quote.

        The exit rules then run on the coin's own stream alone, without waiting for the
        execution to come back: a coin's exits depend only on its ticks, never on when the
        risk sequencer happened to answer, so a backtest makes exactly the exits live made.
        Take-profit and stop-loss measure from the mid of the request's quote (the entry
        spread is not a move of the market), so the paper exchange's fill price, slippage
        included, does not change when a trade exits. When the sequencer did not open
        the trade (BLOCK), its later CLOSE is answered ``unknown_trade`` and changes nothing.
        Idempotent; a CLOSE request changes nothing here.
        """
        if request.get("intent") != "OPEN":
            return
        coin = str(request["coin"])
        trade_id = f"trd:{request['request_id']}"
        book = self.positions.setdefault(coin, {})
        if trade_id in book:
            return
        direction = str(request["direction"])
        price = float(request["ask"]) if direction == LONG else float(request["bid"])
        size = float(request["size_usd"])
        mid = (float(request["bid"]) + float(request["ask"])) / 2.0
        book[trade_id] = Position(
            trade_id, coin, str(request["exchange"]), request.get("sector"), direction,
            size / price, price, size, 0.0, int(request["ts"]), False, mid,
        )  # fmt: skip

    def on_tick(self, tick: Mapping[str, Any]) -> list[dict[str, Any]]:
        """CLOSE requests for the coin's trades whose take-profit, stop or time limit is hit."""
        book = self.positions.get(str(tick["coin"]))
        if not book:
            return []
        bid, ask, ts = float(tick["bid"]), float(tick["ask"]), int(tick["ts"])
        mid = (bid + ask) / 2.0
        r = self.rules
        out = []
        for pos in book.values():
            if pos.closing:
                continue
            if pos.direction == LONG:
                ret_bps = (mid / pos.reference_mid - 1.0) * 1e4
            else:
                ret_bps = (pos.reference_mid / mid - 1.0) * 1e4
            if ret_bps >= r.take_profit_bps:
                why = "take_profit"
            elif ret_bps <= -r.stop_loss_bps:
                why = "stop_loss"
            elif ts - pos.opened_ts >= r.max_holding_us:
                why = "time_limit"
            else:
                continue
            out.append(self._close(pos, tick, why))
        for close in out:
            del book[close["trade_id"]]
        return out

    def on_signal(self, signal: Mapping[str, Any], bid: float, ask: float) -> list[dict[str, Any]]:
        """CLOSE requests for the coin's trades that ``signal`` points against."""
        if not self.rules.close_on_reversal:
            return []
        book = self.positions.get(str(signal["coin"]))
        if not book:
            return []
        direction = signal["direction"]
        tick = {"coin": signal["coin"], "bid": bid, "ask": ask, "ts": signal["ts"],
                "event_id": signal["event_id"],
                "correlation_id": signal.get("correlation_id") or signal["event_id"]}  # fmt: skip
        out = [
            self._close(pos, tick, "reversal")
            for pos in book.values()
            if not pos.closing and direction in (LONG, SHORT) and direction != pos.direction
        ]
        for close in out:
            del book[close["trade_id"]]
        return out

    @staticmethod
    def _close(pos: Position, tick: Mapping[str, Any], why: str) -> dict[str, Any]:
        pos.closing = True
        request_id = f"close:{pos.trade_id}"
        return {
            "event_id": f"treq:{request_id}",
            "correlation_id": tick.get("correlation_id") or tick.get("event_id") or request_id,
            "causation_id": tick.get("event_id"),
            "request_id": request_id,
            "coin": pos.coin,
            "ts": int(tick["ts"]),
            "signal_ts": int(tick["ts"]),
            "direction": pos.direction,
            "size_usd": pos.size_usd,
            "exchange": pos.exchange,
            "sector": pos.sector,
            "edge_bps": 0.0,
            "edge_after_cost_bps": None,
            "intent": "CLOSE",
            "trade_id": pos.trade_id,
            "model_version": None,
            "bid": float(tick["bid"]),
            "ask": float(tick["ask"]),
            "exit_reason": why,
        }

    def to_dict(self) -> dict[str, Any]:
        return {c: [p.to_dict() for p in b.values()] for c, b in self.positions.items() if b}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], rules: ExitRules | None = None) -> PositionMonitor:
        mon = cls(rules or ExitRules())
        for coin, items in data.items():
            mon.positions[coin] = {p["trade_id"]: Position.from_dict(p) for p in items}
        return mon
