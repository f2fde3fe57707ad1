"""The coin agent: one per market-data partition, a thin shell over :func:`process_tick`.

Reads ``market-data`` and ``cost-updates`` (co-partitioned by coin) in batches. Per event it
decodes, folds a cost update into the coin's cost book (:func:`apply_cost_update`) or runs the
tick through the coin's step (:func:`huracan.domain.engine.process_tick`, the function the
in-process engine calls), and sends what the tick made: features and signals (facts for other
consumers) and trade requests (OPEN and CLOSE) keyed by coin. After a batch's requests it sends,
per market-data partition, a Watermark (every request of this partition's ticks below ``ts`` is
on the topic), then writes each changed coin's :class:`~huracan.agents.rows.CoinState` row once.

Between batches (and on an empty batch, so a quiet stream still checks) it declares partitions
that went quiet and are caught up idle (:mod:`huracan.agents.idleness`) with an idle Watermark,
sent outside any batch's unit: a mark is a fact about the consumer and carries no state.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import faust
from faust.types import EventT, StreamT

from huracan.agents import faust_fixes
from huracan.agents.idleness import PartitionIdleness
from huracan.agents.rows import CoinState
from huracan.agents.shared import AgentContext, Outbox, Unit, observe_in, observe_out
from huracan.domain.costs import CostSettings
from huracan.domain.engine import apply_cost_update, process_tick
from huracan.domain.errors import DomainError, UnknownCoinError
from huracan.domain.execution import ExitRules
from huracan.domain.features import FeatureError, FeatureParams
from huracan.domain.signals import BaselineMomentumModel, SignalModel
from huracan.observability import metrics
from huracan.streams.errors import SerdeError

AGENT = "coin"


class CoinAgent:
    """The coin agent of one app (module doc); :meth:`run` is the Faust agent body."""

    def __init__(
        self,
        ctx: AgentContext,
        table: Any,
        *,
        cost_settings: CostSettings,
        exit_rules: ExitRules,
        sectors: Mapping[str, str],
        models: Callable[[str], SignalModel | None] | None = None,
        feature_params: FeatureParams | None = None,
    ) -> None:
        self.ctx = ctx
        self.table = table
        self.cost_settings = cost_settings
        self.rules = exit_rules
        self.sectors = sectors
        self.models = models
        self.params = feature_params or FeatureParams()
        self.baseline = BaselineMomentumModel()
        self.idleness = PartitionIdleness(idle_after_s=ctx.cfg.faust.order_idle_ms / 1000)

    def attach(self, app: faust.App) -> None:
        """Forget what the agent knew of its partitions when they are revoked."""

        async def forget_idleness(sender: Any, /, *args: Any, **kwargs: Any) -> None:
            self.idleness.reset()

        app.on_partitions_revoked.connect(forget_idleness)

    async def run(self, stream: StreamT[bytes]) -> None:
        ctx = self.ctx
        # empty batches too: a quiet stream still checks its partitions for idleness
        async for events in ctx.batches(stream, yield_empty=True):
            if events:
                await ctx.in_units(AGENT, events, self.batch)
            await self.send_idle_marks(time.monotonic())

    def watermark(self, part: int, ts: int, last_id: str | None, *, idle: bool = False) -> bytes:
        """The encoded Watermark of market-data partition ``part`` at ``ts``."""
        tick_topic = self.ctx.names.ticks
        event_id = f"wm:{tick_topic}:{part}:{ts}" + (":idle" if idle else "")
        return self.ctx.serde.encode(
            "Watermark",
            {
                "event_id": event_id,
                "correlation_id": event_id,
                "causation_id": last_id,
                "source_topic": tick_topic,
                "partition": part,
                "ts": ts,
                "idle": idle,
            },
        )

    def idle_marks(self, now: float) -> list[tuple[int, int]]:
        """``(partition, ts)`` of the assigned market-data partitions that are now idle."""
        app = self.ctx.app
        consumer: Any = app.consumer
        committed = faust_fixes.committed_offsets(app)
        tick_topic = self.ctx.names.ticks
        assigned = {tp.partition: tp for tp in consumer.assignment() if tp.topic == tick_topic}
        return self.idleness.to_declare(
            assigned,
            high=lambda p: consumer.highwater(assigned[p]),
            committed=lambda p: committed.get(assigned[p]),
            now=now,
        )

    async def send_idle_marks(self, now: float) -> None:
        """Idle marks for the partitions that went quiet: after the batch, so after every
        request the agent made from them, through the app's producer, outside any batch's unit
        (under exactly_once: outside any transaction)."""
        if not self.idleness.due(now):
            return
        marks_out = self.idle_marks(now)
        if not marks_out:
            return
        out = await Outbox.of(self.ctx.app)
        requests_topic = self.ctx.names.requests
        for part, ts in marks_out:
            await out.send(
                requests_topic, str(part).encode(), self.watermark(part, ts, None, idle=True)
            )
        metrics.IDLE_PARTITIONS.inc(len(marks_out))
        await out.delivered()

    async def batch(self, unit: Unit, events: Sequence[EventT[Any]]) -> None:
        """Process one batch: per event decode, fold or step, send; then the watermarks, then
        the changed coins' rows."""
        ctx = self.ctx
        serde, names, wall_clock = ctx.serde, ctx.names, ctx.wall_clock
        tick_topic = names.ticks
        features_topic, signals_topic, requests_topic = (
            names.features,
            names.signals,
            names.requests,
        )
        idleness, models, baseline = self.idleness, self.models, self.baseline
        sectors = self.sectors
        mono_now = time.monotonic()
        dirty: dict[str, tuple[EventT[Any], CoinState]] = {}
        marks: dict[int, tuple[int, str]] = {}
        # counted per batch: a labelled counter costs a lookup and a lock per call
        n_in: Counter[str] = Counter()
        n_features = n_signals = n_requests = 0
        for event in events:
            src = event.message.topic
            n_in[src] += 1
            is_tick = src == tick_topic
            if is_tick:
                idleness.on_tick(event.message.partition, event.message.offset, mono_now)
            try:
                record = serde.decode(
                    event.message.value, expected="MarketTick" if is_tick else "CostUpdate"
                )
            except SerdeError as exc:
                await ctx.dead_letter(unit, event, AGENT, exc)
                continue
            coin = str(record["coin"])
            if coin not in sectors:  # outside the universe: the engine skips it the same way
                await ctx.dead_letter(
                    unit, event, AGENT, UnknownCoinError(f"coin {coin!r} is not in the universe")
                )
                continue
            held = dirty.get(coin)
            state = (
                held[1]
                if held
                else CoinState.load(self.table.get(coin), self.cost_settings, self.rules)
            )
            if not is_tick:
                try:
                    apply_cost_update(state.costs, record)
                except DomainError as exc:
                    await ctx.dead_letter(unit, event, AGENT, exc)
                    continue
                dirty[coin] = (event, state)
                continue
            model = (models(coin) if models else None) or baseline
            try:
                result = process_tick(
                    record, state=state.features, costs=state.costs, monitor=state.monitor,
                    model=model, sector=self.sectors.get(coin), params=self.params,
                )  # fmt: skip
            except (FeatureError, DomainError) as exc:
                await ctx.dead_letter(unit, event, AGENT, exc)
                continue
            except Exception as exc:  # noqa: BLE001 - a broken model must not stop the agent
                await ctx.dead_letter(unit, event, AGENT, exc)
                continue
            dirty[coin] = (event, state)
            part = event.message.partition
            mark = marks.get(part)
            if mark is None or record["ts"] >= mark[0]:
                marks[part] = (int(record["ts"]), str(record["event_id"]))
            if result is None:
                metrics.DUPLICATES.labels(agent=AGENT).inc()
                continue
            key = coin.encode()
            await unit.send(
                features_topic, key, serde.encode("FeatureVector", result.features.to_record())
            )
            n_features += 1
            if result.signal is not None:
                signal = result.signal_record or result.signal.to_record()
                await unit.send(signals_topic, key, serde.encode("Signal", signal))
                n_signals += 1
                metrics.observe_latency("tick_to_signal", result.signal.ts, wall_clock())
            if result.cost_rejection is not None:
                metrics.COST_REJECTIONS.labels(reason=result.cost_rejection).inc()
            for request in result.requests:
                await unit.send(requests_topic, key, serde.encode("TradeRequest", request))
                n_requests += 1
                if request["intent"] == "CLOSE":
                    metrics.EXITS.labels(reason=str(request["exit_reason"])).inc()
        # after the batch's requests, on the same partition: the watermarks
        for part, (ts, last_id) in marks.items():
            await unit.send(requests_topic, str(part).encode(), self.watermark(part, ts, last_id))
            idleness.on_mark(part, ts)
        for src, n in n_in.items():
            observe_in(AGENT, src, n)
        outs = ((features_topic, n_features), (signals_topic, n_signals))
        for name, n in (*outs, (requests_topic, n_requests)):
            if n:
                observe_out(AGENT, name, n)
        await unit.delivered()
        for coin, (event, state) in dirty.items():
            await unit.write(self.table, coin, state.to_dict(), event)
