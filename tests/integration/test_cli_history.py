"""``huracan archive`` and ``huracan replay --from topic`` against the real broker.

Each test publishes simulated ticks (record timestamp = event time, as the engine's producers
do) and cost updates to a fresh topic prefix, archives them with the command, and checks the
files and the replays against the in-process engine over the same records.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from huracan.backtest.run import read_jsonl
from huracan.cli import app
from huracan.config import HuracanConfig, build_config
from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator
from huracan.storage.archive import read_metadata
from huracan.storage.history import read_archive
from huracan.streams.serde import make_serde
from huracan.streams.topics import TopicCatalog, ensure_topics
from tests.integration.pipeline_support import engine_run, tick_producer

#: 2026-01-01T00:00:00Z in epoch microseconds
T0 = 1_767_225_600_000_000
PARTITIONS = 3
N_TICKS = 1_500
COINS = 10

Records = list[dict[str, Any]]


@pytest.fixture
def config(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> HuracanConfig:
    """A config with its own topic prefix, its topics created on the broker."""
    p = PARTITIONS
    cfg = build_config(
        {
            "kafka": {
                "topic_prefix": unique_name("hist"),
                "partitions": {"market_data": p, "cost_updates": p, "executions": p},
            }
        },
        environ={"HURACAN_KAFKA_BOOTSTRAP": kafka_bootstrap},
    )
    ensure_topics(cfg)
    return cfg


def _env(cfg: HuracanConfig) -> dict[str, str]:
    """The environment that makes the command line load ``cfg``."""
    parts = cfg.kafka.partitions
    return {
        "HURACAN_KAFKA_BOOTSTRAP": cfg.kafka.bootstrap_servers,
        "HURACAN__kafka__topic_prefix": cfg.kafka.topic_prefix,
        "HURACAN__engine__model_registry__metadata_db": "",
        "HURACAN__engine__model_registry__storage_path": cfg.engine.model_registry.storage_path,
        **{
            f"HURACAN__kafka__partitions__{k}": str(getattr(parts, k))
            for k in type(parts).model_fields
        },
    }


def _cli(cfg: HuracanConfig, *args: str) -> Result:
    result = CliRunner().invoke(app, list(args), env=_env(cfg))
    assert result.exit_code == 0, result.output
    return result


def _cost_updates() -> Records:
    """Funding for every coin before the first tick; a fee change for two coins mid-way."""
    base = {"exchange": "binance", "causation_id": None, "bid": None, "ask": None}
    out = [
        {**base, "event_id": f"fund:{c.symbol}", "correlation_id": f"fund:{c.symbol}",
         "coin": c.symbol, "ts": T0 - 1_000_000, "kind": "FUNDING", "maker_bps": None,
         "taker_bps": None, "funding_rate_bps": 2.5}
        for c in universe(COINS)
    ]  # fmt: skip
    out += [
        {**base, "event_id": f"fees:{coin}", "correlation_id": f"fees:{coin}", "coin": coin,
         "ts": T0 + 1_500_000, "kind": "FEES", "maker_bps": 0.0, "taker_bps": 9.0,
         "funding_rate_bps": None}
        for coin in ("BTC", "ETH")
    ]  # fmt: skip
    return out


def _publish(cfg: HuracanConfig) -> tuple[Records, list[tuple[tuple[int, int], Any]], Records]:
    """Publish the ticks and cost updates; return the ticks, each tick's
    ``((partition, offset), tick)`` as delivered, and the cost updates."""
    ticks = list(MarketSimulator(universe(COINS), seed=4, start_ts_us=T0, rate=500).ticks(N_TICKS))
    costs = _cost_updates()
    catalog = TopicCatalog.from_config(cfg)
    serde = make_serde(cfg)
    producer = tick_producer(cfg)
    located: list[tuple[tuple[int, int], Any]] = []

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        located.append(((msg.partition(), msg.offset()), serde.decode(msg.value(), "MarketTick")))

    for event_type, records in (("CostUpdate", costs), ("MarketTick", ticks)):
        topic = catalog.for_event_type(event_type).name
        for r in records:
            producer.produce(
                topic, key=r["coin"].encode(), value=serde.encode(event_type, r),
                timestamp=r["ts"] // 1000,
                on_delivery=delivered if event_type == "MarketTick" else None,
            )  # fmt: skip
    assert producer.flush(30) == 0
    assert len(located) == N_TICKS
    return ticks, located, costs


def test_archive_when_ticks_published_then_files_hold_them_with_their_offsets(
    config: HuracanConfig, tmp_path: Path
) -> None:
    # arrange
    ticks, located, costs = _publish(config)
    root = tmp_path / "archive"
    topic = TopicCatalog.from_config(config).for_event_type("MarketTick").name

    # act
    result = _cli(
        config, "archive", "--root", str(root), "--topics", "market-data,cost-updates", "--json"
    )

    # assert: the command's account
    reports = {r["event_type"]: r for r in json.loads(result.stdout)}
    ticks_report = reports["MarketTick"]
    assert ticks_report["topic"] == topic
    assert ticks_report["consumed"] == ticks_report["archived"] == N_TICKS
    assert ticks_report["complete"] is True
    ends: dict[int, int] = {}
    where: dict[str, list[tuple[int, int]]] = {}
    for (p, o), tick in located:
        ends[p] = max(ends.get(p, 0), o + 1)
        where.setdefault(tick["coin"], []).append((p, o))
    assert ticks_report["offsets"] == {str(p): [0, end - 1] for p, end in sorted(ends.items())}
    assert reports["CostUpdate"]["archived"] == len(costs)
    # the files: one per coin and day, holding exactly the ticks, with their offsets recorded
    assert list(read_archive(root, merge=True)) == ticks
    for coin, offsets in where.items():
        path = root / coin / "20260101.parquet"
        meta = read_metadata(path)
        assert meta.coin == coin
        assert meta.rows == len(offsets)
        intervals = meta.sources[topic]
        for p, o in offsets:
            assert any(lo <= o <= hi for lo, hi in intervals[p]), (coin, p, o)
    assert sorted(r["event_id"] for r in read_archive(root, event_type="CostUpdate")) == sorted(
        c["event_id"] for c in costs
    )


def test_replay_when_from_topic_with_start_time_then_equals_the_replay_from_the_archive(
    config: HuracanConfig, tmp_path: Path
) -> None:
    # arrange: ticks and cost updates on the topics, and archived
    ticks, _, costs = _publish(config)
    root = tmp_path / "archive"
    _cli(config, "archive", "--root", str(root), "--topics", "market-data,cost-updates")
    start_us = T0 + 1_000_000
    start = datetime.fromtimestamp(start_us / 1e6, tz=UTC).isoformat()
    chosen = [t for t in ticks if t["ts"] >= start_us]
    _, decisions, executions = engine_run(config, chosen, costs)
    assert {d["decision"] for d in decisions} >= {"APPROVE", "BLOCK"}

    # act
    from_topic = _cli(
        config, "replay", "--from", "topic", "--start", start, "--out", str(tmp_path / "t"),
        "--json",
    )  # fmt: skip
    from_archive = _cli(
        config, "replay", "--from", "archive", "--root", str(root), "--start", start,
        "--out", str(tmp_path / "a"), "--json",
    )  # fmt: skip

    # assert
    for result, out in ((from_topic, tmp_path / "t"), (from_archive, tmp_path / "a")):
        summary = json.loads(result.stdout)
        assert summary["ticks"] == len(chosen)
        assert summary["cost_updates"] == len(costs)
        assert read_jsonl(out / "decisions.jsonl") == decisions
        assert read_jsonl(out / "executions.jsonl") == executions
    assert (tmp_path / "t" / "decisions.jsonl").read_bytes() == (
        tmp_path / "a" / "decisions.jsonl"
    ).read_bytes()


def test_replay_when_from_topic_offsets_then_only_the_records_from_those_offsets(
    config: HuracanConfig, tmp_path: Path
) -> None:
    # arrange
    ticks, located, costs = _publish(config)
    starts = {0: 200, 1: 0, 2: 350}
    picked = {t["event_id"] for (p, o), t in located if o >= starts[p]}
    chosen = [t for t in ticks if t["event_id"] in picked]
    _, decisions, executions = engine_run(config, chosen, costs)

    # act
    offsets = ",".join(f"{p}:{o}" for p, o in starts.items())
    result = _cli(
        config, "replay", "--from", "topic", "--offsets", offsets, "--out", str(tmp_path),
        "--json",
    )  # fmt: skip

    # assert
    assert json.loads(result.stdout)["ticks"] == len(chosen) < N_TICKS
    assert read_jsonl(tmp_path / "decisions.jsonl") == decisions
    assert read_jsonl(tmp_path / "executions.jsonl") == executions


def test_backtest_when_from_topic_then_report_of_the_same_ticks(
    config: HuracanConfig, tmp_path: Path
) -> None:
    ticks, _, costs = _publish(config)
    _, decisions, _ = engine_run(config, ticks, costs)

    result = _cli(
        config, "backtest", "--from", "topic", "--out", str(tmp_path), "--json", "--no-chart"
    )

    report = json.loads(result.stdout)["report"]
    assert report["ticks"] == N_TICKS
    assert report["decisions"] == len(decisions)
    assert report["funding_usd"] != 0.0  # the FUNDING updates on the topic were charged
    assert read_jsonl(tmp_path / "decisions.jsonl") == decisions
