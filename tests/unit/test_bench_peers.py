"""The peer benchmark's pure parts: the work every peer does, medians, the parity check, the
table's text, the peer's arguments and the Quix Streams venv's stamp. No Kafka, no timing."""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

from benchmarks.bench_peers import (
    PEERS,
    Peer,
    PeerRun,
    compare_outputs,
    ratio,
    runs_text,
    summarise,
    table_row,
)
from benchmarks.bench_pipeline import Expected, encode_ticks, expected_outputs
from benchmarks.peers.common import OUTPUT_TYPES, PeerResult, PeerSpec, TickWork
from benchmarks.peers.env import (
    REPO,
    STAMP_NAME,
    is_current,
    peer_environ,
    quix_python,
    requirements_digest,
)
from huracan.config import build_config
from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator

PEER = Peer("raw confluent-kafka", "at_least_once", "benchmarks.peers.confluent_peer", "project")


def _run(rate: float, seconds: float, cpu: float, *, ok: bool = True) -> PeerRun:
    return PeerRun(PEER, ok=ok, rate=rate, seconds=seconds, cpu_seconds=cpu, load_before=1.5)


def _expected(decisions: list[bytes], executions: list[bytes]) -> Expected:
    return Expected(
        decisions=len(decisions),
        executions=len(executions),
        signals=0,
        requests=len(decisions),
        seconds=1.0,
        decisions_bytes=Counter(decisions),
        executions_bytes=Counter(executions),
    )


def test_tick_work_when_fed_encoded_ticks_in_time_order_then_engine_outputs_byte_for_byte() -> None:
    # arrange: the ticks as the benchmark publishes them, and the engine's outputs over them
    cfg = build_config({"kafka": {"topic_prefix": "unit-peers"}}, environ={})
    start = 1_700_000_000_000_000
    ticks = list(MarketSimulator(universe(20), seed=7, start_ts_us=start).ticks(4_000))
    expected = expected_outputs(cfg, ticks)
    work = TickWork(cfg)
    # act: every peer's three steps, record by record
    produced: list[tuple[str, bytes, bytes]] = []
    for _key, value, _ts in encode_ticks(cfg, ticks):
        produced += work.on_value(value)
    produced += work.encoded(work.finish())
    # assert: the same decisions and executions, each to its own topic, keyed by its coin
    by_topic: dict[str, list[bytes]] = {}
    for topic, _key, value in produced:
        by_topic.setdefault(topic, []).append(value)
    assert expected.decisions > 0
    assert Counter(by_topic[work.topics["RiskDecision"]]) == expected.decisions_bytes
    assert Counter(by_topic[work.topics["Execution"]]) == expected.executions_bytes
    assert len(by_topic[work.topics["FeatureVector"]]) == len(ticks)
    assert set(work.sent) <= set(OUTPUT_TYPES)
    assert sum(work.sent.values()) == len(produced)
    serde_keys = {work.serde.decode(v)["coin"].encode() == k for _t, k, v in produced}
    assert serde_keys == {True}


def test_summarise_when_three_good_runs_then_medians_and_ticks_per_cpu_second() -> None:
    runs = [_run(10_000, 10.0, 12.0), _run(20_000, 5.0, 8.0), _run(12_500, 8.0, 10.0)]

    s = summarise(runs, ticks=100_000)

    assert s.rate == 12_500
    assert s.cpu_seconds == 10.0
    assert s.ticks_per_cpu_second == 10_000
    assert s.cores == 10.0 / 8.0
    assert (s.runs, s.all_ok) == (3, True)


def test_summarise_when_a_run_failed_then_left_out_and_flagged() -> None:
    runs = [_run(10_000, 10.0, 12.0), _run(math.nan, math.nan, math.nan, ok=False)]

    s = summarise(runs, ticks=100_000)

    assert s.rate == 10_000
    assert (s.runs, s.all_ok) == (1, False)


def test_summarise_when_no_good_run_then_nan_and_not_ok() -> None:
    s = summarise([_run(1.0, 1.0, 1.0, ok=False)], ticks=10)

    assert math.isnan(s.rate)
    assert (s.runs, s.all_ok) == (0, False)


def test_compare_outputs_when_same_records_in_another_order_then_identical() -> None:
    expected = _expected([b"d1", b"d2"], [b"x1"])

    parity = compare_outputs(expected, [b"d2", b"d1"], [b"x1"])

    assert parity["same_decision_count"]
    assert parity["same_execution_count"]
    assert parity["byte_identical"]


def test_compare_outputs_when_other_approvals_then_counts_differ_only_for_executions() -> None:
    expected = _expected([b"d1", b"d2"], [b"x1"])

    parity = compare_outputs(expected, [b"d1", b"d2-blocked"], [])

    assert parity["same_decision_count"]
    assert not parity["same_execution_count"]
    assert not parity["byte_identical"]
    assert (parity["decisions"], parity["executions"]) == (2, 0)


def test_compare_outputs_when_a_decision_is_missing_then_count_differs() -> None:
    parity = compare_outputs(_expected([b"d1", b"d2"], []), [b"d1"], [])

    assert not parity["same_decision_count"]


def test_ratio_when_either_side_missing_or_zero_then_blank() -> None:
    assert ratio(5_000, 20_000) == "0.25x"
    assert ratio(math.nan, 20_000) == ""
    assert ratio(5_000, math.nan) == ""
    assert ratio(5_000, 0.0) == ""


def test_table_row_when_all_runs_ok_then_medians_and_decision_count() -> None:
    s = summarise([_run(10_000, 10.0, 12.0)], ticks=100_000)

    row = table_row(PEER, s, reference=20_000, decisions=4_321)

    assert row == [
        "raw confluent-kafka",
        "at least once",
        10_000,
        "0.50x",
        12.0,
        100_000 / 12.0,
        1.2,
        "4,321 in every run",
    ]


def test_runs_text_when_one_run_failed_then_says_so_beside_the_others() -> None:
    text = runs_text([_run(12_345.6, 1.0, 1.0), _run(1.0, 1.0, 1.0, ok=False)])

    assert text == "12,346 @ 1.50; failed"


def test_peers_when_listed_then_each_guarantee_and_venv_as_the_issue_asks() -> None:
    rows = {(p.name, p.guarantee, p.venv, p.commit_every) for p in PEERS}

    assert rows == {
        ("raw confluent-kafka", "at_least_once", "project", 0),
        ("raw confluent-kafka", "exactly_once", "project", 0),
        ("raw aiokafka", "at_least_once", "project", 0),
        ("Quix Streams", "at_least_once", "quix", 0),
        ("Quix Streams", "exactly_once", "quix", 0),
        ("Quix Streams", "exactly_once", "quix", 500),
    }
    assert len({p.slug for p in PEERS}) == len(PEERS)
    assert len({p.label for p in PEERS}) == len(PEERS)


def test_peer_mode_when_commit_cadence_set_then_shown_beside_the_guarantee() -> None:
    quix = Peer("Quix Streams", "exactly_once", "benchmarks.peers.quix_peer", "quix", 500)

    assert quix.mode == "exactly once, commit every 500"
    assert quix.slug == "quix-exactly_once-every500"
    assert PEER.mode == "at least once"


def test_peer_spec_when_passed_as_argv_then_read_back_equal(tmp_path: Path) -> None:
    spec = PeerSpec("127.0.0.1:9092", "a.market-data", "b", "b-group", 60_000, "exactly_once",
                    tmp_path / "r.json", commit_every=500)  # fmt: skip

    assert PeerSpec.from_argv(spec.to_argv()) == spec
    assert PeerSpec.from_argv(spec.to_argv()[:-2]).commit_every == 0
    assert spec.config().kafka.topic_prefix == "b"


def test_peer_result_when_written_then_read_back_with_its_rate(tmp_path: Path) -> None:
    result = PeerResult("aiokafka", "at_least_once", 1_000, 0.5, 0.7, {"FeatureVector": 1_000})

    result.write(tmp_path / "r.json")
    back = PeerResult.read(tmp_path / "r.json")

    assert back == result
    assert back.rate == 2_000


def test_is_current_when_requirements_change_then_venv_is_stale(tmp_path: Path) -> None:
    venv, requirements = tmp_path / "venv", tmp_path / "req.txt"
    requirements.write_text("quixstreams==1.0\n")
    quix_python(venv).parent.mkdir(parents=True)
    quix_python(venv).write_text("")
    assert not is_current(venv, requirements)  # no stamp yet
    (venv / STAMP_NAME).write_text(requirements_digest(requirements.read_text()) + "\n")
    assert is_current(venv, requirements)

    requirements.write_text("quixstreams==2.0\n")

    assert not is_current(venv, requirements)


def test_peer_environ_when_pythonpath_set_then_repository_first() -> None:
    env = peer_environ({"PYTHONPATH": "/elsewhere", "HURACAN__x": "1"})

    assert env["PYTHONPATH"] == f"{REPO}{os.pathsep}/elsewhere"
    assert env["HURACAN__x"] == "1"
    assert peer_environ({})["PYTHONPATH"] == str(REPO)
