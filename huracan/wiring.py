"""Building the domain core from config: shared by the Faust pipeline, replays and benchmarks.

Live and replay must make the same decisions, so both build their parts here from the same
config and never configure them on their own.
"""

from __future__ import annotations

from collections.abc import Callable

from huracan.config import HuracanConfig
from huracan.domain.costs import CostBook, CostSettings
from huracan.domain.engine import TradingEngine
from huracan.domain.execution import (
    ExitRules,
    PaperExchange,
    PaperExchangeParams,
    PositionMonitor,
)
from huracan.domain.risk import GlobalRiskController, RiskLimits
from huracan.domain.sequencer import RiskSequencer
from huracan.domain.signals import SignalModel
from huracan.domain.universe import Universe
from huracan.universe_config import load_universe


def cost_settings(cfg: HuracanConfig) -> CostSettings:
    """The cost model's settings; funding is charged pro rata over
    ``engine.cost_model.expected_holding_hours``, or, when that is unset (the default), over
    the exit rules' time limit ``engine.exits.max_holding_seconds``."""
    c = cfg.engine.cost_model
    holding = c.expected_holding_hours
    if holding is None:
        holding = cfg.engine.exits.max_holding_seconds / 3600.0
    return CostSettings(
        min_edge_after_cost_bps=c.min_edge_after_cost_bps,
        default_maker_fee_bps=c.default_maker_fee_bps,
        default_taker_fee_bps=c.default_taker_fee_bps,
        stale_after_seconds=c.stale_after_seconds,
        expected_holding_hours=holding,
        funding_interval_hours=c.funding_interval_hours,
    )


def coin_universe(cfg: HuracanConfig) -> Universe:
    """The configured universe (``engine.universe``; today's table by default)."""
    return load_universe(cfg)


def coin_sectors(cfg: HuracanConfig) -> dict[str, str]:
    """symbol -> sector of every coin in the configured universe."""
    return coin_universe(cfg).sectors()


def new_sequencer(cfg: HuracanConfig) -> RiskSequencer:
    controller = GlobalRiskController(
        RiskLimits(**cfg.engine.risk),
        equity_usd=cfg.engine.equity_usd,
        coin_sectors=coin_sectors(cfg),
    )
    return RiskSequencer(controller, min_trade_usd=cfg.engine.risk.min_trade_usd)


def exit_rules(cfg: HuracanConfig) -> ExitRules:
    """The exit rules of ``engine.exits``."""
    x = cfg.engine.exits
    return ExitRules(
        take_profit_bps=x.take_profit_bps,
        stop_loss_bps=x.stop_loss_bps,
        max_holding_us=round(x.max_holding_seconds * 1_000_000),
        close_on_reversal=x.close_on_reversal,
    )


def paper_exchange_params(cfg: HuracanConfig) -> PaperExchangeParams:
    """The paper exchange's pricing from ``engine.paper_exchange``; its fallback taker fee (used
    only without a cost book) is ``engine.cost_model.default_taker_fee_bps``."""
    p = cfg.engine.paper_exchange
    return PaperExchangeParams(
        taker_fee_bps=cfg.engine.cost_model.default_taker_fee_bps,
        latency_us=round(p.latency_ms * 1_000),
        quoted_size_usd=p.quoted_size_usd,
        impact_bps=p.impact_bps,
    )


def paper_exchange(cfg: HuracanConfig, costs: CostBook | None = None) -> PaperExchange:
    """The paper exchange for ``cfg``, charging the taker fees of ``costs`` (the cost book
    that folds fee updates) when given."""
    return PaperExchange(paper_exchange_params(cfg), costs=costs)


def build_engine(
    cfg: HuracanConfig, *, models: Callable[[str], SignalModel | None] | None = None
) -> TradingEngine:
    """The in-process engine, configured exactly as the Faust pipeline is.

    ``models`` maps a coin to its signal model, ``None`` meaning the baseline — the worker
    passes its :class:`huracan.models.RegistryModels`; a replay that must make the live
    decisions passes one refreshed from the same registry."""
    sectors = coin_sectors(cfg)
    costs = CostBook(cost_settings(cfg))
    return TradingEngine(
        sequencer=new_sequencer(cfg),
        costs=costs,
        exchange=paper_exchange(cfg, costs),
        monitor=PositionMonitor(exit_rules(cfg)),
        sector_of=sectors.get,
        models=models,
        universe=frozenset(sectors),
    )
