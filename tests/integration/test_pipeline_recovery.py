"""Workers stopped, killed and doubled on the real broker: nothing lost, nothing decided twice.

Each test runs the same ticks through the in-process engine and asserts that the pipeline's
topics hold exactly the engine's facts: every feature vector, decision and execution the engine
made, under the same ids and with the same bytes. At-least-once delivery may write a record
twice after a crash; a second copy must be byte-identical to the first (ids are derived and
the core is deterministic), so consumers lose nothing by keeping the first. Under exactly-once
(the tests parametrised with ``guarantee``) a ``read_committed`` consumer must find no second
copy at all.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from huracan.config import HuracanConfig
from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator
from huracan.streams.serde import make_serde
from huracan.worker_process import running_worker
from tests.integration.pipeline_support import (
    KILLED_WORKER_ENV,
    create_topics,
    engine_run,
    exactly_once,
    http_json,
    pipeline_config,
    publish_ticks,
    read_topic,
    topic_counts,
)
from tests.waiting import wait_until

T0 = 1_767_225_600_000_000


def _ticks(n: int, coins: int = 16, seed: int = 11) -> list[dict[str, Any]]:
    return list(MarketSimulator(universe(coins), seed=seed, start_ts_us=T0, rate=500).ticks(n))


def _distinct(cfg: HuracanConfig, event_type: str, id_field: str = "event_id") -> list[dict]:
    """The records of a topic with one copy per id, first copy first; asserts copies agree."""
    serde = make_serde(cfg)
    first: dict[str, bytes] = {}
    out = []
    for record in read_topic(cfg, event_type):
        data = serde.encode(event_type, record)
        seen = first.setdefault(record[id_field], data)
        assert seen == data, f"{event_type} {record[id_field]} written twice with other content"
        if seen is data:
            out.append(record)
    return out


#: every output topic of the pipeline and the field its records are identified by
OUTPUT_IDS = (
    ("FeatureVector", "event_id"),
    ("Signal", "event_id"),
    ("TradeRequest", "request_id"),
    ("RiskDecision", "event_id"),
    ("Execution", "execution_id"),
)


def _second_copies(cfg: HuracanConfig) -> dict[str, dict[str, int]]:
    """Per output topic, the ids a read_committed consumer reads more than once, and how often."""
    out = {}
    for event_type, id_field in OUTPUT_IDS:
        ids = Counter(r[id_field] for r in read_topic(cfg, event_type))
        out[event_type] = {i: n for i, n in ids.items() if n > 1}
    return out


def _assert_no_copies(cfg: HuracanConfig) -> None:
    """Exactly once: a read_committed consumer reads every fact once, not a second copy."""
    for event_type, copies in _second_copies(cfg).items():
        assert not copies, f"{event_type}: {len(copies)} ids written more than once: {copies}"


def _assert_engine_facts(cfg: HuracanConfig, ticks: list[dict], port: int | None) -> None:
    if exactly_once(cfg):
        _assert_no_copies(cfg)
    serde = make_serde(cfg)
    engine, decisions, executions = engine_run(cfg, ticks)
    live_features = _distinct(cfg, "FeatureVector")
    live_decisions = _distinct(cfg, "RiskDecision")
    live_executions = _distinct(cfg, "Execution", "execution_id")

    assert len(live_features) == len(ticks)
    assert [serde.encode("RiskDecision", d) for d in live_decisions] == [
        serde.encode("RiskDecision", d) for d in decisions
    ]
    assert sorted(serde.encode("Execution", e) for e in live_executions) == sorted(
        serde.encode("Execution", e) for e in executions
    )
    if port is not None:
        open_trades = set()
        for e in sorted(live_executions, key=lambda e: (e["ts"], e["action"] != "OPEN")):
            if e["action"] == "OPEN":
                open_trades.add(e["trade_id"])
            else:
                open_trades.discard(e["trade_id"])
        assert http_json(port, "/risk")["active_trades"] == len(open_trades)
    assert engine.stats.executions == len(executions) > 0


def _wait_settled(cfg: HuracanConfig, n_ticks: int, decisions: int, executions: int) -> None:
    def distinct(event_type: str, id_field: str) -> int:
        return len({r[id_field] for r in read_topic(cfg, event_type)})

    wait_until(
        lambda: distinct("FeatureVector", "event_id") == n_ticks, 180, interval=1.0,
        what="features",
    )  # fmt: skip
    wait_until(
        lambda: distinct("RiskDecision", "event_id") == decisions, 180, interval=1.0,
        what="every decision",
    )  # fmt: skip
    wait_until(
        lambda: distinct("Execution", "execution_id") == executions, 120, interval=1.0,
        what="every execution",
    )  # fmt: skip


GUARANTEES = pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])


@GUARANTEES
def test_worker_when_stopped_mid_stream_and_restarted_then_tables_recovered_and_nothing_lost(
    kafka_bootstrap: str, tmp_path: Path, unique_name, guarantee: str
) -> None:
    # arrange
    cfg = pipeline_config(kafka_bootstrap, unique_name("restart"), guarantee=guarantee)
    create_topics(cfg)
    ticks = _ticks(4_000)
    _, decisions, executions = engine_run(cfg, ticks)

    # act: stop the worker (SIGTERM) while it is busy with the first half
    with running_worker(cfg, tmp_path / "a") as first:
        publish_ticks(cfg, ticks[:2_000])
        wait_until(lambda: topic_counts(cfg)["FeatureVector"] >= 500, 120, what="some features")
    assert first.process.returncode == 0
    # a new worker of the same app recovers the tables from their changelogs
    with running_worker(cfg, tmp_path / "b") as second:
        publish_ticks(cfg, ticks[2_000:])
        _wait_settled(cfg, len(ticks), len(decisions), len(executions))

        # assert
        _assert_engine_facts(cfg, ticks, second.port)


@GUARANTEES
def test_worker_when_killed_mid_stream_then_replacement_loses_nothing(
    kafka_bootstrap: str, tmp_path: Path, unique_name, guarantee: str
) -> None:
    # arrange
    cfg = pipeline_config(kafka_bootstrap, unique_name("kill9"), guarantee=guarantee)
    create_topics(cfg)
    ticks = _ticks(4_000, seed=12)
    _, decisions, executions = engine_run(cfg, ticks)

    # act: SIGKILL in the middle of the stream (no shutdown, no final commit)
    with running_worker(cfg, tmp_path / "a", extra_env=KILLED_WORKER_ENV) as first:
        publish_ticks(cfg, ticks)
        wait_until(lambda: topic_counts(cfg)["FeatureVector"] >= 1_000, 120, what="some features")
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(30)
    with running_worker(cfg, tmp_path / "b") as second:
        _wait_settled(cfg, len(ticks), len(decisions), len(executions))

        # assert
        _assert_engine_facts(cfg, ticks, second.port)


#: a worker started with this folder first on its PYTHONPATH exits at the worst moment of a
#: batch when HURACAN_TEST_CRASH_AT_COMMIT is set (crash_hook/sitecustomize.py)
CRASH_HOOK = Path(__file__).with_name("crash_hook")


def _copies(cfg: HuracanConfig) -> int:
    """Second copies of output records a read_committed consumer reads, over all outputs."""
    return sum(n - 1 for copies in _second_copies(cfg).values() for n in copies.values())


@GUARANTEES
def test_worker_when_killed_after_sending_a_batch_then_second_copies_only_at_least_once(
    kafka_bootstrap: str, tmp_path: Path, unique_name, guarantee: str
) -> None:
    # arrange
    cfg = pipeline_config(kafka_bootstrap, unique_name("crash"), guarantee=guarantee)
    create_topics(cfg)
    ticks = _ticks(3_000, seed=15)
    _, decisions, executions = engine_run(cfg, ticks)
    hook = {
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(CRASH_HOOK), os.environ.get("PYTHONPATH")])
        ),
        "HURACAN_TEST_CRASH_AT_COMMIT": "8",
        **KILLED_WORKER_ENV,
    }

    # act: the worker dies (no shutdown) once the outputs of its 8th batch with outputs are on
    # the broker, before that batch's state, offsets or transaction are committed
    with running_worker(cfg, tmp_path / "a", extra_env=hook) as first:
        publish_ticks(cfg, ticks)
        first.process.wait(120)
    assert first.process.returncode == 137
    with running_worker(cfg, tmp_path / "b") as second:
        _wait_settled(cfg, len(ticks), len(decisions), len(executions))

        # assert: every fact; under exactly-once no second copy (_assert_engine_facts checks)
        _assert_engine_facts(cfg, ticks, second.port)
    if not exactly_once(cfg):
        # the same crash at least once does write copies: the test can tell the two apart
        assert _copies(cfg) > 0


def _members(cfg: HuracanConfig) -> dict[str, set[tuple[str, int]]]:
    admin = AdminClient({"bootstrap.servers": cfg.kafka.bootstrap_servers})
    (future,) = admin.describe_consumer_groups([cfg.faust.app_id]).values()
    group = future.result(timeout=10)
    return {
        m.member_id: {(tp.topic, tp.partition) for tp in m.assignment.topic_partitions}
        for m in group.members
    }


def _market_partitions(cfg: HuracanConfig) -> list[set[int]]:
    topic = f"{cfg.kafka.topic_prefix}.market-data"
    return [{p for t, p in tps if t == topic} for tps in _members(cfg).values()]


def _records_in(port: int) -> float:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "huracan_records_in_total"
        and s.labels["agent"] == "coin"
        and s.labels["topic"].endswith(".market-data")
    )


@GUARANTEES
def test_two_workers_when_running_then_partitions_split_and_no_coin_processed_twice(
    kafka_bootstrap: str, tmp_path: Path, unique_name, guarantee: str
) -> None:
    # arrange
    cfg = pipeline_config(kafka_bootstrap, unique_name("two"), guarantee=guarantee)
    create_topics(cfg)
    ticks = _ticks(3_000, coins=24, seed=13)
    _, decisions, executions = engine_run(cfg, ticks)

    with running_worker(cfg, tmp_path / "a") as a, running_worker(cfg, tmp_path / "b") as b:

        def split() -> bool:
            parts = _market_partitions(cfg)
            return len(parts) == 2 and all(parts) and set.union(*parts) == set(range(4))

        wait_until(split, 120, interval=1.0, what="both workers to own market-data partitions")
        time.sleep(2.0)  # let the last rebalance settle before data flows
        assert split()

        # act
        publish_ticks(cfg, ticks)
        _wait_settled(cfg, len(ticks), len(decisions), len(executions))
        parts = _market_partitions(cfg)
        per_worker = [_records_in(a.port), _records_in(b.port)]
        features = Counter(r["event_id"] for r in read_topic(cfg, "FeatureVector"))
        risk = [http_json(a.port, "/risk"), http_json(b.port, "/risk")]

        # assert: disjoint halves, each tick consumed once in all, one copy of each feature
        assert parts[0].isdisjoint(parts[1])
        assert all(n > 0 for n in per_worker)
        assert sum(per_worker) == len(ticks)
        assert max(features.values()) == 1
        # exactly one worker runs the single-writer sequencer
        assert sum(r is not None and "active_trades" in r for r in risk) == 1
        _assert_engine_facts(cfg, ticks, None)


@GUARANTEES
def test_worker_when_started_on_a_backlog_then_every_record_processed_once(
    kafka_bootstrap: str, tmp_path: Path, unique_name, guarantee: str
) -> None:
    # arrange: the records exist before the worker does, so its first fetches happen while
    # its tables recover (the window in which Faust used to drop fetched records)
    cfg = pipeline_config(
        kafka_bootstrap, unique_name("backlog"), partitions=12, guarantee=guarantee
    )
    create_topics(cfg)
    ticks = _ticks(12_000, coins=48, seed=14)
    _, decisions, executions = engine_run(cfg, ticks)
    publish_ticks(cfg, ticks)

    # act
    with running_worker(cfg, tmp_path / "a") as worker:
        _wait_settled(cfg, len(ticks), len(decisions), len(executions))

        # assert
        _assert_engine_facts(cfg, ticks, worker.port)
