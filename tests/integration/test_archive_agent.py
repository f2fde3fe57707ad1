"""The archive agent inside `faust -A huracan worker`, on the real broker, checked from outside.

The worker runs the whole pipeline with ``storage.archive.enabled``; the archive must hold every
published tick once (with the offsets it came from), the decisions and executions the pipeline
made, and the pipeline's decisions must still be the in-process engine's, byte for byte.
"""

from __future__ import annotations

import os
import signal
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from huracan.agents.archive_agent import archive_group
from huracan.config import ArchiveConfig, HuracanConfig, StorageConfig
from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator
from huracan.storage.archive import ArchiveWriter, archive_path, day_of, kind_dir, read_metadata
from huracan.storage.history import read_archive
from huracan.streams.serde import make_serde
from huracan.streams.topics import TopicCatalog
from huracan.worker_process import running_worker
from tests.integration.pipeline_support import (
    KILLED_WORKER_ENV,
    create_topics,
    engine_run,
    pipeline_config,
    read_topic,
    tick_producer,
)
from tests.waiting import wait_until

#: 2026-01-01T00:00:00Z; the ticks start 2 s before, so every coin has two day files
MIDNIGHT = 1_767_225_600_000_000


def _config(bootstrap: str, prefix: str, root: Path, **archive: Any) -> HuracanConfig:
    cfg = pipeline_config(bootstrap, prefix)
    settings = {"enabled": True, "root": str(root), "flush_seconds": 1.0, **archive}
    return cfg.model_copy(update={"storage": StorageConfig(archive=ArchiveConfig(**settings))})


def _ticks(n: int, seed: int) -> list[dict[str, Any]]:
    sim = MarketSimulator(universe(12), seed=seed, start_ts_us=MIDNIGHT - 2_000_000, rate=500)
    return list(sim.ticks(n))


def _publish(cfg: HuracanConfig, ticks: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Produce ``ticks`` keyed by coin; returns each tick's ``(partition, offset)`` by event id."""
    serde = make_serde(cfg)
    topic = TopicCatalog.from_config(cfg).for_event_type("MarketTick").name
    producer = tick_producer(cfg)
    where: dict[str, tuple[int, int]] = {}

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        where[serde.decode(msg.value())["event_id"]] = (msg.partition(), msg.offset())

    for t in ticks:
        value = serde.encode("MarketTick", t)
        producer.produce(topic, key=t["coin"].encode(), value=value, on_delivery=delivered)
    assert producer.flush(30) == 0
    assert len(where) == len(ticks)
    return where


def _archived(root: Path, event_type: str = "MarketTick") -> list[dict[str, Any]]:
    if not kind_dir(root, event_type).is_dir():
        return []
    return list(read_archive(root, event_type=event_type))


def _rows(root: Path, event_type: str = "MarketTick") -> int:
    """Rows in the archive's file footers (cheap enough to poll)."""
    folder = kind_dir(root, event_type)
    if not folder.is_dir():
        return 0
    return sum(
        read_metadata(f).rows
        for f in folder.glob("*/*.parquet")
        if event_type != "MarketTick" or not f.parent.name.startswith("_")
    )


def _metric(port: int, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k, "").endswith(v) for k, v in labels.items())
    )


def _assert_offsets_recorded(
    root: Path, topic: str, ticks: list[dict[str, Any]], where: dict[str, tuple[int, int]]
) -> None:
    """Each day file's metadata names the topic and offset intervals spanning its ticks."""
    by_file: dict[Path, list[tuple[int, int]]] = {}
    for t in ticks:
        path = archive_path(root, "MarketTick", t["coin"], day_of(t["ts"]))
        by_file.setdefault(path, []).append(where[t["event_id"]])
    assert len(by_file) == 2 * len({t["coin"] for t in ticks})  # two days per coin
    for path, positions in by_file.items():
        meta = read_metadata(path)
        assert meta.source_topics == [topic]
        assert meta.rows == len(positions)
        intervals = meta.sources[topic]
        for partition, offset in positions:
            assert any(lo <= offset <= hi for lo, hi in intervals[partition]), (path, offset)
        for partition, spans in intervals.items():
            mine = [o for p, o in positions if p == partition]
            assert spans[0][0] == min(mine)
            assert spans[-1][1] == max(mine)


def test_archive_agent_when_worker_runs_then_every_tick_archived_once_and_decisions_unchanged(
    kafka_bootstrap: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    # arrange: the ticks on the broker before the worker starts; the first 300 archived
    # already (as an earlier archiver would have), so the agent meets records it must not copy
    root = tmp_path / "archive"
    cfg = _config(
        kafka_bootstrap, unique_name("arch"), root,
        flush_rows=400, topics=("market-data", "executions", "risk-decisions"),
    )  # fmt: skip
    create_topics(cfg)
    topic = TopicCatalog.from_config(cfg).for_event_type("MarketTick").name
    ticks = _ticks(2_000, seed=21)
    _, decisions, executions = engine_run(cfg, ticks)
    assert {d["decision"] for d in decisions} >= {"APPROVE", "BLOCK"}
    where = _publish(cfg, ticks)
    seeded = ticks[:300]
    ArchiveWriter(root).write(
        seeded, source_topic=topic, offsets=[where[t["event_id"]] for t in seeded]
    )

    # act
    with running_worker(cfg, tmp_path / "worker") as worker:
        wait_until(lambda: _rows(root) == len(ticks), 120, interval=0.5, what="every tick")
        wait_until(lambda: _rows(root, "RiskDecision") == len(decisions), 120, interval=0.5,
                   what="every decision archived")  # fmt: skip
        wait_until(lambda: _rows(root, "Execution") == len(executions), 120, interval=0.5,
                   what="every execution archived")  # fmt: skip
        added = _metric(worker.port, "huracan_archive_rows_total", topic=".market-data")
        duplicates = _metric(worker.port, "huracan_archive_duplicates_total", topic=".market-data")
        flushes = _metric(worker.port, "huracan_archive_flush_seconds_count", topic=".market-data")
        live_decisions = read_topic(cfg, "RiskDecision")
        live_executions = read_topic(cfg, "Execution")
        dead_letters = read_topic(cfg, "DeadLetter")

    # assert: the archive holds each tick once, exactly as published
    serde = make_serde(cfg)
    archived = _archived(root)
    assert Counter(t["event_id"] for t in archived) == Counter(t["event_id"] for t in ticks)
    assert sorted(archived, key=lambda t: t["event_id"]) == sorted(
        ticks, key=lambda t: t["event_id"]
    )
    assert (added, duplicates) == (len(ticks) - len(seeded), len(seeded))
    assert flushes >= len(ticks) / 400 / 2  # row-triggered flushes: the batches were bounded
    _assert_offsets_recorded(root, topic, ticks, where)
    # the pipeline still made the engine's decisions, and the archive has them too
    encode = serde.encode
    assert [encode("RiskDecision", d) for d in live_decisions] == [
        encode("RiskDecision", d) for d in decisions
    ]
    assert sorted(encode("Execution", e) for e in live_executions) == sorted(
        encode("Execution", e) for e in executions
    )
    assert sorted(encode("RiskDecision", d) for d in _archived(root, "RiskDecision")) == sorted(
        encode("RiskDecision", d) for d in decisions
    )
    assert sorted(encode("Execution", e) for e in _archived(root, "Execution")) == sorted(
        encode("Execution", e) for e in executions
    )
    assert dead_letters == []


def test_archive_agent_when_malformed_records_then_dead_lettered_and_the_rest_archived(
    kafka_bootstrap: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    # arrange
    root = tmp_path / "archive"
    cfg = _config(kafka_bootstrap, unique_name("archdlq"), root)
    create_topics(cfg)
    topic = TopicCatalog.from_config(cfg).for_event_type("MarketTick").name
    ticks = _ticks(400, seed=22)
    bad_coin = {**ticks[0], "event_id": "tick:bad-coin", "coin": "../etc", "seq": 10**6}
    serde = make_serde(cfg)
    bad = [b"not avro at all", b"", serde.encode("MarketTick", bad_coin)]

    with running_worker(cfg, tmp_path / "worker") as worker:
        # act: good ticks with malformed records in between
        _publish(cfg, ticks[:200])
        producer = Producer({"bootstrap.servers": cfg.kafka.bootstrap_servers})
        for value in bad:
            producer.produce(topic, key=b"BTC", value=value)
        assert producer.flush(10) == 0
        _publish(cfg, ticks[200:])

        # assert
        wait_until(lambda: _rows(root) == len(ticks), 120, interval=0.5, what="every good tick")
        wait_until(
            lambda: (
                len([d for d in read_topic(cfg, "DeadLetter") if d["consumer"] == "archive"])
                == len(bad)
            ),
            60,
            interval=0.5,
            what="the archive's dead letters",
        )
        counted = _metric(worker.port, "huracan_dead_letters_total", agent="archive")

    mine = [d for d in read_topic(cfg, "DeadLetter") if d["consumer"] == "archive"]
    assert sorted(d["original_value"] for d in mine) == sorted(bad)
    assert {d["reason"] for d in mine if d["original_value"] == bad[2]} == {"archive_schema"}
    assert all(d["source_topic"] == topic and d["error_message"] for d in mine)
    assert counted == len(bad)
    assert sorted(t["event_id"] for t in _archived(root)) == sorted(t["event_id"] for t in ticks)


def _committed(cfg: HuracanConfig) -> int:
    """Market-data records the archive agent's group has committed (sum of its offsets)."""
    spec = TopicCatalog.from_config(cfg).for_event_type("MarketTick")
    group = archive_group(cfg, "MarketTick")
    consumer = Consumer({"bootstrap.servers": cfg.kafka.bootstrap_servers, "group.id": group})
    try:
        tps = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(tps, timeout=10))
    finally:
        consumer.close()


def test_archive_agent_when_worker_stopped_then_killed_mid_stream_then_each_tick_archived_once(
    kafka_bootstrap: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    # arrange: small flushes, so every worker stops with records read and not yet archived
    root = tmp_path / "archive"
    cfg = _config(kafka_bootstrap, unique_name("archrestart"), root, flush_rows=250)
    create_topics(cfg)
    topic = TopicCatalog.from_config(cfg).for_event_type("MarketTick").name
    ticks = _ticks(3_000, seed=23)
    where: dict[str, tuple[int, int]] = {}

    # act 1: stop a worker (SIGTERM) while it is archiving the first 1,500 ticks
    with running_worker(cfg, tmp_path / "a") as first:
        where |= _publish(cfg, ticks[:1_500])
        wait_until(lambda: _rows(root) >= 250, 120, interval=0.1, what="a first flush")
    stopped_with = _rows(root)
    # act 2: its replacement gets 1,000 more and is killed (no flush, no commit, no goodbye)
    with running_worker(cfg, tmp_path / "b", extra_env=KILLED_WORKER_ENV) as second:
        where |= _publish(cfg, ticks[1_500:2_500])
        wait_until(lambda: _rows(root) >= stopped_with + 250, 120, interval=0.1, what="a flush")
        os.kill(second.process.pid, signal.SIGKILL)
        second.process.wait(30)
    killed_with = _rows(root)
    committed = _committed(cfg)
    # act 3: a third worker gets the rest
    with running_worker(cfg, tmp_path / "c") as third:
        where |= _publish(cfg, ticks[2_500:])
        wait_until(lambda: _rows(root) >= len(ticks), 120, interval=0.5, what="every tick")
        received = _metric(third.port, "huracan_records_in_total", agent="archive")
        added = _metric(third.port, "huracan_archive_rows_total", topic=".market-data")

    # assert: the stop was clean (the archiver flushed and left; the worker did not hang)
    assert first.process.returncode == 0
    assert 0 < stopped_with < killed_with < len(ticks)
    # the last worker read everything its group had not committed, and wrote only what was new
    assert received == len(ticks) - committed
    assert added == len(ticks) - killed_with
    # each tick once, exactly as published, with the offsets it came from
    archived = _archived(root)
    assert sorted(archived, key=lambda t: t["event_id"]) == sorted(
        ticks, key=lambda t: t["event_id"]
    )
    _assert_offsets_recorded(root, topic, ticks, where)
