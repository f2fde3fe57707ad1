from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rich.console import Console

from huracan.config import build_config
from huracan.demo import run_foundation_demo

HURACAN = str(Path(sys.executable).with_name("huracan"))


def test_foundation_demo_when_services_up_then_every_tick_read_back_intact(
    kafka_bootstrap: str, redis_url: str, postgres_dsn: str, unique_name
) -> None:
    cfg = build_config(
        {"kafka": {"topic_prefix": unique_name("demo")}, "engine": {"active_coins": 30}},
        environ={
            "HURACAN_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "HURACAN_REDIS_URL": redis_url,
            "HURACAN_POSTGRES_DSN": postgres_dsn,
        },
    )

    summary = run_foundation_demo(cfg, ticks=600, console=Console(quiet=True))

    assert summary.ok
    assert summary.produced == summary.read_back == 600
    assert summary.coins == 30
    assert summary.out_of_order == 0


def test_cli_when_config_key_invalid_then_exit_2_naming_the_key() -> None:
    result = subprocess.run(
        [HURACAN, "config", "show"],
        env={"HURACAN__engine__risk__per_coin_max_exposure_pct": "lots", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 2
    assert "engine.risk.per_coin_max_exposure_pct" in result.stderr


def test_cli_when_kafka_down_then_health_exits_1_and_reports_it() -> None:
    result = subprocess.run(
        [HURACAN, "health"],
        env={"HURACAN_KAFKA_BOOTSTRAP": "127.0.0.1:1", "PATH": "/usr/bin", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 1
    assert "DOWN" in result.stdout


def test_pipeline_demo_when_run_small_then_drains_summarises_and_cleans_up(
    kafka_bootstrap: str, redis_url: str, postgres_dsn: str, tmp_path
) -> None:
    from confluent_kafka.admin import AdminClient

    from huracan.demo import run_pipeline_demo

    cfg = build_config(
        {},
        environ={
            "HURACAN_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "HURACAN_REDIS_URL": redis_url,
            "HURACAN_POSTGRES_DSN": postgres_dsn,
        },
    )

    summary = run_pipeline_demo(
        cfg, coins=10, rate=500, duration=3, workdir=tmp_path, console=Console(quiet=True)
    )

    assert summary.ok
    assert summary.ticks == 1_500
    assert summary.counts["FeatureVector"] == 1_500
    assert summary.counts["RiskDecision"] == summary.counts["TradeRequest"]
    assert sum(summary.decisions.values()) == summary.counts["RiskDecision"]
    assert "tick_to_signal" in summary.latency_ms
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    assert summary.topic_prefix.startswith("demo-")
    assert not [t for t in topics if t.startswith(summary.topic_prefix + ".")]
