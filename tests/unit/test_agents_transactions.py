"""Units of work (agents.transactions, faust_fixes.transactions, at least once), no broker.

The producer is a fake that records what a transactional aiokafka producer is asked to do; the
table is a real Faust table's changelog topic and serializers on a real (never started) app, so
the changelog bytes are the ones Faust itself would write and read back at recovery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faust
import pytest
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from huracan.agents.faust_fixes.transactions import TaskTransactions
from huracan.agents.outputs import DeliveryFailed, OutputProducers
from huracan.agents.shared import AtLeastOnceUnit, Outbox
from huracan.agents.transactions import (
    TaskProducer,
    TaskUnit,
    next_offsets,
    split_by_partition,
    transactional_id,
)
from huracan.config import build_config


@dataclass
class FakeEvent:
    message: ConsumerMessage


def ev(topic: str, partition: int, offset: int) -> Any:
    return FakeEvent(ConsumerMessage(topic, partition, offset, 0.0, 0, None, b"k", b"v", None))


@dataclass
class FakeProducer:
    """What TaskUnit asks of a transactional librdkafka producer, in order."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    fail_commit: bool = False

    def begin_transaction(self) -> None:
        self.calls.append(("begin",))

    def produce(
        self, topic: str, value: bytes | None, key: bytes | None = None, partition: int = -1
    ) -> None:
        self.calls.append(("send", topic, key, value, partition))

    def flush(self, timeout: float | None = None) -> int:
        self.calls.append(("flush",))
        return 0

    def send_offsets_to_transaction(self, offsets: Any, group_metadata: Any) -> None:
        self.calls.append(("offsets", {(o.topic, o.partition): o.offset for o in offsets}))

    def commit_transaction(self) -> None:
        if self.fail_commit:  # librdkafka: a refused record fails the commit
            raise RuntimeError("broker said no")
        self.calls.append(("commit",))

    def abort_transaction(self, timeout: float | None = None) -> None:
        self.calls.append(("abort",))


@pytest.fixture
def outputs() -> OutputProducers:
    return OutputProducers(build_config({}, environ={}))


@pytest.fixture
def table() -> Any:
    app = faust.App("unit-eos", broker="kafka://127.0.0.1:1", autodiscover=False)
    return app.Table(
        "coin-state",
        partitions=4,
        schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
    )


def test_transactional_id_when_task_and_partition_then_stable_name() -> None:
    assert transactional_id("huracan", "coin", 3) == "huracan-coin-3"


def test_split_by_partition_when_topics_mixed_then_one_list_per_partition_in_batch_order() -> None:
    # arrange: market-data and cost-updates of one coin partition belong to one task
    events = [ev("md", 1, 10), ev("md", 0, 5), ev("cost", 1, 2), ev("md", 1, 11), ev("md", 0, 6)]
    # act
    parts = split_by_partition(events)
    # assert
    assert {p: [(e.message.topic, e.message.offset) for e in es] for p, es in parts.items()} == {
        1: [("md", 10), ("cost", 2), ("md", 11)],
        0: [("md", 5), ("md", 6)],
    }


def test_next_offsets_when_events_of_two_topics_then_highest_plus_one_per_topic_partition() -> None:
    events = [ev("md", 1, 10), ev("cost", 1, 2), ev("md", 1, 12), ev("md", 1, 11)]
    assert next_offsets(events) == {TP("md", 1): 13, TP("cost", 1): 3}


def test_next_offsets_when_no_events_then_nothing_to_commit() -> None:
    assert next_offsets([]) == {}


async def test_unit_when_batch_committed_then_outputs_state_and_offsets_in_one_transaction(
    table: Any, outputs: OutputProducers
) -> None:
    # arrange
    producer = FakeProducer()
    unit = await TaskUnit(TaskProducer(producer), "meta", 2, outputs).begin()
    # act
    await unit.send("features", b"BTC", b"f1")
    await unit.write(table, "BTC", {"n": 1})
    await unit.delete(table, "ETH")
    await unit.commit([ev("md", 2, 40), ev("md", 2, 41), ev("cost", 2, 7)])
    # assert: the row is in the store, its changelog record on the task's partition, Faust's
    # bytes; the offsets go into the same transaction, then it is committed and the next
    # batch's transaction begun
    assert table.data["BTC"] == {"n": 1}
    changelog = table.changelog_topic.get_topic_name()
    assert producer.calls == [
        ("begin",),
        ("send", "features", b"BTC", b"f1", -1),
        ("send", changelog, b'"BTC"', b'{"n":1}', 2),
        ("send", changelog, b'"ETH"', None, 2),
        ("offsets", {("md", 2): 42, ("cost", 2): 8}),
        ("commit",),
        ("begin",),
    ]
    assert not unit.open
    assert unit.task.begun


async def test_unit_when_written_then_changelog_bytes_decode_as_faust_reads_them_back(
    table: Any, outputs: OutputProducers
) -> None:
    producer = FakeProducer()
    unit = await TaskUnit(TaskProducer(producer), "meta", 0, outputs).begin()
    row = {"features": None, "costs": {"a": 1.5}, "positions": []}
    await unit.write(table, "SOL", row)
    _, _, key, value, _ = producer.calls[-1]
    app = table.app
    assert app.serializers.loads_key(str, key, serializer="json") == "SOL"
    assert app.serializers.loads_value(None, value, serializer="json") == row


async def test_unit_when_a_send_failed_then_commit_raises_and_nothing_is_committed(
    table: Any, outputs: OutputProducers
) -> None:
    producer = FakeProducer(fail_commit=True)
    unit = await TaskUnit(TaskProducer(producer), "meta", 0, outputs).begin()
    await unit.send("features", b"BTC", b"f1")
    with pytest.raises(RuntimeError, match="broker said no"):
        await unit.commit([ev("md", 0, 1)])
    assert ("commit",) not in producer.calls
    assert unit.open
    await unit.abort()
    assert producer.calls[-1] == ("abort",)


async def test_unit_when_aborted_twice_or_after_commit_then_producer_asked_once_or_never(
    outputs: OutputProducers,
) -> None:
    producer = FakeProducer()
    unit = await TaskUnit(TaskProducer(producer), "meta", 0, outputs).begin()
    await unit.abort()
    await unit.abort()
    assert producer.calls.count(("abort",)) == 1
    committed = await TaskUnit(TaskProducer(producer), "meta", 0, outputs).begin()
    await committed.commit([])
    await committed.abort()
    assert producer.calls.count(("abort",)) == 1
    assert not [c for c in producer.calls if c[0] == "offsets"]  # no events: no offsets


@dataclass
class FakeConf:
    id: str = "huracan"


@dataclass
class FakeApp:
    conf: FakeConf = field(default_factory=FakeConf)
    huracan_task_topics: dict[str, str] = field(
        default_factory=lambda: {"md": "coin", "cost": "coin", "req": "sequencer"}
    )


@dataclass
class FakeTransport:
    app: FakeApp = field(default_factory=FakeApp)


def test_task_ids_when_partitions_assigned_then_one_id_per_task_partition_tables_ignored() -> None:
    # arrange
    tx = TaskTransactions(FakeTransport(), consumer=None, producer=None)  # type: ignore[arg-type]
    assigned = {TP("md", 0), TP("cost", 0), TP("md", 1), TP("req", 0), TP("coin-changelog", 0)}
    # act / assert: co-partitioned sources share their task's producer; changelogs have none
    assert tx.task_ids(assigned) == {"huracan-coin-0", "huracan-coin-1", "huracan-sequencer-0"}


async def test_commit_when_faust_commits_offsets_then_nothing_sent() -> None:
    tx = TaskTransactions(FakeTransport(), consumer=None, producer=None)  # type: ignore[arg-type]
    assert await tx.commit({TP("md", 0): 10}) is True


async def test_at_least_once_unit_when_rows_written_then_store_and_changelog_on_event_partition(
    table: Any, outputs: OutputProducers
) -> None:
    # arrange
    producer = FakeProducer()
    unit = AtLeastOnceUnit(table.app, Outbox(outputs, producer))
    table.data["ETH"] = {"n": 0}
    # act
    await unit.send("features", b"BTC", b"f1")
    await unit.write(table, "BTC", {"n": 1}, ev("md", 3, 40))
    await unit.delete(table, "ETH", ev("md", 1, 9))
    await unit.commit([ev("md", 3, 40)])
    # assert: the store has the rows; each changelog record is Faust's bytes on the partition
    # of the event that wrote it (where Faust's own table write would have put it); the unit
    # waited for the broker (flush) before the batch may be acknowledged
    assert table.data["BTC"] == {"n": 1}
    assert "ETH" not in table.data
    changelog = table.changelog_topic.get_topic_name()
    assert producer.calls == [
        ("send", "features", b"BTC", b"f1", -1),
        ("send", changelog, b'"BTC"', b'{"n":1}', 3),
        ("send", changelog, b'"ETH"', None, 1),
        ("flush",),
    ]
    assert unit.out.pending == 0


async def test_at_least_once_unit_when_broker_refused_a_record_then_commit_raises(
    table: Any, outputs: OutputProducers
) -> None:
    # arrange: librdkafka reports the refused record to the producers' delivery callback
    producer = FakeProducer()
    unit = AtLeastOnceUnit(table.app, Outbox(outputs, producer))
    await unit.send("features", b"BTC", b"f1")
    outputs.on_delivery("MSG_SIZE_TOO_LARGE", None)
    # act / assert: the batch must not be acknowledged
    with pytest.raises(DeliveryFailed, match="MSG_SIZE_TOO_LARGE"):
        await unit.commit([ev("md", 0, 1)])
