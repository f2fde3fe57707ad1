from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from huracan.domain.ordering import EventTimeOrder, OrderingError, order_key


def _req(ts: int, coin: str, rid: str, intent: str = "OPEN") -> dict:
    return {"ts": ts, "coin": coin, "request_id": rid, "intent": intent}


def test_release_when_one_partition_behind_then_nothing_past_its_watermark() -> None:
    order = EventTimeOrder(partitions=2)
    order.add(_req(10, "BTC", "a"))
    order.add(_req(20, "ETH", "b"))
    order.advance(0, 25)

    held_back = order.release()
    order.advance(1, 15)
    first = order.release()
    order.advance(1, 30)
    second = order.release()

    assert held_back == []
    assert [r["request_id"] for r in first] == ["a"]
    assert [r["request_id"] for r in second] == ["b"]


def test_release_when_same_ts_then_coin_then_close_before_open() -> None:
    order = EventTimeOrder(partitions=1)
    for r in (_req(5, "ETH", "o1"), _req(5, "BTC", "o2"), _req(5, "ETH", "c1", "CLOSE")):
        order.add(r)
    order.advance(0, 6)

    released = [r["request_id"] for r in order.release()]

    assert released == ["o2", "c1", "o1"]


def test_add_when_ts_already_released_then_returned_now_and_counted_late() -> None:
    order = EventTimeOrder(partitions=1)
    order.add(_req(10, "BTC", "a"))
    order.advance(0, 11)
    order.release()

    late = order.add(_req(9, "BTC", "z"))

    assert [r["request_id"] for r in late] == ["z"]
    assert order.stats.late == 1
    assert order.held == 0


def test_release_when_partition_silent_past_idle_time_then_everything_held_released() -> None:
    order = EventTimeOrder(partitions=2, idle_us=1_000)
    order.add(_req(50, "BTC", "b"))
    order.add(_req(10, "BTC", "a"))
    order.advance(0, 40, now_us=0)

    waiting = order.release(now_us=500)
    still = order.release(now_us=900)
    idle = order.release(now_us=1_600)
    late = order.add(_req(30, "ETH", "c"))

    assert waiting == still == []
    assert [r["request_id"] for r in idle] == ["a", "b"]
    assert order.stats.stall_releases == 1
    assert order.held == 0
    assert [r["request_id"] for r in late] == ["c"]


def test_release_when_restored_and_no_watermark_moved_since_then_never_idle() -> None:
    a = EventTimeOrder(partitions=2, idle_us=1_000)
    a.add(_req(10, "BTC", "a"))
    a.advance(0, 40, now_us=0)
    restored = EventTimeOrder.from_dict(a.to_dict())

    recovering = restored.release(now_us=10_000_000)
    restored.advance(0, 41, now_us=10_000_000)
    grace = restored.release(now_us=10_000_500)
    idle = restored.release(now_us=10_001_000)

    assert recovering == grace == []
    assert [r["request_id"] for r in idle] == ["a"]


def test_advance_when_older_watermark_then_ignored() -> None:
    order = EventTimeOrder(partitions=1)
    order.advance(0, 100)

    order.advance(0, 50)

    assert order.low_watermark == 100


def test_advance_when_partition_out_of_range_then_error() -> None:
    with pytest.raises(OrderingError, match="partition 3"):
        EventTimeOrder(partitions=2).advance(3, 1)


def test_order_key_when_field_missing_then_error() -> None:
    with pytest.raises(OrderingError):
        order_key({"ts": 1, "coin": "BTC"})


def test_to_dict_when_restored_then_same_releases() -> None:
    a = EventTimeOrder(partitions=2)
    for i, coin in enumerate(["SOL", "BTC", "ETH"]):
        a.add(_req(10 + i, coin, f"r{i}"))
    a.advance(0, 12)
    b = EventTimeOrder.from_dict(a.to_dict())

    for o in (a, b):
        o.advance(1, 100)

    assert a.release() == b.release()
    assert a.to_dict() == b.to_dict()


@st.composite
def _partition_streams(draw: st.DrawFn) -> list[list[tuple[str, object]]]:
    """Per partition: an ordered list of ('req', request) and ('wm', ts) items, as coin agents
    emit them: ticks in ts order, a batch's requests, then the batch's watermark."""
    n = draw(st.integers(1, 4))
    streams = []
    for p in range(n):
        ts, items = 0, []
        for b in range(draw(st.integers(0, 6))):
            for t in range(draw(st.integers(1, 4))):
                ts += draw(st.integers(0, 3))
                coin = f"C{p}{draw(st.integers(0, 2))}"
                for k in range(draw(st.integers(0, 2))):
                    intent = draw(st.sampled_from(["OPEN", "CLOSE"]))
                    items.append(("req", _req(ts, coin, f"{coin}-{b}-{t}-{k}", intent)))
            items.append(("wm", ts))
        streams.append(items)
    return streams


@settings(max_examples=200, deadline=None)
@given(streams=_partition_streams(), data=st.data())
def test_release_when_any_interleaving_then_same_order_as_sorted_keys(
    streams: list[list[tuple[str, object]]], data: st.DataObject
) -> None:
    order = EventTimeOrder(partitions=len(streams), idle_us=None)
    cursors = [0] * len(streams)
    released: list[dict] = []

    while any(c < len(s) for c, s in zip(cursors, streams, strict=True)):
        live = [p for p, s in enumerate(streams) if cursors[p] < len(s)]
        p = data.draw(st.sampled_from(live))
        kind, item = streams[p][cursors[p]]
        cursors[p] += 1
        if kind == "req":
            released += order.add(item)  # type: ignore[arg-type]
        else:
            order.advance(p, item)  # type: ignore[arg-type]
            released += order.release()
    released += order.drain()

    every = [r for s in streams for kind, r in s if kind == "req"]
    assert [order_key(r) for r in released] == sorted(order_key(r) for r in every)  # type: ignore[arg-type]
    assert order.stats.late == 0


def test_release_when_request_added_with_no_watermark_ever_then_released_after_idle_time() -> None:
    order = EventTimeOrder(partitions=2, idle_us=1_000)
    order.add(_req(10, "BTC", "manual"), now_us=5_000)

    early = order.release(now_us=5_500)
    idle = order.release(now_us=6_000)

    assert early == []
    assert [r["request_id"] for r in idle] == ["manual"]


def test_release_when_silent_partition_marked_idle_then_others_released_in_order() -> None:
    order = EventTimeOrder(partitions=3, idle_us=None)
    order.add(_req(30, "ETH", "c"))
    order.add(_req(10, "BTC", "a"))
    order.advance(0, 40)
    order.advance(1, 25)

    held_back = order.release()
    order.mark_idle(2, 5)
    after_idle = order.release()

    assert held_back == []  # partition 2 has said nothing yet: it could still send ts 5
    assert [r["request_id"] for r in after_idle] == ["a"]  # below 25, the slowest active one
    assert order.low_watermark == 25
    assert order.stats.stall_releases == 0
    assert order.stats.late == 0


def test_release_when_every_partition_idle_then_everything_held_released() -> None:
    order = EventTimeOrder(partitions=2, idle_us=None)
    order.add(_req(90, "ETH", "b"))
    order.add(_req(80, "BTC", "a"))
    order.advance(0, 50)
    order.mark_idle(1, 60)

    waiting = order.release()
    order.mark_idle(0, 50)
    everything = order.release()

    assert waiting == []
    assert [r["request_id"] for r in everything] == ["a", "b"]
    assert order.held == 0


def test_advance_when_idle_partition_speaks_again_then_it_holds_the_others_back() -> None:
    order = EventTimeOrder(partitions=2, idle_us=None)
    order.advance(0, 100)
    order.mark_idle(1, 20)
    order.add(_req(70, "BTC", "a"))
    first = order.release()
    order.advance(1, 80)  # partition 1 wakes: its ticks up to 80 are on the topic
    order.add(_req(110, "ETH", "b"))
    order.advance(0, 200)
    waiting = order.release()
    order.advance(1, 120)
    second = order.release()

    assert [r["request_id"] for r in first] == ["a"]
    assert 1 not in order.idle
    assert waiting == []  # 110 is past partition 1's watermark 80
    assert [r["request_id"] for r in second] == ["b"]


def test_release_when_slow_partition_not_idle_then_never_released_without_stall_timeout() -> None:
    # a partition that is behind (a backlog) is not idle: without a stall timeout the order
    # waits for it however long that takes, and the release stays in event-time order
    order = EventTimeOrder(partitions=2, idle_us=None)
    order.add(_req(50, "BTC", "b"))
    order.advance(0, 1_000)
    order.advance(1, 10)

    stuck = [order.release(now_us=t) for t in (0, 10**9, 10**12)]
    order.add(_req(20, "ETH", "a"))
    order.advance(1, 60)
    moved = order.release(now_us=10**12)

    assert stuck == [[], [], []]
    assert [r["request_id"] for r in moved] == ["a", "b"]
    assert order.stats.stall_releases == 0


def test_to_dict_when_partitions_idle_then_restored_idle() -> None:
    order = EventTimeOrder(partitions=3, idle_us=2_000)
    order.advance(0, 10)
    order.mark_idle(2, 7)

    restored = EventTimeOrder.from_dict(order.to_dict())

    assert restored.idle == {2}
    assert restored.low_watermark == order.low_watermark
    assert EventTimeOrder.from_dict({**order.to_dict(), "idle": []}).idle == set()


def test_mark_idle_when_partition_out_of_range_then_error() -> None:
    order = EventTimeOrder(partitions=2)
    with pytest.raises(OrderingError):
        order.mark_idle(2, 10)


def test_release_when_idle_partition_wakes_then_others_count_again_for_the_grace() -> None:
    # a burst after a quiet spell: partition 0 speaks first, 1 and 2 are still marked idle
    # but have data on the way; for the grace they hold partition 0's requests back
    order = EventTimeOrder(partitions=3, idle_us=None, wake_grace_us=1_000)
    for p in range(3):
        order.mark_idle(p, 0, now_us=0)
    order.add(_req(50, "BTC", "b"))
    order.advance(0, 100, now_us=10_000)
    order.add(_req(40, "ETH", "a"))  # partition 1's request, older than partition 0's

    during = order.release(now_us=10_500)
    order.advance(1, 100, now_us=10_600)  # partition 1 speaks; 2 stays silent
    still = order.release(now_us=10_700)
    early = order.release(now_us=11_500)  # partition 1 woke too: the grace runs from 10,600
    after = order.release(now_us=11_600)  # grace over: partition 2 is left out again

    assert during == still == early == []
    assert [r["request_id"] for r in after] == ["a", "b"]
    assert order.stats.late == 0


def test_release_when_no_partition_woke_then_no_grace_for_idle_ones() -> None:
    order = EventTimeOrder(partitions=2, idle_us=None, wake_grace_us=1_000_000)
    order.mark_idle(1, 0, now_us=0)
    order.advance(0, 100, now_us=0)  # 0 was never idle: nothing woke
    order.add(_req(50, "BTC", "a"))

    assert [r["request_id"] for r in order.release(now_us=1)] == ["a"]


def test_release_when_every_partition_idle_during_grace_then_released_anyway() -> None:
    order = EventTimeOrder(partitions=2, idle_us=None, wake_grace_us=1_000_000)
    order.mark_idle(0, 0, now_us=0)
    order.mark_idle(1, 0, now_us=0)
    order.advance(0, 100, now_us=10)  # wakes: grace for partition 1
    order.add(_req(50, "BTC", "a"))
    held = order.release(now_us=20)
    order.mark_idle(0, 100, now_us=30)  # and is quiet again: every partition has said all

    assert held == []
    assert [r["request_id"] for r in order.release(now_us=40)] == ["a"]
