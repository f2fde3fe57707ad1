"""The execution agent: the one writer of executions, a thin shell over the PaperExchange.

Reads ``risk-decisions`` (one partition) in batches. Per event it decodes the decision, asks the
:class:`~huracan.domain.execution.PaperExchange` for its fill (``None``: nothing to execute, or
a redelivery the exchange de-duplicated) and sends the execution to ``executions`` keyed by
coin. A decision that does not decode, or that the exchange refuses, is dead-lettered. After the
batch it writes the exchange's window changes and its row (:mod:`huracan.agents.rows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faust.types import EventT, StreamT

from huracan.agents.rows import EXCHANGE_KEY, FILLED_PREFIX, exchange_row, load_exchange
from huracan.agents.shared import AgentContext, Unit, observe_in, store_window
from huracan.domain.execution import ExecutionError, PaperExchange
from huracan.observability import metrics
from huracan.streams.errors import SerdeError
from huracan.wiring import paper_exchange_params

AGENT = "execution"


class ExecutionAgent:
    """The execution agent of one app (module doc); :meth:`run` is the Faust agent body.

    ``holder`` is the pipeline's live state: ``"exchange"`` once loaded (dropped with the
    sequencer's state when the single-writer partitions are revoked)."""

    def __init__(self, ctx: AgentContext, table: Any, holder: dict[str, Any]) -> None:
        self.ctx = ctx
        self.table = table
        self.holder = holder

    def exchange(self) -> PaperExchange:
        """The exchange in memory, loaded from the table first when needed."""
        exchange: PaperExchange | None = self.holder.get("exchange")
        if exchange is None:
            table = self.table
            params = paper_exchange_params(self.ctx.cfg)  # engine.paper_exchange, as the engine
            exchange = load_exchange(table.get(EXCHANGE_KEY), table.items(), params)
            self.holder["exchange"] = exchange
        return exchange

    async def run(self, stream: StreamT[bytes]) -> None:
        async for events in self.ctx.batches(stream):
            await self.ctx.in_units(AGENT, events, self.batch)

    async def batch(self, unit: Unit, events: Sequence[EventT[Any]]) -> None:
        """Decode, fill, send; then persist the exchange."""
        ctx = self.ctx
        serde, wall_clock = ctx.serde, ctx.wall_clock
        executions_topic = ctx.names.executions
        exchange = self.exchange()
        for event in events:
            observe_in(AGENT, event.message.topic)
            try:
                decision = serde.decode(event.message.value, expected="RiskDecision")
            except SerdeError as exc:
                await ctx.dead_letter(unit, event, AGENT, exc)
                continue
            try:
                execution = exchange.fill(decision)
            except ExecutionError as exc:
                metrics.EXECUTION_ERRORS.inc()
                await ctx.dead_letter(unit, event, AGENT, exc)
                continue
            if execution is None:
                continue
            await unit.send(
                executions_topic,
                str(execution["coin"]).encode(),
                serde.encode("Execution", execution),
            )
            metrics.EXECUTIONS.labels(action=execution["action"]).inc()
            now = wall_clock()
            metrics.observe_latency("tick_to_execution", int(decision["ts"]), now)
            metrics.observe_since("decision_to_execution", event.message.timestamp, now)
        await unit.delivered()
        last = events[-1]
        table = self.table
        await store_window(unit, table, FILLED_PREFIX, exchange.take_filled_changes(), last)
        key, row = exchange_row(exchange)
        await unit.write(table, key, row, last)
