"""The spec's message bus: one port (:class:`MessageBus`), three adapters.

``create_message_bus(config)`` builds a Redis Streams, in-memory or Kafka bus from the
``message_bus`` configuration; :class:`Message` and :class:`StreamType` are what travels on it.
See :mod:`huracan.bus.base` for the delivery contract every adapter keeps.

The adapters are imported on first use, so ``import huracan.bus`` needs neither redis-py nor
aiokafka loaded and opens no connection.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from huracan.bus.base import BusStats, MessageBus
from huracan.bus.errors import (
    BusConnectionError,
    BusError,
    BusNotConnectedError,
    MalformedMessageError,
    MessageEncodeError,
)
from huracan.bus.factory import create_message_bus, resolve_bus_config
from huracan.bus.message import DeadLetter, Message, StreamType

if TYPE_CHECKING:
    from huracan.bus.kafka import KafkaMessageBus
    from huracan.bus.memory import InMemoryBroker, MemoryMessageBus
    from huracan.bus.redis_streams import RedisStreamsMessageBus

_LAZY = {
    "InMemoryBroker": "huracan.bus.memory",
    "MemoryMessageBus": "huracan.bus.memory",
    "RedisStreamsMessageBus": "huracan.bus.redis_streams",
    "KafkaMessageBus": "huracan.bus.kafka",
}

__all__ = [
    "BusConnectionError",
    "BusError",
    "BusNotConnectedError",
    "BusStats",
    "DeadLetter",
    "InMemoryBroker",
    "KafkaMessageBus",
    "MalformedMessageError",
    "MemoryMessageBus",
    "Message",
    "MessageBus",
    "MessageEncodeError",
    "RedisStreamsMessageBus",
    "StreamType",
    "create_message_bus",
    "resolve_bus_config",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'huracan.bus' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
