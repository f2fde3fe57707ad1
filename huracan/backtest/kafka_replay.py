"""Replay through Kafka: history pushed through the real pipeline, the full-fidelity path.

The fast path (``huracan.backtest.run``) calls the domain core in process. This one runs the
same ticks through everything live trading uses — Avro on the wire, topics partitioned by coin,
``faust -A huracan worker`` with its agents, tables and the event-time ordered sequencer — and
reads the decisions and executions back from their topics. Both paths make the same decisions,
byte for byte (``tests/integration/test_kafka_replay.py``); this one shows it on the real
machinery, at the pipeline's speed (thousands of ticks per second, not hundreds of thousands).

:func:`replay_via_kafka` steps:

1. check the ticks (each needs ``coin`` and an integer ``ts``; every one must encode) and order
   them by event time (a stable sort on ``ts``: one coin's ticks keep their order);
2. check that the broker answers, then create a fresh topic catalog ``replay-<time>-<rand>.*``
   (the worker's app id is the same name, so its changelogs are fresh too);
3. start a worker on it with the caller's whole configuration (written to a YAML file in the
   work directory and pinned against the environment, so limits changed for a what-if apply);
   the archive agent is off in the replay worker;
4. produce the ticks in event-time order, keyed by coin, record timestamp = tick time;
5. wait until the pipeline has drained (:func:`huracan.runtime.drain.wait_until_drained`);
6. read back every decision in topic order (one partition: the sequencer's order) and every
   execution, ordered as their decisions are (the order the in-process engine makes them);
7. stop the worker; delete the topics unless ``keep_topics``; remove the work directory
   unless the caller gave one.

Errors are :class:`~huracan.backtest.errors.BacktestError`\\ s: :class:`EmptyBacktest` (no
ticks), :class:`InvalidBacktestInput` (a tick that cannot be replayed, named by position),
:class:`KafkaReplayError` (broker unreachable, worker failed — with its log tail — or records
not delivered) and :class:`KafkaReplayTimeout` (not done within ``timeout_s``, with the counts
reached). The topics are deleted on every path unless ``keep_topics``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import KafkaException
from pydantic import SecretStr
from rich.console import Console

from huracan.backtest.errors import (
    EmptyBacktest,
    InvalidBacktestInput,
    KafkaReplayError,
    KafkaReplayTimeout,
)
from huracan.config import ENV_PREFIX, HuracanConfig
from huracan.observability.health import check_kafka
from huracan.publish import produce_tick
from huracan.runtime.drain import wait_until_drained
from huracan.runtime.worker_launcher import WorkerStartError, config_env, running_worker
from huracan.storage.archive_errors import ArchiveError
from huracan.streams.bounded_reader import BoundedReader, topic_watermarks
from huracan.streams.clients import make_consumer, make_producer
from huracan.streams.errors import SerdeError, StreamsError
from huracan.streams.serde import make_serde
from huracan.streams.topics import TopicCatalog, delete_topics, ensure_topics, record_counts

#: seconds a worker may take to serve its web port (capped by what is left of ``timeout_s``)
WORKER_START_TIMEOUT_S = 90.0


@dataclass
class KafkaReplayOutput:
    """What a replay through Kafka produced.

    ``decisions``: every RiskDecision, in the sequencer's order; ``executions``: every
    Execution, in the order of the decisions they fill (the engine's order); ``ticks``:
    ticks published; ``features``, ``signals``: records on those topics; ``requests``: trade
    requests (OPEN and CLOSE, watermarks not counted); ``dead_letters``: records the pipeline
    dead-lettered; ``prefix``: the topic prefix and app id used; ``seconds``: the whole run.
    """

    decisions: list[dict[str, Any]]
    executions: list[dict[str, Any]]
    ticks: int
    features: int
    signals: int
    requests: int
    prefix: str
    dead_letters: int = 0
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)


def replay_via_kafka(
    cfg: HuracanConfig,
    ticks: Iterable[Mapping[str, Any]],
    *,
    console: Console | None = None,
    timeout_s: float = 600.0,
    keep_topics: bool = False,
    workdir: Path | None = None,
) -> KafkaReplayOutput:
    """Push ``ticks`` through a worker on fresh topics and read back what it decided.

    ``cfg`` is the configuration to replay with (limits, costs, partitions, broker);
    ``console`` shows progress when given; ``timeout_s`` bounds the whole run; ``workdir``
    keeps the worker's files and log (a temporary directory, removed afterwards, otherwise).
    The steps and the errors raised are in the module docstring.
    """
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    out = console or Console(quiet=True)
    # 1. the ticks, checked, encoded and in event-time order
    ordered = _ordered(ticks)
    serde = make_serde(cfg)
    values = _encode(serde, ordered)
    # 2. broker, topics
    kafka = check_kafka(cfg)
    if not kafka.ok:
        raise KafkaReplayError(
            f"Kafka at {cfg.kafka.bootstrap_servers} is not reachable: {kafka.detail}"
        )
    prefix = f"replay-{int(time.time())}-{uuid.uuid4().hex[:6]}"
    rcfg = _replay_config(cfg, prefix)
    own_dir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="huracan-replay-")) if workdir is None else workdir
    try:
        try:
            ensure_topics(rcfg)
        except (StreamsError, KafkaException) as exc:
            raise KafkaReplayError(f"cannot create the replay topics {prefix}.*: {exc}") from None
        out.print(f"  topics: {prefix}.* created")
        return _run(rcfg, ordered, values, out, work, t0, deadline, timeout_s)
    finally:
        if not keep_topics:
            try:
                delete_topics(rcfg)
            except KafkaException as exc:
                out.print(f"[yellow]could not delete the topics {prefix}.*: {exc}[/yellow]")
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)


def _run(
    rcfg: HuracanConfig,
    ordered: list[Mapping[str, Any]],
    values: list[bytes],
    out: Console,
    work: Path,
    t0: float,
    deadline: float,
    timeout_s: float,
) -> KafkaReplayOutput:
    prefix = rcfg.kafka.topic_prefix
    # 3. the worker, with the whole configuration
    env = _worker_environment(rcfg, work)
    start_timeout = max(1.0, min(WORKER_START_TIMEOUT_S, deadline - time.monotonic()))
    try:
        with running_worker(rcfg, work, extra_env=env, start_timeout=start_timeout) as worker:
            out.print(f"  worker up: pid {worker.process.pid}, log {worker.log_path}")
            # 4. the ticks
            _produce(rcfg, ordered, values, out)
            # 5. drained?
            with out.status("waiting for the pipeline to drain…"):
                try:
                    drain = wait_until_drained(
                        rcfg, worker, len(ordered), timeout_s=max(0.0, deadline - time.monotonic())
                    )
                except KafkaException as exc:
                    raise KafkaReplayError(f"Kafka stopped answering: {exc}") from None
            if drain.worker_exited:
                raise KafkaReplayError(
                    f"the replay worker for {prefix}.* exited (code {worker.process.returncode}) "
                    f"before the pipeline drained; log tail:\n{_tail(worker.log_path)}"
                )
            if not drain.drained:
                raise KafkaReplayTimeout(
                    f"the pipeline did not drain within {timeout_s:g} s: {len(ordered)} ticks "
                    f"published, {_counts_text(drain.counts)}, {drain.held} requests held for "
                    f"ordering (topics {prefix}.*, log {worker.log_path})"
                )
            # 6. read back
            read_timeout = max(10.0, deadline - time.monotonic())
            decisions = _read(rcfg, "RiskDecision", read_timeout)
            executions = _decision_order(decisions, _read(rcfg, "Execution", read_timeout))
            requests = len(_read(rcfg, "TradeRequest", read_timeout))
            counts = record_counts(rcfg)
    except WorkerStartError as exc:
        if time.monotonic() >= deadline:
            raise KafkaReplayTimeout(
                f"the replay worker for {prefix}.* did not start within {timeout_s:g} s: {exc}"
            ) from None
        raise KafkaReplayError(f"the replay worker for {prefix}.* did not start: {exc}") from None
    out.print(
        f"  replayed {len(ordered):,} ticks through {prefix}.*: {len(decisions):,} decisions, "
        f"{len(executions):,} executions"
    )
    return KafkaReplayOutput(
        decisions=decisions,
        executions=executions,
        ticks=len(ordered),
        features=counts.get("FeatureVector", 0),
        signals=counts.get("Signal", 0),
        requests=requests,
        prefix=prefix,
        dead_letters=counts.get("DeadLetter", 0),
        seconds=time.monotonic() - t0,
        counts={**counts, "TradeRequest": requests},
    )


# ------------------------------------------------------------------------------ the ticks


def _ordered(ticks: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The ticks by event time (stable); raises for no ticks or a tick without coin/ts."""
    items = list(ticks)
    if not items:
        raise EmptyBacktest("no ticks to replay through Kafka")
    for i, tick in enumerate(items):
        if not isinstance(tick, Mapping):
            raise InvalidBacktestInput(f"tick #{i} is a {type(tick).__name__}, not a mapping")
        coin, ts = tick.get("coin"), tick.get("ts")
        if not isinstance(coin, str) or not coin:
            raise InvalidBacktestInput(f"tick #{i} has no coin (coin={coin!r})")
        if not isinstance(ts, int) or isinstance(ts, bool):
            raise InvalidBacktestInput(
                f"tick #{i} ({coin}) has no integer ts in epoch microseconds (ts={ts!r})"
            )
    return sorted(items, key=lambda t: int(t["ts"]))


def _encode(serde: Any, ticks: list[Mapping[str, Any]]) -> list[bytes]:
    values = []
    for i, tick in enumerate(ticks):
        try:
            values.append(serde.encode("MarketTick", tick))
        except SerdeError as exc:
            raise InvalidBacktestInput(
                f"tick #{i} in event-time order ({tick.get('coin')}, event_id "
                f"{tick.get('event_id')!r}) is not a valid MarketTick: {exc}"
            ) from None
    return values


def _produce(
    cfg: HuracanConfig, ticks: list[Mapping[str, Any]], values: list[bytes], out: Console
) -> None:
    """Produce the ticks in order, keyed by coin, record time = tick time; all delivered."""
    topic = TopicCatalog.from_config(cfg).for_event_type("MarketTick").name
    producer = make_producer(
        cfg, "replay-publisher", overrides={"linger.ms": 5, "compression.type": "lz4"}
    )
    errors: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    with out.status(f"publishing {len(ticks):,} ticks to {topic}…"):
        for tick, value in zip(ticks, values, strict=True):
            produce_tick(producer, topic, tick, value, delivered)
            producer.poll(0)
        remaining = producer.flush(60)
    if remaining or errors:
        raise KafkaReplayError(
            f"{remaining + len(errors)} of {len(ticks)} ticks were not delivered to {topic}: "
            f"{errors[:3]}"
        )


# ------------------------------------------------------------------------------ the worker


def _replay_config(cfg: HuracanConfig, prefix: str) -> HuracanConfig:
    """``cfg`` on topics and an app id of its own, with the archive agent off."""
    storage = cfg.storage.model_copy(
        update={"archive": cfg.storage.archive.model_copy(update={"enabled": False})}
    )
    return cfg.model_copy(
        update={
            "kafka": cfg.kafka.model_copy(update={"topic_prefix": prefix}),
            "faust": cfg.faust.model_copy(update={"app_id": prefix}),
            "storage": storage,
        }
    )


def _plain(value: Any) -> Any:
    """A config dump with secrets revealed and tuples as lists (for the worker's YAML)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _worker_environment(cfg: HuracanConfig, work: Path) -> dict[str, str]:
    """Environment that makes the worker load exactly ``cfg``.

    The whole config goes to ``<work>/replay-config.yaml`` (mode 0600: it holds the database
    password) as ``HURACAN_CONFIG``. Overrides in this process's environment would apply on
    top of it in the worker, so each ``HURACAN__…`` variable and service variable set here is
    pinned to ``cfg``'s value.
    """
    data = _plain(cfg.model_dump(mode="python"))
    path = work / "replay-config.yaml"
    work.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
    env = {"HURACAN_CONFIG": str(path)}
    set_by_launcher = set(config_env(cfg, 0, work))  # the worker's port, datadir, …
    missing = object()
    for name in os.environ:
        if not name.startswith(ENV_PREFIX) or name in set_by_launcher:
            continue
        node: Any = data
        for part in (p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p):
            node = node.get(part, missing) if isinstance(node, Mapping) else missing
        if node is not missing and not isinstance(node, Mapping):
            env[name] = json.dumps(node)
    services = {
        "HURACAN_KAFKA_BOOTSTRAP": cfg.kafka.bootstrap_servers,
        "HURACAN_SCHEMA_REGISTRY_URL": cfg.kafka.schema_registry_url or "",
        "HURACAN_REDIS_URL": cfg.redis.url.get_secret_value(),
        "HURACAN_POSTGRES_DSN": cfg.postgres.dsn.get_secret_value(),
    }
    env.update({k: v for k, v in services.items() if k in os.environ})
    return env


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"


def _counts_text(counts: Mapping[str, int]) -> str:
    labels = (
        ("FeatureVector", "feature vectors"),
        ("Signal", "signals"),
        ("TradeRequest", "trade requests"),
        ("RiskDecision", "decisions"),
        ("Execution", "executions"),
        ("DeadLetter", "dead letters"),
    )
    return ", ".join(f"{counts.get(key, 0):,} {label}" for key, label in labels)


# ------------------------------------------------------------------------------ reading back


def _read(cfg: HuracanConfig, event_type: str, timeout_s: float) -> list[dict[str, Any]]:
    """Every ``event_type`` record on its topic up to the high watermarks, partition by
    partition in log order (punctuation such as watermarks skipped)."""
    spec = TopicCatalog.from_config(cfg).for_event_type(event_type)
    serde = make_serde(cfg)
    consumer = make_consumer(
        cfg,
        "replay-reader",
        group_id=f"{cfg.kafka.topic_prefix}.replay-reader",
        overrides={"enable.partition.eof": True},
    )
    reader: BoundedReader | None = None
    records: list[dict[str, Any]] = []
    try:
        marks = topic_watermarks(consumer, spec.name, range(spec.partitions), timeout_s)
        reader = BoundedReader(
            consumer,
            spec.name,
            {p: lo for p, (lo, _) in marks.items()},
            {p: hi for p, (_, hi) in marks.items()},
            idle_timeout_s=timeout_s,
        )
        while not reader.done:
            for msg in reader.poll():
                decoded = serde.decode_event(msg.value())
                if decoded.event_type == event_type:
                    records.append(decoded.record)
    except (ArchiveError, SerdeError) as exc:
        raise KafkaReplayError(f"reading back {spec.name}: {exc}") from None
    finally:
        if reader is not None:
            reader.close()
        else:
            consumer.close()
    return records


def _decision_order(
    decisions: list[dict[str, Any]], executions: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Executions in the order of the decisions they fill (then by ``(ts, execution_id)``)."""
    position = {d["request_id"]: i for i, d in enumerate(decisions)}
    last = len(decisions)
    return sorted(
        executions,
        key=lambda e: (position.get(e["request_id"], last), e["ts"], e["execution_id"]),
    )


__all__ = ["KafkaReplayOutput", "replay_via_kafka"]
