"""The Faust application: Huracan's composition root.

(DESIGN.md calls this module ``app.py``. It is ``application.py`` because ``faust -A huracan``
reads the attribute ``huracan.app``, and a submodule named ``app`` would shadow it once imported.)

This is the one place that turns configuration into clients and wires the agents to the core.
Nothing here runs at import time of ``huracan``: :func:`get_app` builds the app on first use
(``faust -A huracan worker`` triggers it through the lazy ``huracan.app`` attribute).

Web endpoints on ``faust.web_host:faust.web_port`` (loopback by default):

* ``/metrics`` — Prometheus text format;
* ``/health`` — Kafka, Redis and PostgreSQL checks plus breaker states; HTTP 503 when any
  service is down or a breaker is tripped;
* ``/risk`` — the risk sequencer's exposure summary (404 on a worker that does not hold the
  sequencer's partition).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from huracan.agents.batching import ProcessedEvent
from huracan.agents.pipeline import Pipeline, build_pipeline
from huracan.agents.recovery import SeekFirstTableManager
from huracan.config import HuracanConfig, load_config
from huracan.observability.health import check_all

_lock = threading.Lock()
_app: faust.App | None = None


def create_app(
    config: HuracanConfig | None = None, *, with_pipeline: bool = True, **overrides: Any
) -> faust.App:
    """Build a Faust app from ``config`` (default: ``load_config()``).

    ``with_pipeline=False`` gives a bare app (no agents); ``overrides`` are passed to
    :class:`faust.App` as is.
    """
    cfg = config or load_config()
    settings: dict[str, Any] = {
        "broker": "kafka://" + cfg.kafka.bootstrap_servers.replace(",", ";kafka://"),
        "store": cfg.faust.store,
        "datadir": cfg.faust.datadir,
        "processing_guarantee": cfg.faust.processing_guarantee,
        "topic_replication_factor": cfg.kafka.replication_factor,
        "topic_partitions": cfg.kafka.partitions.market_data,
        "web_host": cfg.faust.web_host,
        "web_port": cfg.faust.web_port,
        "web_bind": cfg.faust.web_host,
        "autodiscover": False,
        "version": 1,
        "table_standby_replicas": 0,
        "broker_commit_every": 1000,
        "broker_commit_interval": 1.0,
        "stream_buffer_maxsize": 16384,
        # stream partitions resume only after recovery has sought them (huracan.agents.recovery)
        "TableManager": SeekFirstTableManager,
        # only events an agent finished are acknowledged (huracan.agents.batching)
        "Event": ProcessedEvent,
    }
    settings.update(overrides)
    Path(settings["datadir"]).mkdir(parents=True, exist_ok=True)
    app = faust.App(cfg.faust.app_id, **settings)
    app.huracan_config = cfg  # type: ignore[attr-defined]
    if with_pipeline:
        pipeline = build_pipeline(app, cfg)
        app.huracan_pipeline = pipeline  # type: ignore[attr-defined]
        _register_views(app, cfg, pipeline)
    return app


def _register_views(app: faust.App, cfg: HuracanConfig, pipeline: Pipeline) -> None:
    @app.page("/metrics")
    async def metrics_view(self: Any, request: Any) -> Any:
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health_view(self: Any, request: Any) -> Any:
        results = await asyncio.get_running_loop().run_in_executor(None, check_all, cfg)
        summary = pipeline.risk_summary()
        breakers: dict[str, Any] = summary["breakers"] if summary else {}
        tripped = any(b["tripped"] for b in breakers.values())
        ok = all(r.ok for r in results) and not tripped
        body = {
            "ok": ok,
            "services": {r.name: r.as_dict() for r in results},
            "breakers": breakers or None,
        }
        return self.json(body, status=200 if ok else 503)

    @app.page("/risk")
    async def risk_view(self: Any, request: Any) -> Any:
        summary = pipeline.risk_summary()
        if summary is None:
            return self.json({"error": "this worker does not hold the risk sequencer"}, status=404)
        return self.json(summary)


def get_app() -> faust.App:
    """The process-wide app, created once from ``load_config()``."""
    global _app
    with _lock:
        if _app is None:
            _app = create_app()
        return _app
