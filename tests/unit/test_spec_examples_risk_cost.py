"""The spec's usage examples for the Global Risk Controller and the Real-Time Cost Model, run
as written (scalable-architecture-guide.md, components 3 and 4, and the integration example's
risk/cost lines).

Changed from the spec: only the import lines (``src.cloud.training…`` -> the defining modules;
the risk example uses ``RiskDecision`` without importing it, so the import line names it), and
the integration fragment's undefined helpers (``signal``, ``execute_trade``) are stubbed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from huracan.components.cost_model import RealTimeCostModel
from huracan.config import DEFAULT_CONFIG_PATH, load_config
from huracan.domain.risk import (
    GlobalRiskController,
    RiskDecision,
    RiskLimits,
    TradeRequest,
)
from huracan.domain.universe import get_sector


def test_spec_risk_example_when_run_as_written_then_approves_and_reports(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # --- the spec's example, as written ----------------------------------------------------
    # Create risk controller
    limits = RiskLimits(
        global_max_exposure_pct=200.0,
        per_coin_max_exposure_pct=40.0,
        per_sector_max_exposure_pct=60.0,
        per_exchange_max_exposure_pct=150.0,
        soft_throttle_threshold_pct=80.0,
        max_concurrent_trades=500,
        max_active_trades=100,
    )
    risk_controller = GlobalRiskController(limits)

    # Set coin sectors
    risk_controller.set_coin_sector("BTC", "L1")
    risk_controller.set_coin_sector("ETH", "L1")
    risk_controller.set_coin_sector("UNI", "DeFi")

    # Check trade
    trade = TradeRequest(
        coin="BTC",
        direction="long",
        size_usd=1000.0,
        exchange="binance",
        sector="L1",
    )
    result = risk_controller.check_trade(trade)

    if result.decision == RiskDecision.APPROVE:
        # Register trade
        risk_controller.register_trade("trade_123", trade)
        print("Trade approved")
    elif result.decision == RiskDecision.THROTTLE:
        print("Trade throttled")
    elif result.decision == RiskDecision.BLOCK:
        print(f"Trade blocked: {result.reason}")

    # Get exposure summary
    summary = risk_controller.get_exposure_summary()
    print(f"Global exposure: {summary['global']['total_exposure_pct']}%")
    print(f"Active trades: {summary['active_trades']}")
    # --- end of the spec's example ---------------------------------------------------------

    out = capsys.readouterr().out.splitlines()
    assert out == ["Trade approved", "Global exposure: 0.1%", "Active trades: 1"]


async def test_spec_cost_example_when_run_as_written_then_prints_edges_and_ranking(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # --- the spec's example, as written ----------------------------------------------------
    # Create cost model
    cost_model = RealTimeCostModel(
        update_interval_seconds=60,
        min_edge_after_cost_bps=5.0,
        default_maker_fee_bps=2.0,
        default_taker_fee_bps=5.0,
    )

    # Start cost model
    await cost_model.start()

    # Update costs
    cost_model.update_spread("BTC", bid=50000.0, ask=50010.0)
    cost_model.update_fees("BTC", maker_bps=2.0, taker_bps=5.0)
    cost_model.update_funding_rate("BTC", funding_rate_bps=10.0)

    # Calculate edge after cost
    edge_bps = 20.0  # 20 bps edge before cost
    edge_after_cost = cost_model.calculate_edge_after_cost(
        symbol="BTC",
        edge_bps=edge_bps,
        use_maker=True,
        include_funding=True,
    )
    print(f"Edge after cost: {edge_after_cost} bps")

    # Check if should trade
    if cost_model.should_trade("BTC", edge_bps=20.0, use_maker=True):
        print("Trade passes cost threshold")
    else:
        print("Trade fails cost threshold")

    # Rank symbols by cost efficiency
    symbols = ["BTC", "ETH", "SOL"]
    edges = {"BTC": 20.0, "ETH": 15.0, "SOL": 25.0}
    rankings = cost_model.rank_symbols_by_cost_efficiency(
        symbols=symbols,
        edges_bps=edges,
        use_maker=True,
    )
    for ranking in rankings:
        print(f"{ranking.symbol}: efficiency={ranking.cost_efficiency:.2f}, rank={ranking.rank}")

    # Stop cost model
    await cost_model.stop()
    # --- end of the spec's example ---------------------------------------------------------

    out = capsys.readouterr().out.splitlines()
    # 20 bps - 2 legs x (0 spread + 2 bps maker fee) - 10 bps funding over the default
    # expected holding time (the exit rules' 5 minutes) of an 8 h interval = 15.896 bps
    assert out == [
        "Edge after cost: 15.895833333333332 bps",
        "Trade passes cost threshold",
        "BTC: efficiency=0.79, rank=1",
    ]
    assert not cost_model.running


@dataclass
class _Signal:
    edge_bps: float
    direction: str
    size_usd: float
    exchange: str


async def test_spec_integration_fragment_when_run_then_trade_is_checked_and_registered() -> None:
    config = load_config(DEFAULT_CONFIG_PATH, environ={})
    signal = _Signal(edge_bps=30.0, direction="long", size_usd=25_000.0, exchange="binance")
    executed: list[str] = []

    def execute_trade(trade: TradeRequest) -> str:
        executed.append(trade.coin)
        return f"trade-{len(executed)}"

    # --- the spec's integration example, risk and cost lines as written --------------------
    risk_controller = GlobalRiskController(RiskLimits(**config["engine"]["risk"]))

    cost_model = RealTimeCostModel(
        update_interval_seconds=config["engine"]["cost_model"]["update_interval_seconds"],
        min_edge_after_cost_bps=config["engine"]["cost_model"]["min_edge_after_cost_bps"],
    )
    await cost_model.start()
    coin = "ETH"
    cost_model.update_spread(coin, bid=3000.0, ask=3000.3)  # (a market-data update)

    # Check cost
    if cost_model.should_trade(coin, signal.edge_bps, use_maker=True):
        # Check risk
        trade = TradeRequest(
            coin=coin,
            direction=signal.direction,
            size_usd=signal.size_usd,
            exchange=signal.exchange,
            sector=get_sector(coin),
        )
        risk_result = risk_controller.check_trade(trade)

        if risk_result.decision == RiskDecision.APPROVE:
            # Execute trade
            trade_id = execute_trade(trade)
            risk_controller.register_trade(trade_id, trade)
    await cost_model.stop()
    # --- end -------------------------------------------------------------------------------

    assert executed == ["ETH"]
    summary = risk_controller.get_exposure_summary()
    assert summary["active_trades"] == 1
    assert summary["per_sector"]["L1"]["exposure_usd"] == pytest.approx(25_000.0)
