"""Every Kafka client huracan opens is configured here, from the ``kafka`` config section.

Promises, for confluent-kafka (librdkafka) and aiokafka alike:

* every client gets ``kafka.bootstrap_servers`` (or the address its caller names) and the
  ``kafka.security`` settings: protocol, SASL mechanism, username and password, SSL CA,
  certificate and key. With the default ``PLAINTEXT`` no security key is set at all;
* every ``client.id`` is ``<kafka.client_id_prefix>-<role>``;
* producers are idempotent with ``acks=all`` unless the caller opts out;
* consumers read only committed records (``read_committed``) and never commit on their own
  (``enable.auto.commit`` false) unless the caller says otherwise; :func:`isolation_level`
  gives what a processing guarantee needs where a caller wants to follow it;
* a caller's ``overrides`` win over everything above (tuning such as ``linger.ms``).

The ``*_config`` functions return the dicts, the ``make_*`` functions the clients (a
``factory`` argument lets tests pass fakes that receive the dict). Nothing connects before a
client is built; this module opens no connection itself. Secrets leave the config only here,
as the values the clients need.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from huracan.config import HuracanConfig, KafkaConfig

if TYPE_CHECKING:
    import ssl

IsolationLevel = Literal["read_committed", "read_uncommitted"]
ClientFactory = Callable[[dict[str, Any]], Any]


def _kafka(config: HuracanConfig | KafkaConfig) -> KafkaConfig:
    return config.kafka if isinstance(config, HuracanConfig) else config


def client_id(config: HuracanConfig | KafkaConfig, role: str) -> str:
    """``<kafka.client_id_prefix>-<role>``, e.g. ``huracan-archiver-MarketTick``."""
    return f"{_kafka(config).client_id_prefix}-{role}"


def isolation_level(config: HuracanConfig) -> IsolationLevel:
    """``read_committed`` under ``exactly_once`` (aborted transactions stay invisible),
    ``read_uncommitted`` under ``at_least_once`` (nothing is written in transactions)."""
    if config.faust.processing_guarantee == "exactly_once":
        return "read_committed"
    return "read_uncommitted"


# --- librdkafka (confluent-kafka) -------------------------------------------------------------


def security_config(config: HuracanConfig | KafkaConfig) -> dict[str, Any]:
    """The librdkafka keys of ``kafka.security``; empty for the default ``PLAINTEXT``."""
    sec = _kafka(config).security
    out: dict[str, Any] = {}
    if sec.protocol != "PLAINTEXT":
        out["security.protocol"] = sec.protocol
    if sec.protocol.startswith("SASL_"):
        out["sasl.mechanism"] = sec.sasl_mechanism
        out["sasl.username"] = sec.sasl_username
        if sec.sasl_password is not None:
            out["sasl.password"] = sec.sasl_password.get_secret_value()
    if sec.protocol in ("SSL", "SASL_SSL"):
        if sec.ssl_ca_location:
            out["ssl.ca.location"] = sec.ssl_ca_location
        if sec.ssl_certificate_location:
            out["ssl.certificate.location"] = sec.ssl_certificate_location
        if sec.ssl_key_location:
            out["ssl.key.location"] = sec.ssl_key_location
        if sec.ssl_key_password is not None:
            out["ssl.key.password"] = sec.ssl_key_password.get_secret_value()
    return out


def base_config(
    config: HuracanConfig | KafkaConfig,
    role: str,
    *,
    bootstrap_servers: str | None = None,
) -> dict[str, Any]:
    """``bootstrap.servers``, ``client.id`` and the security keys every client shares."""
    return {
        "bootstrap.servers": bootstrap_servers or _kafka(config).bootstrap_servers,
        "client.id": client_id(config, role),
        **security_config(config),
    }


def producer_config(
    config: HuracanConfig | KafkaConfig,
    role: str,
    *,
    idempotent: bool = True,
    bootstrap_servers: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A librdkafka producer config: idempotent with ``acks=all`` unless ``idempotent=False``."""
    conf = base_config(config, role, bootstrap_servers=bootstrap_servers)
    if idempotent:
        conf.update({"enable.idempotence": True, "acks": "all"})
    conf.update(overrides or {})
    return conf


def consumer_config(
    config: HuracanConfig | KafkaConfig,
    role: str,
    *,
    group_id: str,
    isolation: IsolationLevel = "read_committed",
    bootstrap_servers: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A librdkafka consumer config: ``group_id``, ``isolation``, no auto-commit."""
    conf = base_config(config, role, bootstrap_servers=bootstrap_servers)
    conf.update({"group.id": group_id, "enable.auto.commit": False, "isolation.level": isolation})
    conf.update(overrides or {})
    return conf


def admin_config(
    config: HuracanConfig | KafkaConfig,
    role: str,
    *,
    bootstrap_servers: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A librdkafka admin client config."""
    conf = base_config(config, role, bootstrap_servers=bootstrap_servers)
    conf.update(overrides or {})
    return conf


def make_producer(
    config: HuracanConfig | KafkaConfig,
    role: str,
    *,
    idempotent: bool = True,
    bootstrap_servers: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    factory: ClientFactory | None = None,
) -> Any:
    """A ``confluent_kafka.Producer`` (or ``factory(conf)``) for :func:`producer_config`."""
    conf = producer_config(
        config,
        role,
        idempotent=idempotent,
        bootstrap_servers=bootstrap_servers,
        overrides=overrides,
    )
    if factory is None:
        from confluent_kafka import Producer

        factory = Producer
    return factory(conf)


def make_consumer(
    config: HuracanConfig | KafkaConfig,
    role: str,
    *,
    group_id: str,
    isolation: IsolationLevel = "read_committed",
    bootstrap_servers: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    factory: ClientFactory | None = None,
) -> Any:
    """A ``confluent_kafka.Consumer`` (or ``factory(conf)``) for :func:`consumer_config`."""
    conf = consumer_config(
        config,
        role,
        group_id=group_id,
        isolation=isolation,
        bootstrap_servers=bootstrap_servers,
        overrides=overrides,
    )
    if factory is None:
        from confluent_kafka import Consumer

        factory = Consumer
    return factory(conf)


def make_admin(
    config: HuracanConfig | KafkaConfig,
    role: str,
    *,
    bootstrap_servers: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    factory: ClientFactory | None = None,
) -> Any:
    """A ``confluent_kafka.admin.AdminClient`` (or ``factory(conf)``) for :func:`admin_config`."""
    conf = admin_config(config, role, bootstrap_servers=bootstrap_servers, overrides=overrides)
    if factory is None:
        from confluent_kafka.admin import AdminClient

        factory = AdminClient
    return factory(conf)


#: librdkafka settings of the agents' output producers (:func:`output_producer_config`): the
#: Java client's partitioner (murmur2 of the key, as aiokafka's and Faust's default partitioner:
#: a keyed record lands on the partition it always did), delivery reports only for failures
#: (the units wait with ``flush`` or ``commit_transaction``, not per record), a short linger
#: and a queue that holds a full backlog batch of every task
OUTPUT_PRODUCER_SETTINGS: dict[str, Any] = {
    "partitioner": "murmur2_random",
    "delivery.report.only.error": True,
    "linger.ms": 2,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "message.max.bytes": 16 * 1024 * 1024,
}


def output_producer_config(
    config: HuracanConfig | KafkaConfig,
    role: str,
    *,
    transactional_id: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The config of a pipeline agent's output producer: idempotent, ``acks=all``,
    :data:`OUTPUT_PRODUCER_SETTINGS`, and ``transactional.id`` when given (one per task under
    ``exactly_once``)."""
    extra: dict[str, Any] = dict(OUTPUT_PRODUCER_SETTINGS)
    if transactional_id is not None:
        extra["transactional.id"] = transactional_id
    extra.update(overrides or {})
    return producer_config(config, role, overrides=extra)


def make_output_producer(
    config: HuracanConfig | KafkaConfig,
    role: str,
    *,
    transactional_id: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    factory: ClientFactory | None = None,
) -> Any:
    """A ``confluent_kafka.Producer`` (or ``factory(conf)``) for :func:`output_producer_config`."""
    conf = output_producer_config(
        config, role, transactional_id=transactional_id, overrides=overrides
    )
    if factory is None:
        from confluent_kafka import Producer

        factory = Producer
    return factory(conf)


def _quiet_logger() -> logging.Logger:
    """A logger that drops librdkafka's own log lines (the caller reports failures through
    the errors the clients raise)."""
    log = logging.getLogger("huracan.kafka.quiet")
    if not log.handlers:
        log.addHandler(logging.NullHandler())
        log.propagate = False
    return log


def quiet_consumer(conf: dict[str, Any]) -> Any:
    """A consumer ``factory``: ``confluent_kafka.Consumer(conf)`` that logs nothing to stderr
    (the CLI's commands say what failed in one line)."""
    from confluent_kafka import Consumer

    return Consumer({**conf, "logger": _quiet_logger()})


def quiet_producer(conf: dict[str, Any]) -> Any:
    """A producer ``factory``: ``confluent_kafka.Producer(conf)`` that logs nothing to stderr."""
    from confluent_kafka import Producer

    return Producer({**conf, "logger": _quiet_logger()})


# --- aiokafka (the bus adapter; Faust's own clients) ------------------------------------------


def aiokafka_ssl_context(config: HuracanConfig | KafkaConfig) -> ssl.SSLContext | None:
    """The SSL context of an ``SSL``/``SASL_SSL`` protocol (None otherwise): the CA, and the
    client certificate and key when set."""
    sec = _kafka(config).security
    if sec.protocol not in ("SSL", "SASL_SSL"):
        return None
    from aiokafka.helpers import create_ssl_context

    context: ssl.SSLContext = create_ssl_context(
        cafile=sec.ssl_ca_location,
        certfile=sec.ssl_certificate_location,
        keyfile=sec.ssl_key_location,
        password=sec.ssl_key_password.get_secret_value() if sec.ssl_key_password else None,
    )
    return context


def aiokafka_security(config: HuracanConfig | KafkaConfig) -> dict[str, Any]:
    """aiokafka's keyword arguments for ``kafka.security``; empty for ``PLAINTEXT``."""
    sec = _kafka(config).security
    if sec.protocol == "PLAINTEXT":
        return {}
    out: dict[str, Any] = {"security_protocol": sec.protocol}
    if sec.protocol.startswith("SASL_"):
        out["sasl_mechanism"] = sec.sasl_mechanism
        out["sasl_plain_username"] = sec.sasl_username
        if sec.sasl_password is not None:
            out["sasl_plain_password"] = sec.sasl_password.get_secret_value()
    context = aiokafka_ssl_context(config)
    if context is not None:
        out["ssl_context"] = context
    return out


def aiokafka_producer_options(
    config: HuracanConfig | KafkaConfig,
    role: str,
    *,
    idempotent: bool = True,
    bootstrap_servers: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``aiokafka.AIOKafkaProducer``."""
    opts: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers or _kafka(config).bootstrap_servers,
        "client_id": client_id(config, role),
        **aiokafka_security(config),
    }
    if idempotent:
        opts.update({"enable_idempotence": True, "acks": "all"})
    opts.update(overrides or {})
    return opts


def aiokafka_consumer_options(
    config: HuracanConfig | KafkaConfig,
    role: str,
    *,
    group_id: str,
    isolation: IsolationLevel | None = None,
    bootstrap_servers: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``aiokafka.AIOKafkaConsumer``: no auto-commit; ``isolation``
    when given (aiokafka's own default is ``read_uncommitted``)."""
    opts: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers or _kafka(config).bootstrap_servers,
        "client_id": client_id(config, role),
        "group_id": group_id,
        "enable_auto_commit": False,
        **aiokafka_security(config),
    }
    if isolation is not None:
        opts["isolation_level"] = isolation
    opts.update(overrides or {})
    return opts


def faust_broker_credentials(config: HuracanConfig | KafkaConfig) -> Any:
    """Faust's ``broker_credentials`` for ``kafka.security`` (None for ``PLAINTEXT``): a
    ``faust.SASLCredentials`` for the SASL protocols, a ``faust.SSLCredentials`` for SSL."""
    sec = _kafka(config).security
    if sec.protocol == "PLAINTEXT":
        return None
    import faust

    context = aiokafka_ssl_context(config)
    if sec.protocol.startswith("SASL_"):
        return faust.SASLCredentials(
            username=sec.sasl_username,
            password=sec.sasl_password.get_secret_value() if sec.sasl_password else None,
            mechanism=sec.sasl_mechanism,
            ssl_context=context,
        )
    return faust.SSLCredentials(context)


__all__ = [
    "admin_config",
    "aiokafka_consumer_options",
    "aiokafka_producer_options",
    "aiokafka_security",
    "aiokafka_ssl_context",
    "base_config",
    "client_id",
    "consumer_config",
    "faust_broker_credentials",
    "isolation_level",
    "make_admin",
    "make_consumer",
    "make_output_producer",
    "make_producer",
    "output_producer_config",
    "producer_config",
    "quiet_consumer",
    "quiet_producer",
    "security_config",
]
