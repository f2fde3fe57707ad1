"""A Faust worker running the whole pipeline in a subprocess, on topics of its own."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from huracan.config import HuracanConfig, build_config
from huracan.streams.serde import make_serde
from huracan.streams.topics import TopicCatalog, ensure_topics, record_counts
from huracan.wiring import build_engine
from huracan.worker_process import running_worker as worker_process

#: extra_env for a worker the test will SIGKILL: Faust's session timeout of 10 s, not its 60 s
#: default, so the group drops the dead member (and its replacement gets the partitions) after
#: 10 s instead of a minute. A worker that stops on SIGTERM leaves its group at once and needs
#: none of this; a test that checks a clean leave must not use it (a timed-out member would
#: then look like one that left).
KILLED_WORKER_ENV = {"BROKER_SESSION_TIMEOUT": "10"}


def pipeline_config(
    bootstrap: str,
    prefix: str,
    partitions: int = 4,
    guarantee: str | None = None,
    **faust: Any,
) -> HuracanConfig:
    """A catalog and consumer group of the test's own (``faust``: more faust.* settings;
    ``guarantee``: the processing guarantee, the configuration's default when ``None``)."""
    p = partitions
    if guarantee is not None:
        faust = {"processing_guarantee": guarantee, **faust}
    return build_config(
        {
            "kafka": {
                "topic_prefix": prefix,
                "partitions": {"market_data": p, "features": p, "signals": p,
                               "cost_updates": p, "executions": p},
            },
            "faust": {
                "app_id": prefix,
                "batch_size": 200,
                **faust,
            },
            # an empty registry of its own: every coin trades the baseline model, whatever
            # other tests registered in the shared database
            "engine": {"model_registry": {"metadata_db": "",
                                          "storage_path": f"/tmp/huracan-test-models/{prefix}"}},
        },
        environ={"HURACAN_KAFKA_BOOTSTRAP": bootstrap},
    )  # fmt: skip


def engine_run(
    cfg: HuracanConfig,
    ticks: list[dict[str, Any]],
    cost_updates: list[dict[str, Any]] | None = None,
) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
    """The in-process engine over ``ticks`` (cost updates folded before the first tick at or
    after their time), finished: ``(engine, decisions, executions)``, the tests' reference."""
    engine = build_engine(cfg)
    pending = sorted(cost_updates or (), key=lambda r: r["ts"])
    decisions: list[dict[str, Any]] = []
    executions: list[dict[str, Any]] = []
    for tick in ticks:
        while pending and pending[0]["ts"] <= tick["ts"]:
            engine.on_cost_update(pending.pop(0))
        out = engine.on_tick(tick)
        decisions += out.decisions
        executions += out.executions
    out = engine.finish()
    return engine, decisions + out.decisions, executions + out.executions


def tick_producer(cfg: HuracanConfig) -> Producer:
    """A producer for ticks that must stay in order: idempotent, or a retried request can
    reorder a coin's ticks on its partition (seen under load: the worker then rightly drops
    the older ones as duplicates)."""
    return Producer(
        {
            "bootstrap.servers": cfg.kafka.bootstrap_servers,
            "linger.ms": 5,
            "enable.idempotence": True,
        }
    )


def publish_ticks(
    cfg: HuracanConfig, ticks: list[dict[str, Any]], *, event_time_stamps: bool = False
) -> None:
    """Produce ``ticks`` in order, keyed by coin (``event_time_stamps``: record timestamp =
    the tick's event time), all delivered."""
    serde = make_serde(cfg)
    topic = TopicCatalog.from_config(cfg).for_event_type("MarketTick").name
    producer = tick_producer(cfg)
    for t in ticks:
        stamp = {"timestamp": t["ts"] // 1000} if event_time_stamps else {}
        producer.produce(
            topic, key=t["coin"].encode(), value=serde.encode("MarketTick", t), **stamp
        )
    assert producer.flush(30) == 0


@contextmanager
def running_worker(cfg: HuracanConfig, workdir: Path) -> Iterator[tuple[Any, int]]:
    """A worker for ``cfg``: yields (process, web port)."""
    with worker_process(cfg, workdir) as handle:
        yield handle.process, handle.port


def http_json(port: int, path: str) -> Any:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            body = r.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except OSError:
        return None
    return json.loads(body)


def topic_counts(cfg: HuracanConfig) -> dict[str, int]:
    """Records on each catalog topic, by event type (exactly_once: committed records only)."""
    return record_counts(cfg)


def exactly_once(cfg: HuracanConfig) -> bool:
    return cfg.faust.processing_guarantee == "exactly_once"


def read_topic(cfg: HuracanConfig, event_type: str) -> list[dict[str, Any]]:
    """Every committed record of one catalog topic (``read_committed``), decoded, in partition
    order (punctuation skipped)."""
    spec = TopicCatalog.from_config(cfg).for_event_type(event_type)
    serde = make_serde(cfg)
    consumer = Consumer(
        {"bootstrap.servers": cfg.kafka.bootstrap_servers, "group.id": uuid.uuid4().hex,
         "enable.partition.eof": True, "isolation.level": "read_committed"}
    )  # fmt: skip
    consumer.assign([TopicPartition(spec.name, p, 0) for p in range(spec.partitions)])
    out: list[dict[str, Any]] = []
    eof: set[int] = set()
    try:
        while len(eof) < spec.partitions:
            msg = consumer.poll(5)
            if msg is None:
                break
            if msg.error():
                eof.add(msg.partition() or 0)
                continue
            decoded = serde.decode_event(msg.value())
            if decoded.event_type != event_type and decoded.event_type in spec.punctuation:
                continue  # watermarks between the trade requests
            assert decoded.event_type == event_type, decoded.event_type
            out.append(decoded.record)
    finally:
        consumer.close()
    return out


def create_topics(cfg: HuracanConfig) -> None:
    ensure_topics(cfg)
