"""A Faust worker running the whole pipeline in a subprocess, on topics of its own."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from huracan.config import HuracanConfig, build_config
from huracan.streams.serde import make_serde
from huracan.streams.topics import TopicCatalog, ensure_topics
from tests.waiting import wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pipeline_config(bootstrap: str, prefix: str, partitions: int = 4) -> HuracanConfig:
    p = partitions
    return build_config(
        {
            "kafka": {
                "topic_prefix": prefix,
                "partitions": {"market_data": p, "features": p, "signals": p,
                               "cost_updates": p, "executions": p},
            },
            "faust": {"app_id": prefix, "batch_size": 200},
        },
        environ={"HURACAN_KAFKA_BOOTSTRAP": bootstrap},
    )  # fmt: skip


@contextmanager
def running_worker(cfg: HuracanConfig, workdir: Path, env_extra: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """Start ``faust -A huracan worker`` for ``cfg``; yield (process, web port); stop it."""
    port = free_port()
    p = cfg.kafka.partitions
    env = {
        **os.environ,
        "HURACAN_KAFKA_BOOTSTRAP": cfg.kafka.bootstrap_servers,
        "HURACAN__kafka__topic_prefix": cfg.kafka.topic_prefix,
        "HURACAN__faust__app_id": cfg.faust.app_id,
        "HURACAN__faust__web_port": str(port),
        "HURACAN__faust__batch_size": str(cfg.faust.batch_size),
        "HURACAN__faust__datadir": str(workdir / "faust"),
        **{f"HURACAN__kafka__partitions__{k}": str(getattr(p, k)) for k in type(p).model_fields},
        **(env_extra or {}),
    }
    log = (workdir / f"worker-{port}.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("faust")), "-A", "huracan", "worker", "-l", "info"],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: proc.poll() is None and http_json(port, "/metrics", raw=True) is not None,
            timeout=90,
            what="the worker's web server",
        )
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def http_json(port: int, path: str, raw: bool = False) -> Any:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            body = r.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except OSError:
        return None
    return body if raw else json.loads(body)


def topic_counts(cfg: HuracanConfig) -> dict[str, int]:
    """Records on each catalog topic (sum of high watermarks), by event type."""
    consumer = Consumer({"bootstrap.servers": cfg.kafka.bootstrap_servers, "group.id": "counts"})
    try:
        out = {}
        for spec in TopicCatalog.from_config(cfg):
            total = 0
            for part in range(spec.partitions):
                _, hi = consumer.get_watermark_offsets(TopicPartition(spec.name, part), timeout=10)
                total += hi
            out[spec.event_type] = total
        return out
    finally:
        consumer.close()


def read_topic(cfg: HuracanConfig, event_type: str) -> list[dict[str, Any]]:
    """Every record of one catalog topic, decoded, in partition order."""
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
            out.append(serde.decode(msg.value(), expected=event_type))
    finally:
        consumer.close()
    return out


def create_topics(cfg: HuracanConfig) -> None:
    ensure_topics(cfg)
