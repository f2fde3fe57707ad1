"""Huracan: an event-sourced crypto trading engine on Apache Kafka.

Importing ``huracan`` is cheap: the Faust application, which ``faust -A huracan worker`` looks
up as ``huracan.app`` (built by ``huracan.application``), and the public names of the spec's
components are resolved lazily on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "GlobalRiskController": "huracan.domain.risk",
    "RiskLimits": "huracan.domain.risk",
    "TradeRequest": "huracan.domain.risk",
    "RiskDecision": "huracan.domain.risk",
    "RealTimeCostModel": "huracan.components.cost_model",
    "ModelRegistry": "huracan.storage.model_registry",
    "ModelStatus": "huracan.storage.model_registry",
    "EventLoopManager": "huracan.runtime.event_loops",
    "create_message_bus": "huracan.bus.factory",
    "Message": "huracan.bus.message",
    "StreamType": "huracan.bus.message",
    "load_config": "huracan.config",
    "get_active_coins": "huracan.domain.universe",
    "get_sector": "huracan.domain.universe",
}

__all__ = ["__version__", "app", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name == "app":
        from huracan.application import get_app

        return get_app()
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'huracan' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
