"""The coin universe: symbols, sectors and home exchanges, deterministic and pure.

The engine trades up to ``engine.max_coins`` (400) coins. The first coins are real, widely traded
symbols with their usual sectors; past those the universe continues with synthetic symbols
(``X0061`` …) whose sector and exchange follow from their index, so that every run, test and
benchmark sees the same universe. ``get_active_coins(n)`` is the spec's helper: the first ``n``.
"""

from __future__ import annotations

from dataclasses import dataclass

SECTORS: tuple[str, ...] = ("L1", "L2", "DeFi", "Meme", "AI", "Gaming", "Infra", "Exchange")
EXCHANGES: tuple[str, ...] = ("binance", "coinbase", "kraken", "okx", "bybit")

_KNOWN: tuple[tuple[str, str], ...] = (
    ("BTC", "L1"), ("ETH", "L1"), ("SOL", "L1"), ("BNB", "Exchange"), ("XRP", "L1"),
    ("ADA", "L1"), ("AVAX", "L1"), ("DOGE", "Meme"), ("DOT", "L1"), ("TRX", "L1"),
    ("LINK", "Infra"), ("MATIC", "L2"), ("TON", "L1"), ("SHIB", "Meme"), ("LTC", "L1"),
    ("BCH", "L1"), ("UNI", "DeFi"), ("ATOM", "L1"), ("XLM", "L1"), ("NEAR", "L1"),
    ("APT", "L1"), ("ARB", "L2"), ("OP", "L2"), ("FIL", "Infra"), ("ICP", "L1"),
    ("HBAR", "L1"), ("VET", "L1"), ("INJ", "DeFi"), ("SUI", "L1"), ("MKR", "DeFi"),
    ("AAVE", "DeFi"), ("GRT", "Infra"), ("RNDR", "AI"), ("FET", "AI"), ("IMX", "Gaming"),
    ("SAND", "Gaming"), ("MANA", "Gaming"), ("AXS", "Gaming"), ("PEPE", "Meme"),
    ("WIF", "Meme"), ("BONK", "Meme"), ("LDO", "DeFi"), ("CRV", "DeFi"), ("SNX", "DeFi"),
    ("COMP", "DeFi"), ("STX", "L2"), ("TIA", "Infra"), ("SEI", "L1"), ("ALGO", "L1"),
    ("EGLD", "L1"), ("FTM", "L1"), ("RUNE", "DeFi"), ("KAS", "L1"), ("OKB", "Exchange"),
    ("CRO", "Exchange"), ("TAO", "AI"), ("AGIX", "AI"), ("OCEAN", "AI"), ("GALA", "Gaming"),
    ("ENS", "Infra"),
)  # fmt: skip

MAX_UNIVERSE = 1000


class UniverseError(ValueError):
    """Asked for more coins than the universe holds, or for an unknown coin."""


@dataclass(frozen=True, slots=True)
class CoinInfo:
    """A coin's static facts: symbol, sector and the exchange it trades on by default."""

    symbol: str
    sector: str
    exchange: str
    index: int


def _info(index: int) -> CoinInfo:
    if index < len(_KNOWN):
        symbol, sector = _KNOWN[index]
    else:
        symbol, sector = f"X{index:04d}", SECTORS[index % len(SECTORS)]
    return CoinInfo(symbol, sector, EXCHANGES[index % len(EXCHANGES)], index)


def universe(n: int) -> list[CoinInfo]:
    """The first ``n`` coins of the universe, in a fixed order."""
    if n < 0 or n > MAX_UNIVERSE:
        raise UniverseError(f"universe size must be within 0..{MAX_UNIVERSE}, got {n}")
    return [_info(i) for i in range(n)]


def get_active_coins(n: int) -> list[str]:
    """The symbols of the first ``n`` coins (the spec's ``get_active_coins(active_coins)``)."""
    return [c.symbol for c in universe(n)]


def coin_info(symbol: str) -> CoinInfo:
    """The facts of one coin; raises :class:`UniverseError` when it is not in the universe."""
    for i, (known, _) in enumerate(_KNOWN):
        if known == symbol:
            return _info(i)
    if len(symbol) == 5 and symbol[0] == "X" and symbol[1:].isdigit():
        index = int(symbol[1:])
        if len(_KNOWN) <= index < MAX_UNIVERSE:
            return _info(index)
    raise UniverseError(f"unknown coin {symbol!r}")


def get_sector(symbol: str) -> str:
    """The sector of ``symbol`` (the spec's ``get_sector(coin)``)."""
    return coin_info(symbol).sector
