"""The per-tick fast paths of the core make exactly the results of the plain code they replace.

``CostBook.update_spread`` and ``check_trade_cost`` check the common case (finite floats) in
one expression and send everything else to the full checks; ``FeatureVector.to_record`` and
``Signal.to_record`` spell their fields out; ``process_tick`` makes the signal's record once.
Each test compares against the plain version (written out here) over awkward inputs.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from huracan.domain.costs import CostBook, CostSettings
from huracan.domain.engine import open_request_from_signal, process_tick
from huracan.domain.errors import InvalidCostRequestError, InvalidQuoteError, InvalidSymbolError
from huracan.domain.execution import PositionMonitor
from huracan.domain.features import FeatureParams, FeatureState, FeatureVector
from huracan.domain.signals import BaselineMomentumModel, Signal
from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator
from huracan.streams.serde import SchemaCatalog

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=1e-6, max_value=1e6),
    st.integers(min_value=-5, max_value=10**6),
    st.booleans(),
    st.sampled_from([0.0, -0.0, 1.0, math.inf, -math.inf, math.nan, "1.0", None]),
)
SYMBOLS = st.sampled_from(["BTC", "ETH", "", None, 7])


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def plain_quote_check(symbol: Any, bid: Any, ask: Any, timestamp: Any) -> None:
    """The checks update_spread made before its fast path, in their order."""
    if not isinstance(symbol, str) or not symbol:
        raise InvalidSymbolError(f"symbol must be a non-empty string, got {symbol!r}")
    if not _finite(bid) or not _finite(ask):
        raise InvalidQuoteError(f"{symbol}: bid and ask must be finite, got {bid!r}/{ask!r}")
    if bid <= 0 or ask <= 0:
        raise InvalidQuoteError(f"{symbol}: bid and ask must be > 0, got {bid!r}/{ask!r}")
    if bid > ask:
        raise InvalidQuoteError(f"{symbol}: crossed quote, bid {bid!r} > ask {ask!r}")
    if not _finite(timestamp):
        raise InvalidQuoteError(f"{symbol}: timestamp must be finite, got {timestamp!r}")


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except Exception as exc:  # the exception is the outcome compared
        return type(exc).__name__, str(exc)


@settings(max_examples=400, deadline=None)
@given(symbol=SYMBOLS, bid=NUMBERS, ask=NUMBERS, timestamp=NUMBERS)
def test_update_spread_when_any_input_then_same_outcome_as_plain_checks(
    symbol: Any, bid: Any, ask: Any, timestamp: Any
) -> None:
    book = CostBook()
    expected = outcome(plain_quote_check, symbol, bid, ask, timestamp)
    got = outcome(book.update_spread, symbol, bid, ask, timestamp)
    if expected[0] == "ok":
        assert got == ("ok", True)
        quote = book.quote(symbol)
        assert quote is not None
        assert (quote.bid, quote.ask, quote.timestamp) == (float(bid), float(ask), timestamp)
    else:
        assert got == expected
        assert book.symbols() == []


def test_update_spread_when_older_quote_then_ignored_on_fast_path() -> None:
    book = CostBook()
    assert book.update_spread("BTC", 100.0, 100.5, 10.0) is True
    assert book.update_spread("BTC", 99.0, 99.5, 9.0) is False
    quote = book.quote("BTC")
    assert quote is not None
    assert quote.bid == 100.0


@settings(max_examples=300, deadline=None)
@given(edge=NUMBERS, now=NUMBERS)
def test_check_trade_cost_when_any_edge_and_time_then_same_outcome_as_plain_checks(
    edge: Any, now: Any
) -> None:
    book = CostBook(CostSettings())
    book.update_spread("BTC", 50_000.0, 50_010.0, 100.0)

    def plain(edge: Any, now: Any) -> Any:
        if not _finite(edge):
            raise InvalidCostRequestError(f"edge_bps must be finite, got {edge!r}")
        if not _finite(now):
            raise InvalidCostRequestError(f"now must be finite, got {now!r}")
        return "checked"

    expected = outcome(plain, edge, now)
    got = outcome(book.check_trade_cost, "BTC", edge, now, False, True, "long")
    if expected[0] == "ok":
        assert got[0] == "ok"
        assert got[1].edge_bps == edge
    else:
        assert got == expected


def ticks(n: int = 4_000) -> list[dict[str, Any]]:
    return list(MarketSimulator(universe(8), seed=3).ticks(n))


def outcomes(n: int = 4_000) -> list[Any]:
    params, model = FeatureParams(), BaselineMomentumModel()
    states: dict[str, FeatureState] = {}
    costs, monitor = CostBook(), PositionMonitor()
    out = []
    for t in ticks(n):
        state = states.setdefault(t["coin"], FeatureState())
        result = process_tick(
            t, state=state, costs=costs, monitor=monitor, model=model, sector="L1",
            params=params,
        )  # fmt: skip
        out.append(result)
    return out


def test_feature_vector_to_record_when_made_then_every_field_in_order_plus_extra() -> None:
    vectors = [o.features for o in outcomes(500) if o is not None]
    names = [f.name for f in fields(FeatureVector)]
    schema = SchemaCatalog.load().schema("FeatureVector").field_names
    for fv in vectors:
        record = fv.to_record()
        assert list(record) == [*names, "extra"] == schema
        assert record == {**{n: getattr(fv, n) for n in names}, "extra": {}}


def test_signal_to_record_when_made_then_every_field_in_order_plus_confidence() -> None:
    signals = [o.signal for o in outcomes() if o is not None and o.signal is not None]
    assert signals
    names = [f.name for f in fields(Signal)]
    schema = SchemaCatalog.load().schema("Signal").field_names
    for s in signals:
        record = s.to_record()
        assert list(record) == [*names, "confidence"]
        assert set(record) == set(schema)
        assert record == {**{n: getattr(s, n) for n in names}, "confidence": None}


def test_process_tick_when_signal_then_its_record_made_once_and_the_request_from_it() -> None:
    results = [o for o in outcomes() if o is not None and o.signal is not None]
    opened = [o for o in results if o.requests and o.requests[-1]["intent"] == "OPEN"]
    assert opened, "the scenario must open trades"
    for o in results:
        assert o.signal_record == o.signal.to_record()
    for o in opened:
        request = o.requests[-1]
        rebuilt = open_request_from_signal(
            o.signal, _Check(request["edge_after_cost_bps"]), sector="L1",
            bid=request["bid"], ask=request["ask"],
        )  # fmt: skip
        assert rebuilt == request


class _Check:
    """The one attribute open_request_from_signal reads from a CostCheck."""

    def __init__(self, edge_after_cost_bps: float) -> None:
        self.edge_after_cost_bps = edge_after_cost_bps


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, 0.0])
def test_update_spread_when_bad_bid_then_book_unchanged(bad: float) -> None:
    book = CostBook()
    with pytest.raises(InvalidQuoteError):
        book.update_spread("BTC", bad, 100.0, 1.0)
    assert book.quote("BTC") is None
