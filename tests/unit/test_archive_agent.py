"""TopicArchiver's flush rules with fake Kafka clients and a real archive on disk."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from huracan.agents.archive_agent import (
    REASON_SCHEMA,
    REASON_WRITE_FAILED,
    ArchiveFlushError,
    TopicArchiver,
    archive_group,
)
from huracan.config import HuracanConfig, build_config
from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator
from huracan.storage.archive import archive_path, day_of, read_metadata
from huracan.storage.history import read_archive
from huracan.streams.serde import Serde, make_serde

T0 = 1_767_225_600_000_000
TOPIC = "unit.market-data"


@dataclass
class FakeMessage:
    """The accessors of confluent_kafka.Message the archiver uses."""

    raw: bytes | None
    part: int
    off: int
    k: bytes | None = b"BTC"
    err: KafkaError | None = None

    def value(self) -> bytes | None:
        return self.raw

    def key(self) -> bytes | None:
        return self.k

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self.part

    def offset(self) -> int:
        return self.off

    def error(self) -> KafkaError | None:
        return self.err

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_767_225_600_000)


@dataclass
class FakeConsumer:
    batches: list[list[FakeMessage]] = field(default_factory=list)
    commits: list[dict[int, int]] = field(default_factory=list)
    commit_error: KafkaException | None = None
    on_commit: Any = None
    subscribed: list[str] = field(default_factory=list)
    closed: bool = False
    config: dict[str, Any] = field(default_factory=dict)

    def subscribe(self, topics: list[str], on_revoke: Any = None, on_lost: Any = None) -> None:
        self.subscribed = topics
        self.on_revoke = on_revoke

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        return self.batches.pop(0) if self.batches else []

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        assert asynchronous is False
        if self.on_commit is not None:
            self.on_commit()
        if self.commit_error is not None:
            raise self.commit_error
        self.commits.append({tp.partition: tp.offset for tp in offsets})

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeProducer:
    """Collects produced records; ``undelivered`` is what flush() reports as still pending."""

    produced: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    undelivered: int = 0

    def produce(self, topic: str, key: bytes | None, value: bytes, on_delivery: Any) -> None:
        self.produced.append((topic, key, value))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return self.undelivered


@pytest.fixture
def cfg(tmp_path: Path) -> HuracanConfig:
    return build_config(
        {"kafka": {"topic_prefix": "unit"}, "storage": {"archive": {"root": str(tmp_path)}}},
        environ={},
    )


def _ticks(n: int, coins: int = 3) -> list[dict[str, Any]]:
    sim = MarketSimulator(universe(coins), seed=3, start_ts_us=T0, rate=100)
    return list(sim.ticks(n))


def _messages(serde: Serde, ticks: list[dict[str, Any]]) -> list[FakeMessage]:
    """Ticks on two partitions, offsets counting up per partition."""
    coins = sorted({t["coin"] for t in ticks})
    out, next_offset = [], {0: 0, 1: 0}
    for t in ticks:
        p = coins.index(t["coin"]) % 2
        out.append(
            FakeMessage(serde.encode("MarketTick", t), p, next_offset[p], t["coin"].encode())
        )
        next_offset[p] += 1
    return out


def _archiver(
    cfg: HuracanConfig, consumer: FakeConsumer, producer: FakeProducer, **kwargs: Any
) -> tuple[TopicArchiver, list[float]]:
    slept: list[float] = []
    archiver = TopicArchiver(
        cfg,
        consumer_factory=lambda conf: (consumer.config.update(conf), consumer)[1],
        producer_factory=lambda conf: producer,
        sleep=slept.append,
        **kwargs,
    )
    return archiver, slept


def _next_offsets(messages: list[FakeMessage]) -> dict[int, int]:
    out: dict[int, int] = {}
    for m in messages:
        out[m.part] = max(out.get(m.part, 0), m.off + 1)
    return out


def test_flush_when_records_held_then_files_durable_before_offsets_committed(
    cfg: HuracanConfig, tmp_path: Path
) -> None:
    # arrange
    serde = make_serde(cfg)
    ticks = _ticks(60)
    messages = _messages(serde, ticks)
    consumer, producer = FakeConsumer(batches=[messages]), FakeProducer()
    archiver, _ = _archiver(cfg, consumer, producer)
    rows_at_commit: list[int] = []
    consumer.on_commit = lambda: rows_at_commit.append(
        sum(1 for _ in read_archive(tmp_path, event_type="MarketTick"))
    )
    archiver.consumer = consumer

    # act
    archiver.poll()
    result = archiver.flush()

    # assert: every row was on disk when the offsets were committed
    assert result is not None
    assert rows_at_commit == [len(ticks)]
    assert consumer.commits == [_next_offsets(messages)]
    assert (result.records, result.added, result.duplicates, result.dead_letters) == (60, 60, 0, 0)
    assert archiver.held == []
    assert producer.produced == []
    # each file names the topic and the offsets its rows came from
    coin = ticks[0]["coin"]
    meta = read_metadata(archive_path(tmp_path, "MarketTick", coin, day_of(T0)))
    mine = [m for m, t in zip(messages, ticks, strict=True) if t["coin"] == coin]
    assert meta.source_topics == [TOPIC]
    part = mine[0].part
    assert meta.sources[TOPIC][part][0][0] == mine[0].off
    assert meta.sources[TOPIC][part][-1][1] == mine[-1].off


def test_flush_when_records_read_again_then_no_row_written_twice(
    cfg: HuracanConfig, tmp_path: Path
) -> None:
    # arrange: the same records twice (a restart before the commit)
    serde = make_serde(cfg)
    messages = _messages(serde, _ticks(40))
    consumer = FakeConsumer(batches=[messages, messages])
    archiver, _ = _archiver(cfg, consumer, FakeProducer())
    archiver.consumer = consumer

    # act
    archiver.poll()
    first = archiver.flush()
    archiver.poll()
    second = archiver.flush()

    # assert
    assert first is not None
    assert second is not None
    assert (first.added, first.duplicates) == (40, 0)
    assert (second.added, second.duplicates) == (0, 40)
    assert len(list(read_archive(tmp_path))) == 40


def test_flush_when_records_undecodable_or_coin_invalid_then_dead_lettered_and_committed(
    cfg: HuracanConfig, tmp_path: Path
) -> None:
    # arrange
    serde = make_serde(cfg)
    ticks = _ticks(10)
    bad_coin = {**ticks[0], "event_id": "tick:bad", "coin": "../../etc"}
    messages = _messages(serde, ticks)
    bad = [
        FakeMessage(b"not avro", 0, 100),
        FakeMessage(serde.encode("MarketTick", bad_coin), 1, 100),
    ]
    consumer, producer = FakeConsumer(batches=[messages + bad]), FakeProducer()
    archiver, _ = _archiver(cfg, consumer, producer)
    archiver.consumer = consumer

    # act
    archiver.poll()
    result = archiver.flush()

    # assert: the good ticks archived, the bad ones in the dead-letter topic, all committed
    assert result is not None
    assert (result.added, result.dead_letters) == (10, 2)
    letters = [serde.decode(value) for _, _, value in producer.produced]
    assert [topic for topic, _, _ in producer.produced] == ["unit.dead-letter"] * 2
    assert [d["original_value"] for d in letters] == [m.raw for m in bad]
    assert letters[1]["reason"] == REASON_SCHEMA
    assert letters[0]["reason"] != REASON_SCHEMA
    assert letters[0]["error_message"]
    assert {d["consumer"] for d in letters} == {"archive"}
    assert consumer.commits == [_next_offsets(messages + bad)]
    assert sorted(t["event_id"] for t in read_archive(tmp_path)) == sorted(
        t["event_id"] for t in ticks
    )


def test_flush_when_a_coins_file_is_corrupt_then_retried_then_its_rows_dead_lettered(
    cfg: HuracanConfig, tmp_path: Path
) -> None:
    # arrange: one coin's day file is garbage, so every write touching it fails
    serde = make_serde(cfg)
    ticks = _ticks(30)
    broken = ticks[0]["coin"]
    path = archive_path(tmp_path, "MarketTick", broken, day_of(T0))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet")
    messages = _messages(serde, ticks)
    consumer, producer = FakeConsumer(batches=[messages]), FakeProducer()
    archiver, slept = _archiver(cfg, consumer, producer, write_retry_delays=(1.0, 3.0))
    archiver.consumer = consumer

    # act
    archiver.poll()
    result = archiver.flush()

    # assert: two retries, then the other coins written and the broken coin's rows dead-lettered
    assert result is not None
    assert slept == [1.0, 3.0]
    n_broken = sum(1 for t in ticks if t["coin"] == broken)
    assert result.dead_letters == n_broken
    assert result.added + result.duplicates == len(ticks) - n_broken
    assert sorted(
        t["event_id"]
        for t in read_archive(tmp_path, [c for c in {t["coin"] for t in ticks} if c != broken])
    ) == sorted(t["event_id"] for t in ticks if t["coin"] != broken)
    letters = [serde.decode(value) for _, _, value in producer.produced]
    assert {d["reason"] for d in letters} == {REASON_WRITE_FAILED}
    assert sorted(d["original_value"] for d in letters) == sorted(
        m.raw for m, t in zip(messages, ticks, strict=True) if t["coin"] == broken
    )
    assert path.read_bytes() == b"not parquet"  # never touched
    assert consumer.commits == [_next_offsets(messages)]


def test_flush_when_dead_letters_undelivered_then_nothing_committed_and_records_kept(
    cfg: HuracanConfig,
) -> None:
    # arrange
    serde = make_serde(cfg)
    messages = [*_messages(serde, _ticks(5)), FakeMessage(b"junk", 0, 50)]
    consumer, producer = FakeConsumer(batches=[messages]), FakeProducer(undelivered=1)
    archiver, slept = _archiver(cfg, consumer, producer, retry_delay_s=5.0)
    archiver.consumer = consumer
    archiver.poll()

    # act / assert: the flush fails and keeps everything
    with pytest.raises(ArchiveFlushError, match="undelivered"):
        archiver.flush()
    assert consumer.commits == []
    assert len(archiver.held) == len(messages)

    # act: the broker is back; flush_until_done retries after its delay
    attempts = iter([1, 0])

    def flush_later(timeout: float) -> int:
        return next(attempts)

    producer.flush = flush_later  # type: ignore[method-assign]
    result = archiver.flush_until_done(lambda: False)

    # assert
    assert result is not None
    assert slept == [5.0]
    assert consumer.commits == [_next_offsets(messages)]
    assert archiver.held == []


def test_commit_when_group_generation_lost_then_records_left_to_next_owner(
    cfg: HuracanConfig,
) -> None:
    # arrange
    messages = _messages(make_serde(cfg), _ticks(5))
    consumer = FakeConsumer(batches=[messages])
    consumer.commit_error = KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
    archiver, _ = _archiver(cfg, consumer, FakeProducer())
    archiver.consumer = consumer
    archiver.poll()

    # act
    result = archiver.flush()

    # assert: archived, not committed, and not held any more
    assert result is not None
    assert result.added == 5
    assert result.committed == {}
    assert archiver.held == []


def test_commit_when_other_kafka_error_then_flush_fails_and_keeps_records(
    cfg: HuracanConfig,
) -> None:
    messages = _messages(make_serde(cfg), _ticks(5))
    consumer = FakeConsumer(batches=[messages])
    consumer.commit_error = KafkaException(KafkaError(KafkaError._TRANSPORT))
    archiver, _ = _archiver(cfg, consumer, FakeProducer())
    archiver.consumer = consumer
    archiver.poll()

    with pytest.raises(ArchiveFlushError, match="commit"):
        archiver.flush()
    assert len(archiver.held) == 5


def test_due_when_rows_or_age_reach_the_limits_then_true(cfg: HuracanConfig) -> None:
    # arrange
    now = [100.0]
    serde = make_serde(cfg)
    messages = _messages(serde, _ticks(12))
    consumer = FakeConsumer(batches=[messages[:4], messages[4:]])
    archiver, _ = _archiver(
        cfg, consumer, FakeProducer(), flush_rows=10, flush_seconds=30.0, clock=lambda: now[0]
    )
    archiver.consumer = consumer

    # act / assert
    assert not archiver.due()  # nothing held
    archiver.poll()
    assert not archiver.due()  # 4 rows, just read
    now[0] += 29.9
    assert not archiver.due()
    now[0] += 0.1
    assert archiver.due()  # the oldest is 30 s old
    now[0] = 100.0
    archiver.poll()
    assert archiver.due()  # 12 rows >= flush_rows


def test_run_when_stopped_then_final_flush_committed_and_consumer_closed(
    cfg: HuracanConfig, tmp_path: Path
) -> None:
    # arrange: a large flush_seconds, so only the stop flushes
    messages = _messages(make_serde(cfg), _ticks(20))
    consumer = FakeConsumer(batches=[messages[:8], messages[8:], [], []])
    archiver, _ = _archiver(cfg, consumer, FakeProducer(), flush_seconds=3600.0)
    polls = iter(range(3))

    # act: stop after three polls
    archiver.run(lambda: next(polls, None) is None)

    # assert
    assert consumer.subscribed == [TOPIC]
    assert consumer.config["group.id"] == archive_group(cfg, "MarketTick")
    assert consumer.config["enable.auto.commit"] is False
    assert consumer.commits == [_next_offsets(messages)]
    assert consumer.closed
    assert len(list(read_archive(tmp_path))) == 20


def test_on_revoke_when_records_held_then_flushed_before_the_partitions_go(
    cfg: HuracanConfig,
) -> None:
    messages = _messages(make_serde(cfg), _ticks(6))
    consumer = FakeConsumer(batches=[messages])
    archiver, _ = _archiver(cfg, consumer, FakeProducer(), flush_seconds=3600.0)
    archiver.consumer = consumer
    archiver.poll()

    archiver._on_revoke(consumer, [])

    assert consumer.commits == [_next_offsets(messages)]
    assert archiver.held == []


def test_archiver_when_flush_limits_invalid_then_value_error(cfg: HuracanConfig) -> None:
    with pytest.raises(ValueError, match="flush_rows"):
        TopicArchiver(cfg, flush_rows=0)
