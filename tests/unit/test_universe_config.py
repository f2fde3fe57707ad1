from __future__ import annotations

from pathlib import Path

import pytest

from huracan.config import ConfigError, build_config
from huracan.domain.errors import UnknownCoinError
from huracan.domain.universe import default_universe
from huracan.simulate import MarketSimulator
from huracan.streams.dead_letter import reason_code
from huracan.universe_config import load_universe
from huracan.wiring import build_engine, coin_sectors


def test_load_universe_when_nothing_configured_then_todays_table() -> None:
    cfg = build_config({"engine": {"max_coins": 30, "active_coins": 20}})
    assert load_universe(cfg) == default_universe(30)


def test_load_universe_when_coins_inline_then_those_coins_in_order() -> None:
    cfg = build_config(
        {"engine": {"universe": {"coins": [
            {"symbol": "ZZZ", "sector": "Test", "exchange": "okx"},
            {"symbol": "BTC", "sector": "L1", "exchange": "binance"},
        ]}}}
    )  # fmt: skip
    u = load_universe(cfg)
    assert [c.symbol for c in u] == ["ZZZ", "BTC"]
    assert coin_sectors(cfg) == {"ZZZ": "Test", "BTC": "L1"}
    assert u.coin("ZZZ").exchange == "okx"


def test_load_universe_when_csv_and_yaml_files_then_same_universe(tmp_path: Path) -> None:
    csv = tmp_path / "u.csv"
    csv.write_text("exchange,symbol,sector\nkraken,AAA,DeFi\nokx,BBB,L2\n")
    yml = tmp_path / "u.yaml"
    yml.write_text(
        "- {symbol: AAA, sector: DeFi, exchange: kraken}\n"
        "- {symbol: BBB, sector: L2, exchange: okx}\n"
    )
    a = load_universe(build_config({"engine": {"universe": {"file": str(csv)}}}))
    b = load_universe(build_config({"engine": {"universe": {"file": str(yml)}}}))
    assert a == b
    assert a.sectors() == {"AAA": "DeFi", "BBB": "L2"}


@pytest.mark.parametrize(
    ("content", "suffix"),
    [("symbol,sector\nAAA,DeFi\n", ".csv"), ("- {symbol: AAA}\n", ".yaml"), ("x", ".txt")],
)
def test_load_universe_when_file_malformed_then_config_error_names_the_key(
    tmp_path: Path, content: str, suffix: str
) -> None:
    path = tmp_path / f"u{suffix}"
    path.write_text(content)
    with pytest.raises(ConfigError, match=r"engine\.universe\.file"):
        load_universe(build_config({"engine": {"universe": {"file": str(path)}}}))


def test_load_universe_when_symbol_twice_then_config_error() -> None:
    row = {"symbol": "AAA", "sector": "L1", "exchange": "okx"}
    with pytest.raises(ConfigError, match="listed twice"):
        load_universe(build_config({"engine": {"universe": {"coins": [row, row]}}}))


def test_engine_when_tick_of_unknown_coin_then_skipped_and_counted() -> None:
    cfg = build_config(
        {
            "engine": {
                "universe": {"coins": [{"symbol": "BTC", "sector": "L1", "exchange": "binance"}]}
            }
        }
    )
    engine = build_engine(cfg)
    ticks = list(MarketSimulator(default_universe(3).first(3), seed=1).ticks(600))
    outputs = [engine.on_tick(t) for t in ticks]
    unknown = sum(1 for t in ticks if t["coin"] != "BTC")
    assert engine.stats.unknown_coins == unknown > 0
    assert engine.stats.ticks == len(ticks) - unknown
    for tick, out in zip(ticks, outputs, strict=True):
        if tick["coin"] != "BTC":
            assert out.features is None
            assert not out.requests


def test_dead_letter_reason_when_unknown_coin_then_unknown_coin() -> None:
    assert reason_code(UnknownCoinError("coin 'ZZZ' is not in the universe")) == "unknown_coin"
