"""replay_via_kafka's input checks, error messages and worker environment (no services)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from huracan.backtest.errors import EmptyBacktest, InvalidBacktestInput, KafkaReplayError
from huracan.backtest.kafka_replay import _decision_order, _worker_environment, replay_via_kafka
from huracan.config import build_config, load_config
from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator

T0 = 1_767_225_600_000_000


def _ticks(n: int = 5) -> list[dict[str, Any]]:
    return list(MarketSimulator(universe(2), seed=1, start_ts_us=T0, rate=10).ticks(n))


def test_replay_via_kafka_when_no_ticks_then_empty_backtest() -> None:
    with pytest.raises(EmptyBacktest, match="no ticks"):
        replay_via_kafka(build_config({}, environ={}), [])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"coin": None}, r"tick #3 has no coin"),
        ({"ts": "2026-01-01"}, r"tick #3 \(\w+\) has no integer ts"),
        ({"bid": "not a price"}, r"not a valid MarketTick"),
    ],
)
def test_replay_via_kafka_when_a_tick_is_unusable_then_invalid_input_naming_it(
    change: dict[str, Any], message: str
) -> None:
    ticks = _ticks()
    ticks[3] = {**ticks[3], **change}
    with pytest.raises(InvalidBacktestInput, match=message):
        replay_via_kafka(build_config({}, environ={}), ticks)


def test_replay_via_kafka_when_broker_unreachable_then_error_names_the_address() -> None:
    cfg = build_config({"kafka": {"bootstrap_servers": "127.0.0.1:1"}}, environ={})
    with pytest.raises(KafkaReplayError, match=r"Kafka at 127\.0\.0\.1:1 is not reachable"):
        replay_via_kafka(cfg, _ticks())


def test_decision_order_when_executions_shuffled_then_in_the_order_of_their_decisions() -> None:
    decisions = [{"request_id": r} for r in ("r2", "r9", "r1")]
    executions = [
        {"request_id": "r1", "ts": 1, "execution_id": "e1"},
        {"request_id": "r2", "ts": 9, "execution_id": "e2"},
        {"request_id": "zz", "ts": 0, "execution_id": "e0"},
        {"request_id": "r9", "ts": 5, "execution_id": "e9"},
    ]
    ordered = _decision_order(decisions, executions)
    assert [e["execution_id"] for e in ordered] == ["e2", "e9", "e1", "e0"]


def test_worker_environment_when_env_overrides_differ_then_pinned_to_the_replay_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # arrange: this process's environment says 150, the replay config says 120
    monkeypatch.setenv("HURACAN__engine__risk__global_max_exposure_pct", "150")
    monkeypatch.setenv("HURACAN__faust__web_port", "1")  # the launcher's, never pinned
    cfg = build_config(
        {"engine": {"risk": {"global_max_exposure_pct": 120.0}},
         "postgres": {"dsn": "postgresql://u:s3cret@db/x"}},
        environ={},
    )  # fmt: skip

    # act
    env = _worker_environment(cfg, tmp_path)

    # assert: the worker loads exactly cfg, even with this process's environment applied
    loaded = load_config(env["HURACAN_CONFIG"], environ={**os.environ, **env})
    assert loaded.engine.risk.global_max_exposure_pct == 120.0
    assert loaded == cfg.model_copy(update={"faust": loaded.faust})
    assert "HURACAN__faust__web_port" not in env
    path = Path(env["HURACAN_CONFIG"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the database password
    assert yaml.safe_load(path.read_text())["postgres"]["dsn"] == "postgresql://u:s3cret@db/x"
