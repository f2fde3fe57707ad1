"""The Kafka client factory (huracan.streams.clients): settings from the config, overrides,
security passed through, secrets never printed. No broker needed: clients built by fakes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from huracan.cli import app as cli_app
from huracan.config import ConfigError, HuracanConfig, build_config
from huracan.streams import clients

SASL = {
    "kafka": {
        "bootstrap_servers": "broker-1:9093,broker-2:9093",
        "client_id_prefix": "desk7",
        "security": {
            "protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "trader",
            "sasl_password": "hunter2-kafka",
            "ssl_ca_location": "/etc/kafka/ca.pem",
        },
    }
}


def _cfg(data: dict[str, Any] | None = None) -> HuracanConfig:
    return build_config(data or {}, environ={})


class _Recorder:
    """A client factory that records the config dict it was given."""

    def __init__(self) -> None:
        self.confs: list[dict[str, Any]] = []

    def __call__(self, conf: dict[str, Any]) -> dict[str, Any]:
        self.confs.append(conf)
        return conf


def test_producer_config_when_defaults_then_idempotent_plaintext_with_prefixed_client_id() -> None:
    conf = clients.producer_config(_cfg(), "publisher")

    assert conf == {
        "bootstrap.servers": "127.0.0.1:9092",
        "client.id": "huracan-publisher",
        "enable.idempotence": True,
        "acks": "all",
    }


def test_consumer_config_when_defaults_then_read_committed_without_auto_commit() -> None:
    conf = clients.consumer_config(_cfg(), "reader", group_id="g1")

    assert conf["group.id"] == "g1"
    assert conf["isolation.level"] == "read_committed"
    assert conf["enable.auto.commit"] is False
    assert not any(k.startswith(("security.", "sasl.", "ssl.")) for k in conf)


def test_make_clients_when_sasl_ssl_configured_then_every_client_gets_the_security_keys() -> None:
    cfg = _cfg(SASL)
    made = _Recorder()

    clients.make_producer(cfg, "p", factory=made)
    clients.make_consumer(cfg, "c", group_id="g", factory=made)
    clients.make_admin(cfg, "a", factory=made)

    for conf in made.confs:
        assert conf["bootstrap.servers"] == "broker-1:9093,broker-2:9093"
        assert conf["security.protocol"] == "SASL_SSL"
        assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
        assert conf["sasl.username"] == "trader"
        assert conf["sasl.password"] == "hunter2-kafka"
        assert conf["ssl.ca.location"] == "/etc/kafka/ca.pem"
    assert [c["client.id"] for c in made.confs] == ["desk7-p", "desk7-c", "desk7-a"]


def test_make_consumer_when_overrides_given_then_they_win_over_the_defaults() -> None:
    made = _Recorder()

    clients.make_consumer(
        _cfg(),
        "archiver",
        group_id="g",
        isolation="read_uncommitted",
        bootstrap_servers="other:9092",
        overrides={"enable.auto.commit": True, "enable.partition.eof": True},
        factory=made,
    )

    [conf] = made.confs
    assert conf["bootstrap.servers"] == "other:9092"
    assert conf["isolation.level"] == "read_uncommitted"
    assert conf["enable.auto.commit"] is True
    assert conf["enable.partition.eof"] is True


def test_producer_config_when_not_idempotent_then_no_idempotence_keys() -> None:
    conf = clients.producer_config(_cfg(), "p", idempotent=False)

    assert "enable.idempotence" not in conf
    assert "acks" not in conf


def test_security_config_when_ssl_with_client_certificate_then_cert_key_and_password_passed() -> (
    None
):
    cfg = _cfg(
        {
            "kafka": {
                "security": {
                    "protocol": "SSL",
                    "ssl_ca_location": "/ca.pem",
                    "ssl_certificate_location": "/client.pem",
                    "ssl_key_location": "/client.key",
                    "ssl_key_password": "k3y-pw",
                }
            }
        }
    )

    assert clients.security_config(cfg) == {
        "security.protocol": "SSL",
        "ssl.ca.location": "/ca.pem",
        "ssl.certificate.location": "/client.pem",
        "ssl.key.location": "/client.key",
        "ssl.key.password": "k3y-pw",
    }


def test_aiokafka_options_when_sasl_plaintext_then_sasl_keywords_and_no_ssl_context() -> None:
    cfg = _cfg(
        {
            "kafka": {
                "security": {
                    "protocol": "SASL_PLAINTEXT",
                    "sasl_mechanism": "PLAIN",
                    "sasl_username": "u",
                    "sasl_password": "p4ss",
                }
            }
        }
    )

    producer = clients.aiokafka_producer_options(cfg, "bus", overrides={"linger_ms": 1})
    consumer = clients.aiokafka_consumer_options(
        cfg, "bus-x", group_id="g", isolation="read_committed"
    )

    for opts in (producer, consumer):
        assert opts["security_protocol"] == "SASL_PLAINTEXT"
        assert opts["sasl_mechanism"] == "PLAIN"
        assert opts["sasl_plain_username"] == "u"
        assert opts["sasl_plain_password"] == "p4ss"
        assert "ssl_context" not in opts
    assert producer["enable_idempotence"] is True
    assert producer["linger_ms"] == 1
    assert consumer["isolation_level"] == "read_committed"
    assert consumer["enable_auto_commit"] is False


def test_aiokafka_options_when_plaintext_then_no_security_keywords() -> None:
    opts = clients.aiokafka_consumer_options(_cfg(), "bus-x", group_id="g")

    assert not any(k.startswith(("security", "sasl", "ssl")) for k in opts)
    assert "isolation_level" not in opts  # aiokafka's own default unless asked


def test_faust_broker_credentials_when_plaintext_then_none_and_when_sasl_then_credentials() -> None:
    import faust

    assert clients.faust_broker_credentials(_cfg()) is None
    creds = clients.faust_broker_credentials(
        _cfg(
            {
                "kafka": {
                    "security": {
                        "protocol": "SASL_PLAINTEXT",
                        "sasl_mechanism": "PLAIN",
                        "sasl_username": "u",
                        "sasl_password": "p",
                    }
                }
            }
        )
    )
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.username == "u"


def test_isolation_level_when_processing_guarantee_varies_then_follows_it() -> None:
    eo = _cfg({"faust": {"processing_guarantee": "exactly_once"}})
    alo = _cfg({"faust": {"processing_guarantee": "at_least_once", "store": "memory://"}})

    assert clients.isolation_level(eo) == "read_committed"
    assert clients.isolation_level(alo) == "read_uncommitted"


@pytest.mark.parametrize(
    ("security", "missing"),
    [
        ({"protocol": "SASL_SSL"}, "sasl_mechanism"),
        (
            {"protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
            "sasl_password",
        ),
        ({"protocol": "SSL", "ssl_certificate_location": "/c.pem"}, "ssl_key_location"),
    ],
)
def test_build_config_when_security_incomplete_then_error_names_kafka_security(
    security: dict[str, Any], missing: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _cfg({"kafka": {"security": security}})

    assert "kafka.security" in str(err.value)
    assert missing in str(err.value)


def test_config_show_when_kafka_passwords_set_then_redacted(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(SASL | {"kafka": {**SASL["kafka"]}}), encoding="utf-8")
    env = {"HURACAN__kafka__security__ssl_key_password": "key-secret-9"}

    result = CliRunner().invoke(cli_app, ["config", "show", "--config", str(path)], env=env)

    assert result.exit_code == 0, result.output
    assert "hunter2-kafka" not in result.output
    assert "key-secret-9" not in result.output
    shown = json.loads(result.output)["kafka"]["security"]
    assert shown["sasl_password"] == "**********"
    assert shown["ssl_key_password"] == "**********"
    assert shown["sasl_username"] == "trader"
