"""The risk sequencer agent: the one writer of risk decisions, a thin shell over a RiskDesk.

Reads ``trade-requests`` (requests and watermarks) and ``control`` (one partition each) in
batches. Per batch it decodes each event and hands it to the
:class:`~huracan.domain.risk_desk.RiskDesk` (the object the in-process engine drives too), sends
each decision it returns to ``risk-decisions`` keyed by coin, asks it to release what is due
(with the wall clock, for the stall release), and writes the rows the desk reports changed
(:mod:`huracan.agents.rows`). A record of the wrong type for its topic, or one the desk cannot
place, is dead-lettered.

The desk lives in memory between batches (``Pipeline.state``) and is reloaded from the
``risk-state`` table when the sequencer's partition comes back after a revocation. A heartbeat
timer sends a Watermark of partition -1 so that held requests are released on a stall even when
no partition sends anything; it goes outside any transaction (it carries no state).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import faust
from faust.types import EventT, StreamT

from huracan.agents.rows import (
    RISK_KEY,
    SEEN_PREFIX,
    global_row,
    held_rows,
    load_risk_desk,
    seen_changes,
)
from huracan.agents.shared import AgentContext, Unit, observe_in, store_window
from huracan.domain.ordering import OrderingError
from huracan.domain.risk_desk import Decided, RiskDesk
from huracan.domain.sequencer import RiskSequencer
from huracan.observability import metrics
from huracan.streams.errors import SerdeError

log = logging.getLogger(__name__)

AGENT = "sequencer"
_CONTROL = ("ControlEvent",)
_REQUESTS = ("TradeRequest", "Watermark")


class SequencerAgent:
    """The sequencer agent of one app (module doc); :meth:`run` is the Faust agent body.

    ``holder`` is the pipeline's live state: ``"desk"`` and ``"sequencer"`` while this worker
    holds the sequencer's partition."""

    def __init__(
        self,
        ctx: AgentContext,
        table: Any,
        holder: dict[str, Any],
        requests_channel: Any,
        *,
        new_sequencer: Callable[[], RiskSequencer],
        partitions: int,
    ) -> None:
        self.ctx = ctx
        self.table = table
        self.holder = holder
        #: the trade-requests topic of the app, for the heartbeat
        self.requests_channel = requests_channel
        self.new_sequencer = new_sequencer
        self.partitions = partitions
        faust_cfg = ctx.cfg.faust
        self.stall_ms = faust_cfg.order_stall_ms
        self.stall_us = faust_cfg.order_stall_ms * 1000
        self.wake_grace_us = faust_cfg.order_idle_ms * 1000

    def attach(self, app: faust.App) -> None:
        """Drop the in-memory desk when its partition is revoked; start the heartbeat."""
        names = self.ctx.names
        single_writer_topics = {names.requests, names.decisions}
        holder = self.holder

        async def forget_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
            revoked = args[0] if args else kwargs.get("revoked", ())
            # the single-writer state is cached in memory; when its partition moves to another
            # worker the cache is stale, and must be reloaded from the table if it comes back
            if any(tp.topic in single_writer_topics for tp in revoked):
                holder.clear()

        app.on_partitions_revoked.connect(forget_revoked)
        # a few heartbeats per stall time; idle partitions need none (their idle mark wakes us)
        heartbeat_s = max(self.stall_ms / 8000, 0.05)

        async def heartbeat() -> None:
            await self.heartbeat()

        app.timer(heartbeat_s, name="huracan.heartbeat")(heartbeat)

    def desk(self) -> RiskDesk:
        """The desk in memory, loaded from the table first when needed."""
        desk: RiskDesk | None = self.holder.get("desk")
        if desk is None:
            desk = load_risk_desk(
                self.table.get(RISK_KEY),
                self.table.items(),
                new_sequencer=self.new_sequencer,
                partitions=self.partitions,
                idle_us=self.stall_us,
                wake_grace_us=self.wake_grace_us,
            )
            self.holder["desk"], self.holder["sequencer"] = desk, desk.sequencer
        return desk

    async def run(self, stream: StreamT[bytes]) -> None:
        async for events in self.ctx.batches(stream):
            await self.ctx.in_units(AGENT, events, self.batch)
            seq = self.holder.get("sequencer")
            if seq is not None:
                metrics.update_exposure(seq.controller.get_exposure_summary())

    async def heartbeat(self) -> None:
        """A Watermark of partition -1 on trade-requests: wakes the sequencer (module doc)."""
        ctx = self.ctx
        now_us = int(ctx.wall_clock() * 1e6)
        record = {
            "event_id": f"wm:heartbeat:{now_us}",
            "correlation_id": f"wm:heartbeat:{now_us}",
            "causation_id": None,
            "source_topic": ctx.names.ticks,
            "partition": -1,
            "ts": now_us,
        }
        await self.requests_channel.send(key=b"-1", value=ctx.serde.encode("Watermark", record))

    async def emit(self, unit: Unit, decided: Decided) -> None:
        """Send a decision (count a redelivery)."""
        decision = decided.decision
        if decision is None:
            metrics.DUPLICATES.labels(agent=AGENT).inc()
            return
        outcome, reason = decision["decision"], decision["reason_code"]
        metrics.DECISIONS.labels(decision=outcome, reason=reason).inc()
        ctx = self.ctx
        await unit.send(
            ctx.names.decisions,
            str(decision["coin"]).encode(),
            ctx.serde.encode("RiskDecision", decision),
        )
        metrics.observe_latency(
            "signal_to_decision", int(decided.request["signal_ts"]), ctx.wall_clock()
        )

    async def batch(self, unit: Unit, events: Sequence[EventT[Any]]) -> None:
        """Decode, hand each event to the desk, send its decisions, release, persist."""
        ctx = self.ctx
        desk = self.desk()
        now_us = int(ctx.wall_clock() * 1e6)
        control_topic = ctx.names.control
        for event in events:
            src = event.message.topic
            observe_in(AGENT, src)
            try:
                decoded = ctx.serde.decode_event(event.message.value)
            except SerdeError as exc:
                await ctx.dead_letter(unit, event, AGENT, exc)
                continue
            kind, record = decoded.event_type, decoded.record
            expected = _CONTROL if src == control_topic else _REQUESTS
            if kind not in expected:
                await ctx.dead_letter(
                    unit, event, AGENT,
                    SerdeError("unexpected_event_type", f"{kind} on {src}", event_type=kind),
                )  # fmt: skip
                continue
            try:
                if kind == "ControlEvent":
                    outcome = desk.apply_control(record)
                    metrics.CONTROL.labels(
                        command=outcome.command, outcome=outcome.reason_code
                    ).inc()
                    log.info(
                        "control %s: %s (%s)",
                        outcome.command, outcome.reason_code, outcome.detail,
                    )  # fmt: skip
                elif kind == "Watermark":
                    desk.watermark(record, now_us)
                else:
                    for late in desk.submit(record, now_us):
                        metrics.LATE_REQUESTS.inc()
                        await self.emit(unit, late)
            except OrderingError as exc:
                await ctx.dead_letter(unit, event, AGENT, exc)
                continue
        release = desk.release(now_us)
        for decided in release.decided:
            await self.emit(unit, decided)
        if release.stalled:
            metrics.STALL_RELEASES.inc()
            log.warning(
                "released %d held requests out of event-time order: the slowest "
                "watermark has not moved for faust.order_stall_ms (%d ms)",
                len(release.decided), self.stall_ms,
            )  # fmt: skip
        metrics.HELD_REQUESTS.set(desk.held)
        await unit.delivered()
        changes = desk.take_changes()
        if changes is None:
            return
        last = events[-1]
        table = self.table
        writes, deletes = held_rows(changes)
        for key, row in writes:
            await unit.write(table, key, row, last)
        for key in deletes:
            await unit.delete(table, key, last)
        await store_window(unit, table, SEEN_PREFIX, seen_changes(changes), last)
        key, row = global_row(changes)
        await unit.write(table, key, row, last)
