"""The agents' table rows (huracan.agents.rows): round trips and the old formats migrated.

A table is a dict here: the rows module reads ``(key, value)`` pairs and returns rows to write
and delete, exactly what the agents hand to a unit of work."""

from __future__ import annotations

from typing import Any

from huracan.agents.rows import (
    EXCHANGE_KEY,
    FILLED_PREFIX,
    HELD_PREFIX,
    RISK_KEY,
    SEEN_PREFIX,
    CoinState,
    exchange_row,
    global_row,
    held_rows,
    load_exchange,
    load_risk_desk,
    seen_changes,
    window_rows,
)
from huracan.domain.costs import CostSettings
from huracan.domain.engine import process_tick
from huracan.domain.execution import ExitRules, PaperExchange
from huracan.domain.features import FeatureParams
from huracan.domain.risk import GlobalRiskController, RiskLimits
from huracan.domain.risk_desk import RiskDesk
from huracan.domain.sequencer import RiskSequencer
from huracan.domain.signals import BaselineMomentumModel

SECTORS = {"BTC": "L1", "ETH": "L1"}


def _new_sequencer() -> RiskSequencer:
    ctl = GlobalRiskController(RiskLimits(), equity_usd=100_000.0, coin_sectors=SECTORS)
    return RiskSequencer(ctl)


def _request(n: int, ts: int) -> dict[str, Any]:
    return {
        "event_id": f"treq:{n}",
        "correlation_id": f"tick:BTC:{n}",
        "causation_id": f"sig:BTC:{n}",
        "request_id": f"r{n}",
        "coin": "BTC",
        "ts": ts,
        "signal_ts": ts,
        "direction": "LONG",
        "size_usd": 1_000.0,
        "exchange": "binance",
        "sector": "L1",
        "edge_bps": 20.0,
        "edge_after_cost_bps": 8.0,
        "intent": "OPEN",
        "trade_id": None,
        "model_version": "baseline-momentum-v1",
        "bid": 100.0,
        "ask": 100.1,
    }


def _load(table: dict[str, Any]) -> RiskDesk:
    return load_risk_desk(
        table.get(RISK_KEY),
        table.items(),
        new_sequencer=_new_sequencer,
        partitions=1,
        idle_us=5_000_000,
        wake_grace_us=1_000,
    )


def _persist(desk: RiskDesk, table: dict[str, Any]) -> None:
    """What the sequencer agent does with a batch's changes, on a dict."""
    changes = desk.take_changes()
    assert changes is not None
    writes, deletes = held_rows(changes)
    table.update(writes)
    for key in deletes:
        table.pop(key, None)
    seen_writes, seen_deletes = window_rows(SEEN_PREFIX, seen_changes(changes))
    table.update(seen_writes)
    for key in seen_deletes:
        table.pop(key, None)
    key, row = global_row(changes)
    table[key] = row


def _state(desk: RiskDesk) -> tuple[dict[str, Any], dict[str, Any]]:
    return desk.sequencer.to_dict(), desk.order.to_dict()


def test_coin_state_when_stored_and_loaded_then_same_row() -> None:
    settings, rules = CostSettings(), ExitRules()
    state = CoinState.load(None, settings, rules)
    for seq in range(1, 40):
        tick = {
            "event_id": f"t{seq}", "correlation_id": f"t{seq}", "coin": "BTC",
            "exchange": "binance", "ts": seq * 1_000_000, "seq": seq, "bid": 100.0 + seq,
            "ask": 100.1 + seq, "last": 100.05 + seq, "volume": 1.0,
        }  # fmt: skip
        process_tick(
            tick, state=state.features, costs=state.costs, monitor=state.monitor,
            model=BaselineMomentumModel(), sector="L1", params=FeatureParams(),
        )  # fmt: skip

    row = state.to_dict()

    assert CoinState.load(row, settings, rules).to_dict() == row


def test_coin_state_when_no_row_then_fresh_state() -> None:
    state = CoinState.load(None, CostSettings(), ExitRules())

    assert state.to_dict() == CoinState.load({}, CostSettings(), ExitRules()).to_dict()


def test_load_risk_desk_when_empty_table_then_fresh_desk_with_configured_order() -> None:
    desk = _load({})

    assert desk.held == 0
    assert (desk.order.partitions, desk.order.idle_us, desk.order.wake_grace_us) == (
        1,
        5_000_000,
        1_000,
    )


def test_risk_rows_when_persisted_and_loaded_then_same_desk() -> None:
    table: dict[str, Any] = {}
    desk = _load(table)
    for n in range(1, 4):
        desk.submit(_request(n, ts=10 * n), now_us=0)
    desk.advance(0, 25, now_us=0)
    desk.release(now_us=0)
    _persist(desk, table)

    loaded = _load(table)

    assert sorted(k for k in table if k.startswith(HELD_PREFIX)) == [HELD_PREFIX + "r3"]
    assert sorted(k for k in table if k.startswith(SEEN_PREFIX)) == [
        SEEN_PREFIX + "req:r1",
        SEEN_PREFIX + "req:r2",
    ]
    assert "seen" not in table[RISK_KEY]["sequencer"]
    assert _state(loaded) == _state(desk)


def test_risk_rows_when_loaded_desk_changes_then_only_the_difference_is_written() -> None:
    table: dict[str, Any] = {}
    desk = _load(table)
    desk.submit(_request(1, ts=10), now_us=0)
    _persist(desk, table)
    loaded = _load(table)

    loaded.advance(0, 20, now_us=0)
    loaded.release(now_us=0)
    changes = loaded.take_changes()

    assert changes is not None
    assert changes.held_added == {}
    assert changes.held_removed == ["r1"]
    assert [k for k, _ in changes.seen_remembered] == ["req:r1"]


def test_load_risk_desk_when_old_row_with_window_inside_then_migrated_to_seen_rows() -> None:
    # the old format: the de-duplication window inside the global row
    old = _load({})
    old.submit(_request(1, ts=10), now_us=0)
    old.advance(0, 20, now_us=0)
    old.release(now_us=0)
    order_state = old.order.to_dict()
    order_state.pop("held")
    table: dict[str, Any] = {
        RISK_KEY: {"sequencer": old.sequencer.to_dict(include_seen=True), "order": order_state}
    }

    desk = _load(table)
    loaded_state = desk.sequencer.to_dict()
    desk.advance(0, 30, now_us=0)  # the next batch that changes anything writes the rows
    _persist(desk, table)

    assert loaded_state == old.sequencer.to_dict()
    assert SEEN_PREFIX + "req:r1" in table
    assert "seen" not in table[RISK_KEY]["sequencer"]
    assert _state(_load(table)) == _state(desk)


def _filled_exchange() -> PaperExchange:
    desk = _load({})
    desk.submit(_request(1, ts=10), now_us=0)
    decisions = [d.decision for d in desk.drain()]
    exchange = PaperExchange()
    exchange.journal_filled()
    for decision in decisions:
        assert decision is not None
        assert exchange.fill(decision) is not None
    return exchange


def test_exchange_rows_when_persisted_and_loaded_then_same_exchange() -> None:
    exchange = _filled_exchange()
    table: dict[str, Any] = {}
    writes, _ = window_rows(FILLED_PREFIX, exchange.take_filled_changes())
    table.update(writes)
    key, row = exchange_row(exchange)
    table[key] = row

    loaded = load_exchange(table.get(EXCHANGE_KEY), table.items())

    assert len(writes) == 1
    assert writes[0][0].startswith(FILLED_PREFIX)
    assert "filled" not in table[EXCHANGE_KEY]
    assert loaded.to_dict() == exchange.to_dict()


def test_load_exchange_when_old_row_with_window_inside_then_journalled_whole() -> None:
    exchange = _filled_exchange()
    table = {EXCHANGE_KEY: exchange.to_dict(include_filled=True)}

    loaded = load_exchange(table.get(EXCHANGE_KEY), table.items())
    remembered, forgotten = loaded.take_filled_changes()

    assert loaded.to_dict() == exchange.to_dict()
    assert len(remembered) == 1
    assert forgotten == []


def test_load_exchange_when_no_row_then_fresh_exchange() -> None:
    loaded = load_exchange(None, [])

    assert loaded.to_dict() == PaperExchange().to_dict()
