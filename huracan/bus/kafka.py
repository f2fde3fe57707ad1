"""Kafka message bus (aiokafka for produce/consume, confluent-kafka's AdminClient for topics).

Layout: one topic per stream type, ``{prefix}.bus.{stream_type}`` (``partitions`` and
``replication_factor`` from the config), created on demand because the broker does not
auto-create topics. The record key is the coin, so one coin's records share a partition and keep
their order. Dead letters go to ``{prefix}.bus.dead-letter``. These topics are the bus's own;
the Faust pipeline's Avro topics (``huracan.market-data`` …) are separate.

- **Publish**: the payload JSON as the value, the coin as the key, ``acks=all`` with the
  idempotent producer; ``message_id`` is ``"{partition}-{offset}"``.
- **Subscribe(stream_type, coin, group)**: a consumer in the Kafka group ``{group}.{coin}``
  (so that subscriptions for different coins sharing one ``consumer_group`` name — the spec's
  ``"market_data_workers"`` for every coin — do not take partitions, and so records, from each
  other). **Filtering by coin happens in the client**: a partition holds many coins, so every
  subscription reads its whole topic and skips other coins' records; with many coins per
  process the Faust pipeline, which consumes each partition once, is the scalable Kafka path.
  Offsets are never auto-committed.
- **Ack = commit**: each subscription tracks, per partition, the offsets it delivered and which
  of them are acknowledged; it commits the first unacknowledged offset (or the end, when all
  are), so an out-of-order ack never commits past an unacknowledged record. Commits are sent
  before each fetch, when partitions are revoked and when the subscription closes, so an
  acknowledgement can be lost in a crash (the record is then delivered again), never a record.
- **Redelivery**: when a consumer dies without acknowledging (iterator closed, process gone and
  its session timed out), the group rebalances and the new owner of the partition reads again
  from the committed offset. Kafka keeps no per-record delivery count: ``delivery_count`` is
  ``None`` and there is no dead-lettering after ``max_deliveries`` on this adapter.
- **Malformed payloads** are produced to the dead-letter topic — original key and value, with
  the source topic, partition, offset and the reason as headers — and then count as
  acknowledged.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.partitioner import murmur2
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import TopicPartition as ConfluentTopicPartition
from confluent_kafka.cimpl import NewTopic

from huracan.bus.base import MessageBus, PerLoop, close_in_owner_loops
from huracan.bus.errors import BusConnectionError, BusError, MalformedMessageError
from huracan.bus.message import DeadLetter, Message, StreamType, decode, encode
from huracan.config import DEFAULT_KAFKA_BOOTSTRAP, KafkaConfig, MessageBusConfig
from huracan.streams import clients

log = logging.getLogger(__name__)

#: a commit that takes longer is abandoned (the records are then delivered again)
COMMIT_TIMEOUT_S = 10.0


def _mid(partition: int, offset: int) -> str:
    return f"{partition}-{offset}"


def _parse_mid(message_id: str) -> tuple[int, int] | None:
    head, _, tail = message_id.partition("-")
    if not head.isdigit() or not tail.isdigit():
        return None
    return int(head), int(tail)


def partition_for(coin: str, partitions: int) -> int:
    """The partition the default (murmur2) partitioner gives ``coin``'s records."""
    return int(murmur2(coin.encode()) & 0x7FFFFFFF) % partitions


class OffsetTracker:
    """Delivered and acknowledged offsets of one partition; gives the safe commit position.

    ``seen`` marks a record that needs no acknowledgement (another coin's, dead-lettered);
    ``delivered`` one that does. :meth:`commit_position` is the first delivered offset not yet
    acknowledged, or one past the last record seen when every delivered one is.
    """

    __slots__ = ("_order", "_unacked", "committed", "high")

    def __init__(self) -> None:
        self._order: collections.deque[int] = collections.deque()
        self._unacked: set[int] = set()
        self.high: int | None = None
        self.committed: int | None = None

    def seen(self, offset: int) -> None:
        if self.high is None or offset + 1 > self.high:
            self.high = offset + 1

    def delivered(self, offset: int) -> None:
        self.seen(offset)
        if offset not in self._unacked:
            self._order.append(offset)
            self._unacked.add(offset)

    def ack(self, offset: int) -> bool:
        if offset not in self._unacked:
            return False
        self._unacked.discard(offset)
        order = self._order
        while order and order[0] not in self._unacked:
            order.popleft()
        return True

    def commit_position(self) -> int | None:
        if self._order:
            return self._order[0]
        return self.high


class _Subscription(ConsumerRebalanceListener):  # type: ignore[misc]
    """One subscribe() call: its consumer and the offset trackers of its assigned partitions."""

    def __init__(self, topic: str, group_id: str) -> None:
        self.topic = topic
        self.group_id = group_id
        self.lock = threading.Lock()
        self.trackers: dict[int, OffsetTracker] = {}
        self.consumer: AIOKafkaConsumer | None = None

    def tracker(self, partition: int) -> OffsetTracker | None:
        with self.lock:
            return self.trackers.get(partition)

    def ack(self, partition: int, offset: int) -> bool:
        with self.lock:
            tracker = self.trackers.get(partition)
            return tracker is not None and tracker.ack(offset)

    def to_commit(self) -> dict[TopicPartition, int]:
        with self.lock:
            out = {}
            for partition, tracker in self.trackers.items():
                position = tracker.commit_position()
                if position is not None and position != tracker.committed:
                    out[TopicPartition(self.topic, partition)] = position
            return out

    async def commit(self) -> None:
        offsets = self.to_commit()
        if not offsets or self.consumer is None:
            return
        try:
            await asyncio.wait_for(self.consumer.commit(offsets), COMMIT_TIMEOUT_S)
        except (AIOKafkaError, TimeoutError) as exc:  # e.g. a rebalance: the new owner re-reads
            log.warning("commit to %s failed (%r); records may be redelivered", self.group_id, exc)
            return
        with self.lock:
            for tp, position in offsets.items():
                tracker = self.trackers.get(tp.partition)
                if tracker is not None:
                    tracker.committed = position

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.commit()
        with self.lock:
            for tp in revoked:
                self.trackers.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        with self.lock:
            for tp in assigned:
                self.trackers.setdefault(tp.partition, OffsetTracker())


class _ProducerSlot:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.producer: AIOKafkaProducer | None = None


class KafkaMessageBus(MessageBus):
    """The Kafka adapter. ``producer_options`` / ``consumer_options`` go to aiokafka as is
    (tests lower ``session_timeout_ms`` and ``heartbeat_interval_ms``). ``kafka`` gives the
    clients' security settings and client id prefix (:mod:`huracan.streams.clients`; default:
    a plaintext broker); its ``bootstrap_servers`` is not used, the bus config's is."""

    def __init__(
        self,
        config: MessageBusConfig,
        *,
        producer_options: dict[str, Any] | None = None,
        consumer_options: dict[str, Any] | None = None,
        kafka: KafkaConfig | None = None,
    ) -> None:
        super().__init__(config)
        self._kafka = kafka or KafkaConfig()
        self._bootstrap = (
            config.bootstrap_servers
            or os.environ.get("HURACAN_KAFKA_BOOTSTRAP")
            or DEFAULT_KAFKA_BOOTSTRAP
        )
        self._producer_options = clients.aiokafka_producer_options(
            self._kafka,
            "bus",
            bootstrap_servers=self._bootstrap,
            overrides={"linger_ms": 1, **(producer_options or {})},
        )
        self._consumer_options = consumer_options or {}
        self._producers: PerLoop[_ProducerSlot] = PerLoop()
        self._admin: Any = None
        self._topics_lock = threading.Lock()
        self._topics_ready: set[str] = set()
        self._subs_lock = threading.Lock()
        self._subs: dict[tuple[str, str], list[_Subscription]] = {}
        self._dead_letter_topic = f"{config.stream_prefix}.bus.dead-letter"

    # -- names ------------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return self._bootstrap

    def topic(self, stream_type: StreamType) -> str:
        """``{prefix}.bus.{stream_type}``."""
        return f"{self._config.stream_prefix}.bus.{StreamType(stream_type).value}"

    @property
    def dead_letter_topic(self) -> str:
        return self._dead_letter_topic

    @staticmethod
    def group_id(consumer_group: str, coin: str) -> str:
        """The Kafka group of a subscription: ``{consumer_group}.{coin}``."""
        return f"{consumer_group}.{coin}"

    # -- topics -----------------------------------------------------------------------------

    def _create_topics(self, names: list[str]) -> None:
        with self._topics_lock:
            if self._admin is None:
                self._admin = clients.make_admin(
                    self._kafka, "bus-admin", bootstrap_servers=self._bootstrap
                )
            admin = self._admin
        cfg = self._config
        futures = admin.create_topics(
            [NewTopic(n, cfg.partitions, cfg.replication_factor) for n in names],
            operation_timeout=30,
        )
        for name, future in futures.items():
            try:
                future.result(timeout=30)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise BusError(f"cannot create Kafka topic {name}: {exc}") from exc
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            known = admin.list_topics(timeout=10).topics
            if all(n in known and not known[n].error for n in names):
                return
            time.sleep(0.05)
        raise BusError(f"Kafka topics {names} did not appear in the metadata within 30 s")

    async def ensure_topics(self, *stream_types: StreamType) -> None:
        """Create the topics of ``stream_types`` and the dead-letter topic if missing."""
        names = [self.topic(s) for s in stream_types] + [self._dead_letter_topic]
        with self._topics_lock:
            missing = [n for n in names if n not in self._topics_ready]
        if not missing:
            return
        await asyncio.to_thread(self._create_topics, missing)
        with self._topics_lock:
            self._topics_ready.update(missing)

    # -- connection -------------------------------------------------------------------------

    async def _producer(self) -> AIOKafkaProducer:
        self._require_connected()
        slot = self._producers.get(_ProducerSlot)
        if slot.producer is None:
            async with slot.lock:
                if slot.producer is None:
                    producer = AIOKafkaProducer(**self._producer_options)
                    await producer.start()
                    slot.producer = producer
        return slot.producer

    async def connect(self) -> None:
        if self._connected:
            return
        self._connected = True
        try:
            await self._producer()
        except AIOKafkaError as exc:
            await self.disconnect()
            raise BusConnectionError(
                f"cannot reach Kafka at {self._bootstrap} (message_bus.bootstrap_servers): {exc}"
            ) from exc

    async def disconnect(self) -> None:
        self._connected = False
        await close_in_owner_loops(self._producers.drain(), _stop_producer)

    # -- publish ----------------------------------------------------------------------------

    async def publish(self, message: Message) -> str:
        producer = await self._producer()
        payload = encode(message)
        await self.ensure_topics(message.stream_type)
        meta = await producer.send_and_wait(
            self.topic(message.stream_type), value=payload, key=message.coin.encode()
        )
        self._counters.add("published")
        return _mid(meta.partition, meta.offset)

    async def publish_many(self, messages: Iterable[Message]) -> list[str]:
        producer = await self._producer()
        batch = list(messages)
        await self.ensure_topics(*{m.stream_type for m in batch})
        futures = [
            await producer.send(self.topic(m.stream_type), value=encode(m), key=m.coin.encode())
            for m in batch
        ]
        metas = await asyncio.gather(*futures)
        self._counters.add("published", len(batch))
        return [_mid(meta.partition, meta.offset) for meta in metas]

    async def produce_raw(
        self, stream_type: StreamType, coin: str, value: bytes | None
    ) -> tuple[int, int]:
        """Write raw record bytes (no encoding) keyed by ``coin`` — tests inject bad payloads."""
        producer = await self._producer()
        await self.ensure_topics(stream_type)
        meta = await producer.send_and_wait(self.topic(stream_type), value=value, key=coin.encode())
        return meta.partition, meta.offset

    # -- subscribe --------------------------------------------------------------------------

    async def _dead_letter(self, record: Any, reason: str, group_id: str, consumer: str) -> None:
        producer = await self._producer()
        headers = [
            ("source_topic", record.topic.encode()),
            ("source_partition", str(record.partition).encode()),
            ("source_offset", str(record.offset).encode()),
            ("reason", reason.encode()),
            ("group", group_id.encode()),
            ("consumer", consumer.encode()),
            ("dead_lettered_at", repr(time.time()).encode()),
        ]
        await producer.send_and_wait(
            self._dead_letter_topic, value=record.value, key=record.key, headers=headers
        )
        self._counters.add("dead_lettered")
        log.warning(
            "dead-lettered %s[%s]@%s (group %s): %s",
            record.topic,
            record.partition,
            record.offset,
            group_id,
            reason,
        )

    async def subscribe(
        self,
        stream_type: StreamType,
        coin: str,
        consumer_group: str,
        *,
        consumer_name: str | None = None,
        auto_ack: bool = False,
    ) -> AsyncIterator[Message]:
        self._require_connected()
        stream_type = StreamType(stream_type)
        await self.ensure_topics(stream_type)
        topic = self.topic(stream_type)
        name = self._consumer_name(consumer_name)
        group_id = self.group_id(consumer_group, coin)
        consumer = AIOKafkaConsumer(
            **clients.aiokafka_consumer_options(
                self._kafka,
                f"bus-{name}",
                group_id=group_id,
                bootstrap_servers=self._bootstrap,
                overrides={"auto_offset_reset": "earliest", **self._consumer_options},
            )
        )
        sub = _Subscription(topic, group_id)
        sub.consumer = consumer
        consumer.subscribe([topic], listener=sub)
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        with self._subs_lock:
            self._subs.setdefault((topic, group_id), []).append(sub)
        key = coin.encode()
        cfg = self._config
        try:
            while self._connected:
                await sub.commit()
                batch = await consumer.getmany(timeout_ms=cfg.block_ms, max_records=cfg.batch_size)
                for tp, records in batch.items():
                    for record in records:
                        tracker = sub.tracker(tp.partition)
                        if tracker is None:  # revoked meanwhile: the new owner reads it again
                            break
                        if record.key != key:
                            tracker.seen(record.offset)
                            continue
                        message_id = _mid(record.partition, record.offset)
                        try:
                            message = decode(
                                record.value,
                                stream_type=stream_type,
                                coin=coin,
                                message_id=message_id,
                                delivery_count=None,
                            )
                        except MalformedMessageError as exc:
                            await self._dead_letter(record, exc.reason, group_id, name)
                            tracker.seen(record.offset)
                            continue
                        tracker.delivered(record.offset)
                        self._counters.add("delivered")
                        yield message
                        if auto_ack:
                            await self.ack_message(stream_type, coin, consumer_group, message_id)
        finally:
            with self._subs_lock:
                subs = self._subs.get((topic, group_id), [])
                if sub in subs:
                    subs.remove(sub)
            try:
                await sub.commit()
            finally:
                await consumer.stop()

    # -- ack and inspection -----------------------------------------------------------------

    async def ack_message(
        self, stream_type: StreamType, coin: str, group_name: str, message_id: str
    ) -> bool:
        parsed = _parse_mid(message_id)
        if parsed is None:
            return False
        key = (self.topic(stream_type), self.group_id(group_name, coin))
        with self._subs_lock:
            subs = list(self._subs.get(key, ()))
        for sub in subs:
            if sub.ack(*parsed):
                self._counters.add("acked")
                return True
        return False

    async def pending_count(self, stream_type: StreamType, coin: str, group_name: str) -> int:
        await self.ensure_topics(stream_type)
        return await asyncio.to_thread(
            self._pending_count, self.topic(stream_type), coin, self.group_id(group_name, coin)
        )

    def _pending_count(self, topic: str, coin: str, group_id: str) -> int:
        consumer = clients.make_consumer(
            self._kafka, "bus-pending", group_id=group_id, bootstrap_servers=self._bootstrap
        )
        try:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or not meta.partitions:
                return 0
            tp = ConfluentTopicPartition(topic, partition_for(coin, len(meta.partitions)))
            [committed] = consumer.committed([tp], timeout=10)
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            start = committed.offset if committed.offset >= 0 else low
            return max(0, int(high) - int(start))
        finally:
            consumer.close()

    async def read_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        await self.ensure_topics()
        records = await asyncio.to_thread(self._read_dead_letters, limit)
        return [_dead_letter_from(r) for r in records]

    def _read_dead_letters(self, limit: int) -> list[Any]:
        """Read the dead-letter topic from the start to its current end (confluent, no group)."""
        topic = self._dead_letter_topic
        consumer = clients.make_consumer(
            self._kafka,
            "bus-dead-letter-reader",
            group_id=f"huracan-dead-letter-reader-{self._token}",
            bootstrap_servers=self._bootstrap,
        )
        try:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            ends: dict[int, int] = {}
            starts = []
            for partition in sorted(meta.partitions if meta else ()):
                low, high = consumer.get_watermark_offsets(
                    ConfluentTopicPartition(topic, partition), timeout=10
                )
                if high > low:
                    ends[partition] = high
                    starts.append(ConfluentTopicPartition(topic, partition, low))
            if not starts:
                return []
            consumer.assign(starts)
            records: list[Any] = []
            deadline = time.monotonic() + 30
            while ends and time.monotonic() < deadline:
                record = consumer.poll(0.5)
                if record is None:
                    continue
                if record.error():
                    raise BusError(f"reading {topic} failed: {record.error()}")
                records.append(record)
                partition, offset = record.partition() or 0, record.offset() or 0
                if offset + 1 >= ends.get(partition, 0):
                    ends.pop(partition, None)
            records.sort(key=lambda r: (r.timestamp()[1], r.partition(), r.offset()))
            return records[:limit]
        finally:
            consumer.close()


def _dead_letter_from(record: Any) -> DeadLetter:
    """A :class:`DeadLetter` from a confluent-kafka record of the dead-letter topic."""
    headers = {k: (v or b"").decode() for k, v in (record.headers() or ())}
    fields: dict[str, bytes] = {}
    if record.key() is not None:
        fields["key"] = record.key()
    if record.value() is not None:
        fields["value"] = record.value()
    stamp = headers.get("dead_lettered_at")
    return DeadLetter(
        dead_letter_id=_mid(record.partition(), record.offset()),
        source=headers.get("source_topic", ""),
        message_id=_mid(
            int(headers.get("source_partition", "0")), int(headers.get("source_offset", "0"))
        ),
        reason=headers.get("reason", ""),
        fields=fields,
        group=headers.get("group"),
        consumer=headers.get("consumer"),
        delivery_count=None,
        dead_lettered_at=float(stamp) if stamp else None,
    )


async def _stop_producer(slot: _ProducerSlot) -> None:
    if slot.producer is not None:
        await slot.producer.stop()
