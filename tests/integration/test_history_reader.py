"""``read_topic`` against the real broker: slices by offsets and by time, bounded reads,
the cross-partition merge, and parity with the archive."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from huracan.config import HuracanConfig, build_config
from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator
from huracan.storage.archive import archive_topic
from huracan.storage.archive_errors import NoDataInRange, TopicReadError, UndecodableRecord
from huracan.storage.history import read_archive, read_topic
from huracan.streams.serde import make_serde
from huracan.streams.topics import TopicCatalog, ensure_topics

START = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
PARTITIONS = 4


@pytest.fixture
def config(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> HuracanConfig:
    prefix = unique_name("hist")
    cfg = build_config(
        {"kafka": {"topic_prefix": prefix, "partitions": {"market_data": PARTITIONS}}},
        environ={"HURACAN_KAFKA_BOOTSTRAP": kafka_bootstrap},
    )
    ensure_topics(cfg, prefix=prefix)
    return cfg


def make_ticks(n: int, *, coins: int = 10, seed: int = 5, start: int = START) -> list[dict]:
    return list(MarketSimulator(universe(coins), seed=seed, start_ts_us=start, rate=100.0).ticks(n))


def by_merge_key(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: (r["ts"], r["coin"], r["seq"]))


def produce(
    config: HuracanConfig, items: list[tuple[bytes | None, bytes, int | None]]
) -> list[tuple[int, int]]:
    """Produce ``(key, value, timestamp_ms)`` in order; each one's (partition, offset)."""
    topic = TopicCatalog.from_config(config).for_event_type("MarketTick").name
    producer = Producer(
        {"bootstrap.servers": config.kafka.bootstrap_servers, "enable.idempotence": True}
    )
    where: dict[int, tuple[int, int]] = {}
    for i, (key, value, ts_ms) in enumerate(items):

        def on_delivery(err: Any, msg: Any, i: int = i) -> None:
            assert err is None, err
            where[i] = (msg.partition(), msg.offset())

        kwargs: dict[str, Any] = {"timestamp": ts_ms} if ts_ms is not None else {}
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery, **kwargs)
        producer.poll(0)
    assert producer.flush(30) == 0
    return [where[i] for i in range(len(items))]


def produce_ticks(config: HuracanConfig, ticks: list[dict]) -> list[tuple[int, int]]:
    """Produce ticks the way the engine does: key = coin, record timestamp = event ts in ms."""
    serde = make_serde(config)
    return produce(
        config,
        [(t["coin"].encode(), serde.encode("MarketTick", t), t["ts"] // 1000) for t in ticks],
    )


@pytest.fixture
def ticks_on_topic(config: HuracanConfig) -> tuple[list[dict], list[tuple[int, int]]]:
    ticks = make_ticks(1000)
    return ticks, produce_ticks(config, ticks)


def test_read_topic_when_offsets_given_then_exactly_that_slice_in_log_order(
    config: HuracanConfig, ticks_on_topic: tuple[list[dict], list[tuple[int, int]]]
) -> None:
    # arrange
    ticks, where = ticks_on_topic
    used = sorted({p for p, _ in where})[:2]
    start = {p: 10 for p in used}
    end = {used[0]: 60, used[1]: 10_000}  # past the high watermark: clamped to it

    # act
    events = read_topic(config, "MarketTick", start_offsets=start, end_offsets=end)
    got = list(events)

    # assert
    expected = {
        p: [t for t, (q, o) in zip(ticks, where, strict=True) if q == p and start[p] <= o < end[p]]
        for p in used
    }
    assert sorted(events.ranges) == used
    assert len(got) == sum(len(v) for v in expected.values())
    for p in used:  # each partition's records in offset order
        coins_of_p = {t["coin"] for t in expected[p]}
        assert [r for r in got if r["coin"] in coins_of_p] == expected[p]


def test_read_topic_when_time_range_then_events_with_ts_in_range(
    config: HuracanConfig, ticks_on_topic: tuple[list[dict], list[tuple[int, int]]]
) -> None:
    # arrange: a range that does not fall on millisecond boundaries
    ticks, _ = ticks_on_topic
    start_us = ticks[250]["ts"] - 123
    end_us = ticks[700]["ts"] + 456

    # act
    seeking = list(read_topic(config, start_time=start_us, end_time=end_us, merge=True))
    scanning = list(
        read_topic(
            config, start_time=start_us, end_time=end_us, merge=True, seek_by_record_time=False
        )
    )

    # assert
    expected = by_merge_key([t for t in ticks if start_us <= t["ts"] < end_us])
    assert len(expected) == 451
    assert seeking == expected
    assert scanning == expected


def test_read_topic_when_time_range_then_offsets_narrowed_by_record_timestamps(
    config: HuracanConfig, ticks_on_topic: tuple[list[dict], list[tuple[int, int]]]
) -> None:
    # arrange
    ticks, where = ticks_on_topic
    start_us, end_us = ticks[400]["ts"], ticks[600]["ts"]

    # act
    events = read_topic(config, start_time=start_us, end_time=end_us)
    events.close()

    # assert: each partition starts at its first record at/after start and ends at its first
    # record at/after end (record timestamps are the event ts in ms)
    for p, (lo, hi) in events.ranges.items():
        mine = [(o, t["ts"]) for t, (q, o) in zip(ticks, where, strict=True) if q == p]
        assert lo == min(o for o, ts in mine if ts >= start_us)
        assert hi == min(o for o, ts in mine if ts >= end_us)


def test_read_topic_when_merged_then_global_order_matches_the_archive(
    config: HuracanConfig,
    ticks_on_topic: tuple[list[dict], list[tuple[int, int]]],
    tmp_path: Path,
    unique_name: Callable[[str], str],
) -> None:
    # arrange
    ticks, _ = ticks_on_topic
    archive_topic(config, root=tmp_path, group_id=unique_name("archiver"))

    # act
    from_topic = list(read_topic(config, merge=True))
    from_archive = list(read_archive(tmp_path, merge=True))

    # assert
    assert from_topic == by_merge_key(ticks)
    assert from_archive == from_topic


def test_read_topic_when_coins_given_then_only_those_coins(
    config: HuracanConfig, ticks_on_topic: tuple[list[dict], list[tuple[int, int]]]
) -> None:
    ticks, _ = ticks_on_topic
    got = list(read_topic(config, coins=["BTC", "SOL"], merge=True))
    assert got == by_merge_key([t for t in ticks if t["coin"] in {"BTC", "SOL"}])


def test_read_topic_when_records_produced_after_the_call_then_not_returned(
    config: HuracanConfig, ticks_on_topic: tuple[list[dict], list[tuple[int, int]]]
) -> None:
    # arrange
    ticks, _ = ticks_on_topic
    events = read_topic(config, merge=True)
    later = make_ticks(200, seed=99, start=START + 3_600_000_000)
    produce_ticks(config, later)

    # act
    got = list(events)

    # assert: bounded by the high watermarks captured at the call
    assert got == by_merge_key(ticks)


def test_read_topic_when_malformed_record_and_no_handler_then_undecodable_record(
    config: HuracanConfig,
) -> None:
    # arrange
    ticks = make_ticks(20, coins=1)
    serde = make_serde(config)
    [*_, (p, o)] = produce(
        config,
        [(b"BTC", serde.encode("MarketTick", t), None) for t in ticks] + [(b"BTC", b"junk", None)],
    )

    # act / assert
    with pytest.raises(UndecodableRecord) as err:
        list(read_topic(config))
    assert (err.value.partition, err.value.offset, err.value.reason) == (p, o, "bad_magic")


def test_read_topic_when_malformed_record_and_handler_then_skipped_and_reported(
    config: HuracanConfig,
) -> None:
    # arrange
    ticks = make_ticks(20, coins=1)
    serde = make_serde(config)
    where = produce(
        config,
        [(b"BTC", serde.encode("MarketTick", t), None) for t in ticks[:10]]
        + [(b"BTC", b"junk", None)]
        + [(b"BTC", serde.encode("MarketTick", t), None) for t in ticks[10:]],
    )
    seen: list[tuple[int, int, str]] = []

    # act
    got = list(
        read_topic(config, on_error=lambda m, e: seen.append((m.partition(), m.offset(), e.reason)))
    )

    # assert
    assert got == ticks
    assert seen == [(*where[10], "bad_magic")]


def test_read_topic_when_time_range_after_the_last_record_then_no_data_in_range(
    config: HuracanConfig, ticks_on_topic: tuple[list[dict], list[tuple[int, int]]]
) -> None:
    ticks, _ = ticks_on_topic
    after = ticks[-1]["ts"] + 10_000_000
    with pytest.raises(NoDataInRange):
        read_topic(config, start_time=after)


def test_read_topic_when_topic_empty_then_no_data_in_range(config: HuracanConfig) -> None:
    with pytest.raises(NoDataInRange):
        read_topic(config, "MarketTick")


def test_read_topic_when_given_a_topic_name_then_reads_it(
    config: HuracanConfig, ticks_on_topic: tuple[list[dict], list[tuple[int, int]]]
) -> None:
    ticks, _ = ticks_on_topic
    topic = TopicCatalog.from_config(config).for_event_type("MarketTick").name
    with read_topic(config, topic, merge=True) as events:
        assert events.event_type == "MarketTick"
        assert list(events) == by_merge_key(ticks)


def test_read_topic_when_closed_early_then_stops_cleanly(
    config: HuracanConfig, ticks_on_topic: tuple[list[dict], list[tuple[int, int]]]
) -> None:
    # arrange
    events = read_topic(config)
    first = next(events)

    # act
    events.close()

    # assert
    assert first["coin"]
    with pytest.raises(StopIteration):
        next(events)


def test_read_topic_when_default_prefix_config_then_names_topic_from_config(
    kafka_bootstrap: str,
) -> None:
    # a config whose topics do not exist: the error names the topic, nothing hangs
    cfg = build_config(
        {"kafka": {"topic_prefix": "test.absent.reader"}},
        environ={"HURACAN_KAFKA_BOOTSTRAP": kafka_bootstrap},
    )
    with pytest.raises(TopicReadError, match=r"test\.absent\.reader\.market-data"):
        read_topic(cfg, idle_timeout_s=10)
