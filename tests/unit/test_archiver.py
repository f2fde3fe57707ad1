"""The shared topic archiver (huracan.storage.archiver) as ``huracan archive`` configures it:
no retries, the writer's error raised, the group named in the dead letters. Fake Kafka clients,
a real archive on disk. The agent's configuration is covered by test_archive_agent.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from huracan.config import HuracanConfig, build_config
from huracan.storage.archive_errors import ArchiveWriteError
from huracan.storage.archiver import TopicArchiver
from huracan.storage.history import read_archive
from huracan.streams.dead_letter import PROCESSING_ERROR
from huracan.streams.serde import make_serde
from tests.unit.test_archive_agent import (
    FakeConsumer,
    FakeMessage,
    FakeProducer,
    _messages,
    _next_offsets,
    _ticks,
)

GROUP = "unit.archiver.MarketTick"


@pytest.fixture
def config(tmp_path: Path) -> HuracanConfig:
    return build_config({"kafka": {"topic_prefix": "unit"}}, environ={})


def _cli_archiver(
    config: HuracanConfig,
    root: Path,
    consumer: FakeConsumer,
    made: list[dict[str, Any]],
    producer: FakeProducer | None = None,
) -> TopicArchiver:
    producer = producer or FakeProducer()

    def producer_factory(conf: dict[str, Any]) -> FakeProducer:
        made.append(conf)
        return producer

    archiver = TopicArchiver(
        config,
        "MarketTick",
        root=root,
        group_id=GROUP,
        role="archiver-MarketTick",
        producer_factory=producer_factory,
        clock_us=lambda: 1_767_225_600_000_000,
    )
    archiver.consumer = consumer
    return archiver


def test_flush_when_write_fails_without_dead_lettering_then_writer_error_and_nothing_committed(
    config: HuracanConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # arrange
    messages = _messages(make_serde(config), _ticks(20))
    consumer = FakeConsumer()
    archiver = _cli_archiver(config, tmp_path, consumer, [])
    archiver.held.extend(messages)

    def failing_replace(*_: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)

    # act / assert
    with pytest.raises(ArchiveWriteError):
        archiver.flush()
    assert consumer.commits == []
    assert len(archiver.held) == 20


def test_flush_when_record_undecodable_then_dead_letter_names_the_group_and_is_committed(
    config: HuracanConfig, tmp_path: Path
) -> None:
    # arrange
    serde = make_serde(config)
    ticks = _ticks(10)
    bad_coin = {**ticks[0], "event_id": "tick:bad", "coin": "../../etc"}
    messages = _messages(serde, ticks)
    bad = [
        FakeMessage(b"not avro", 0, 100),
        FakeMessage(serde.encode("MarketTick", bad_coin), 1, 100),
    ]
    consumer, producer, made = FakeConsumer(), FakeProducer(), []
    archiver = _cli_archiver(config, tmp_path, consumer, made, producer)
    archiver.held.extend(messages + bad)

    # act
    result = archiver.flush()

    # assert: the dead letters name the group and the error's own reason; all committed
    assert result is not None
    assert (result.added, result.dead_letters) == (10, 2)
    assert result.dead_letter_reasons[1] == PROCESSING_ERROR
    assert consumer.commits == [_next_offsets(messages + bad)]
    letters = [serde.decode(value) for _, _, value in producer.produced]
    assert {d["consumer"] for d in letters} == {GROUP}
    assert [d["original_value"] for d in letters] == [m.raw for m in bad]
    assert sorted(t["event_id"] for t in read_archive(tmp_path)) == sorted(
        t["event_id"] for t in ticks
    )
    [conf] = made
    assert conf["client.id"] == "huracan-archiver-MarketTick-dead-letter"
    assert conf["enable.idempotence"] is True
    assert archiver.held == []


def test_flush_when_nothing_held_then_none_and_no_commit(
    config: HuracanConfig, tmp_path: Path
) -> None:
    consumer = FakeConsumer()
    archiver = _cli_archiver(config, tmp_path, consumer, [])

    assert archiver.flush() is None
    assert consumer.commits == []
