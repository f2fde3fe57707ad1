"""The coin universe: symbols, sectors and home exchanges, deterministic and pure.

The engine trades up to ``engine.max_coins`` (400) coins. The first coins are real, widely traded
symbols with their usual sectors; past those the universe continues with synthetic symbols
(``X0061`` …) whose sector and exchange follow from their index, so that every run, test and
benchmark sees the same universe. ``get_active_coins(n)`` is the spec's helper: the first ``n``.

A team trades its own list with a :class:`Universe` (``engine.universe`` in the config, read
by :mod:`huracan.universe_config`); :func:`default_universe` is today's table, the default.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Universe:
    """The coins the engine trades, in a fixed order: each with its sector and home exchange.

    Built from rows (:meth:`from_rows`) or today's table (:func:`default_universe`). A symbol
    appears once; sectors and exchanges are non-empty. ``coins`` keeps the given order (the
    first ``active_coins`` are the ones the demo and the simulator tick)."""

    coins: tuple[CoinInfo, ...]
    _by_symbol: dict[str, CoinInfo] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_symbol: dict[str, CoinInfo] = {}
        for c in self.coins:
            for name, value in (
                ("symbol", c.symbol),
                ("sector", c.sector),
                ("exchange", c.exchange),
            ):
                if not isinstance(value, str) or not value.strip():
                    raise UniverseError(f"coin #{c.index}: {name} must be a non-empty string")
            if c.symbol in by_symbol:
                raise UniverseError(f"coin {c.symbol!r} is listed twice")
            by_symbol[c.symbol] = c
        object.__setattr__(self, "_by_symbol", by_symbol)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, str]]) -> Universe:
        """A universe of ``(symbol, sector, exchange)`` rows, in their order."""
        return cls(tuple(CoinInfo(s, sec, ex, i) for i, (s, sec, ex) in enumerate(rows)))

    def __len__(self) -> int:
        return len(self.coins)

    def __iter__(self) -> Iterator[CoinInfo]:
        return iter(self.coins)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._by_symbol

    def first(self, n: int) -> list[CoinInfo]:
        """The first ``n`` coins; raises :class:`UniverseError` when there are fewer."""
        if n < 0 or n > len(self.coins):
            raise UniverseError(f"asked for {n} coins, the universe holds {len(self.coins)}")
        return list(self.coins[:n])

    def coin(self, symbol: str) -> CoinInfo:
        """One coin's facts; raises :class:`UniverseError` when it is not in the universe."""
        try:
            return self._by_symbol[symbol]
        except KeyError:
            raise UniverseError(f"unknown coin {symbol!r}") from None

    def sectors(self) -> dict[str, str]:
        """symbol -> sector, for every coin."""
        return {c.symbol: c.sector for c in self.coins}

    def exchanges(self) -> dict[str, str]:
        """symbol -> home exchange, for every coin."""
        return {c.symbol: c.exchange for c in self.coins}


def default_universe(n: int) -> Universe:
    """Today's table: the first ``n`` coins of :func:`universe`."""
    return Universe(tuple(universe(n)))
