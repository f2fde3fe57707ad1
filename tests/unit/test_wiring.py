"""The core built from config (huracan.wiring): exits, paper exchange and costs read their YAML
sections, and the defaults equal the classes' own, so a part built without config (the live
execution agent's ``PaperExchange()``) prices fills exactly as the in-process engine."""

from __future__ import annotations

import pytest

from huracan import wiring
from huracan.config import HuracanConfig, build_config
from huracan.domain.execution import ExitRules, PaperExchangeParams
from huracan.wiring import build_engine, exit_rules


def _decision() -> dict[str, object]:
    return {
        "event_id": "dec:r1",
        "request_id": "r1",
        "trade_id": "trd:r1",
        "coin": "BTC",
        "exchange": "binance",
        "sector": "L1",
        "direction": "LONG",
        "intent": "OPEN",
        "ts": 1_000_000,
        "decision": "APPROVE",
        "approved_size_usd": 10_000.0,
        "bid": 100.0,
        "ask": 100.1,
    }


def test_exit_rules_when_configured_then_built_from_the_exits_section() -> None:
    cfg = build_config(
        {"engine": {"exits": {"take_profit_bps": 45, "stop_loss_bps": 35,
                              "max_holding_seconds": 90, "close_on_reversal": False}}},
        environ={},
    )  # fmt: skip

    rules = exit_rules(cfg)

    assert rules == ExitRules(
        take_profit_bps=45.0, stop_loss_bps=35.0, max_holding_us=90_000_000, close_on_reversal=False
    )


def test_exit_rules_and_paper_exchange_when_default_config_then_equal_the_class_defaults() -> None:
    cfg = HuracanConfig()

    assert exit_rules(cfg) == ExitRules()
    assert wiring.paper_exchange_params(cfg) == PaperExchangeParams()


def test_build_engine_when_fee_update_folded_then_paper_fills_pay_the_updated_taker_fee() -> None:
    engine = build_engine(HuracanConfig())
    engine.on_cost_update(
        {"coin": "BTC", "kind": "FEES", "maker_bps": 1.0, "taker_bps": 12.0, "ts": 0}
    )

    fill = engine.exchange.fill(_decision())

    assert fill is not None
    assert fill["fees_usd"] == pytest.approx(10_000.0 * 12.0 / 1e4)  # main: always 5 bps


def test_build_engine_when_paper_exchange_configured_then_fills_use_its_depth_and_latency() -> None:
    cfg = build_config(
        {"engine": {"paper_exchange": {"latency_ms": 2, "quoted_size_usd": 5_000,
                                       "impact_bps": 4}}},
        environ={},
    )  # fmt: skip
    engine = build_engine(cfg)

    fill = engine.exchange.fill(_decision())

    assert fill is not None
    assert fill["ts"] == 1_002_000
    assert fill["price"] == pytest.approx(100.1 * (1 + 4.0 / 1e4))  # 10k = 1 quoted size beyond


def test_build_engine_when_default_taker_fee_changed_then_paper_fills_pay_it() -> None:
    # what a what-if run with another fee does: the change must reach the fills' fees
    cfg = build_config({"engine": {"cost_model": {"default_taker_fee_bps": 9.0}}}, environ={})

    fill = build_engine(cfg).exchange.fill(_decision())

    assert fill is not None
    assert fill["fees_usd"] == pytest.approx(10_000.0 * 9.0 / 1e4)  # main: 5 bps
