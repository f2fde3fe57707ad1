"""The Faust application: Huracan's composition root.

(DESIGN.md calls this module ``app.py``. It is ``application.py`` because ``faust -A huracan``
reads the attribute ``huracan.app``, and a submodule named ``app`` would shadow it once imported.)

This is the one place that turns configuration into clients and wires the agents to the core.
Nothing here runs at import time of ``huracan``: :func:`get_app` builds the app on first use
(``faust -A huracan worker`` triggers it through the lazy ``huracan.app`` attribute).
"""

from __future__ import annotations

import threading
from typing import Any

import faust

from huracan.config import HuracanConfig, load_config

_lock = threading.Lock()
_app: faust.App | None = None


def create_app(config: HuracanConfig | None = None, **overrides: Any) -> faust.App:
    """Build a Faust app from ``config`` (default: ``load_config()``).

    ``overrides`` are passed to :class:`faust.App` as is (tests use them for a unique app id).
    """
    cfg = config or load_config()
    settings: dict[str, Any] = {
        "broker": "kafka://" + cfg.kafka.bootstrap_servers.replace(",", ";kafka://"),
        "store": cfg.faust.store,
        "processing_guarantee": cfg.faust.processing_guarantee,
        "topic_replication_factor": cfg.kafka.replication_factor,
        "topic_partitions": cfg.kafka.partitions.market_data,
        "web_host": cfg.faust.web_host,
        "web_port": cfg.faust.web_port,
        "web_bind": cfg.faust.web_host,
        "autodiscover": False,
        "version": 1,
    }
    settings.update(overrides)
    app = faust.App(cfg.faust.app_id, **settings)
    app.huracan_config = cfg  # type: ignore[attr-defined]
    return app


def get_app() -> faust.App:
    """The process-wide app, created once from ``load_config()``."""
    global _app
    with _lock:
        if _app is None:
            _app = create_app()
        return _app
