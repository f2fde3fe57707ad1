from __future__ import annotations

import uuid

from confluent_kafka import Consumer, TopicPartition

from huracan.config import build_config
from huracan.publish import publish_ticks
from huracan.streams.serde import make_serde
from huracan.streams.topics import ensure_topics


def test_publish_ticks_when_run_then_every_tick_on_the_coins_partition_with_event_time(
    kafka_bootstrap: str, unique_name
) -> None:
    # arrange
    cfg = build_config(
        {"kafka": {"topic_prefix": unique_name("pub"), "partitions": {"market_data": 4}}},
        environ={"HURACAN_KAFKA_BOOTSTRAP": kafka_bootstrap},
    )
    ensure_topics(cfg)

    # act
    report = publish_ticks(cfg, coins=25, rate=2_000, duration=1.0, seed=3, start_ts_us=10**15)

    # assert
    assert report.ticks == 2_000
    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": uuid.uuid4().hex,
         "enable.partition.eof": True}
    )  # fmt: skip
    consumer.assign([TopicPartition(report.topic, p, 0) for p in range(4)])
    serde = make_serde(cfg)
    seen: list[dict] = []
    partition_of: dict[str, int] = {}
    eofs = 0
    while eofs < 4:
        msg = consumer.poll(5)
        assert msg is not None, "consumer stalled"
        if msg.error():
            eofs += 1
            continue
        tick = serde.decode(msg.value(), expected="MarketTick")
        assert msg.key() == tick["coin"].encode()
        assert msg.timestamp()[1] == tick["ts"] // 1000
        assert partition_of.setdefault(tick["coin"], msg.partition()) == msg.partition()
        seen.append(tick)
    consumer.close()
    assert len(seen) == 2_000
    assert len(partition_of) == 25
    for coin in partition_of:
        seqs = [t["seq"] for t in seen if t["coin"] == coin]
        assert seqs == list(range(1, len(seqs) + 1))
