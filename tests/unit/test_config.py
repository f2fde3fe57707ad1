from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from huracan.config import DEFAULT_CONFIG_PATH, ConfigError, build_config, load_config


def test_load_config_when_base_yaml_then_holds_the_spec_example_values() -> None:
    cfg = load_config(DEFAULT_CONFIG_PATH, environ={})

    assert cfg.engine.max_coins == 400
    assert cfg.engine.max_concurrent_trades == 500
    assert cfg.engine.active_coins == 20
    assert cfg.engine.coins_per_event_loop == 50
    assert cfg.engine.message_bus.type == "redis_streams"
    assert cfg.engine.message_bus.stream_prefix == "huracan"
    assert cfg.engine.risk.global_max_exposure_pct == 200.0
    assert cfg.engine.risk.soft_throttle_threshold_pct == 80.0
    assert cfg.engine.cost_model.min_edge_after_cost_bps == 5.0
    assert cfg.engine.cost_model.update_interval_seconds == 60


def test_config_when_subscripted_like_the_spec_then_reads_as_mappings() -> None:
    config = load_config(DEFAULT_CONFIG_PATH, environ={})

    risk = dict(**config["engine"]["risk"])

    assert risk["per_coin_max_exposure_pct"] == 40.0
    assert config["engine"]["cost_model"]["update_interval_seconds"] == 60
    assert set(config["engine"]["message_bus"].keys()) >= {"type", "host", "port"}
    with pytest.raises(KeyError):
        config["engine"]["nope"]


def test_base_yaml_when_compared_with_model_defaults_then_every_key_agrees() -> None:
    """base.yaml documents the defaults; the two must not drift apart."""
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    from_yaml = build_config(data, environ={}).model_dump(mode="json")
    defaults = build_config({}, environ={}).model_dump(mode="json")

    assert from_yaml.keys() == defaults.keys()
    # the one deliberate difference: base.yaml points the registry at the launcher's database,
    # while the model's default (no metadata_db) is the file store
    assert from_yaml["engine"]["model_registry"].pop("metadata_db") == "**********"
    assert defaults["engine"]["model_registry"].pop("metadata_db") is None
    for section in ("engine", "kafka", "faust", "research"):
        assert from_yaml[section] == defaults[section], section


def test_env_override_when_nested_key_set_then_value_parsed_and_applied() -> None:
    env = {
        "HURACAN__engine__risk__global_max_exposure_pct": "150",
        "HURACAN__kafka__partitions__market_data": "24",
        "HURACAN__faust__processing_guarantee": "at_least_once",
    }

    cfg = build_config({}, environ=env)

    assert cfg.engine.risk.global_max_exposure_pct == 150.0
    assert cfg.kafka.partitions.market_data == 24
    assert cfg.faust.processing_guarantee == "at_least_once"


def test_service_env_vars_when_set_then_override_addresses() -> None:
    env = {
        "HURACAN_KAFKA_BOOTSTRAP": "127.0.0.1:19092",
        "HURACAN_REDIS_URL": "redis://127.0.0.1:16379/1",
        "HURACAN_POSTGRES_DSN": "postgresql://u:secret@127.0.0.1:15432/x",
    }

    cfg = build_config({}, environ=env)

    assert cfg.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert cfg.redis.url.get_secret_value() == "redis://127.0.0.1:16379/1"
    assert cfg.postgres.dsn.get_secret_value().endswith("@127.0.0.1:15432/x")


def test_build_config_when_value_invalid_then_error_names_the_dotted_key() -> None:
    with pytest.raises(ConfigError) as err:
        build_config({"engine": {"risk": {"per_coin_max_exposure_pct": "lots"}}}, environ={})

    assert "engine.risk.per_coin_max_exposure_pct" in str(err.value)


def test_build_config_when_key_unknown_then_error_names_it() -> None:
    with pytest.raises(ConfigError) as err:
        build_config({"engine": {"risk": {"global_max_exposure": 10}}}, environ={})

    assert "engine.risk.global_max_exposure" in str(err.value)


def test_build_config_when_env_override_invalid_then_error_names_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        build_config({}, environ={"HURACAN__engine__max_coins": "-3"})

    assert "engine.max_coins" in str(err.value)


def test_build_config_when_active_coins_exceed_max_then_rejected() -> None:
    with pytest.raises(ConfigError) as err:
        build_config({"engine": {"max_coins": 10, "active_coins": 20}}, environ={})

    assert "engine.active_coins" in str(err.value)


def test_load_config_when_file_missing_or_not_yaml_then_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("engine: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, environ={})
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar, environ={})


def test_secrets_when_config_dumped_or_printed_then_passwords_hidden() -> None:
    env = {"HURACAN_POSTGRES_DSN": "postgresql://u:hunter2@127.0.0.1:5432/x"}

    cfg = build_config(
        {"engine": {"model_registry": {"metadata_db": "postgresql://u:hunter2@h/db"}}},
        environ=env,
    )

    assert "hunter2" not in repr(cfg)
    assert "hunter2" not in str(cfg.redacted())
    assert cfg.redacted()["postgres"]["dsn"] == "**********"
    assert cfg.postgres.dsn.get_secret_value().startswith("postgresql://u:hunter2@")


def test_config_when_frozen_then_cannot_be_mutated() -> None:
    cfg = build_config({}, environ={})

    with pytest.raises(ValueError, match="frozen"):
        cfg.engine.risk.global_max_exposure_pct = 1.0  # type: ignore[misc]


def test_build_config_when_exactly_once_then_accepted_on_the_memory_store_only() -> None:
    cfg = build_config({"faust": {"processing_guarantee": "exactly_once"}}, environ={})
    assert cfg.faust.processing_guarantee == "exactly_once"
    with pytest.raises(ConfigError) as err:
        build_config(
            {"faust": {"processing_guarantee": "exactly_once", "store": "rocksdb://"}},
            environ={},
        )
    assert "faust.store" in str(err.value)
    assert "memory store" in str(err.value)


def test_build_config_when_stall_not_above_idle_then_error_names_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        build_config({"faust": {"order_idle_ms": 5_000, "order_stall_ms": 5_000}})
    assert "faust.order_stall_ms" in str(err.value)
    cfg = build_config({"faust": {"order_idle_ms": 100}})
    assert cfg.faust.order_stall_ms == 30_000
