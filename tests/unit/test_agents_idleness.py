"""PartitionIdleness: a market-data partition is idle only when caught up and silent."""

from __future__ import annotations

from huracan.agents.idleness import PartitionIdleness


def _highs(**by_partition: int | None) -> dict[int, int | None]:
    return {int(k[1:]): v for k, v in by_partition.items()}


def test_to_declare_when_caught_up_and_silent_then_idle_once() -> None:
    idle = PartitionIdleness(idle_after_s=2.0)
    idle.on_tick(0, 41, now=10.0)
    idle.on_mark(0, 5_000)
    high = _highs(p0=42)

    early = idle.to_declare([0], high.get, lambda p: None, now=11.0)
    declared = idle.to_declare([0], high.get, lambda p: None, now=12.5)
    again = idle.to_declare([0], high.get, lambda p: None, now=20.0)

    assert early == []
    assert declared == [(0, 5_000)]  # the last watermark sent rides on the idle mark
    assert again == []  # declared once until the partition speaks again


def test_to_declare_when_behind_then_never_idle_however_long_silent() -> None:
    # the overload case: no tick came through for a long time because the worker is slow,
    # but the partition has records this agent has not processed yet
    idle = PartitionIdleness(idle_after_s=2.0)
    idle.on_tick(3, 99, now=0.0)

    out = [idle.to_declare([3], lambda p: 5_000, lambda p: None, now=t) for t in (10, 100, 1e6)]

    assert out == [[], [], []]


def test_to_declare_when_tick_after_declared_then_idle_again_only_after_silence() -> None:
    idle = PartitionIdleness(idle_after_s=1.0)
    idle.on_tick(1, 9, now=0.0)
    assert idle.to_declare([1], lambda p: 10, lambda p: None, now=2.0) == [(1, 0)]

    idle.on_tick(1, 10, now=3.0)
    spoke = 1 in idle.declared
    soon = idle.to_declare([1], lambda p: 11, lambda p: None, now=3.5)
    later = idle.to_declare([1], lambda p: 11, lambda p: None, now=4.5)

    assert not spoke
    assert soon == []
    assert later == [(1, 0)]


def test_to_declare_when_nothing_processed_then_committed_offset_decides() -> None:
    idle = PartitionIdleness(idle_after_s=1.0)
    high = _highs(p0=0, p1=70, p2=70, p3=None)
    committed = {1: 70, 2: 12}.get

    idle.to_declare([0, 1, 2, 3], high.get, committed, now=0.0)  # first sight: the clock starts
    out = idle.to_declare([0, 1, 2, 3], high.get, committed, now=1.5)

    # 0: empty partition; 1: everything committed before we got it; 2: 58 records to come;
    # 3: high watermark not known yet
    assert sorted(out) == [(0, 0), (1, 0)]


def test_to_declare_when_partition_not_assigned_then_not_considered() -> None:
    idle = PartitionIdleness(idle_after_s=1.0)
    idle.to_declare([0], lambda p: 0, lambda p: None, now=0.0)

    assert idle.to_declare([], lambda p: 0, lambda p: None, now=5.0) == []


def test_reset_when_partitions_revoked_then_declared_again_after_silence() -> None:
    idle = PartitionIdleness(idle_after_s=1.0)
    idle.on_tick(0, 4, now=0.0)
    assert idle.to_declare([0], lambda p: 5, lambda p: None, now=2.0) == [(0, 0)]

    idle.reset()  # another worker may have had it and marked it active meanwhile
    first_sight = idle.to_declare([0], lambda p: 5, lambda p: 5, now=3.0)
    declared = idle.to_declare([0], lambda p: 5, lambda p: 5, now=4.0)

    assert first_sight == []
    assert declared == [(0, 0)]


def test_due_when_checked_recently_then_not_before_a_quarter_of_idle_time() -> None:
    idle = PartitionIdleness(idle_after_s=2.0)
    assert idle.due(0.0)
    idle.to_declare([], lambda p: 0, lambda p: None, now=0.0)

    assert not idle.due(0.4)
    assert idle.due(0.5)
