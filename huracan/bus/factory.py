"""``create_message_bus(config)``: build the adapter the configuration names.

Accepted shapes (all validated through :class:`huracan.config.MessageBusConfig`):

- the spec's ``{"message_bus": {"type": "redis_streams", "host": ..., ...}}``;
- the section itself: ``config["engine"]["message_bus"]`` (a ``MessageBusConfig``) or a plain
  ``{"type": "memory", ...}`` mapping;
- a whole configuration (``HuracanConfig`` or ``{"engine": {"message_bus": ...}}``); then a
  Kafka bus without ``bootstrap_servers`` takes ``kafka.bootstrap_servers``.

An unknown ``type``, an unknown key or a bad value raises :class:`huracan.config.ConfigError`
naming the key (``message_bus.port: …``). Nothing connects here: call ``await bus.connect()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from huracan.bus.base import MessageBus
from huracan.config import ConfigError, HuracanConfig, MessageBusConfig


def _is_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) or (hasattr(value, "keys") and hasattr(value, "__getitem__"))


def _as_dict(value: Any) -> dict[str, Any]:
    return {k: value[k] for k in value.keys()}  # noqa: SIM118 - mapping-like config sections


def resolve_bus_config(config: Any) -> MessageBusConfig:
    """The validated ``MessageBusConfig`` inside ``config`` (see the module doc for shapes)."""
    if isinstance(config, MessageBusConfig):
        return config
    if not _is_mapping(config):
        raise ConfigError(
            f"message_bus: expected a mapping or MessageBusConfig, got {type(config).__name__}"
        )
    where = "message_bus"
    section: Any = config
    bootstrap: str | None = None
    if isinstance(config, HuracanConfig):
        bootstrap = config.kafka.bootstrap_servers
        section, where = config.engine.message_bus, "engine.message_bus"
    elif "engine" in config and _is_mapping(config["engine"]):
        kafka: Any = config.get("kafka")
        if _is_mapping(kafka) and "bootstrap_servers" in kafka:
            bootstrap = kafka["bootstrap_servers"]
        section, where = config["engine"].get("message_bus", {}), "engine.message_bus"
    elif "message_bus" in config and _is_mapping(config["message_bus"]):
        section = config["message_bus"]
    if isinstance(section, MessageBusConfig):
        bus_config = section
    else:
        if not _is_mapping(section):
            raise ConfigError(f"{where}: expected a mapping, got {type(section).__name__}")
        try:
            bus_config = MessageBusConfig.model_validate(_as_dict(section))
        except ValidationError as err:
            lines = [f"invalid message bus configuration ({where}):"]
            for e in err.errors():
                key = ".".join(str(p) for p in e["loc"]) or "<root>"
                lines.append(f"  {where}.{key}: {e['msg']}")
            raise ConfigError("\n".join(lines)) from None
    if bus_config.type == "kafka" and bus_config.bootstrap_servers is None and bootstrap:
        bus_config = bus_config.model_copy(update={"bootstrap_servers": bootstrap})
    return bus_config


def create_message_bus(config: Any, **adapter_options: Any) -> MessageBus:
    """Build (not connect) the bus ``config`` names: ``redis_streams``, ``memory`` or ``kafka``.

    ``adapter_options`` go to the adapter's constructor (``broker=`` for memory, client options
    for Redis, ``consumer_options=`` / ``producer_options=`` for Kafka).

    Raises :class:`huracan.config.ConfigError` for an invalid configuration.
    """
    bus_config = resolve_bus_config(config)
    if bus_config.type == "redis_streams":
        from huracan.bus.redis_streams import RedisStreamsMessageBus

        return RedisStreamsMessageBus(bus_config, **adapter_options)
    if bus_config.type == "memory":
        from huracan.bus.memory import MemoryMessageBus

        return MemoryMessageBus(bus_config, **adapter_options)
    if bus_config.type == "kafka":
        from huracan.bus.kafka import KafkaMessageBus

        if isinstance(config, HuracanConfig):
            adapter_options.setdefault("kafka", config.kafka)
        return KafkaMessageBus(bus_config, **adapter_options)
    raise ConfigError(f"message_bus.type: unknown bus type {bus_config.type!r}")  # unreachable
