"""The gauges huracan.observability.metrics sets from the risk summary and the model loader."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from huracan.domain.risk import RiskLimits
from huracan.observability import metrics


def sample(metric: str, /, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


def summary(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "equity_usd": 1_000_000.0,
        "drawdown_pct": 1.5,
        "global": {"total_exposure_pct": 50.0},
        "per_sector": {"L1": {"exposure_pct": 30.0}, "Meme": {"exposure_pct": 20.0}},
        "per_exchange": {"binance": {"exposure_pct": 50.0}},
        "utilization_pct": {"global": 25.0, "max_sector": 50.0},
        "active_trades": 3,
        "in_flight_trades": 1,
        "breakers": {
            "kill_switch": {"tripped": True, "reason": "drill", "tripped_at": 1.0},
            "drawdown": {"tripped": False, "reason": "", "tripped_at": None},
        },
    }
    base.update(changes)
    return base


def test_update_risk_state_when_sequencer_here_then_breakers_limits_equity_and_trades_set() -> None:
    limits = RiskLimits(per_sector_max_exposure_pct=60.0, soft_throttle_threshold_pct=75.0)

    metrics.update_risk_state(summary(), limits.to_dict())

    assert sample("huracan_risk_sequencer_owned") == 1
    assert sample("huracan_breaker_tripped", breaker="kill_switch") == 1
    assert sample("huracan_breaker_tripped", breaker="drawdown") == 0
    assert sample("huracan_exposure_limit_pct", scope="sector", kind="hard") == 60.0
    assert sample("huracan_exposure_limit_pct", scope="sector", kind="soft") == 45.0
    assert sample("huracan_soft_throttle_threshold_pct") == 75.0
    assert sample("huracan_equity_usd") == 1_000_000.0
    assert sample("huracan_drawdown_pct") == 1.5
    assert sample("huracan_trades", state="in_flight") == 1
    assert sample("huracan_exposure_pct", scope="sector", name="Meme") == 20.0


def test_update_risk_state_when_sequencer_elsewhere_then_only_ownership_is_zero() -> None:
    metrics.update_risk_state(None, {})

    assert sample("huracan_risk_sequencer_owned") == 0


def test_update_exposure_when_a_bucket_empties_then_its_series_falls_to_zero() -> None:
    metrics.update_exposure(summary())

    metrics.update_exposure(summary(per_sector={"L1": {"exposure_pct": 10.0}}))

    assert sample("huracan_exposure_pct", scope="sector", name="L1") == 10.0
    assert sample("huracan_exposure_pct", scope="sector", name="Meme") == 0.0


def test_update_models_when_a_model_refused_and_refresh_failed_then_gauges_say_so() -> None:
    metrics.update_models(
        {"models_loaded": 4, "load_errors": {"BTC": "sha256 mismatch"}, "last_refresh_ok": False,
         "failures": 2}
    )  # fmt: skip

    assert sample("huracan_models_loaded") == 4
    assert sample("huracan_models_refused") == 1
    assert sample("huracan_model_refresh_ok") == 0
    assert sample("huracan_model_refresh_failures") == 2

    metrics.update_models({"models_loaded": 0, "load_errors": {}, "last_refresh_ok": None})

    assert sample("huracan_model_refresh_ok") == -1
    assert sample("huracan_models_refused") == 0


def test_set_worker_info_when_set_then_labels_carry_app_id_and_topic_prefix() -> None:
    metrics.set_worker_info("huracan-x", "px")

    assert sample("huracan_worker_info", app_id="huracan-x", topic_prefix="px") == 1
