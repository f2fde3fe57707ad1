"""The Faust application: Huracan's composition root.

(DESIGN.md calls this module ``app.py``. It is ``application.py`` because ``faust -A huracan``
reads the attribute ``huracan.app``, and a submodule named ``app`` would shadow it once imported.)

This is the one place that turns configuration into clients and wires the agents to the core.
Nothing here runs at import time of ``huracan``: :func:`get_app` builds the app on first use
(``faust -A huracan worker`` triggers it through the lazy ``huracan.app`` attribute).

Web endpoints on ``faust.web_host:faust.web_port`` (loopback by default):

* ``/metrics`` — Prometheus text format (breakers, limits, equity and models are read from the
  sequencer and the model loader at each scrape);
* ``/health`` — Kafka, Redis and PostgreSQL checks, the registry models (loaded versions, last
  refresh, artifacts refused) and breaker states; HTTP 503 when any service is down, a breaker
  is tripped, or the last registry refresh failed or refused an artifact;
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

from huracan.agents import faust_fixes
from huracan.agents.archive_agent import build_archive_agents
from huracan.agents.pipeline import Pipeline, build_pipeline
from huracan.agents.rows import STATE_ROW_MAX_BYTES
from huracan.config import HuracanConfig, load_config
from huracan.models import RegistryModels
from huracan.observability import metrics
from huracan.observability.health import check_all
from huracan.streams import clients

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
        # the global risk-state row can pass Kafka's 1 MiB (huracan.agents.rows)
        "producer_max_request_size": STATE_ROW_MAX_BYTES,
    }
    credentials = clients.faust_broker_credentials(cfg)  # None for PLAINTEXT
    if credentials is not None:
        settings["broker_credentials"] = credentials
    settings.update(overrides)
    Path(settings["datadir"]).mkdir(parents=True, exist_ok=True)
    # every correction to faust-streaming, in one call (huracan.agents.faust_fixes)
    app = faust_fixes.create_app(
        cfg.faust.app_id,
        exactly_once=cfg.faust.processing_guarantee == "exactly_once",
        **settings,
    )
    app.huracan_config = cfg  # type: ignore[attr-defined]
    if with_pipeline:
        # each coin's active model from the registry, the baseline otherwise (huracan.models)
        models = RegistryModels.from_config(cfg)
        app.huracan_models = models  # type: ignore[attr-defined]
        pipeline = build_pipeline(app, cfg, models=models)
        app.huracan_pipeline = pipeline  # type: ignore[attr-defined]
        _register_model_refresh(app, models)
        _register_consumer_lag(app)
        # storage.archive.enabled: archivers in threads, each in a consumer group of its own
        app.huracan_archive = build_archive_agents(app, cfg)  # type: ignore[attr-defined]
        _register_views(app, cfg, pipeline, models)
    return app


def _register_consumer_lag(app: faust.App, interval_s: float = 5.0) -> None:
    """``huracan_consumer_lag{topic,partition}``: records between each assigned stream
    partition's high watermark and the offset this worker has committed (or read, before its
    first commit). Changelog partitions are left out; a revoked partition's series is removed."""
    shown: set[tuple[str, int]] = set()

    async def measure() -> None:
        consumer: Any = app.consumer
        changelogs = {t.changelog_topic.get_topic_name() for t in app.tables.values()}
        now: set[tuple[str, int]] = set()
        for tp in consumer.assignment():
            if tp.topic in changelogs or tp.topic.endswith("__assignor-__leader"):
                continue
            high = consumer.highwater(tp)
            if high is None or high < 0:
                continue
            done = faust_fixes.committed_offsets(app).get(tp)
            if done is None:
                read = faust_fixes.read_offsets(app).get(tp)
                done = read + 1 if read is not None else 0
            metrics.CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(
                max(high - done, 0)
            )
            now.add((tp.topic, tp.partition))
        for topic, partition in shown - now:
            metrics.CONSUMER_LAG.remove(topic, str(partition))
        shown.clear()
        shown.update(now)

    app.timer(interval_s, name="huracan.consumer_lag")(measure)


def _register_model_refresh(app: faust.App, models: RegistryModels) -> None:
    """Load the active models now, before any agent runs; re-read them when they are due.

    The first read is synchronous so that the first tick already meets the registry's models
    (a replay refreshed from the same registry then makes the same decisions). Later reads run
    in a worker thread; a registry that is down keeps the models loaded last (``/health`` says
    so) and is tried again on the next tick of the timer."""
    models.refresh()

    async def refresh() -> None:
        await models.refresh_async()

    app.timer(1.0, name="huracan.models.refresh")(refresh)


def _register_views(
    app: faust.App, cfg: HuracanConfig, pipeline: Pipeline, models: RegistryModels
) -> None:
    metrics.set_worker_info(cfg.faust.app_id, cfg.kafka.topic_prefix)

    @app.page("/metrics")
    async def metrics_view(self: Any, request: Any) -> Any:
        # state that changes without an agent running (breakers, limits, models) is read now
        seq = pipeline.state.get("sequencer")
        if seq is None:
            metrics.update_risk_state(None, {})
        else:
            ctl = seq.controller
            metrics.update_risk_state(ctl.get_exposure_summary(), ctl.limits.to_dict())
        metrics.update_models(models.status().as_dict())
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health_view(self: Any, request: Any) -> Any:
        results = await asyncio.get_running_loop().run_in_executor(None, check_all, cfg)
        summary = pipeline.risk_summary()
        breakers: dict[str, Any] = summary["breakers"] if summary else {}
        tripped = any(b["tripped"] for b in breakers.values())
        model_status = models.status()
        models_ok = model_status.healthy or model_status.last_refresh_ok is None
        ok = all(r.ok for r in results) and not tripped and models_ok
        body = {
            "ok": ok,
            "services": {r.name: r.as_dict() for r in results},
            "models": model_status.as_dict(),
            "breakers": breakers or None,
        }
        return self.json(body, status=200 if ok else 503)

    @app.page("/consumer")
    async def consumer_view(self: Any, request: Any) -> Any:
        return self.json(consumer_state(app))

    @app.page("/risk")
    async def risk_view(self: Any, request: Any) -> Any:
        summary = pipeline.risk_summary()
        if summary is None:
            return self.json({"error": "this worker does not hold the risk sequencer"}, status=404)
        return self.json(summary)


def consumer_state(app: faust.App) -> dict[str, Any]:
    """What the worker's consumer fetches and what its streams hold: partitions assigned, those
    it fetches from (active), those paused by recovery, those paused because their stream's
    buffer was under pressure (buffered), and each agent's buffer. A worker that has stopped
    consuming shows why here (``/consumer``)."""
    consumer: Any = app.consumer

    def tps(items: Any) -> list[str]:
        return sorted(f"{tp.topic}:{tp.partition}" for tp in items or ())

    streams = faust_fixes.stream_buffers(app)
    parts = faust_fixes.consumer_partitions(app)
    return {
        "assigned": tps(consumer.assignment()),
        "active": tps(parts["active"]),
        "paused": tps(parts["paused"]),
        "buffered": tps(parts["buffered"]),
        "flow_active": bool(consumer.flow_active),
        "streams": streams,
    }


def get_app() -> faust.App:
    """The process-wide app, created once from ``load_config()``."""
    global _app
    with _lock:
        if _app is None:
            _app = create_app()
        return _app
