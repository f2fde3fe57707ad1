"""The backtest runner over a small Parquet archive in a temporary folder (no services).

The expected values come from the engine itself: ``build_engine(cfg).on_tick`` over the same
ticks, then ``finish()`` — the fast path must be that and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from huracan.backtest.errors import EmptyBacktest, InvalidBacktestInput
from huracan.backtest.report import BacktestReport
from huracan.backtest.run import (
    DECISIONS_FILE,
    EQUITY_FILE,
    EXECUTIONS_FILE,
    REPORT_FILE,
    load_cost_updates,
    load_ticks,
    override_config,
    parse_assignment,
    parse_offsets,
    parse_time,
    read_jsonl,
    replay_ticks,
    report_for,
    resolve_config_key,
    run_backtest,
    run_replay,
    run_whatif,
    write_outputs,
)
from huracan.config import ConfigError, HuracanConfig, build_config
from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator
from huracan.storage.archive import ArchiveWriter
from huracan.storage.archive_errors import (
    ArchiveFileCorrupt,
    ArchiveNotFound,
    NoDataInRange,
    UnknownCoin,
)
from huracan.streams.serde import make_serde
from huracan.wiring import build_engine

#: 2026-01-01T00:00:00Z in epoch microseconds
T0 = 1_767_225_600_000_000
N_TICKS = 2_000
COINS = 12


def _cfg(**engine: Any) -> HuracanConfig:
    return build_config({"engine": engine} if engine else {}, environ={})


def _ticks() -> list[dict[str, Any]]:
    return list(MarketSimulator(universe(COINS), seed=5, start_ts_us=T0, rate=500).ticks(N_TICKS))


def _engine_run(
    cfg: HuracanConfig,
    ticks: Iterable[Mapping[str, Any]],
    costs: Iterable[Mapping[str, Any]] = (),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The expected records: the engine over ``ticks``, each cost update folded before the
    first tick at or after its ``ts``."""
    engine = build_engine(cfg)
    pending = sorted(costs, key=lambda r: r["ts"])
    decisions: list[dict[str, Any]] = []
    executions: list[dict[str, Any]] = []
    for tick in ticks:
        while pending and pending[0]["ts"] <= tick["ts"]:
            engine.on_cost_update(pending.pop(0))
        out = engine.on_tick(tick)
        decisions += out.decisions
        executions += out.executions
    out = engine.finish()
    return decisions + out.decisions, executions + out.executions


def _funding(coin: str, i: int, ts: int, rate: float) -> dict[str, Any]:
    return {
        "event_id": f"cost:{coin}:{i}", "correlation_id": f"cost:{coin}:{i}",
        "causation_id": None, "coin": coin, "exchange": "binance", "ts": ts, "kind": "FUNDING",
        "bid": None, "ask": None, "maker_bps": None, "taker_bps": None, "funding_rate_bps": rate,
    }  # fmt: skip


def _fees(coin: str, i: int, ts: int, taker: float) -> dict[str, Any]:
    return {
        **_funding(coin, i, ts, 0.0),
        "kind": "FEES", "maker_bps": 1.0, "taker_bps": taker, "funding_rate_bps": None,
    }  # fmt: skip


@pytest.fixture(scope="module")
def ticks() -> list[dict[str, Any]]:
    return _ticks()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, ticks: list[dict[str, Any]]) -> Path:
    root = tmp_path_factory.mktemp("archive")
    ArchiveWriter(root).write(ticks)
    return root


@pytest.fixture(scope="module")
def expected(ticks: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return _engine_run(_cfg(), ticks)


# --- replay -------------------------------------------------------------------------------------


def test_run_replay_when_whole_archive_then_same_decisions_and_executions_as_the_engine(
    archive: Path, expected: tuple[list[dict[str, Any]], list[dict[str, Any]]]
) -> None:
    decisions, executions = expected
    assert {d["decision"] for d in decisions} >= {"APPROVE", "BLOCK"}
    assert {e["action"] for e in executions} == {"OPEN", "CLOSE"}

    result = run_replay(_cfg(), source="archive", root=archive)

    assert result.decisions == decisions
    assert result.executions == executions
    assert result.ticks == N_TICKS
    assert result.coins == tuple(sorted(c.symbol for c in universe(COINS)))
    assert result.requests == len(decisions)
    assert result.stats.features == N_TICKS
    assert sum(result.decisions_by_outcome.values()) == len(decisions)


def test_run_replay_when_coins_and_time_window_then_equals_the_engine_over_those_ticks(
    archive: Path, ticks: list[dict[str, Any]]
) -> None:
    coins = {"BTC", "ETH", "SOL", "XRP"}
    start, end = T0 + 400_000, T0 + 3_600_000
    chosen = [t for t in ticks if t["coin"] in coins and start <= t["ts"] < end]
    decisions, executions = _engine_run(_cfg(), chosen)
    assert decisions

    by_iso = run_replay(
        _cfg(), root=archive, coins="btc,ETH,sol,XRP",
        start="2026-01-01T00:00:00.4Z", end="2026-01-01T01:00:03.6+01:00",
    )  # fmt: skip
    by_micros = run_replay(_cfg(), root=archive, coins=sorted(coins), start=start, end=end)

    for result in (by_iso, by_micros):
        assert result.decisions == decisions
        assert result.executions == executions
        assert result.ticks == len(chosen)
        assert result.start_us == chosen[0]["ts"]
        assert result.end_us == chosen[-1]["ts"]


def test_replay_ticks_when_last_quotes_then_each_coins_last_tick(
    ticks: list[dict[str, Any]],
) -> None:
    result = replay_ticks(_cfg(), ticks)

    last = {t["coin"]: (t["bid"], t["ask"]) for t in ticks}
    assert result.last_quotes == last


def test_replay_ticks_when_a_tick_has_a_bad_quote_then_skipped_and_counted_like_a_dead_letter(
    ticks: list[dict[str, Any]],
) -> None:
    bad = {**ticks[10], "bid": ticks[10]["ask"] * 2, "seq": ticks[10]["seq"] + 10_000}
    mixed = [*ticks[:11], bad, *ticks[11:300]]

    result = replay_ticks(_cfg(), mixed)

    assert result.invalid_ticks == 1
    assert result.ticks == 300
    assert result.stats.features == 300


def test_replay_ticks_when_an_invalid_tick_arrives_while_requests_held_then_nothing_lost(
    ticks: list[dict[str, Any]],
) -> None:
    # arrange: a bad tick right after one whose requests the engine still holds; its time
    # would release them, but an invalid tick must release nothing (it is validated first)
    engine = build_engine(_cfg())
    i = 0
    while not engine.order.held:
        engine.on_tick(ticks[i])
        i += 1
    bad = {**ticks[i], "bid": -1.0, "event_id": "tick:bad"}

    # act
    clean = replay_ticks(_cfg(), ticks)
    with_bad = replay_ticks(_cfg(), [*ticks[:i], bad, *ticks[i:]])

    # assert
    assert with_bad.invalid_ticks == 1
    assert with_bad.decisions == clean.decisions
    assert with_bad.executions == clean.executions


def test_replay_ticks_when_models_given_then_they_replace_the_baseline(
    ticks: list[dict[str, Any]],
) -> None:
    class Silent:
        version = "silent-1"

        def evaluate(self, features: Any) -> None:
            return None

    asked: set[str] = set()

    def models(coin: str) -> Silent | None:
        asked.add(coin)
        return Silent() if coin == "BTC" else None

    base = replay_ticks(_cfg(), ticks)
    result = replay_ticks(_cfg(), ticks, models=models)

    assert asked == {c.symbol for c in universe(COINS)}
    assert not [d for d in result.decisions if d["coin"] == "BTC"]
    assert [d for d in base.decisions if d["coin"] == "BTC"]
    assert [d for d in result.decisions if d["coin"] == "ETH"]


def test_replay_ticks_when_no_ticks_then_empty_backtest() -> None:
    with pytest.raises(EmptyBacktest, match="no ticks"):
        replay_ticks(_cfg(), [])


# --- cost updates -------------------------------------------------------------------------------


def test_run_backtest_when_archive_has_cost_updates_then_folded_in_event_time_and_funding_charged(
    tmp_path: Path, ticks: list[dict[str, Any]]
) -> None:
    # arrange: funding for every coin before the first tick, a fee hike for two coins mid-way
    costs = [_funding(c.symbol, 0, T0 - 60_000_000, 3.0) for c in universe(COINS)]
    costs += [_fees(c, 1, T0 + 2_000_000, 12.0) for c in ("BTC", "ETH")]
    ArchiveWriter(tmp_path).write(ticks)
    ArchiveWriter(tmp_path, "CostUpdate").write(costs)
    decisions, executions = _engine_run(_cfg(), ticks, costs)
    plain = run_replay(_cfg(), root=tmp_path, cost_updates=False)

    # act
    result, report = run_backtest(_cfg(), root=tmp_path)

    # assert
    assert result.cost_updates == len(costs)
    assert result.decisions == decisions
    assert result.executions == executions
    assert result.decisions != plain.decisions  # the costs changed what was traded
    assert result.funding_rate_bps == {c.symbol: 3.0 for c in universe(COINS)}
    assert report.funding_usd != 0.0
    assert report.pnl_net_usd == pytest.approx(
        report.pnl_gross_usd - report.fees_usd - report.funding_usd
    )


def test_load_cost_updates_when_archive_has_none_then_empty(archive: Path) -> None:
    assert load_cost_updates(_cfg(), root=archive) == []


def test_load_cost_updates_when_end_given_then_only_earlier_updates_sorted_by_time(
    tmp_path: Path,
) -> None:
    costs = [_funding("ETH", 2, T0 + 5, 1.0), _funding("BTC", 1, T0 + 1, 2.0)]
    costs.append(_funding("BTC", 3, T0 + 9, 3.0))
    ArchiveWriter(tmp_path, "CostUpdate").write(costs)

    got = load_cost_updates(_cfg(), root=tmp_path, end=T0 + 9)

    assert [c["event_id"] for c in got] == ["cost:BTC:1", "cost:ETH:2"]


# --- what-if ------------------------------------------------------------------------------------


def test_run_whatif_when_active_trades_limit_tighter_then_more_blocks_and_changes_listed(
    archive: Path,
) -> None:
    cfg = _cfg()
    tight = override_config(cfg, {"risk.max_active_trades": 3})

    run = run_whatif(cfg, tight, root=archive, examples=5)

    assert run.base.decisions == run_replay(cfg, root=archive).decisions
    assert run.other.decisions == run_replay(tight, root=archive).decisions
    blocks = {r.key: r for r in run.diff.outcomes}["BLOCK"]
    assert blocks.other > blocks.base
    assert {r.key: r.other for r in run.diff.reasons}["max_active_trades"] > 0
    assert run.diff.changed > 0
    assert len(run.diff.examples) == 5
    assert run.other_report.trades_open_at_end <= 3
    assert run.diff.metric("executions").delta == len(run.other.executions) - len(
        run.base.executions
    )


def test_run_whatif_when_same_config_then_nothing_changes(archive: Path) -> None:
    run = run_whatif(_cfg(), _cfg(), root=archive, coins="BTC,ETH,SOL")

    assert run.diff.changed == 0
    assert all(m.delta in (0, 0.0, None) for m in run.diff.metrics)


def test_run_whatif_when_taker_fee_higher_then_fewer_signals_pass_the_cost_check(
    archive: Path,
) -> None:
    cfg = _cfg()
    dear = override_config(cfg, {"costs.default_taker_fee_bps": 25})

    run = run_whatif(cfg, dear, root=archive)

    assert sum(run.other.cost_rejections.values()) > sum(run.base.cost_rejections.values())
    assert len(run.other.decisions) < len(run.base.decisions)


# --- outputs ------------------------------------------------------------------------------------


def test_write_outputs_when_written_then_files_hold_exactly_the_engines_records(
    archive: Path, tmp_path: Path
) -> None:
    cfg = _cfg()
    result, report = run_backtest(cfg, root=archive, coins="BTC,ETH,SOL,BNB")
    serde = make_serde(cfg)

    paths = write_outputs(result, report, tmp_path / "out")

    assert paths.report_json == tmp_path / "out" / REPORT_FILE
    assert BacktestReport.from_dict(json.loads(paths.report_json.read_text())) == report
    assert paths.decisions_jsonl.name == DECISIONS_FILE
    assert paths.executions_jsonl.name == EXECUTIONS_FILE
    lines = paths.decisions_jsonl.read_text().splitlines()
    assert len(lines) == len(result.decisions)
    assert all(json.loads(line)["event_id"] for line in lines)
    decisions, executions = read_jsonl(paths.decisions_jsonl), read_jsonl(paths.executions_jsonl)
    assert decisions == result.decisions
    assert [serde.encode("RiskDecision", d) for d in decisions] == [
        serde.encode("RiskDecision", d) for d in result.decisions
    ]
    assert [serde.encode("Execution", e) for e in executions] == [
        serde.encode("Execution", e) for e in result.executions
    ]
    assert paths.equity_png == tmp_path / "out" / EQUITY_FILE
    assert paths.equity_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_write_outputs_when_chart_off_then_no_png(archive: Path, tmp_path: Path) -> None:
    result, report = run_backtest(_cfg(), root=archive, coins="BTC")

    paths = write_outputs(result, report, tmp_path, chart=False)

    assert paths.equity_png is None
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [REPORT_FILE, DECISIONS_FILE, EXECUTIONS_FILE]
    )


def test_report_for_when_equity_overridden_then_report_and_engine_use_it(archive: Path) -> None:
    cfg = override_config(_cfg(), {"engine.equity_usd": 250_000.0})

    result, report = run_backtest(cfg, root=archive)

    assert report.equity_usd == 250_000.0
    assert report_for(cfg, result) == report
    # the limits are percentages of equity: a smaller equity leaves room for fewer trades
    assert result.decisions != run_replay(_cfg(), root=archive).decisions


# --- bad input ----------------------------------------------------------------------------------


def test_load_ticks_when_root_missing_then_archive_not_found(tmp_path: Path) -> None:
    with pytest.raises(ArchiveNotFound, match="nope"):
        load_ticks(_cfg(), root=tmp_path / "nope")


def test_load_ticks_when_coin_never_archived_then_unknown_coin(archive: Path) -> None:
    with pytest.raises(UnknownCoin, match="X0300"):
        load_ticks(_cfg(), root=archive, coins="BTC,X0300")


def test_load_ticks_when_coin_not_in_the_universe_then_invalid_input_naming_it(
    archive: Path,
) -> None:
    with pytest.raises(InvalidBacktestInput, match="NOTACOIN"):
        load_ticks(_cfg(), root=archive, coins=["NOTACOIN"])


def test_load_ticks_when_archive_holds_coins_outside_the_universe_then_invalid_input(
    archive: Path, ticks: list[dict[str, Any]]
) -> None:
    small = _cfg(max_coins=5, active_coins=5)
    with pytest.raises(InvalidBacktestInput, match=r"outside the universe of engine\.max_coins=5"):
        load_ticks(small, root=archive)

    inside = run_replay(small, root=archive, coins="BTC,ETH")

    assert (
        inside.decisions == _engine_run(small, [t for t in ticks if t["coin"] in ("BTC", "ETH")])[0]
    )


def test_load_ticks_when_start_not_before_end_then_no_data_in_range(archive: Path) -> None:
    with pytest.raises(NoDataInRange, match="empty time range"):
        load_ticks(_cfg(), root=archive, start="2026-01-02", end="2026-01-01")


def test_run_replay_when_range_holds_no_tick_then_no_data_in_range(archive: Path) -> None:
    with pytest.raises(NoDataInRange):
        run_replay(_cfg(), root=archive, start="2026-01-01T00:00:30Z", end="2026-01-01T06:00Z")


def test_run_replay_when_a_file_is_corrupt_then_error_names_it(
    tmp_path: Path, ticks: list[dict[str, Any]]
) -> None:
    files = ArchiveWriter(tmp_path).write(ticks[:200])
    victim = files[0].path
    victim.write_bytes(victim.read_bytes()[:100])

    with pytest.raises(ArchiveFileCorrupt) as info:
        run_replay(_cfg(), root=tmp_path)
    assert info.value.path == victim


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "kafka"}, "source must be one of"),
        ({"source": "archive"}, "needs the archive root"),
        ({"source": "archive", "root": ".", "start_offsets": {0: 1}}, "--from topic only"),
        ({"source": "archive", "root": ".", "start": "yesterday"}, "not an ISO 8601 time"),
    ],
)
def test_load_ticks_when_arguments_unusable_then_invalid_input(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidBacktestInput, match=message):
        load_ticks(_cfg(), **kwargs)


# --- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "micros"),
    [
        ("2026-01-01", T0),
        ("2026-01-01T00:00:00Z", T0),
        ("2026-01-01T01:00:00+01:00", T0),
        ("2026-01-01T00:00:00.000250", T0 + 250),
        (str(T0), T0),
        (T0 + 7, T0 + 7),
        (None, None),
    ],
)
def test_parse_time_when_valid_then_epoch_micros(value: Any, micros: int | None) -> None:
    assert parse_time(value) == micros


@pytest.mark.parametrize("value", ["2026-02-30", "noon", "", "12:00", True, 1.5])
def test_parse_time_when_not_a_time_then_invalid_input(value: Any) -> None:
    with pytest.raises(InvalidBacktestInput, match="start"):
        parse_time(value, "start")


def test_parse_offsets_when_pairs_then_partition_to_offset() -> None:
    assert parse_offsets("0:100, 3:0,1:7") == {0: 100, 3: 0, 1: 7}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0=1", "PARTITION:OFFSET"),
        ("0:a", "integers"),
        ("0:-1", "negative"),
        ("0:1,0:2", "twice"),
        (" , ", "names no"),
    ],
)
def test_parse_offsets_when_malformed_then_invalid_input(text: str, message: str) -> None:
    with pytest.raises(InvalidBacktestInput, match=message):
        parse_offsets(text)


@pytest.mark.parametrize(
    ("key", "full"),
    [
        ("risk.max_active_trades", "engine.risk.max_active_trades"),
        ("costs.default_taker_fee_bps", "engine.cost_model.default_taker_fee_bps"),
        ("cost_model.funding_interval_hours", "engine.cost_model.funding_interval_hours"),
        ("equity_usd", "engine.equity_usd"),
        ("engine.risk.exposure_mode", None),
        ("kafka.topic_prefix", "kafka.topic_prefix"),
    ],
)
def test_resolve_config_key_when_alias_then_full_key_or_error(key: str, full: str | None) -> None:
    if full is None:
        with pytest.raises(InvalidBacktestInput, match="exposure_mode"):
            resolve_config_key(key)
    else:
        assert resolve_config_key(key) == full


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("risk.max_trades", "engine.risk has no 'max_trades'"),
        ("risk", "is a section"),
        ("risk.max_active_trades.x", "is not a section"),
        ("bogus", "engine has no 'bogus'"),
    ],
)
def test_resolve_config_key_when_unknown_then_error_names_the_key(key: str, message: str) -> None:
    with pytest.raises(InvalidBacktestInput, match=message):
        resolve_config_key(key)


def test_override_config_when_value_invalid_then_config_error_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"engine\.risk\.max_active_trades"):
        override_config(_cfg(), [parse_assignment("risk.max_active_trades=lots")])


def test_override_config_when_valid_then_only_that_key_changes() -> None:
    cfg = _cfg()

    other = override_config(cfg, [parse_assignment("risk.global_max_exposure_pct = 150")])

    assert other.engine.risk.global_max_exposure_pct == 150.0
    assert other.model_dump() != cfg.model_dump()
    restored = override_config(other, {"engine.risk.global_max_exposure_pct": 200.0})
    assert restored == cfg


@pytest.mark.parametrize("text", ["risk.max_active_trades", "=3", ""])
def test_parse_assignment_when_not_key_value_then_invalid_input(text: str) -> None:
    with pytest.raises(InvalidBacktestInput, match="KEY=VALUE"):
        parse_assignment(text)


def test_report_for_when_funding_rate_arrives_at_the_last_tick_then_no_earlier_trade_pays_it(
    ticks: list[dict[str, Any]],
) -> None:
    last = ticks[-1]["ts"]
    costs = [_funding(c.symbol, 0, last, 1_000.0) for c in universe(COINS)]

    result = replay_ticks(_cfg(), ticks, cost_updates=costs)
    report = report_for(_cfg(), result)

    assert report.trades_closed > 0
    assert report.funding_usd == 0.0  # main: every trade charged 1 000 bps over its life
    assert result.funding_schedule == {c.symbol: [(last, 1_000.0)] for c in universe(COINS)}
    assert report.marks > 0
    assert report.sharpe is None or report.sharpe_periods >= report.sharpe_min_periods
