"""The engine's Faust pipeline: its topics, tables and three agents, wired on one app.

Topology (topics from :mod:`huracan.streams.topics`; every value is Avro through our serde, so
Faust sees raw bytes)::

    market-data ─┐
                 ├──► coin ──► features, signals (facts, for consumers and replays)
    cost-updates ┘   (coin-state table: features, cost book, open trades per coin)
                       │
                       └──► trade-requests: OPEN (passed the cost check) and CLOSE (exits),
                            then a Watermark per market-data partition after each batch
                                   │
                       control ──► sequencer (risk-state table, one partition): decides the
                                   │          requests in event-time order (RiskDesk)
                                   ▼
                            risk-decisions ──► execution ──► executions
                                              (exchange-state table)

One module per agent: :mod:`huracan.agents.coin_agent`, :mod:`huracan.agents.sequencer_agent`,
:mod:`huracan.agents.execution_agent`; what they share (units of work, dead letters, topic and
table declarations) is :mod:`huracan.agents.shared`, the tables' row layout
:mod:`huracan.agents.rows`.

Promises:

* **Live equals backtest.** The coin agent runs :func:`huracan.domain.engine.process_tick` and
  the sequencer a :class:`~huracan.domain.risk_desk.RiskDesk`, the code the in-process engine
  runs; requests are decided in ``(ts, coin, CLOSE before OPEN, request_id)`` order once every
  market-data partition's watermark has passed them, so a backtest over the same ticks makes
  the same decisions and executions, byte for byte.
* **At least once, nothing lost** (``faust.processing_guarantee: at_least_once``): a batch is
  acknowledged only after its outputs and then its changed table rows are on the broker; a
  crash replays it from the old state, and derived ids make the second delivery harmless.
* **Exactly once** (``exactly_once``): each batch and source partition is one Kafka transaction
  of its task's producer (:mod:`huracan.agents.transactions`).
* **Bad input** goes to the dead-letter topic with its original bytes and a reason, and the
  agent goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import StreamT

from huracan.agents.coin_agent import CoinAgent
from huracan.agents.execution_agent import ExecutionAgent
from huracan.agents.rows import (
    EXCHANGE_KEY,
    FILLED_PREFIX,
    HELD_PREFIX,
    RISK_KEY,
    SEEN_PREFIX,
    STATE_ROW_MAX_BYTES,
    CoinState,
)
from huracan.agents.sequencer_agent import SequencerAgent
from huracan.agents.shared import (
    AgentContext,
    check_partitions,
    declare_tables,
    declare_topics,
    raw_topic,
)
from huracan.config import HuracanConfig
from huracan.domain.features import FeatureParams
from huracan.domain.signals import SignalModel
from huracan.streams.serde import Serde, make_serde
from huracan.wiring import coin_sectors, cost_settings, exit_rules, new_sequencer

__all__ = [
    "EXCHANGE_KEY",
    "FILLED_PREFIX",
    "HELD_PREFIX",
    "RISK_KEY",
    "SEEN_PREFIX",
    "STATE_ROW_MAX_BYTES",
    "CoinState",
    "Pipeline",
    "build_pipeline",
]


@dataclass
class Pipeline:
    """The agents, topics and tables of one app; built by :func:`build_pipeline`."""

    app: faust.App
    config: HuracanConfig
    serde: Serde
    topics: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    agents: dict[str, Any] = field(default_factory=dict)
    #: live state owned by single-writer agents (``"desk"``, ``"sequencer"``, ``"exchange"``),
    #: read by views
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

    ``models`` maps a coin to its active model (``None``: the baseline). ``wall_clock`` is used
    for latency metrics, dead-letter timestamps and the sequencer's stall release, never for a
    decision's content. Raises :class:`~huracan.config.ConfigError` when the partition counts
    do not fit the topology.
    """
    partitions = check_partitions(cfg)
    serde = make_serde(cfg)
    pipe = Pipeline(app, cfg, serde)
    pipe.topics, names = declare_topics(app, cfg)
    pipe.tables = declare_tables(app, partitions)

    # the task (agent) whose transactional producer commits a source partition's offsets
    # (huracan.agents.transactions); co-partitioned sources of one agent share its tasks
    app.huracan_task_topics = {  # type: ignore[attr-defined]
        names.ticks: "coin",
        names.costs: "coin",
        names.requests: "sequencer",
        names.control: "sequencer",
        names.decisions: "execution",
    }
    ctx = AgentContext(app, cfg, serde, names, wall_clock)
    coin = CoinAgent(
        ctx,
        pipe.tables["coin-state"],
        cost_settings=cost_settings(cfg),
        exit_rules=exit_rules(cfg),
        sectors=coin_sectors(cfg),
        models=models,
        feature_params=FeatureParams(),
    )
    coin.attach(app)
    sequencer = SequencerAgent(
        ctx,
        pipe.tables["risk-state"],
        pipe.state,
        pipe.topics["TradeRequest"],
        new_sequencer=lambda: new_sequencer(cfg),
        partitions=partitions,
    )
    sequencer_sources = raw_topic(app, names.requests, names.control)
    sequencer.attach(app)
    execution = ExecutionAgent(ctx, pipe.tables["exchange-state"], pipe.state)

    # plain coroutine functions for Faust's agent decorator, each over its agent object
    async def coin_agent(stream: StreamT[bytes]) -> None:
        await coin.run(stream)

    async def sequencer_agent(stream: StreamT[bytes]) -> None:
        await sequencer.run(stream)

    async def execution_agent(stream: StreamT[bytes]) -> None:
        await execution.run(stream)

    coin_sources = raw_topic(app, names.ticks, names.costs)
    pipe.agents = {
        "coin": app.agent(coin_sources, name="huracan.coin")(coin_agent),
        "sequencer": app.agent(sequencer_sources, name="huracan.sequencer")(sequencer_agent),
        "execution": app.agent(pipe.topics["RiskDecision"], name="huracan.execution")(
            execution_agent
        ),
    }
    return pipe
