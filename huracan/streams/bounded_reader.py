"""Reading a Kafka topic between offsets that are fixed before the read starts.

:class:`BoundedReader` consumes partitions of one topic from start offsets up to end offsets
(normally the high watermarks captured first), so a read ends even while producers keep
writing, and never hangs: a partition without progress for ``idle_timeout_s`` raises
:class:`~huracan.storage.archive_errors.TopicReadTimeout`. :func:`topic_partitions`,
:func:`topic_watermarks` and :func:`retry_kafka` are the metadata calls around it; transient
broker errors (no leader yet for a new topic, a broker restart) are retried, every other
failure is a :class:`~huracan.storage.archive_errors.TopicReadError` naming the topic.
Used by the archiver, the history reader and the Kafka replay; it builds no client itself
(callers pass a consumer from :mod:`huracan.streams.clients`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from huracan.storage.archive_errors import TopicReadError, TopicReadTimeout

_T = TypeVar("_T")

ConsumerFactory = Callable[[dict[str, Any]], Any]
ProducerFactory = Callable[[dict[str, Any]], Any]

_FATAL_CODES: Final = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
    }
)


def _kafka_error_text(exc: KafkaException) -> str:
    return str(exc.args[0] if exc.args else exc)


def topic_partitions(consumer: Any, topic: str, timeout_s: float) -> list[int]:
    """The partition ids of ``topic``; raises :class:`TopicReadError` when it is missing."""
    try:
        md = consumer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        raise TopicReadError(
            f"cannot read metadata of {topic!r}: {_kafka_error_text(exc)}"
        ) from None
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        detail = t.error if t is not None and t.error is not None else "no such topic"
        raise TopicReadError(f"topic {topic!r} is not readable: {detail}")
    return sorted(int(p) for p in t.partitions)


_RETRIABLE_CODES: Final = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,  # a topic created a moment ago
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError.REQUEST_TIMED_OUT,
    }
)


def retry_kafka(call: Callable[[], _T], what: str, timeout_s: float) -> _T:
    """``call()``, retried every 0.1 s while it fails with a transient Kafka error (no leader
    yet for a new topic, a broker restart) for up to ``timeout_s``; then or on any other
    error :class:`TopicReadError` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            transient = isinstance(err, KafkaError) and (
                err.retriable() or err.code() in _RETRIABLE_CODES
            )
            if not transient or time.monotonic() >= deadline:
                raise TopicReadError(f"{what}: {_kafka_error_text(exc)}") from None
        time.sleep(0.1)


def topic_watermarks(
    consumer: Any, topic: str, partitions: Iterable[int], timeout_s: float
) -> dict[int, tuple[int, int]]:
    """``{partition: (low, high)}`` asked of the broker now (not cached)."""
    out: dict[int, tuple[int, int]] = {}
    for p in partitions:
        lo, hi = retry_kafka(
            lambda p=p: consumer.get_watermark_offsets(  # type: ignore[misc]
                KafkaTopicPartition(topic, p), timeout=timeout_s, cached=False
            ),
            f"cannot read the watermarks of {topic}[{p}]",
            timeout_s,
        )
        out[p] = (int(lo), int(hi))
    return out


class BoundedReader:
    """Consumes partitions of one topic from start offsets up to end offsets (exclusive).

    ``ends`` are captured by the caller before reading (normally the high watermarks), so
    a read is bounded even while producers keep writing; ``ends=None`` reads without end.
    :meth:`poll` returns the data records of one ``consume`` call (only offsets below the
    end), possibly none; :attr:`done` turns true once every partition reached its end — by a
    record at ``end - 1``, a partition-EOF event, or a position at or past the end (a tail
    of transaction markers has no record to deliver). A partition that makes no progress
    for ``idle_timeout_s`` while unfinished raises :class:`TopicReadTimeout`; it never hangs.
    """

    def __init__(
        self,
        consumer: Any,
        topic: str,
        starts: Mapping[int, int],
        ends: Mapping[int, int] | None = None,
        *,
        batch_size: int = 5_000,
        idle_timeout_s: float = 30.0,
        poll_timeout_s: float = 0.5,
    ) -> None:
        self._consumer = consumer
        self.topic = topic
        self.starts = dict(starts)
        self.ends = dict(ends) if ends is not None else None
        self._batch_size = batch_size
        self._idle_timeout_s = idle_timeout_s
        self._poll_timeout_s = poll_timeout_s
        self._pending = {
            p for p, o in self.starts.items() if self.ends is None or o < self.ends.get(p, 0)
        }
        self._last_progress = time.monotonic()
        if self._pending:
            try:
                consumer.assign(
                    [KafkaTopicPartition(topic, p, self.starts[p]) for p in sorted(self._pending)]
                )
            except KafkaException as exc:
                raise TopicReadError(f"cannot assign {topic!r}: {_kafka_error_text(exc)}") from None

    @property
    def pending(self) -> frozenset[int]:
        return frozenset(self._pending)

    @property
    def done(self) -> bool:
        return self.ends is not None and not self._pending

    def _finish(self, partition: int) -> None:
        if partition in self._pending:
            self._pending.discard(partition)
            self._last_progress = time.monotonic()
            with contextlib.suppress(KafkaException):
                self._consumer.pause([KafkaTopicPartition(self.topic, partition)])

    def positions(self, partitions: Iterable[int]) -> dict[int, int]:
        """The consumer's next offset of each partition (-1001 when it has none yet)."""
        tps = [KafkaTopicPartition(self.topic, p) for p in partitions]
        if not tps:
            return {}
        try:
            return {tp.partition: tp.offset for tp in self._consumer.position(tps)}
        except KafkaException:
            return {}

    def poll(self) -> list[Any]:
        """The data records of one consume call, oldest first per partition."""
        if self.done:
            return []
        ends = self.ends
        try:
            messages = self._consumer.consume(
                num_messages=self._batch_size, timeout=self._poll_timeout_s
            )
        except KafkaException as exc:
            raise TopicReadError(f"consuming {self.topic!r}: {_kafka_error_text(exc)}") from None
        out: list[Any] = []
        for msg in messages:
            err = msg.error()
            p = msg.partition()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    if ends is not None and msg.offset() >= ends.get(p, 0):
                        self._finish(p)
                    continue
                if err.fatal() or err.code() in _FATAL_CODES:
                    raise TopicReadError(f"consuming {self.topic!r}: {err}")
                continue  # transient (broker restart, rebalance of leaders): librdkafka retries
            off = msg.offset()
            if ends is not None:
                end = ends.get(p, 0)
                if off >= end:
                    self._finish(p)
                    continue
                if off >= end - 1:
                    self._finish(p)
            out.append(msg)
        if out:
            self._last_progress = time.monotonic()
        if ends is not None and self._pending:
            for p, at in self.positions(self._pending).items():
                if at >= ends.get(p, 0):
                    self._finish(p)
            if self._pending and time.monotonic() - self._last_progress > self._idle_timeout_s:
                at_now = self.positions(self._pending)
                raise TopicReadTimeout(
                    self.topic,
                    {p: (at_now.get(p, -1), ends.get(p, 0)) for p in self._pending},
                    self._idle_timeout_s,
                )
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._consumer.close()
