"""``huracan sweep`` and ``huracan retrain`` on a real Dask scheduler and two ``dask worker``
processes on loopback, over a Parquet archive the test writes; retrain against PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from huracan.backtest.run import override_config
from huracan.config import HuracanConfig, build_config
from huracan.domain.universe import universe
from huracan.models import RegistryModels
from huracan.research.errors import TaskFailed
from huracan.research.executor import DaskExecutor, SerialExecutor
from huracan.research.retrain import FAMILIES, run_retrain
from huracan.research.sweep import SWEEP_JSON, SWEEP_PNG, run_sweep, write_sweep_outputs
from huracan.research.tasks import sweep_point
from huracan.simulate import MarketSimulator
from huracan.storage import ModelRegistry
from huracan.storage.archive import ArchiveWriter
from tests.integration.dask_support import DaskCluster, dask_cluster
from tests.integration.pipeline_support import (
    create_topics,
    http_json,
    pipeline_config,
    publish_ticks,
    read_topic,
    running_worker,
)
from tests.waiting import wait_until

#: 2026-01-01T00:00:00Z in epoch microseconds
T0 = 1_767_225_600_000_000
COINS = 4
TICKS = 8_000
RATE = 10.0  # ticks per second of event time: 8,000 ticks span 800 s


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("research") / "archive"
    ticks = MarketSimulator(universe(COINS), seed=5, start_ts_us=T0, rate=RATE).ticks(TICKS)
    ArchiveWriter(root).write(list(ticks))
    return root


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    with dask_cluster(tmp_path_factory.mktemp("dask")) as c:
        yield c


def _cfg(**research: Any) -> HuracanConfig:
    return build_config({"research": research} if research else {}, environ={})


def _figures(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["point_id"],
        row["pnl_net_usd"],
        row["sharpe"],
        row["trades_closed"],
        row["decisions"],
    )


GRID = {
    "risk.per_coin_max_exposure_pct": [10.0, 40.0],
    "costs.min_edge_after_cost_bps": [0.0, 5.0],
    "exits.take_profit_bps": [15.0, 60.0],
}


def test_sweep_when_run_on_two_dask_workers_then_every_point_once_with_in_process_figures(
    archive: Path, cluster: DaskCluster, tmp_path: Path
) -> None:
    cfg = _cfg()

    with DaskExecutor(cluster.address) as executor:
        result = run_sweep(cfg, executor, grid=GRID, root=archive)
    expected = run_sweep(cfg, SerialExecutor(), grid=GRID, root=archive)
    json_path, png_path = write_sweep_outputs(result, tmp_path / "out")

    assert [p["point_id"] for p in result.points] == [f"p{i:03d}" for i in range(8)]
    assert [_figures(p) for p in result.points] == [_figures(p) for p in expected.points]
    assert len({p["pid"] for p in result.points}) == 2  # both workers ran points
    assert result.workers == 2
    assert json_path.name == SWEEP_JSON
    assert png_path.name == SWEEP_PNG
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.ranking[0][1] >= result.ranking[-1][1]


def test_sweep_when_worker_killed_mid_sweep_then_every_point_exactly_once(
    archive: Path, tmp_path: Path
) -> None:
    cfg = _cfg()
    grid = {
        "risk.per_coin_max_exposure_pct": [10.0, 40.0],
        "costs.min_edge_after_cost_bps": [0.0, 5.0],
        "exits.stop_loss_bps": [10.0, 20.0, 40.0],
    }  # 12 points, over two coins
    coins = ["BTC", "ETH"]
    lost: dict[str, Any] = {}

    with dask_cluster(tmp_path / "dask") as killable, DaskExecutor(killable.address) as executor:
        client = executor.client

        def kill_busiest_after_first_point(done: int, _total: int) -> None:
            if lost:
                return
            info = client.scheduler_info()["workers"]
            processing = client.processing()
            busiest = max(processing, key=lambda addr: len(processing[addr]))
            lost["keys"] = list(processing[busiest])
            lost["pid"] = killable.kill_worker(info[busiest]["name"])

        result = run_sweep(
            cfg, executor, grid=grid, root=archive, coins=coins,
            progress=kill_busiest_after_first_point,
        )  # fmt: skip
        workers_left = len(client.scheduler_info()["workers"])

    ids = [p["point_id"] for p in result.points]
    assert lost["keys"], "the killed worker was running points"
    assert workers_left == 1
    assert ids == [f"p{i:03d}" for i in range(12)]  # every point, each once, in order
    rerun = [p for p in result.points if any(f"-{p['point_id']}-" in k for k in lost["keys"])]
    assert rerun
    assert all(p["pid"] != lost["pid"] for p in rerun)
    for p in rerun:  # and with the figures a run in this process gives
        spec = {
            "root": str(archive), "coins": coins, "start": None, "end": None,
            "config": cfg.redacted(), "overrides": p["values"], "point_id": p["point_id"],
        }  # fmt: skip
        assert _figures(sweep_point(spec)) == _figures(p)


def test_sweep_when_archive_missing_on_workers_then_task_failed_names_point_and_error(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    with DaskExecutor(cluster.address) as executor, pytest.raises(TaskFailed) as info:
        run_sweep(_cfg(), executor, grid={"exits.take_profit_bps": [10.0]}, root=tmp_path / "no")

    assert info.value.key == "p000"
    assert type(info.value.error).__name__ == "ArchiveNotFound"


@pytest.fixture
def pg_registry(postgres_dsn: str, tmp_path: Path) -> Iterator[ModelRegistry]:
    schema = f"test_research_{uuid.uuid4().hex[:12]}"
    registry = ModelRegistry(
        storage_path=tmp_path / "models", metadata_db=postgres_dsn, schema=schema
    )
    yield registry
    registry.close()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_retrain_when_lead_above_then_below_margin_then_promoted_only_below(
    archive: Path, cluster: DaskCluster, pg_registry: ModelRegistry
) -> None:
    coins = ["BTC", "ETH"]
    end = T0 + int(TICKS / RATE * 1e6) + 1

    def retrain(margin: float, dry_run: bool = False) -> Any:
        cfg = _cfg(
            promotion_margin_sharpe=margin, promotion_min_trades=0, folds=2, sharpe_min_periods=2
        )
        with DaskExecutor(cluster.address) as executor:
            return run_retrain(
                cfg, executor, pg_registry, root=archive, coins=coins, start=T0, end=end,
                dry_run=dry_run,
            )  # fmt: skip

    # a dry run measures each coin's best lead over its incumbent (the baseline: no models yet)
    dry = retrain(margin=0.0, dry_run=True)
    assert pg_registry.list_models() == []
    leads = {}
    for coin in coins:
        inc = dry.incumbents[coin]["oos"]["sharpe"] or 0.0
        best = max(
            (c for c in dry.candidates if c.coin == coin and c.oos["sharpe"] is not None),
            key=lambda c: c.oos["sharpe"],
        )
        leads[coin] = best.oos["sharpe"] - inc
    coin = max(leads, key=lambda c: leads[c])
    lead = leads[coin]
    assert lead > 2.0, f"the data gives a candidate a lead to test against ({leads})"

    # act 1: a margin above the lead registers every candidate and promotes none
    above = retrain(margin=lead + 1.0)
    registered = pg_registry.list_models()
    assert len(registered) == len(coins) * len(FAMILIES) - sum(
        c.params is None for c in above.candidates
    )
    assert not above.promoted
    assert pg_registry.get_active_models(limit=None) == []
    for meta in registered:
        assert len(meta.sha256) == 64
        assert meta.regime in ("trending-up", "trending-down", "ranging")
        assert "out_of_sample" in meta.performance_metrics

    # act 2: a margin under the lead promotes that coin's best candidate, and only it
    below = retrain(margin=lead - 1.0)
    promoted = [c for c in below.promoted if c.coin == coin]
    assert len(promoted) == 1
    winner = promoted[0]
    active = pg_registry.get_active_models(coin=coin, limit=None)
    assert [(m.version, m.sha256) for m in active] == [(winner.version, winner.sha256)]
    assert active[0].sharpe_ratio == pytest.approx(winner.oos["sharpe"])
    for c in below.candidates:
        if c.promoted:
            assert c.oos["sharpe"] - (below.incumbents[c.coin]["oos"]["sharpe"] or 0.0) > lead - 1.0

    # the worker's model refresh serves the promoted version
    models = RegistryModels(pg_registry)
    assert models.refresh()
    served = models(coin)
    assert served is not None
    assert served.version == f"{coin}:{winner.family}@{winner.version}"


def test_retrain_when_model_promoted_then_running_worker_signals_with_it(
    archive: Path, cluster: DaskCluster, kafka_bootstrap: str, tmp_path: Path, unique_name: Any
) -> None:
    # arrange: a worker trading the baseline, with a file registry of its own
    base = pipeline_config(kafka_bootstrap, unique_name("research"))
    cfg = override_config(
        base,
        {
            "engine.model_registry.storage_path": str(tmp_path / "models"),
            "engine.model_registry.refresh_seconds": 1.0,
            "research.promotion_margin_sharpe": 0.0,
            "research.promotion_min_trades": 0,
            "research.folds": 2,
            "research.sharpe_min_periods": 2,  # minutes of data: the report's default is 30
        },
    )
    create_topics(cfg)
    registry = ModelRegistry.from_config(cfg)
    with running_worker(cfg, tmp_path / "worker") as (_proc, port):
        wait_until(lambda: http_json(port, "/health") is not None, 60, what="the worker's /health")
        assert http_json(port, "/health")["models"]["models"] == {}

        # act: retrain on the cluster promotes a model; the worker's refresh picks it up
        with DaskExecutor(cluster.address) as executor:
            result = run_retrain(
                cfg, executor, registry, root=archive, coins=["BTC", "ETH"], start=T0,
                end=T0 + int(TICKS / RATE * 1e6) + 1,
            )  # fmt: skip
        assert result.promoted, "the data gives a candidate a lead over the baseline"
        winner = result.promoted[0]
        label = f"{winner.coin}:{winner.family}@{winner.version}"
        wait_until(
            lambda: (http_json(port, "/health") or {}).get("models", {}).get("models", {})
            .get(winner.coin) == label,
            60, what=f"the worker serving {label}",
        )  # fmt: skip
        later = T0 + 86_400_000_000
        ticks = list(
            MarketSimulator(universe(COINS), seed=9, start_ts_us=later, rate=RATE).ticks(3_000)
        )
        publish_ticks(cfg, ticks)

        def signals_of_coin() -> list[dict[str, Any]]:
            return [r for r in read_topic(cfg, "Signal") if r["coin"] == winner.coin]

        signals = wait_until(signals_of_coin, 120, what=f"signals for {winner.coin}")
        requests = [r for r in read_topic(cfg, "TradeRequest") if r["coin"] == winner.coin]

    # assert: every signal (and trade request) the worker made for the coin is the promoted model's
    assert {s["model_version"] for s in signals} == {label}
    assert {r["model_version"] for r in requests} <= {label}
