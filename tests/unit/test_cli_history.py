"""``huracan archive | replay | backtest | whatif`` through the Typer app, on a temporary archive.

No services: the topic cases point at a closed port and must fail cleanly. Every bad input
must give exit code != 0, exactly one ``error:`` line on stderr, and no traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from huracan.backtest.report import BacktestReport
from huracan.backtest.run import read_jsonl, run_replay
from huracan.cli import app
from huracan.config import DEFAULT_CONFIG_PATH, build_config
from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator
from huracan.storage.archive import ArchiveWriter

T0 = 1_767_225_600_000_000
N_TICKS = 1_500
#: the environment of every run: no HURACAN__ overrides, a Kafka address nobody listens on
#: and an empty model registry in files (every coin trades the baseline; no PostgreSQL)
ENV = {
    "HURACAN_KAFKA_BOOTSTRAP": "127.0.0.1:1",
    "HURACAN_CONFIG": "",
    "COLUMNS": "80",
    "HURACAN__engine__model_registry__metadata_db": "",
    "HURACAN__engine__model_registry__storage_path": "/tmp/huracan-test-models/cli-unit",
}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    ticks = MarketSimulator(universe(10), seed=11, start_ts_us=T0, rate=500).ticks(N_TICKS)
    ArchiveWriter(root).write(list(ticks))
    return root


def _run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env={**ENV, **(env or {})})


def _assert_clean_failure(result: Result, code: int | None = None, *needles: str) -> str:
    """Exit != 0 (== ``code`` when given), one ``error:`` line naming ``needles``, no trace."""
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


# --- backtest -----------------------------------------------------------------------------------


def test_backtest_when_archive_then_writes_report_png_and_records_and_prints_the_table(
    archive: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bt"

    result = _run("backtest", "--root", str(archive), "--out", str(out), "--coins", "BTC,ETH,SOL")

    assert result.exit_code == 0, result.output
    report = BacktestReport.from_dict(json.loads((out / "report.json").read_text()))
    assert report.coins == ("BTC", "ETH", "SOL")
    assert (out / "equity.png").read_bytes()[:4] == b"\x89PNG"
    expected = run_replay(build_config({}, environ={}), root=archive, coins="BTC,ETH,SOL")
    assert read_jsonl(out / "decisions.jsonl") == expected.decisions
    assert read_jsonl(out / "executions.jsonl") == expected.executions
    assert "Backtest" in result.stdout
    assert f"{report.decisions:,}" in result.stdout
    assert "Risk decisions" in result.stdout
    for name in ("report.json", "decisions.jsonl", "executions.jsonl", "equity.png"):
        assert str(out / name) in result.stdout.replace("\n", "")


def test_backtest_when_json_then_stdout_is_the_report(archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "bt"

    result = _run("backtest", "--root", str(archive), "--out", str(out), "--json", "--no-chart")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["report"] == json.loads((out / "report.json").read_text())
    assert data["report"]["ticks"] == N_TICKS
    assert not (out / "equity.png").exists()


def test_backtest_when_equity_given_then_report_starts_there(archive: Path, tmp_path: Path) -> None:
    result = _run(
        "backtest", "--root", str(archive), "--out", str(tmp_path), "--json", "--no-chart",
        "--equity-usd", "300000",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["report"]["equity_usd"] == 300_000.0


# --- replay -------------------------------------------------------------------------------------


def test_replay_when_archive_and_out_then_counts_printed_and_records_written(
    archive: Path, tmp_path: Path
) -> None:
    expected = run_replay(build_config({}, environ={}), root=archive)

    result = _run("replay", "--from", "archive", "--root", str(archive), "--out", str(tmp_path))

    assert result.exit_code == 0, result.output
    assert read_jsonl(tmp_path / "decisions.jsonl") == expected.decisions
    assert read_jsonl(tmp_path / "executions.jsonl") == expected.executions
    for label, value in (
        ("ticks", N_TICKS),
        ("signals", expected.stats.signals),
        ("risk decisions", len(expected.decisions)),
        ("executions", len(expected.executions)),
    ):
        assert any(label in line and f"{value:,}" in line for line in result.stdout.splitlines()), (
            label
        )


def test_replay_when_json_then_summary_matches_the_replay(archive: Path) -> None:
    expected = run_replay(build_config({}, environ={}), root=archive, coins="ETH,SOL")

    result = _run("replay", "--root", str(archive), "--coins", "ETH,SOL", "--json")

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["decisions"] == len(expected.decisions)
    assert summary["decisions_by_outcome"] == expected.decisions_by_outcome
    assert summary["features"] == expected.stats.features
    assert summary["files"] == []


# --- whatif -------------------------------------------------------------------------------------


def test_whatif_when_limit_tighter_then_prints_the_changes(archive: Path) -> None:
    result = _run(
        "whatif", "--root", str(archive), "--set", "risk.max_active_trades=2", "--examples", "3"
    )

    assert result.exit_code == 0, result.output
    flat = " ".join(result.stdout.split())
    assert "engine.risk.max_active_trades" in flat
    assert "requests decided differently" in flat
    assert "max_active_trades" in flat


def test_whatif_when_json_then_diff_and_changed_keys(archive: Path, tmp_path: Path) -> None:
    base = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    base["engine"]["cost_model"]["default_taker_fee_bps"] = 20.0
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(base))

    result = _run(
        "whatif", "--root", str(archive), "--other-config", str(other),
        "--set", "risk.max_active_trades=5", "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {c["key"]: c["other"] for c in data["changes"]} == {
        "engine.cost_model.default_taker_fee_bps": 20.0,
        "engine.risk.max_active_trades": 5,
    }
    assert data["diff"]["changed"] > 0
    approvals = {r["key"]: r for r in data["diff"]["outcomes"]}["APPROVE"]
    assert approvals["other"] < approvals["base"]


# --- bad input ----------------------------------------------------------------------------------


def test_backtest_when_root_missing_then_clean_failure(tmp_path: Path) -> None:
    result = _run("backtest", "--root", str(tmp_path / "nope"), "--out", str(tmp_path))

    _assert_clean_failure(result, 1, "does not exist")


def test_backtest_when_no_root_then_the_configured_archive_root_is_used(
    archive: Path, tmp_path: Path
) -> None:
    result = _run(
        "backtest", "--out", str(tmp_path), "--json", "--no-chart",
        env={"HURACAN__storage__archive__root": str(archive)},
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["report"]["ticks"] == N_TICKS


def test_backtest_when_no_root_and_configured_root_missing_then_clean_failure(
    tmp_path: Path,
) -> None:
    result = _run(
        "backtest", "--out", str(tmp_path),
        env={"HURACAN__storage__archive__root": str(tmp_path / "gone")},
    )  # fmt: skip

    _assert_clean_failure(result, 1, str(tmp_path / "gone"))


def test_backtest_when_parquet_corrupt_then_clean_failure_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "arch" / "BTC" / "20260101.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"PAR1 this is not parquet")

    result = _run("backtest", "--root", str(tmp_path / "arch"), "--out", str(tmp_path / "o"))

    _assert_clean_failure(result, 1, "20260101.parquet", "corrupt")


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--start", "2026-01-02", "--end", "2026-01-01"], 1, "empty time range"),
        (["--start", "2027-01-01"], 1, "no MarketTick"),
        (["--coins", "X0300"], 2, "X0300"),
        (["--coins", "DOGECOIN2"], 2, "DOGECOIN2"),
        (["--start", "first thing"], 2, "--start"),
        (["--end", "2026-01-01T25:00"], 2, "--end"),
        (["--offsets", "0:5"], 2, "--offsets"),
        (["--from", "parquet"], 2, "--from"),
    ],
)
def test_backtest_when_input_bad_then_clean_failure(
    archive: Path, tmp_path: Path, args: list[str], code: int, needle: str
) -> None:
    result = _run("backtest", "--root", str(archive), "--out", str(tmp_path), *args)

    _assert_clean_failure(result, code, needle)
    assert not (tmp_path / "report.json").exists()


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--set", "risk.max_trades=3"], 2, "risk.max_trades"),
        (["--set", "risk.max_active_trades=lots"], 2, "engine.risk.max_active_trades"),
        (["--set", "risk.max_active_trades"], 2, "KEY=VALUE"),
        (["--set", "costs=3"], 2, "section"),
        ([], 2, "--set"),
        (["--other-config", "/nonexistent/other.yaml"], 2, "/nonexistent/other.yaml"),
    ],
)
def test_whatif_when_input_bad_then_clean_failure(
    archive: Path, args: list[str], code: int, needle: str
) -> None:
    _assert_clean_failure(_run("whatif", "--root", str(archive), *args), code, needle)


def test_command_when_config_key_invalid_then_exit_2_naming_the_key(archive: Path) -> None:
    result = _run(
        "backtest", "--root", str(archive),
        env={"HURACAN__engine__risk__per_coin_max_exposure_pct": "lots"},
    )  # fmt: skip

    _assert_clean_failure(result, 2, "engine.risk.per_coin_max_exposure_pct")


def test_command_when_config_has_unknown_key_then_exit_2_naming_it(
    archive: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("engine:\n  risk:\n    max_leverage: 3\n")

    result = _run("replay", "--root", str(archive), "--config", str(cfg))

    _assert_clean_failure(result, 2, "engine.risk.max_leverage")


@pytest.mark.parametrize("command", ["replay", "backtest"])
def test_topic_source_when_broker_unreachable_then_clean_failure(
    command: str, tmp_path: Path
) -> None:
    result = _run(
        command, "--from", "topic", "--start", "2026-01-01", "--out", str(tmp_path),
        "--read-timeout", "1",
    )  # fmt: skip

    _assert_clean_failure(result, 1, "127.0.0.1:1")


def test_archive_when_topic_unknown_then_clean_failure_listing_the_catalog(tmp_path: Path) -> None:
    result = _run("archive", "--root", str(tmp_path), "--topics", "market-data,trades")

    _assert_clean_failure(result, 2, "'trades'", "market-data")


def test_archive_when_broker_unreachable_then_clean_failure(tmp_path: Path) -> None:
    result = _run("archive", "--root", str(tmp_path), "--topics", "MarketTick", "--timeout", "2")

    _assert_clean_failure(result, 1, "127.0.0.1:1")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--via", "carrier-pigeon"], "--via"),
        (["--from", "topic", "--root", "x"], "--root"),
        (["--from", "topic", "--offsets", "0:1,zero:2"], "zero:2"),
    ],
)
def test_replay_when_options_conflict_then_clean_failure(args: list[str], needle: str) -> None:
    _assert_clean_failure(_run("replay", *args), 2, needle)


def test_help_when_asked_then_lists_the_history_commands() -> None:
    result = _run("--help")

    assert result.exit_code == 0
    for name in ("archive", "replay", "backtest", "whatif"):
        assert name in result.stdout


# --- models -------------------------------------------------------------------------------------


def _signals(result: Result) -> int:
    assert result.exit_code == 0, result.output
    return int(json.loads(result.stdout)["signals"])


def test_replay_when_registry_has_a_coin_model_then_it_is_served_unless_baseline_asked(
    archive: Path, tmp_path: Path
) -> None:
    from huracan.domain.signals import BaselineParams
    from huracan.models import register_momentum_model
    from huracan.storage import ModelRegistry

    models = tmp_path / "models"
    env = {"HURACAN__engine__model_registry__storage_path": str(models)}
    args = ("replay", "--root", str(archive), "--coins", "BTC", "--json")
    before = _signals(_run(*args, env=env))
    registry = ModelRegistry(storage_path=models, metadata_db=None)
    register_momentum_model(registry, "BTC", BaselineParams(entry_z=0.5), sharpe_ratio=1.0)

    served = _signals(_run(*args, env=env))
    baseline = _signals(_run(*args, "--models", "baseline", env=env))

    assert served > before == baseline


def test_replay_when_registry_unreachable_then_clean_error_naming_the_way_out(
    archive: Path,
) -> None:
    env = {"HURACAN__engine__model_registry__metadata_db": "postgresql://x:y@127.0.0.1:1/none"}

    result = _run("replay", "--root", str(archive), env=env)

    _assert_clean_failure(result, 1, "model registry unreachable", "--models baseline")
