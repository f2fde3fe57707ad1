"""The topic catalog: every Kafka topic of the engine, its value schema, key and settings.

Topic names are ``<kafka.topic_prefix>.<suffix>`` (``huracan.market-data`` by default); a test
gives its own prefix to get an isolated catalog. Every topic carries exactly one event type,
encoded by :mod:`huracan.streams.serde`, and is keyed as :attr:`TopicSpec.key` says: by coin
unless noted, so one coin's events stay ordered in one partition.

Settings (see :func:`topic_config`):

* ``cleanup.policy=delete`` everywhere: events are facts, and compaction by coin would keep only
  a coin's last tick/decision/execution and break replay from offset 0;
* ``retention.ms`` = ``kafka.retention_ms`` (``-1``: forever, the log is the truth), except the
  dead-letter topic, which keeps ``kafka.dead_letter_retention_ms``;
* ``min.insync.replicas`` = 1 with one replica, else ``min(2, replication_factor - 1)``, so an
  ``acks=all`` producer survives one broker down without writing to a single copy;
* the dead-letter topic accepts records up to :data:`DEAD_LETTER_MAX_MESSAGE_BYTES`, since a
  DeadLetter wraps a whole original record plus its metadata.

:func:`ensure_topics` makes the broker match the catalog: it creates what is missing, leaves
what exists, reports partition-count and config drift, grows partitions only when asked and
never shrinks anything (Kafka cannot).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # no explicit re-export
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from huracan.config import HuracanConfig, KafkaConfig
from huracan.streams.clients import make_admin
from huracan.streams.errors import TopicAdminError, UnknownEventType

#: ``max.message.bytes`` of the dead-letter topic (2 MiB: a 1 MiB original plus metadata)
DEAD_LETTER_MAX_MESSAGE_BYTES: Final = 2 * 1024 * 1024

KeyKind = Literal["coin", "control_key", "original_key"]


@dataclass(frozen=True, slots=True)
class TopicDefinition:
    """The fixed part of a catalog entry; the config adds the prefix and the sizes."""

    #: name after the prefix, e.g. ``market-data``
    suffix: str
    #: the Avro record name of the value, e.g. ``MarketTick``
    event_type: str
    #: the field of :class:`~huracan.config.TopicPartitionsConfig` giving the partition count
    partitions_field: str
    #: what the record key is (see :meth:`TopicSpec.record_key`)
    key: KeyKind
    description: str
    dead_letter: bool = False
    #: other event types the topic also carries as punctuation (markers interleaved with the
    #: records, never stored by sinks): ``Watermark`` on ``trade-requests``
    punctuation: tuple[str, ...] = ()


#: the catalog, in pipeline order
TOPIC_DEFINITIONS: Final[tuple[TopicDefinition, ...]] = (
    TopicDefinition(
        "market-data", "MarketTick", "market_data", "coin", "ticks per coin and exchange"
    ),
    TopicDefinition("features", "FeatureVector", "features", "coin", "rolling stats per coin"),
    TopicDefinition("signals", "Signal", "signals", "coin", "model signals per coin"),
    TopicDefinition(
        "cost-updates", "CostUpdate", "cost_updates", "coin", "spread/fee/funding updates"
    ),
    TopicDefinition(
        "trade-requests",
        "TradeRequest",
        "trade_requests",
        "coin",
        "signals that passed the cost check and exits, to the single-writer risk sequencer;"
        " with Watermark punctuation from each market-data partition",
        punctuation=("Watermark",),
    ),
    TopicDefinition(
        "risk-decisions",
        "RiskDecision",
        "risk_decisions",
        "coin",
        "APPROVE/THROTTLE/BLOCK with exposure snapshot: the audit trail",
    ),
    TopicDefinition(
        "executions", "Execution", "executions", "coin", "fills: source of truth for exposure"
    ),
    TopicDefinition(
        "control",
        "ControlEvent",
        "control",
        "control_key",
        "limit changes, breaker trips/resets, kill switch",
    ),
    TopicDefinition(
        "dead-letter",
        "DeadLetter",
        "dead_letter",
        "original_key",
        "records that failed to decode or process, with their original bytes",
        dead_letter=True,
    ),
)


def topic_name(prefix: str, suffix: str) -> str:
    """``<prefix>.<suffix>``; an empty prefix gives the bare suffix."""
    return f"{prefix}.{suffix}" if prefix else suffix


def min_insync_replicas(replication_factor: int) -> int:
    """1 for one or two replicas, else ``min(2, replication_factor - 1)``."""
    return max(1, min(2, replication_factor - 1))


def topic_config(kafka: KafkaConfig, definition: TopicDefinition) -> dict[str, str]:
    """The topic-level settings the catalog manages for ``definition`` (all values strings)."""
    retention = kafka.dead_letter_retention_ms if definition.dead_letter else kafka.retention_ms
    settings = {
        "cleanup.policy": "delete",
        "retention.ms": str(retention),
        "min.insync.replicas": str(min_insync_replicas(kafka.replication_factor)),
    }
    if definition.dead_letter:
        settings["max.message.bytes"] = str(DEAD_LETTER_MAX_MESSAGE_BYTES)
    return settings


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic as the broker should have it."""

    name: str
    event_type: str
    key: KeyKind
    partitions: int
    replication_factor: int
    config: Mapping[str, str]
    description: str
    punctuation: tuple[str, ...] = ()

    @property
    def value_schema(self) -> str:
        """The event type (Avro record name) of the values."""
        return self.event_type

    @property
    def cleanup_policy(self) -> str:
        return self.config["cleanup.policy"]

    @property
    def retention_ms(self) -> int:
        return int(self.config["retention.ms"])

    def record_key(self, record: Mapping[str, Any]) -> bytes | None:
        """The Kafka key for ``record`` (a decoded or to-be-encoded event of this topic).

        ``coin`` topics: the coin, UTF-8. ``control``: the command's ``key`` or, when it has
        none, the command name. ``dead-letter``: the original record's key bytes (may be None).
        Raises :class:`KeyError` when the record lacks the field.
        """
        if self.key == "coin":
            return str(record["coin"]).encode()
        if self.key == "control_key":
            return str(record.get("key") or record["command"]).encode()
        original: bytes | None = record["original_key"]
        return original


def topic_catalog(config: HuracanConfig | KafkaConfig, prefix: str | None = None) -> TopicCatalog:
    """The catalog of ``config`` (with ``prefix`` instead of ``kafka.topic_prefix`` if given)."""
    kafka = config.kafka if isinstance(config, HuracanConfig) else config
    if prefix is not None:
        kafka = kafka.model_copy(update={"topic_prefix": prefix})
    return TopicCatalog.from_config(kafka)


class TopicCatalog:
    """The topics of one prefix, by name and by event type (immutable)."""

    __slots__ = ("_by_event", "_by_name", "prefix")

    def __init__(self, specs: Sequence[TopicSpec], prefix: str) -> None:
        self.prefix = prefix
        self._by_name = {s.name: s for s in specs}
        self._by_event = {s.event_type: s for s in specs}
        for s in specs:
            for extra in s.punctuation:
                self._by_event.setdefault(extra, s)

    @classmethod
    def from_config(cls, config: HuracanConfig | KafkaConfig) -> TopicCatalog:
        """The catalog for ``config.kafka`` (prefix, partitions, replication, retention)."""
        kafka = config.kafka if isinstance(config, HuracanConfig) else config
        specs = [
            TopicSpec(
                name=topic_name(kafka.topic_prefix, d.suffix),
                event_type=d.event_type,
                key=d.key,
                partitions=int(getattr(kafka.partitions, d.partitions_field)),
                replication_factor=kafka.replication_factor,
                config=MappingProxyType(topic_config(kafka, d)),
                description=d.description,
                punctuation=d.punctuation,
            )
            for d in TOPIC_DEFINITIONS
        ]
        return cls(specs, kafka.topic_prefix)

    def __iter__(self) -> Iterator[TopicSpec]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def for_event_type(self, event_type: str) -> TopicSpec:
        """The topic carrying ``event_type``; raises :class:`UnknownEventType`."""
        try:
            return self._by_event[event_type]
        except KeyError:
            raise UnknownEventType(
                f"no topic carries event type {event_type!r}; known: {sorted(self._by_event)}"
            ) from None

    def by_name(self, name: str) -> TopicSpec:
        """The spec of topic ``name``; raises :class:`UnknownEventType`."""
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownEventType(
                f"topic {name!r} is not in the catalog; known: {self.names}"
            ) from None


# --- admin ------------------------------------------------------------------------------------

TopicStatus = Literal["created", "exists", "grown"]


@dataclass(frozen=True, slots=True)
class TopicReport:
    """What :func:`ensure_topics` found or did for one topic.

    ``status``: ``created`` (it was missing), ``exists`` (left as it was) or ``grown``
    (partitions were added because ``grow_partitions=True``). ``partitions`` is the count on
    the broker afterwards. ``config_drift`` maps each managed setting whose value on an
    existing topic differs from the catalog to ``(actual, expected)``; it is never corrected
    automatically.
    """

    topic: str
    event_type: str
    status: TopicStatus
    partitions: int
    expected_partitions: int
    config_drift: Mapping[str, tuple[str | None, str]] = field(default_factory=dict)
    #: the catalog's settings for the topic (expected values)
    config: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.topic

    @property
    def action(self) -> TopicStatus:
        return self.status

    @property
    def cleanup_policy(self) -> str | None:
        return self.config.get("cleanup.policy")

    @property
    def retention_ms(self) -> int | None:
        value = self.config.get("retention.ms")
        return None if value is None else int(value)

    @property
    def note(self) -> str:
        """What differs from the catalog, for people; empty when :attr:`ok`."""
        notes = []
        if self.partitions < self.expected_partitions:
            notes.append(
                f"{self.partitions} partitions, config says {self.expected_partitions} "
                "(grow with grow_partitions)"
            )
        elif self.partitions > self.expected_partitions:
            notes.append(
                f"{self.partitions} partitions, config says {self.expected_partitions} "
                "(Kafka cannot shrink)"
            )
        notes.extend(
            f"{key}={actual} (config: {want})" for key, (actual, want) in self.config_drift.items()
        )
        return "; ".join(notes)

    @property
    def partitions_match(self) -> bool:
        return self.partitions == self.expected_partitions

    @property
    def ok(self) -> bool:
        """Partition count and every managed setting are as the catalog says."""
        return self.partitions_match and not self.config_drift


AdminFactory = Callable[[dict[str, Any]], Any]


def _result(future: Any, what: str, timeout_s: float) -> Any:
    try:
        return future.result(timeout=timeout_s)
    except KafkaException as exc:
        raise TopicAdminError(f"{what}: {exc.args[0] if exc.args else exc}") from None
    except FutureTimeout:
        raise TopicAdminError(f"{what}: no answer from the broker in {timeout_s}s") from None


def _is_already_exists(exc: KafkaException) -> bool:
    err = exc.args[0] if exc.args else None
    return isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS


def _partition_counts(admin: Any, bootstrap: str, timeout_s: float) -> dict[str, int]:
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise TopicAdminError(
            f"cannot list topics on {bootstrap}: {exc.args[0] if exc.args else exc}"
        ) from None
    return {name: len(t.partitions) for name, t in metadata.topics.items()}


def _wait_visible(admin: Any, bootstrap: str, names: set[str], timeout_s: float) -> dict[str, int]:
    """Partition counts of ``names`` once the broker's metadata lists them all with a leader for
    every partition. A topic just created (by us or by someone else) is not usable before that:
    a consumer that subscribes earlier may see it as missing and never be assigned it. Raises
    :class:`TopicAdminError` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            topics = admin.list_topics(timeout=timeout_s).topics
        except KafkaException as exc:
            raise TopicAdminError(
                f"cannot list topics on {bootstrap}: {exc.args[0] if exc.args else exc}"
            ) from None
        ready = {
            n: len(topics[n].partitions)
            for n in names
            if n in topics
            and topics[n].error is None
            and topics[n].partitions
            and all(p.leader >= 0 for p in topics[n].partitions.values())
        }
        if len(ready) == len(names):
            return ready
        if time.monotonic() > deadline:
            missing = sorted(names - set(ready))
            raise TopicAdminError(
                f"topics {missing} exist on {bootstrap} but have no leader for every partition "
                f"in its metadata after {timeout_s}s"
            )
        time.sleep(0.1)


def _describe(
    admin: Any, names: Sequence[str], timeout_s: float
) -> dict[str, dict[str, str | None]]:
    if not names:
        return {}
    resources = [ConfigResource(ResourceType.TOPIC, n) for n in names]
    futures = admin.describe_configs(resources, request_timeout=timeout_s)
    out: dict[str, dict[str, str | None]] = {}
    for resource, future in futures.items():
        entries = _result(future, f"describe configs of {resource.name}", timeout_s)
        out[resource.name] = {k: e.value for k, e in entries.items()}
    return out


def ensure_topics(
    config: HuracanConfig,
    admin_factory: AdminFactory | None = None,
    *,
    prefix: str | None = None,
    grow_partitions: bool = False,
    timeout_s: float = 30.0,
) -> list[TopicReport]:
    """Make the broker hold every topic of ``TopicCatalog.from_config(config)``; idempotent.

    Steps:

    1. list the broker's topics (one metadata request);
    2. create the missing ones with the catalog's partitions, replication factor and settings
       (a topic created concurrently by someone else counts as ``exists``);
    3. for the existing ones, read back the managed settings (describe_configs) and report any
       that differ; when one has fewer partitions than configured and ``grow_partitions`` is
       true, add partitions (this moves keys to new partitions: do it only while producers are
       stopped); a topic with more partitions than configured is reported, never shrunk.

    ``prefix`` overrides ``kafka.topic_prefix`` (isolated catalogs for tests and demos).
    ``admin_factory`` receives the client config dict and returns an AdminClient (default:
    :class:`confluent_kafka.admin.AdminClient`). Returns one report per catalog topic, in
    catalog order. Raises :class:`TopicAdminError` naming the topic when the broker refuses or
    does not answer within ``timeout_s``.
    """
    kafka = config.kafka
    if prefix is not None:
        kafka = kafka.model_copy(update={"topic_prefix": prefix})
    catalog = TopicCatalog.from_config(kafka)
    admin = make_admin(kafka, "topic-admin", factory=admin_factory)

    # 1. what is there
    existing = _partition_counts(admin, kafka.bootstrap_servers, timeout_s)

    # 2. create what is missing
    missing = [spec for spec in catalog if spec.name not in existing]
    created: set[str] = set()
    if missing:
        new_topics = [
            NewTopic(
                s.name,
                num_partitions=s.partitions,
                replication_factor=s.replication_factor,
                config=dict(s.config),
            )
            for s in missing
        ]
        futures = admin.create_topics(
            new_topics, operation_timeout=timeout_s, request_timeout=timeout_s
        )
        failures: list[str] = []
        for name, future in futures.items():
            try:
                future.result(timeout=timeout_s)
                created.add(name)
            except KafkaException as exc:
                if not _is_already_exists(exc):
                    failures.append(f"{name}: {exc.args[0] if exc.args else exc}")
            except FutureTimeout:
                failures.append(f"{name}: no answer from the broker in {timeout_s}s")
        if failures:
            done = f" (created: {sorted(created)})" if created else ""
            raise TopicAdminError("cannot create topics " + "; ".join(failures) + done)
        # created by us or, a moment ago, by someone else: either way, wait until usable
        existing.update(
            _wait_visible(admin, kafka.bootstrap_servers, {s.name for s in missing}, timeout_s)
        )

    # 3. check what was already there
    present = [s.name for s in catalog if s.name not in created]
    described = _describe(admin, present, timeout_s)
    reports: list[TopicReport] = []
    to_grow: list[TopicSpec] = []
    for spec in catalog:
        if spec.name in created:
            reports.append(
                TopicReport(
                    spec.name,
                    spec.event_type,
                    "created",
                    spec.partitions,
                    spec.partitions,
                    config=spec.config,
                )
            )
            continue
        actual = described.get(spec.name, {})
        drift = {
            key: (actual.get(key), want)
            for key, want in spec.config.items()
            if actual.get(key) != want
        }
        partitions = existing.get(spec.name, 0)
        if grow_partitions and partitions < spec.partitions:
            to_grow.append(spec)
        reports.append(
            TopicReport(
                spec.name,
                spec.event_type,
                "exists",
                partitions,
                spec.partitions,
                MappingProxyType(drift),
                spec.config,
            )
        )
    if to_grow:
        futures = admin.create_partitions(
            [NewPartitions(s.name, s.partitions) for s in to_grow],
            operation_timeout=timeout_s,
            request_timeout=timeout_s,
        )
        for name, future in futures.items():
            _result(future, f"cannot grow partitions of {name}", timeout_s)
        grown = {s.name: s.partitions for s in to_grow}
        reports = [
            TopicReport(
                r.topic,
                r.event_type,
                "grown",
                grown[r.topic],
                r.expected_partitions,
                r.config_drift,
                r.config,
            )
            if r.topic in grown
            else r
            for r in reports
        ]
    return reports


def record_counts(config: HuracanConfig, timeout_s: float = 10.0) -> dict[str, int]:
    """Records on each catalog topic, by event type (:class:`RecordCounter`, once).

    Raises :class:`confluent_kafka.KafkaException` when the broker does not answer.
    """
    with RecordCounter(config, timeout_s=timeout_s) as counter:
        return counter.counts()


class RecordCounter:
    """Records on each catalog topic, by event type, as a downstream consumer sees them.

    Under ``at_least_once`` no producer of the engine writes transactions, so a topic's records
    are the sum of its partitions' high watermarks (records ever written, second copies after a
    crash included): nothing is read. Under ``exactly_once`` the high watermarks also count
    transaction markers and aborted records, so the counter *reads* the topics
    ``read_committed`` up to each partition's last stable offset and counts what it gets:
    incrementally, so a drain loop that asks again and again reads each record once.

    Raises :class:`confluent_kafka.KafkaException` when the broker does not answer, and
    :class:`TimeoutError` when the records below the stable offsets do not arrive within
    ``timeout_s``.
    """

    def __init__(self, config: HuracanConfig, timeout_s: float = 10.0) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        from huracan.streams.clients import make_consumer

        self.timeout_s = timeout_s
        self.committed = config.faust.processing_guarantee == "exactly_once"
        specs = list(TopicCatalog.from_config(config))
        self._event_type = {spec.name: spec.event_type for spec in specs}
        self._tps = [TopicPartition(s.name, p) for s in specs for p in range(s.partitions)]
        self._counts = dict.fromkeys((s.event_type for s in specs), 0)
        self._consumer = make_consumer(config, "record-counter", group_id="huracan-counts")
        if self.committed:
            self._consumer.assign(
                [TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in self._tps]
            )

    def counts(self) -> dict[str, int]:
        """The counts now (``exactly_once``: every record committed when the call began)."""
        consumer = self._consumer
        # a read_committed consumer's ListOffsets answer is the last stable offset
        ends = {
            (tp.topic, tp.partition): consumer.get_watermark_offsets(
                tp, timeout=self.timeout_s, cached=False
            )[1]
            for tp in self._tps
        }
        if not self.committed:
            out = dict.fromkeys(self._counts, 0)
            for (topic, _), end in ends.items():
                out[self._event_type[topic]] += end
            return out
        deadline = time.monotonic() + self.timeout_s
        while True:
            # the position passes transaction markers and aborted records as well
            behind = [
                tp
                for tp in consumer.position(self._tps)
                if ends[(tp.topic, tp.partition)] > max(tp.offset, 0)
            ]
            if not behind:
                return dict(self._counts)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(behind)} partitions not read to their stable offsets within "
                    f"{self.timeout_s} s (first: {behind[0].topic}[{behind[0].partition}])"
                )
            for msg in consumer.consume(10_000, timeout=0.1):
                err = msg.error()
                if err is None:
                    self._counts[self._event_type[str(msg.topic())]] += 1
                elif err.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(err)

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> RecordCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def delete_topics(cfg: HuracanConfig) -> None:
    """Delete every topic whose name starts with ``kafka.topic_prefix`` (the catalog and the
    Faust app's changelog and assignor topics, when ``faust.app_id`` is the prefix)."""
    admin = make_admin(cfg, "topic-cleaner")
    names = [
        t for t in admin.list_topics(timeout=10).topics if t.startswith(cfg.kafka.topic_prefix)
    ]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result()
