"""The risk desk (huracan.domain.risk_desk): what the sequencer does with a batch, no Kafka."""

from __future__ import annotations

import pytest

from huracan.domain.ordering import EventTimeOrder, OrderingError
from huracan.domain.risk import GlobalRiskController, RiskLimits
from huracan.domain.risk_desk import RiskDesk
from huracan.domain.sequencer import RiskSequencer

SECTORS = {"BTC": "L1", "ETH": "L1"}


def _desk(partitions: int = 2, idle_us: int | None = 1_000_000) -> RiskDesk:
    ctl = GlobalRiskController(RiskLimits(), equity_usd=100_000.0, coin_sectors=SECTORS)
    seq = RiskSequencer(ctl)
    seq.journal_seen()
    return RiskDesk(seq, EventTimeOrder(partitions=partitions, idle_us=idle_us))


def _request(n: int, ts: int, coin: str = "BTC") -> dict:
    return {
        "event_id": f"treq:{n}",
        "correlation_id": f"tick:{coin}:{n}",
        "causation_id": f"sig:{coin}:{n}",
        "request_id": f"r{n}",
        "coin": coin,
        "ts": ts,
        "signal_ts": ts,
        "direction": "LONG",
        "size_usd": 1_000.0,
        "exchange": "binance",
        "sector": SECTORS[coin],
        "edge_bps": 20.0,
        "edge_after_cost_bps": 8.0,
        "intent": "OPEN",
        "trade_id": None,
        "model_version": "baseline-momentum-v1",
    }


def _mark(partition: int, ts: int, *, idle: bool = False) -> dict:
    return {"event_id": f"wm:{partition}:{ts}", "partition": partition, "ts": ts, "idle": idle}


def test_release_when_every_partition_passed_then_decided_in_event_time_order() -> None:
    desk = _desk()
    desk.submit(_request(2, ts=20, coin="ETH"), now_us=0)
    desk.submit(_request(1, ts=20, coin="BTC"), now_us=0)
    desk.watermark(_mark(0, 30), now_us=0)

    assert desk.release(now_us=0).decided == []  # partition 1 has said nothing yet

    desk.watermark(_mark(1, 25), now_us=0)
    release = desk.release(now_us=0)

    assert [d.request["request_id"] for d in release.decided] == ["r1", "r2"]
    assert all(d.decision and d.decision["decision"] == "APPROVE" for d in release.decided)
    assert not release.stalled


def test_release_when_partition_idle_then_left_out_of_the_watermark() -> None:
    desk = _desk()
    desk.submit(_request(1, ts=20), now_us=0)
    desk.watermark(_mark(0, 30), now_us=0)
    desk.watermark(_mark(1, 5, idle=True), now_us=0)

    decided = desk.release(now_us=0).decided

    assert [d.request["request_id"] for d in decided] == ["r1"]


def test_release_when_watermark_stalled_past_stall_time_then_everything_released() -> None:
    desk = _desk(idle_us=1_000)
    desk.submit(_request(1, ts=20), now_us=0)

    assert desk.release(now_us=999).decided == []
    release = desk.release(now_us=1_000)

    assert [d.request["request_id"] for d in release.decided] == ["r1"]
    assert release.stalled


def test_submit_when_request_older_than_released_then_decided_now_as_late() -> None:
    desk = _desk(partitions=1)
    desk.submit(_request(1, ts=20), now_us=0)
    desk.watermark(_mark(0, 30), now_us=0)
    desk.release(now_us=0)

    late = desk.submit(_request(2, ts=10), now_us=0)

    assert [(d.request["request_id"], d.late) for d in late] == [("r2", True)]
    assert late[0].decision is not None


def test_release_when_request_redelivered_then_decision_is_none() -> None:
    desk = _desk(partitions=1)
    desk.submit(_request(1, ts=20), now_us=0)
    desk.watermark(_mark(0, 30), now_us=0)
    desk.release(now_us=0)

    desk.submit(_request(1, ts=20), now_us=0)
    desk.watermark(_mark(0, 40), now_us=0)
    again = desk.release(now_us=0).decided

    assert [(d.request["request_id"], d.decision) for d in again] == [("r1", None)]
    assert desk.sequencer.duplicates == 1


def test_apply_control_when_kill_switch_then_applied_and_later_opens_blocked() -> None:
    desk = _desk(partitions=1)

    outcome = desk.apply_control({"event_id": "c1", "command": "KILL_SWITCH_ON", "ts": 1})
    desk.submit(_request(1, ts=20), now_us=0)
    desk.watermark(_mark(0, 30), now_us=0)
    decided = desk.release(now_us=0).decided

    assert (outcome.applied, outcome.reason_code) == (True, "applied")
    assert decided[0].decision is not None
    assert decided[0].decision["decision"] == "BLOCK"


def test_watermark_when_partition_unknown_then_raises_ordering_error() -> None:
    desk = _desk(partitions=1)

    with pytest.raises(OrderingError):
        desk.watermark(_mark(3, 30), now_us=0)


def test_take_changes_when_only_heartbeats_then_none() -> None:
    desk = _desk()
    desk.take_changes()

    desk.watermark(_mark(-1, 30), now_us=0)
    desk.release(now_us=0)

    assert desk.take_changes() is None


def test_take_changes_when_requests_held_then_released_then_reports_rows_to_write_and_delete() -> (
    None
):
    desk = _desk(partitions=1)
    desk.submit(_request(1, ts=20), now_us=0)

    first = desk.take_changes()
    desk.watermark(_mark(0, 30), now_us=0)
    desk.release(now_us=0)
    second = desk.take_changes()

    assert first is not None
    assert second is not None
    assert list(first.held_added) == ["r1"]
    assert first.held_removed == []
    assert "held" not in first.order
    assert second.held_added == {}
    assert second.held_removed == ["r1"]
    assert [key for key, _ in second.seen_remembered] == ["req:r1"]
    assert "seen" not in second.sequencer


def test_desk_when_driven_as_the_engine_then_same_decisions_as_sequencer_alone() -> None:
    desk = _desk(partitions=1, idle_us=None)
    reference = _desk(partitions=1, idle_us=None).sequencer
    requests = [_request(n, ts=10 * n, coin="BTC" if n % 2 else "ETH") for n in range(1, 6)]

    decided = []
    for request in requests:
        desk.advance(0, int(request["ts"]))
        decided += desk.release().decided
        decided += desk.submit(request)
    decided += desk.drain()

    assert [d.decision for d in decided] == [reference.decide(r) for r in requests]
