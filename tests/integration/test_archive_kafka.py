"""``archive_topic`` against the real broker: good ticks archived, bad records dead-lettered,
re-runs idempotent, offsets committed only after the files are durable."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from huracan.config import HuracanConfig, build_config
from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator
from huracan.storage.archive import archive_topic, read_metadata
from huracan.storage.archive_errors import ArchiveError, ArchiveWriteError, TopicReadError
from huracan.storage.history import read_archive, read_topic
from huracan.streams.serde import make_serde
from huracan.streams.topics import TopicCatalog, ensure_topics

#: 2026-01-02T00:00:00Z in epoch microseconds
MIDNIGHT = 1_767_312_000_000_000
PARTITIONS = 3


@pytest.fixture
def config(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> HuracanConfig:
    """A config with its own topic prefix, its topics created on the broker."""
    prefix = unique_name("arch")
    cfg = build_config(
        {
            "kafka": {
                "topic_prefix": prefix,
                "partitions": {"market_data": PARTITIONS, "dead_letter": 2},
            }
        },
        environ={"HURACAN_KAFKA_BOOTSTRAP": kafka_bootstrap},
    )
    ensure_topics(cfg, prefix=prefix)
    return cfg


def make_ticks(n: int, *, coins: int = 8, seed: int = 11, start: int = MIDNIGHT - 500_000):
    sim = MarketSimulator(universe(coins), seed=seed, start_ts_us=start, rate=1000.0)
    return list(sim.ticks(n))


def by_merge_key(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: (r["ts"], r["coin"], r["seq"]))


def produce(
    config: HuracanConfig, items: list[tuple[bytes | None, bytes, int | None]]
) -> list[tuple[int, int]]:
    """Produce ``(key, value, timestamp_ms)`` in order; return each one's (partition, offset)."""
    topic = TopicCatalog.from_config(config).for_event_type("MarketTick").name
    producer = Producer(
        {"bootstrap.servers": config.kafka.bootstrap_servers, "enable.idempotence": True}
    )
    where: dict[int, tuple[int, int]] = {}
    errors: list[str] = []
    for i, (key, value, ts_ms) in enumerate(items):

        def on_delivery(err: Any, msg: Any, i: int = i) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                where[i] = (msg.partition(), msg.offset())

        kwargs: dict[str, Any] = {"timestamp": ts_ms} if ts_ms is not None else {}
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery, **kwargs)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert errors == []
    return [where[i] for i in range(len(items))]


def tick_items(config: HuracanConfig, ticks: list[dict]) -> list[tuple[bytes, bytes, int]]:
    serde = make_serde(config)
    return [(t["coin"].encode(), serde.encode("MarketTick", t), t["ts"] // 1000) for t in ticks]


def malformed_items(config: HuracanConfig) -> list[tuple[bytes | None, bytes, None]]:
    good = make_serde(config).encode("MarketTick", make_ticks(1, coins=1)[0])
    return [
        (b"BTC", b"not avro at all", None),  # bad magic
        (b"ETH", good[:14], None),  # truncated body
        (b"SOL", b"\xc3\x01" + b"\x42" * 8 + good[10:], None),  # unknown schema fingerprint
        (None, good + b"\x00\x01", None),  # trailing bytes, no key
    ]


def committed(config: HuracanConfig, group: str) -> dict[int, int]:
    topic = TopicCatalog.from_config(config).for_event_type("MarketTick").name
    consumer = Consumer({"bootstrap.servers": config.kafka.bootstrap_servers, "group.id": group})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], 30)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


def test_archive_topic_when_ticks_and_malformed_records_then_files_hold_exactly_the_good_ticks(
    config: HuracanConfig, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    # arrange: ticks spanning midnight, bad records mixed in
    ticks = make_ticks(1200)
    bad = malformed_items(config)
    items = tick_items(config, ticks[:600]) + bad + tick_items(config, ticks[600:])
    where = produce(config, items)
    bad_where = where[600:604]
    group = unique_name("archiver")

    # act
    report = archive_topic(config, root=tmp_path, group_id=group, batch_size=500)

    # assert: the archive is exactly the good ticks
    assert list(read_archive(tmp_path, merge=True)) == by_merge_key(ticks)
    assert report.complete
    assert (report.consumed, report.archived, report.duplicates) == (1204, 1200, 0)
    assert report.dead_letters == 4
    assert report.files_written == 16  # 8 coins x 2 UTC days
    assert sum(report.rows_per_file.values()) == 1200
    assert (
        report.committed
        == report.end_offsets
        == {p: max(o for q, o in where if q == p) + 1 for p in {q for q, _ in where}}
    )
    # metadata: the source topic and offsets the rows came from
    topic = report.topic
    for f in report.files:
        meta = read_metadata(f.path)
        assert meta.source_topics == [topic]
        for partition, intervals in meta.sources[topic].items():
            produced = [o for (p, o) in where if p == partition]
            assert min(produced) <= intervals[0][0] <= intervals[-1][1] <= max(produced)
    # the malformed records are on the dead-letter topic, byte for byte, with coordinates
    letters = list(read_topic(config, "DeadLetter"))
    assert sorted(
        (d["source_partition"], d["source_offset"], d["original_value"], d["original_key"])
        for d in letters
    ) == sorted((p, o, value, key) for (p, o), (key, value, _) in zip(bad_where, bad, strict=True))
    assert {d["reason"] for d in letters} == {
        "bad_magic",
        "truncated",
        "unknown_fingerprint",
        "malformed",
    }
    assert {d["source_topic"] for d in letters} == {topic}
    assert {d["consumer"] for d in letters} == {group}


def test_archive_topic_when_run_twice_then_second_run_changes_nothing(
    config: HuracanConfig, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    # arrange
    ticks = make_ticks(600)
    produce(config, tick_items(config, ticks) + malformed_items(config)[:1])
    group = unique_name("archiver")
    first = archive_topic(config, root=tmp_path, group_id=group)
    files = sorted(p for p in tmp_path.rglob("*.parquet"))
    snapshot = {p: p.read_bytes() for p in files}

    # act: the same log archived again from the beginning (as after a crash before the commit)
    second = archive_topic(config, root=tmp_path, group_id=group, from_beginning=True)

    # assert
    assert (first.archived, second.archived) == (600, 0)
    assert second.duplicates == 600
    assert sorted(p for p in tmp_path.rglob("*.parquet")) == files
    assert {p: p.read_bytes() for p in files} == snapshot
    assert list(read_archive(tmp_path, merge=True)) == by_merge_key(ticks)
    # the dead letter was re-sent with the same deterministic id
    letters = list(read_topic(config, "DeadLetter"))
    assert len(letters) == 2
    assert len({d["event_id"] for d in letters}) == 1


def test_archive_topic_when_file_write_fails_then_nothing_committed_and_rerun_archives_all(
    config: HuracanConfig,
    tmp_path: Path,
    unique_name: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # arrange: the disk fails on the first rename
    ticks = make_ticks(500)
    produce(config, tick_items(config, ticks))
    group = unique_name("archiver")
    real_replace = os.replace
    calls = {"n": 0}

    def failing_replace(src: Any, dst: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)

    # act
    with pytest.raises(ArchiveWriteError):
        archive_topic(config, root=tmp_path, group_id=group, from_beginning=False)
    after_crash = committed(config, group)
    report = archive_topic(config, root=tmp_path, group_id=group, from_beginning=False)

    # assert
    assert after_crash == {}
    assert report.consumed == 500
    assert list(read_archive(tmp_path, merge=True)) == by_merge_key(ticks)
    assert committed(config, group) == report.end_offsets


def test_archive_topic_when_resumed_from_committed_offsets_then_reads_only_new_records(
    config: HuracanConfig, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    # arrange
    ticks = make_ticks(800)
    group = unique_name("archiver")
    produce(config, tick_items(config, ticks[:500]))
    first = archive_topic(config, root=tmp_path, group_id=group, from_beginning=False)
    produce(config, tick_items(config, ticks[500:]))

    # act
    second = archive_topic(config, root=tmp_path, group_id=group, from_beginning=False)

    # assert
    assert (first.consumed, second.consumed) == (500, 300)
    assert second.archived == 300
    assert list(read_archive(tmp_path, merge=True)) == by_merge_key(ticks)


def test_archive_topic_when_flushing_in_small_batches_then_same_archive(
    config: HuracanConfig, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    # arrange
    ticks = make_ticks(700)
    produce(config, tick_items(config, ticks))

    # act: a flush (files + commit) every 100 records
    report = archive_topic(
        config, root=tmp_path, group_id=unique_name("archiver"), batch_size=50, flush_rows=100
    )

    # assert
    assert report.archived == 700
    assert sum(f.added for f in report.files) == 700
    assert list(read_archive(tmp_path, merge=True)) == by_merge_key(ticks)


def test_archive_topic_when_topic_missing_then_topic_read_error(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # arrange: a prefix whose topics were never created
    cfg = build_config(
        {"kafka": {"topic_prefix": f"test.absent.{uuid.uuid4().hex[:8]}"}},
        environ={"HURACAN_KAFKA_BOOTSTRAP": kafka_bootstrap},
    )

    # act / assert
    with pytest.raises(TopicReadError, match="market-data"):
        archive_topic(cfg, root=tmp_path, idle_timeout_s=10)


def test_archive_topic_when_running_continuously_then_archives_as_records_arrive(
    config: HuracanConfig, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    # arrange: an archiver without an end, flushing often, stopped once everything is archived
    ticks = make_ticks(400)
    produce(config, tick_items(config, ticks[:200]))
    produced_rest = {"done": False}

    def archived_rows() -> int:
        try:
            return sum(1 for _ in read_archive(tmp_path))
        except ArchiveError:
            return 0

    def stop() -> bool:
        rows = archived_rows()
        if rows == 200 and not produced_rest["done"]:
            produce(config, tick_items(config, ticks[200:]))  # more arrive while it runs
            produced_rest["done"] = True
        return rows == 400 or time.monotonic() > deadline

    deadline = time.monotonic() + 60
    group = unique_name("archiver")

    # act
    report = archive_topic(
        config, root=tmp_path, group_id=group, until_end=False, flush_interval_s=0.2, stop=stop
    )

    # assert
    assert produced_rest["done"]
    assert report.consumed == 400
    assert not report.complete  # there is no end in this mode
    assert list(read_archive(tmp_path, merge=True)) == by_merge_key(ticks)
    assert sum(committed(config, group).values()) == 400
