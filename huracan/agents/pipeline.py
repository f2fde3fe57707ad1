"""The Faust agents: thin shells that decode, call the domain core, encode and emit.

Topology (topics from :mod:`huracan.streams.topics`; every value is Avro through our serde, so
Faust sees raw bytes)::

    market-data ──► features ──► features ──► signals ──► signals ─┐
         │           (feature-state table)                          │
         │                                cost ◄─── cost-updates ◄──┤ (cost-state table)
         │                                  │                       │
         └──► positions ◄── executions      └──► trade-requests ◄───┘ (OPEN: passed cost check)
              (position-state table)                 ▲   │
                     └── exits (CLOSE requests) ─────┘   ▼
                                   control ──► sequencer (risk-state table, one partition)
                                                         │
                                                         ▼
                                                  risk-decisions ──► execution ──► executions
                                                                  (exchange-state table)

Per-coin agents run on the coin's partition of the co-partitioned topics (market-data, features,
signals, cost-updates, executions must have the same partition count); the sequencer and the
execution agent are single writers on one-partition topics. Every table is changelog-backed.

Batches: each agent reads ``faust.batch_size`` events at a time (``stream.take_events``) and
processes them in order. Before handling an event the agent makes it Faust's *current event*, so
whatever it sends or writes to a table is attached to that event's partition and published when
the event is acknowledged. A table row that changes several times in a batch is written once,
in the context of the last event that changed it.

Bad input: a record that does not decode, or that the core rejects, goes to the dead-letter
topic with its original bytes, topic, partition, offset and reason, is counted by reason, and
the agent goes on.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.streams import _current_event
from faust.types import EventT, StreamT

from huracan.config import ConfigError, HuracanConfig
from huracan.domain.costs import CostBook, CostSettings
from huracan.domain.engine import open_request_from_signal
from huracan.domain.errors import DomainError, InvalidCostRequestError
from huracan.domain.execution import (
    ExecutionError,
    ExitRules,
    PaperExchange,
    PositionMonitor,
)
from huracan.domain.features import FeatureError, FeatureParams, FeatureState, update
from huracan.domain.features import FeatureVector as DomainFeatures
from huracan.domain.sequencer import RiskSequencer
from huracan.domain.signals import BaselineMomentumModel, SignalModel
from huracan.observability import metrics
from huracan.streams.dead_letter import build_dead_letter
from huracan.streams.errors import SerdeError
from huracan.streams.serde import Serde, make_serde
from huracan.streams.topics import TopicCatalog
from huracan.wiring import coin_sectors, cost_settings, exit_rules, new_sequencer

log = logging.getLogger(__name__)

RISK_KEY = "global"
EXCHANGE_KEY = "paper"

_CO_PARTITIONED = ("market_data", "features", "signals", "cost_updates", "executions")


def _check_partitions(cfg: HuracanConfig) -> int:
    p = cfg.kafka.partitions
    counts = {name: getattr(p, name) for name in _CO_PARTITIONED}
    if len(set(counts.values())) != 1:
        raise ConfigError(
            "kafka.partitions: market_data, features, signals, cost_updates and executions must "
            f"have the same partition count (co-partitioned by coin), got {counts}"
        )
    for name in ("trade_requests", "risk_decisions", "control"):
        if getattr(p, name) != 1:
            raise ConfigError(
                f"kafka.partitions.{name} must be 1: the risk sequencer is one writer"
            )
    return int(counts["market_data"])


@dataclass
class Pipeline:
    """The agents, topics and tables of one app; built by :func:`build_pipeline`."""

    app: faust.App
    config: HuracanConfig
    serde: Serde
    topics: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    agents: dict[str, Any] = field(default_factory=dict)
    #: live state owned by single-writer agents (``"sequencer"``), read by the web views
    state: dict[str, Any] = field(default_factory=dict)

    def risk_summary(self) -> dict[str, Any] | None:
        """The sequencer's exposure summary, when this worker runs the sequencer."""
        seq = self.state.get("sequencer")
        return seq.controller.get_exposure_summary() if seq is not None else None


def build_pipeline(
    app: faust.App,
    cfg: HuracanConfig,
    *,
    models: Callable[[str], SignalModel | None] | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> Pipeline:
    """Declare the topics, tables and agents of the engine on ``app``.

    ``models`` maps a coin to its active model (``None``: the baseline). ``wall_clock`` is only
    used for latency metrics and dead-letter timestamps, never for a decision.
    """
    partitions = _check_partitions(cfg)
    serde = make_serde(cfg)
    catalog = TopicCatalog.from_config(cfg)
    pipe = Pipeline(app, cfg, serde)
    batch, within = cfg.faust.batch_size, cfg.faust.batch_timeout_s

    def raw_topic(*names: str, **options: Any) -> Any:
        """A Faust channel over ``names`` whose keys and values stay bytes (our serde decodes)."""
        return app.topic(
            *names,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            **options,
        )

    def topic(event_type: str) -> Any:
        spec = catalog.for_event_type(event_type)
        t = raw_topic(spec.name, partitions=spec.partitions, internal=False)
        pipe.topics[event_type] = t
        return t

    t_ticks = topic("MarketTick")
    t_features = topic("FeatureVector")
    t_signals = topic("Signal")
    t_costs = topic("CostUpdate")
    t_requests = topic("TradeRequest")
    t_decisions = topic("RiskDecision")
    t_executions = topic("Execution")
    t_control = topic("ControlEvent")
    t_dead = topic("DeadLetter")

    def table(name: str, parts: int) -> Any:
        tbl = app.Table(
            name,
            partitions=parts,
            # str keys and JSON values on both sides: the changelog is read back at recovery
            schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
        )
        pipe.tables[name] = tbl
        return tbl

    feature_table = table("feature-state", partitions)
    cost_table = table("cost-state", partitions)
    position_table = table("position-state", partitions)
    risk_table = table("risk-state", 1)
    exchange_table = table("exchange-state", 1)

    cost_cfg = cost_settings(cfg)
    sectors = coin_sectors(cfg)
    feature_params = FeatureParams()
    baseline = BaselineMomentumModel()
    rules = exit_rules(cfg)

    # --------------------------------------------------------------------------- helpers
    def enter(event: EventT[Any]) -> None:
        _current_event.set(weakref.ref(event))

    async def dead_letter(event: EventT[Any], agent: str, error: BaseException) -> None:
        msg = event.message
        record = build_dead_letter(
            value=msg.value,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=msg.key,
            error=error,
            consumer=agent,
            failed_at_us=int(wall_clock() * 1e6),
        )
        reason = str(record["reason"])
        metrics.DEAD_LETTERS.labels(agent=agent, reason=reason).inc()
        log.warning("dead-lettered %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, reason)
        await t_dead.send(key=msg.key, value=serde.encode("DeadLetter", record))

    def decode_batch(
        events: Sequence[EventT[Any]], expected: str
    ) -> list[tuple[EventT[Any], dict[str, Any] | SerdeError]]:
        out: list[tuple[EventT[Any], dict[str, Any] | SerdeError]] = []
        for e in events:
            try:
                out.append((e, serde.decode(e.message.value, expected=expected)))
            except SerdeError as exc:
                out.append((e, exc))
        return out

    async def batches(stream: StreamT[bytes]) -> AsyncIterator[Sequence[EventT[Any]]]:
        async for events in stream.take_events(batch, within):  # type: ignore[attr-defined]
            yield events

    def observe_in(agent: str, topic_name: str, n: int) -> None:
        metrics.RECORDS_IN.labels(agent=agent, topic=topic_name).inc(n)

    # --------------------------------------------------------------------------- features
    async def features_agent(stream: StreamT[bytes]) -> None:
        async for events in batches(stream):
            observe_in("features", t_ticks.get_topic_name(), len(events))
            dirty: dict[bytes, tuple[EventT[Any], FeatureState]] = {}
            for event, tick in decode_batch(events, "MarketTick"):
                enter(event)
                if isinstance(tick, SerdeError):
                    await dead_letter(event, "features", tick)
                    continue
                key = str(tick["coin"]).encode()
                held = dirty.get(key)
                state = held[1] if held else _feature_state(feature_table.get(key.decode()))
                try:
                    fv = update(
                        state, feature_params,
                        coin=tick["coin"], exchange=tick["exchange"], ts=tick["ts"],
                        seq=tick["seq"], bid=tick["bid"], ask=tick["ask"], last=tick["last"],
                        volume=tick["volume"], event_id=tick["event_id"],
                        correlation_id=tick["correlation_id"],
                    )  # fmt: skip
                except FeatureError as exc:
                    await dead_letter(event, "features", exc)
                    continue
                dirty[key] = (event, state)
                if fv is None:
                    metrics.DUPLICATES.labels(agent="features").inc()
                    continue
                await t_features.send(key=key, value=serde.encode("FeatureVector", fv.to_record()))
                metrics.RECORDS_OUT.labels(
                    agent="features", topic=t_features.get_topic_name()
                ).inc()
            for key, (event, state) in dirty.items():
                enter(event)
                feature_table[key.decode()] = state.to_row()

    # --------------------------------------------------------------------------- signals
    async def signals_agent(stream: StreamT[bytes]) -> None:
        async for events in batches(stream):
            observe_in("signals", t_features.get_topic_name(), len(events))
            for event, record in decode_batch(events, "FeatureVector"):
                enter(event)
                if isinstance(record, SerdeError):
                    await dead_letter(event, "signals", record)
                    continue
                fv = DomainFeatures.from_record(record)
                model = (models(fv.coin) if models else None) or baseline
                try:
                    signal = model.evaluate(fv)
                except Exception as exc:  # noqa: BLE001 - a broken model must not stop the agent
                    await dead_letter(event, "signals", exc)
                    continue
                if signal is None:
                    continue
                await t_signals.send(
                    key=fv.coin.encode(), value=serde.encode("Signal", signal.to_record())
                )
                metrics.RECORDS_OUT.labels(agent="signals", topic=t_signals.get_topic_name()).inc()
                metrics.observe_latency("tick_to_signal", fv.ts, wall_clock())

    # --------------------------------------------------------------------------- cost
    # cost updates (fees, funding, explicit spreads) and signals keep the coin's CostBook. A
    # signal carries the quote of the tick it was computed on; that quote is applied first, so
    # the check prices the trade at the market the signal saw: deterministic and replayable,
    # whatever the interleaving of topics.
    cost_sources = raw_topic(t_costs.get_topic_name(), t_signals.get_topic_name())
    tick_topic, cost_topic = t_ticks.get_topic_name(), t_costs.get_topic_name()

    async def cost_agent(stream: StreamT[bytes]) -> None:
        async for events in batches(stream):
            dirty: dict[bytes, tuple[EventT[Any], CostBook]] = {}
            for event in events:
                enter(event)
                src = event.message.topic
                observe_in("cost", src, 1)
                expected = "CostUpdate" if src == cost_topic else "Signal"
                try:
                    record = serde.decode(event.message.value, expected=expected)
                except SerdeError as exc:
                    await dead_letter(event, "cost", exc)
                    continue
                coin = str(record["coin"])
                key = coin.encode()
                held = dirty.get(key)
                book = held[1] if held else _cost_book(cost_table.get(key.decode()), cost_cfg)
                try:
                    if expected == "CostUpdate":
                        _apply_cost_update(book, record)
                    else:
                        book.update_spread(coin, record["bid"], record["ask"], record["ts"] / 1e6)
                        await _check_signal(book, record)
                except DomainError as exc:
                    await dead_letter(event, "cost", exc)
                    continue
                dirty[key] = (event, book)
            for key, (event, book) in dirty.items():
                enter(event)
                cost_table[key.decode()] = book.to_dict()

    async def _check_signal(book: CostBook, signal: Mapping[str, Any]) -> None:
        coin = str(signal["coin"])
        check = book.check_trade_cost(
            coin,
            signal["edge_bps"],
            signal["ts"] / 1e6,
            use_maker=False,
            direction="long" if signal["direction"] == "LONG" else "short",
        )
        if not check.ok:
            metrics.COST_REJECTIONS.labels(reason=str(check.reason_code)).inc()
            return
        request = open_request_from_signal(
            signal, check, sector=sectors.get(coin), bid=signal["bid"], ask=signal["ask"]
        )
        await t_requests.send(key=coin.encode(), value=serde.encode("TradeRequest", request))
        metrics.RECORDS_OUT.labels(agent="cost", topic=t_requests.get_topic_name()).inc()

    # --------------------------------------------------------------------------- positions
    position_sources = raw_topic(
        t_ticks.get_topic_name(), t_executions.get_topic_name(), t_signals.get_topic_name()
    )
    execution_topic = t_executions.get_topic_name()

    async def positions_agent(stream: StreamT[bytes]) -> None:
        async for events in batches(stream):
            dirty: dict[bytes, tuple[EventT[Any], PositionMonitor]] = {}
            for event in events:
                enter(event)
                src = event.message.topic
                observe_in("positions", src, 1)
                expected = (
                    "MarketTick" if src == tick_topic else "Execution" if src == execution_topic
                    else "Signal"
                )  # fmt: skip
                try:
                    record = serde.decode(event.message.value, expected=expected)
                except SerdeError as exc:
                    await dead_letter(event, "positions", exc)
                    continue
                key = str(record["coin"]).encode()
                held = dirty.get(key)
                monitor = held[1] if held else _monitor(position_table.get(key.decode()), rules)
                if expected == "Execution":
                    monitor.on_execution(record)
                    closes = []
                elif expected == "MarketTick":
                    closes = monitor.on_tick(record)
                else:
                    closes = monitor.on_signal(record, record["bid"], record["ask"])
                for close in closes:
                    await t_requests.send(key=key, value=serde.encode("TradeRequest", close))
                    metrics.EXITS.labels(reason=str(close["exit_reason"])).inc()
                dirty[key] = (event, monitor)
            for key, (event, monitor) in dirty.items():
                enter(event)
                position_table[key.decode()] = monitor.to_dict()

    # --------------------------------------------------------------------------- sequencer
    sequencer_sources = raw_topic(t_requests.get_topic_name(), t_control.get_topic_name())
    control_topic = t_control.get_topic_name()
    holder = pipe.state

    def sequencer() -> RiskSequencer:
        seq = holder.get("sequencer")
        if seq is None:
            stored = risk_table.get(RISK_KEY)
            seq = RiskSequencer.from_dict(stored) if stored is not None else new_sequencer(cfg)
            holder["sequencer"] = seq
        return seq

    async def sequencer_agent(stream: StreamT[bytes]) -> None:
        async for events in batches(stream):
            seq = sequencer()
            last: EventT[Any] | None = None
            for event in events:
                enter(event)
                last = event
                src = event.message.topic
                observe_in("sequencer", src, 1)
                is_control = src == control_topic
                try:
                    record = serde.decode(
                        event.message.value,
                        expected="ControlEvent" if is_control else "TradeRequest",
                    )
                except SerdeError as exc:
                    await dead_letter(event, "sequencer", exc)
                    continue
                if is_control:
                    outcome = seq.apply_control(record)
                    metrics.CONTROL.labels(
                        command=outcome.command, outcome=outcome.reason_code
                    ).inc()
                    log.info(
                        "control %s: %s (%s)", outcome.command, outcome.reason_code, outcome.detail
                    )
                    continue
                decision = seq.decide(record)
                if decision is None:
                    metrics.DUPLICATES.labels(agent="sequencer").inc()
                    continue
                metrics.DECISIONS.labels(
                    decision=decision["decision"], reason=decision["reason_code"]
                ).inc()
                await t_decisions.send(
                    key=str(decision["coin"]).encode(),
                    value=serde.encode("RiskDecision", decision),
                )
                metrics.observe_since("signal_to_decision", event.message.timestamp, wall_clock())
            if last is not None:
                enter(last)
                risk_table[RISK_KEY] = seq.to_dict()
                metrics.update_exposure(seq.controller.get_exposure_summary())

    # --------------------------------------------------------------------------- execution
    async def execution_agent(stream: StreamT[bytes]) -> None:
        exchange: PaperExchange | None = None
        async for events in batches(stream):
            if exchange is None:
                stored = exchange_table.get(EXCHANGE_KEY)
                exchange = PaperExchange.from_dict(stored) if stored else PaperExchange()
            last: EventT[Any] | None = None
            for event, decision in decode_batch(events, "RiskDecision"):
                enter(event)
                last = event
                observe_in("execution", event.message.topic, 1)
                if isinstance(decision, SerdeError):
                    await dead_letter(event, "execution", decision)
                    continue
                try:
                    execution = exchange.fill(decision)
                except ExecutionError as exc:
                    metrics.EXECUTION_ERRORS.inc()
                    await dead_letter(event, "execution", exc)
                    continue
                if execution is None:
                    continue
                await t_executions.send(
                    key=str(execution["coin"]).encode(),
                    value=serde.encode("Execution", execution),
                )
                metrics.EXECUTIONS.labels(action=execution["action"]).inc()
                now = wall_clock()
                metrics.observe_latency("tick_to_execution", int(decision["ts"]), now)
                metrics.observe_since("decision_to_execution", event.message.timestamp, now)
            if last is not None:
                enter(last)
                exchange_table[EXCHANGE_KEY] = exchange.to_dict()

    pipe.agents = {
        "features": app.agent(t_ticks, name="huracan.features")(features_agent),
        "signals": app.agent(t_features, name="huracan.signals")(signals_agent),
        "cost": app.agent(cost_sources, name="huracan.cost")(cost_agent),
        "positions": app.agent(position_sources, name="huracan.positions")(positions_agent),
        "sequencer": app.agent(sequencer_sources, name="huracan.sequencer")(sequencer_agent),
        "execution": app.agent(t_decisions, name="huracan.execution")(execution_agent),
    }
    return pipe


def _feature_state(row: Any) -> FeatureState:
    return FeatureState.from_row(row) if row else FeatureState()


def _cost_book(stored: Any, settings: CostSettings) -> CostBook:
    return CostBook.from_dict(stored) if stored else CostBook(settings)


def _monitor(stored: Any, rules: ExitRules) -> PositionMonitor:
    return PositionMonitor.from_dict(stored, rules) if stored else PositionMonitor(rules)


def _apply_cost_update(book: CostBook, record: Mapping[str, Any]) -> None:
    coin, kind = str(record["coin"]), record["kind"]
    if kind == "SPREAD":
        book.update_spread(coin, record["bid"], record["ask"], record["ts"] / 1e6)
    elif kind == "FEES":
        book.update_fees(coin, record["maker_bps"], record["taker_bps"])
    elif kind == "FUNDING":
        book.update_funding_rate(coin, record["funding_rate_bps"])
    else:
        raise InvalidCostRequestError(f"unknown cost update kind {kind!r}")
