"""Building the domain core from config: shared by the Faust pipeline, replays and benchmarks.

Live and replay must make the same decisions, so both build their parts here from the same
config and never configure them on their own.
"""

from __future__ import annotations

from collections.abc import Callable

from huracan.config import HuracanConfig
from huracan.domain.costs import CostBook, CostSettings
from huracan.domain.engine import TradingEngine
from huracan.domain.execution import ExitRules, PaperExchange, PositionMonitor
from huracan.domain.risk import GlobalRiskController, RiskLimits
from huracan.domain.sequencer import RiskSequencer
from huracan.domain.signals import SignalModel
from huracan.domain.universe import universe


def cost_settings(cfg: HuracanConfig) -> CostSettings:
    c = cfg.engine.cost_model
    return CostSettings(
        min_edge_after_cost_bps=c.min_edge_after_cost_bps,
        default_maker_fee_bps=c.default_maker_fee_bps,
        default_taker_fee_bps=c.default_taker_fee_bps,
        stale_after_seconds=c.stale_after_seconds,
        expected_holding_hours=c.expected_holding_hours,
        funding_interval_hours=c.funding_interval_hours,
    )


def coin_sectors(cfg: HuracanConfig) -> dict[str, str]:
    return {c.symbol: c.sector for c in universe(cfg.engine.max_coins)}


def new_sequencer(cfg: HuracanConfig) -> RiskSequencer:
    controller = GlobalRiskController(
        RiskLimits(**cfg.engine.risk),
        equity_usd=cfg.engine.equity_usd,
        coin_sectors=coin_sectors(cfg),
    )
    return RiskSequencer(controller)


def exit_rules(cfg: HuracanConfig) -> ExitRules:
    e = cfg.engine.exits
    return ExitRules(
        take_profit_bps=e.take_profit_bps,
        stop_loss_bps=e.stop_loss_bps,
        max_holding_us=round(e.max_holding_seconds * 1_000_000),
        close_on_reversal=e.close_on_reversal,
    )


def build_engine(
    cfg: HuracanConfig, *, models: Callable[[str], SignalModel | None] | None = None
) -> TradingEngine:
    """The in-process engine, configured exactly as the Faust pipeline is.

    ``models`` maps a coin to its signal model, ``None`` meaning the baseline — the worker
    passes its :class:`huracan.models.RegistryModels`; a replay that must make the live
    decisions passes one refreshed from the same registry."""
    sectors = coin_sectors(cfg)
    return TradingEngine(
        sequencer=new_sequencer(cfg),
        costs=CostBook(cost_settings(cfg)),
        exchange=PaperExchange(),
        monitor=PositionMonitor(exit_rules(cfg)),
        sector_of=sectors.get,
        models=models,
    )
