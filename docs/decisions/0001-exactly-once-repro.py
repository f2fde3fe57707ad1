"""Reproduce the exactly_once stall of faust-streaming 0.15.3's TransactionManager.

Decision record: docs/decisions/0001-exactly-once.md. Run it in a checkout of commit feb9653
(before huracan.agents.transactions), services up, with this file copied in:

    .venv/bin/python docs/decisions/0001-exactly-once-repro.py exactly_once 100

One worker, the end-to-end test's 3,000 ticks, then each output topic is counted by a
read_uncommitted and a read_committed consumer. On feb9653 the trade requests are all on the
broker but none is committed, so nothing is decided; since huracan.agents.transactions every
count is the same both ways. ``at_least_once`` as the first argument runs the other guarantee.
"""

import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from huracan.config import build_config
from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator
from huracan.streams.serde import make_serde
from huracan.streams.topics import TopicCatalog, ensure_topics
from huracan.worker_process import running_worker

BOOTSTRAP = "127.0.0.1:9092"
prefix = f"eosrepro-{uuid.uuid4().hex[:8]}"
workdir = Path(tempfile.mkdtemp(prefix=prefix))
guarantee = sys.argv[1] if len(sys.argv) > 1 else "exactly_once"
wait_s = float(sys.argv[2]) if len(sys.argv) > 2 else 45
coin_topics = ("market_data", "features", "signals", "cost_updates", "executions")
cfg = build_config(
    {
        "kafka": {"topic_prefix": prefix, "partitions": dict.fromkeys(coin_topics, 4)},
        "faust": {"app_id": prefix, "batch_size": 200, "processing_guarantee": guarantee},
        "engine": {"model_registry": {"metadata_db": "", "storage_path": str(workdir / "models")}},
    },
    environ={"HURACAN_KAFKA_BOOTSTRAP": BOOTSTRAP},
)
ensure_topics(cfg)
catalog = TopicCatalog.from_config(cfg)
serde = make_serde(cfg)


def count(event_type: str, isolation: str) -> dict[str, int]:
    spec = catalog.for_event_type(event_type)
    consumer = Consumer(
        {"bootstrap.servers": BOOTSTRAP, "group.id": uuid.uuid4().hex,
         "enable.partition.eof": True, "isolation.level": isolation}
    )  # fmt: skip
    consumer.assign([TopicPartition(spec.name, p, 0) for p in range(spec.partitions)])
    kinds: dict[str, int] = {}
    eof: set[int] = set()
    while len(eof) < spec.partitions:
        msg = consumer.poll(5)
        if msg is None:
            break
        if msg.error():
            eof.add(msg.partition())
            continue
        kind = serde.decode_event(msg.value()).event_type
        kinds[kind] = kinds.get(kind, 0) + 1
    consumer.close()
    return kinds


ticks = list(
    MarketSimulator(universe(20), seed=5, start_ts_us=1_767_225_600_000_000, rate=500).ticks(3000)
)
with running_worker(cfg, workdir / "worker") as worker:
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 5})
    topic = catalog.for_event_type("MarketTick").name
    for t in ticks:
        producer.produce(topic, key=t["coin"].encode(), value=serde.encode("MarketTick", t))
    producer.flush(30)
    time.sleep(wait_s)
    for event_type in ("FeatureVector", "TradeRequest", "RiskDecision", "Execution"):
        print(
            f"{event_type}: read_uncommitted {count(event_type, 'read_uncommitted')}, "
            f"read_committed {count(event_type, 'read_committed')}",
            flush=True,
        )
    print("worker log:", worker.log_path, flush=True)
