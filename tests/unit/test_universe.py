from __future__ import annotations

import pytest

from huracan.domain.universe import (
    EXCHANGES,
    SECTORS,
    UniverseError,
    coin_info,
    get_active_coins,
    get_sector,
    universe,
)


def test_universe_when_400_coins_then_unique_symbols_known_sectors_and_exchanges() -> None:
    coins = universe(400)

    assert len({c.symbol for c in coins}) == 400
    assert {c.sector for c in coins} <= set(SECTORS)
    assert {c.exchange for c in coins} == set(EXCHANGES)
    assert coins[0].symbol == "BTC"


def test_get_active_coins_when_called_twice_then_same_order() -> None:
    assert get_active_coins(20) == get_active_coins(20)
    assert get_active_coins(20) == get_active_coins(400)[:20]


def test_coin_info_when_symbol_synthetic_or_known_then_round_trips() -> None:
    for c in universe(400):
        assert coin_info(c.symbol) == c
    assert get_sector("UNI") == "DeFi"


def test_coin_info_when_unknown_then_error_names_it() -> None:
    with pytest.raises(UniverseError, match="NOPE"):
        coin_info("NOPE")
    with pytest.raises(UniverseError):
        universe(-1)
