"""The whole decision path in one process: the fast path for replay, backtests and benchmarks.

The Kafka pipeline runs these same steps, split where the data is: :func:`process_tick` is what
the coin agent does on each coin's partition, and :class:`EventTimeOrder` plus the sequencer and
the paper exchange are what the single-writer sequencer and execution agents do. This class runs
them back to back for one stream of ticks in ``(ts, coin, seq)`` order:

1. :func:`process_tick`, per tick of a coin, with that coin's state:
   a. the tick refreshes the coin's quote in the :class:`CostBook` and its rolling features
      (:func:`huracan.domain.features.update`); a duplicate tick (``seq`` not increasing) stops
      here and makes nothing;
   b. the coin's open trades are checked against the exit rules; each exit becomes a CLOSE
      request;
   c. the coin's model (:class:`SignalModel`; the baseline unless ``models`` names another) turns
      the features into a signal or nothing; a signal against an open trade closes it
      (reversal);
   d. a signal passes the cost check (taker, funding included, by direction) or is dropped with
      the check's reason code;
   e. a passing signal becomes an OPEN request (:func:`open_request_from_signal`), which the
      coin's :class:`PositionMonitor` tracks from then on (:meth:`PositionMonitor.on_request`);
2. every request is held by the :class:`RiskDesk` (an :class:`EventTimeOrder` in front of the
   :class:`RiskSequencer`, the object the sequencer agent drives too) and released in event-time
   order ``(ts, coin, CLOSE before OPEN, request_id)`` once no earlier request can still come:
   before each tick, everything with a smaller ``ts``; at :meth:`TradingEngine.finish`, the rest;
3. each released request is decided by the desk's :class:`RiskSequencer`, each approved decision
   goes through the :class:`PaperExchange`. A fill that fails is counted and dropped, exactly as the
   execution agent does.

Ticks and cost updates of a coin outside ``universe`` (when one is given) are skipped before
step 1 and counted (``EngineStats.unknown_coins``), just as the coin agent dead-letters them
with reason ``unknown_coin``.

Everything is deterministic: the same ticks in the same order give byte-identical outputs, and
the same outputs as the Kafka pipeline (see DESIGN.md, "Live equals backtest").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from typing import Any

from huracan.domain.costs import CostBook, CostCheck
from huracan.domain.errors import InvalidCostRequestError
from huracan.domain.execution import ExecutionError, PaperExchange, PositionMonitor
from huracan.domain.features import FeatureParams, FeatureState, FeatureVector, update
from huracan.domain.ordering import EventTimeOrder
from huracan.domain.risk_desk import Decided, RiskDesk
from huracan.domain.sequencer import RiskSequencer
from huracan.domain.signals import BaselineMomentumModel, Signal, SignalModel


def open_request_from_signal(
    signal: Signal | Mapping[str, Any],
    check: CostCheck,
    *,
    sector: str | None,
    bid: float,
    ask: float,
) -> dict[str, Any]:
    """The OPEN TradeRequest record for a signal that passed its cost check.

    ``request_id = "req:<signal event_id>"``, so a replayed signal makes the same request.
    """
    s = signal if isinstance(signal, Mapping) else _signal_dict(signal)
    request_id = f"req:{s['event_id']}"
    return {
        "event_id": f"treq:{request_id}",
        "correlation_id": s["correlation_id"],
        "causation_id": s["event_id"],
        "request_id": request_id,
        "coin": s["coin"],
        "ts": s["ts"],
        "signal_ts": s["ts"],
        "direction": s["direction"],
        "size_usd": s["size_usd"],
        "exchange": s["exchange"],
        "sector": sector,
        "edge_bps": s["edge_bps"],
        "edge_after_cost_bps": check.edge_after_cost_bps,
        "intent": "OPEN",
        "trade_id": None,
        "model_version": s["model_version"],
        "bid": bid,
        "ask": ask,
        "exit_reason": None,
    }


def _signal_dict(signal: Signal) -> dict[str, Any]:
    return signal.to_record()


@dataclass
class TickOutcome:
    """What one (non-duplicate) tick made on its coin: features, maybe a signal, requests."""

    features: FeatureVector
    signal: Signal | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: the cost check's reason code when a signal failed it
    cost_rejection: str | None = None
    #: ``signal.to_record()``, made once for the exit rules, the request and the caller (the
    #: coin agent encodes it); shared, so nobody may change it
    signal_record: dict[str, Any] | None = None


def process_tick(
    tick: Mapping[str, Any],
    *,
    state: FeatureState,
    costs: CostBook,
    monitor: PositionMonitor,
    model: SignalModel,
    sector: str | None,
    params: FeatureParams,
) -> TickOutcome | None:
    """Steps 1a–1e of the module docstring for one tick; ``None`` for a duplicate tick.

    Mutates the coin's ``state``, ``costs`` and ``monitor``. Raises
    :class:`~huracan.domain.features.FeatureError` (nothing changed) for an invalid tick.
    """
    coin = str(tick["coin"])
    ts = int(tick["ts"])
    bid, ask = float(tick["bid"]), float(tick["ask"])
    fv = update(
        state, params,
        coin=coin, exchange=str(tick["exchange"]), ts=ts, seq=int(tick["seq"]),
        bid=bid, ask=ask, last=float(tick["last"]), volume=float(tick["volume"]),
        event_id=str(tick["event_id"]), correlation_id=str(tick["correlation_id"]),
    )  # fmt: skip
    if fv is None:
        return None
    costs.update_spread(coin, bid, ask, ts / 1e6)
    out = TickOutcome(fv)
    out.requests = monitor.on_tick(tick)
    signal = model.evaluate(fv)
    if signal is None:
        return out
    out.signal = signal
    record = out.signal_record = signal.to_record()
    out.requests += monitor.on_signal(record, bid, ask)
    check = costs.check_trade_cost(
        coin,
        signal.edge_bps,
        ts / 1e6,
        use_maker=False,
        direction="long" if signal.direction == "LONG" else "short",
    )
    if not check.ok:
        out.cost_rejection = str(check.reason_code)
        return out
    request = open_request_from_signal(record, check, sector=sector, bid=bid, ask=ask)
    monitor.on_request(request)
    out.requests.append(request)
    return out


def apply_cost_update(book: CostBook, record: Mapping[str, Any]) -> None:
    """Fold one ``CostUpdate`` record (SPREAD, FEES or FUNDING) into ``book``."""
    coin, kind = str(record["coin"]), record["kind"]
    if kind == "SPREAD":
        book.update_spread(coin, record["bid"], record["ask"], record["ts"] / 1e6)
    elif kind == "FEES":
        book.update_fees(coin, record["maker_bps"], record["taker_bps"])
    elif kind == "FUNDING":
        book.update_funding_rate(coin, record["funding_rate_bps"])
    else:
        raise InvalidCostRequestError(f"unknown cost update kind {kind!r}")


@dataclass
class EngineStats:
    ticks: int = 0
    duplicate_ticks: int = 0
    features: int = 0
    signals: int = 0
    cost_rejections: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    decision_reasons: Counter[str] = field(default_factory=Counter)
    executions: int = 0
    execution_errors: int = 0
    #: ticks and cost updates of coins outside the universe, skipped (``unknown_coin``)
    unknown_coins: int = 0


@dataclass
class EngineOutput:
    """What one call produced, in order: the tick's features, signal and requests, and the
    decisions and executions of the requests released during the call (earlier ticks')."""

    features: FeatureVector | None = None
    signal: Signal | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    executions: list[dict[str, Any]] = field(default_factory=list)


class TradingEngine:
    """Ticks in, decisions and executions out; see the module docstring for the steps."""

    def __init__(
        self,
        *,
        sequencer: RiskSequencer,
        costs: CostBook,
        exchange: PaperExchange,
        monitor: PositionMonitor,
        sector_of: Callable[[str], str | None],
        feature_params: FeatureParams | None = None,
        models: Callable[[str], SignalModel | None] | None = None,
        universe: Container[str] | None = None,
    ) -> None:
        self.sequencer = sequencer
        self.universe = universe
        self.costs = costs
        self.exchange = exchange
        self.monitor = monitor
        self.sector_of = sector_of
        self.feature_params = feature_params or FeatureParams()
        self.models = models
        self.baseline = BaselineMomentumModel()
        self.feature_state: dict[str, FeatureState] = {}
        self.order = EventTimeOrder(partitions=1, idle_us=None)
        self.desk = RiskDesk(sequencer, self.order)
        self.stats = EngineStats()

    def on_tick(self, tick: Mapping[str, Any]) -> EngineOutput:
        """Process one tick; the output holds what the tick made and what got released."""
        out = EngineOutput()
        coin = str(tick["coin"])
        if self.universe is not None and coin not in self.universe:
            self.stats.unknown_coins += 1  # the coin agent dead-letters it: nothing happens
            return out
        ts = int(tick["ts"])
        self.stats.ticks += 1
        state = self.feature_state.get(coin)
        if state is None:
            state = self.feature_state[coin] = FeatureState()
        model = (self.models(coin) if self.models else None) or self.baseline
        # the coin's own step first: an invalid tick raises here, before anything is released
        # (the coin step and the sequencer share no state, so the order between them is free)
        result = process_tick(
            tick, state=state, costs=self.costs, monitor=self.monitor, model=model,
            sector=self.sector_of(coin), params=self.feature_params,
        )  # fmt: skip
        # everything before this tick's time is final: decide it
        desk = self.desk
        desk.advance(0, ts)
        for decided in desk.release().decided:
            self._sequence(decided, out)
        if result is None:
            self.stats.duplicate_ticks += 1
            return out
        out.features = result.features
        self.stats.features += 1
        if result.signal is not None:
            out.signal = result.signal
            self.stats.signals += 1
        if result.cost_rejection is not None:
            self.stats.cost_rejections[result.cost_rejection] += 1
        for request in result.requests:
            self.stats.requests += 1
            out.requests.append(request)
            for late in desk.submit(request):
                self._sequence(late, out)
        return out

    def on_cost_update(self, record: Mapping[str, Any]) -> None:
        """Fold a recorded ``CostUpdate`` into the cost book (skipped, and counted, for a coin
        outside the universe)."""
        if self.universe is not None and str(record["coin"]) not in self.universe:
            self.stats.unknown_coins += 1
            return
        apply_cost_update(self.costs, record)

    def finish(self) -> EngineOutput:
        """Decide every request still held (the end of a finite replay)."""
        out = EngineOutput()
        for decided in self.desk.drain():
            self._sequence(decided, out)
        return out

    def on_request(self, request: Mapping[str, Any]) -> EngineOutput:
        """Sequence one recorded TradeRequest now (replays of the trade-requests topic)."""
        out = EngineOutput()
        self.stats.requests += 1
        out.requests.append(dict(request))
        self._sequence(self.desk.decide(request), out)
        return out

    def _sequence(self, decided: Decided, out: EngineOutput) -> None:
        decision = decided.decision
        if decision is None:
            return
        out.decisions.append(decision)
        self.stats.decisions[decision["decision"]] += 1
        self.stats.decision_reasons[decision["reason_code"]] += 1
        try:
            execution = self.exchange.fill(decision)
        except ExecutionError:
            # as the execution agent: counted (and dead-lettered there), nothing filled
            self.stats.execution_errors += 1
            return
        if execution is not None:
            out.executions.append(execution)
            self.stats.executions += 1
