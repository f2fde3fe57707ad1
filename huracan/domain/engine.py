"""The whole decision path in one process: the fast path for replay, backtests and benchmarks.

The Kafka pipeline runs these same steps in separate agents connected by topics; this class runs
them back to back for one ordered stream of events, calling the same functions:

1. a tick refreshes the coin's quote in the :class:`CostBook` and its rolling features
   (:func:`huracan.domain.features.update`); a duplicate tick (``seq`` not increasing) stops here;
2. the coin's open trades are checked against the exit rules; each exit becomes a CLOSE request;
3. the coin's model (:class:`SignalModel`, the baseline unless ``models`` says otherwise) turns
   the features into a signal or nothing; a signal against an open trade closes it (reversal);
4. a signal passes the cost check (taker, funding included, by direction) or is dropped with the
   check's reason code counted in :attr:`EngineStats.cost_rejections`;
5. a passing signal becomes an OPEN request (:func:`open_request_from_signal`);
6. every request goes, in the order made, through the :class:`RiskSequencer` and every approved
   decision through the :class:`PaperExchange`; every execution is folded into the
   :class:`PositionMonitor`. A fill that fails counts towards the error breaker and releases
   the exposure the sequencer registered for it.

Everything is deterministic: the same events in the same order give byte-identical outputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from huracan.domain.costs import CostBook, CostCheck
from huracan.domain.execution import ExecutionError, PaperExchange, PositionMonitor
from huracan.domain.features import FeatureParams, FeatureState, FeatureVector, update
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


@dataclass
class EngineOutput:
    """What one input event produced, in order."""

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
    ) -> None:
        self.sequencer = sequencer
        self.costs = costs
        self.exchange = exchange
        self.monitor = monitor
        self.sector_of = sector_of
        self.feature_params = feature_params or FeatureParams()
        self.models = models
        self.baseline = BaselineMomentumModel()
        self.feature_state: dict[str, FeatureState] = {}
        self.stats = EngineStats()

    def on_tick(self, tick: Mapping[str, Any]) -> EngineOutput:
        out = EngineOutput()
        coin = str(tick["coin"])
        ts = int(tick["ts"])
        bid, ask = float(tick["bid"]), float(tick["ask"])
        self.stats.ticks += 1
        state = self.feature_state.get(coin)
        if state is None:
            state = self.feature_state[coin] = FeatureState()
        fv = update(
            state, self.feature_params,
            coin=coin, exchange=str(tick["exchange"]), ts=ts, seq=int(tick["seq"]),
            bid=bid, ask=ask, last=float(tick["last"]), volume=float(tick["volume"]),
            event_id=str(tick["event_id"]), correlation_id=str(tick["correlation_id"]),
        )  # fmt: skip
        if fv is None:
            self.stats.duplicate_ticks += 1
            return out
        self.costs.update_spread(coin, bid, ask, ts / 1e6)
        out.features = fv
        self.stats.features += 1
        requests = self.monitor.on_tick(tick)
        model = (self.models(coin) if self.models else None) or self.baseline
        signal = model.evaluate(fv)
        if signal is not None:
            out.signal = signal
            self.stats.signals += 1
            requests += self.monitor.on_signal(_signal_dict(signal), bid, ask)
            check = self.costs.check_trade_cost(
                coin,
                signal.edge_bps,
                ts / 1e6,
                use_maker=False,
                direction="long" if signal.direction == "LONG" else "short",
            )
            if check.ok:
                requests.append(
                    open_request_from_signal(
                        signal, check, sector=self.sector_of(coin), bid=bid, ask=ask
                    )
                )
            else:
                self.stats.cost_rejections[str(check.reason_code)] += 1
        for request in requests:
            self._sequence(request, out)
        return out

    def on_request(self, request: Mapping[str, Any]) -> EngineOutput:
        """Sequence one recorded TradeRequest (replays of the trade-requests topic)."""
        out = EngineOutput()
        self._sequence(request, out)
        return out

    def _sequence(self, request: Mapping[str, Any], out: EngineOutput) -> None:
        self.stats.requests += 1
        out.requests.append(dict(request))
        decision = self.sequencer.decide(request)
        if decision is None:
            return
        out.decisions.append(decision)
        self.stats.decisions[decision["decision"]] += 1
        self.stats.decision_reasons[decision["reason_code"]] += 1
        try:
            execution = self.exchange.fill(decision)
        except ExecutionError:
            # the fill failed: count it towards the error breaker and release what the
            # sequencer registered, so exposure keeps matching the executions
            self.stats.execution_errors += 1
            ctl = self.sequencer.controller
            ctl.record_execution_error(timestamp=int(decision["ts"]) / 1e6)
            trade_id = decision.get("trade_id")
            if decision.get("intent") != "CLOSE" and trade_id and ctl.get_trade(trade_id):
                ctl.close_trade(trade_id)
            return
        if execution is not None:
            out.executions.append(execution)
            self.stats.executions += 1
            self.monitor.on_execution(execution)
