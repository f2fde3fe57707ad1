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
from huracan.domain.universe import Universe
from huracan.universe_config import load_universe


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
    return RiskSequencer(controller)


def exit_rules(cfg: HuracanConfig) -> ExitRules:
    return ExitRules()


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
        universe=frozenset(sectors),
    )
