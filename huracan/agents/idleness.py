"""When the coin agent may declare a market-data partition idle (huracan/domain/ordering.py).

The sequencer waits for the slowest partition's watermark. A partition with no ticks would hold
every other one back for ever, so its owner declares it idle; a partition that is only *behind*
must never be declared idle, or the sequencer would decide requests before that partition's
older ones arrive and a live run would no longer match its backtest. The rule, as Flink's for
idle sources, is therefore about the consumer, not about time alone. A partition is idle when

* no tick of it has been processed for ``idle_after_s`` (of a monotonic clock), and
* its consumer is caught up: every offset below the partition's high watermark has been
  processed by this agent (or was committed before this worker got the partition).

Both are checked from the agent's own loop, between batches, so an idle mark is always written
after every request the agent made from that partition. The first tick processed afterwards
ends the idleness; the watermark the agent sends after that batch tells the sequencer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass
class PartitionIdleness:
    """The coin agent's view of its market-data partitions (module docstring)."""

    #: no tick for this long (seconds) and caught up: idle
    idle_after_s: float
    #: monotonic time of the last tick processed (or of the first check that saw the partition)
    last_tick: dict[int, float] = field(default_factory=dict)
    #: one past the offset of the last tick processed, per partition
    next_offset: dict[int, int] = field(default_factory=dict)
    #: the ts of the last watermark sent, per partition (an idle mark carries it on)
    last_mark: dict[int, int] = field(default_factory=dict)
    #: partitions declared idle and not heard from since
    declared: set[int] = field(default_factory=set)
    checked_at: float | None = None

    def on_tick(self, partition: int, offset: int, now: float) -> None:
        """A tick of ``partition`` at ``offset`` was processed (valid or dead-lettered)."""
        self.last_tick[partition] = now
        if offset >= self.next_offset.get(partition, 0):
            self.next_offset[partition] = offset + 1
        self.declared.discard(partition)

    def on_mark(self, partition: int, ts: int) -> None:
        """A watermark ``ts`` was sent for ``partition``."""
        self.last_mark[partition] = ts

    def due(self, now: float) -> bool:
        """Worth checking again: a few times per ``idle_after_s``, not on every batch."""
        return self.checked_at is None or now - self.checked_at >= self.idle_after_s / 4

    def to_declare(
        self,
        assigned: Iterable[int],
        high: Callable[[int], int | None],
        committed: Callable[[int], int | None],
        now: float,
    ) -> list[tuple[int, int]]:
        """``(partition, watermark ts)`` for each assigned partition that is now idle; they
        are counted as declared (the caller sends the marks).

        ``high(p)``: the partition's high watermark as the consumer last saw it (``None`` when
        unknown: never idle). ``committed(p)``: the group's committed offset (``None``: none),
        used for a partition this agent has processed nothing of since it was assigned."""
        self.checked_at = now
        out: list[tuple[int, int]] = []
        for p in assigned:
            if p in self.declared:
                continue
            since = self.last_tick.setdefault(p, now)
            if now - since < self.idle_after_s:
                continue
            h = high(p)
            if h is None or h < 0:
                continue
            done = self.next_offset.get(p)
            if done is None:
                done = committed(p) or 0
            if done < h:
                continue  # behind: records are still to come through this agent
            self.declared.add(p)
            out.append((p, self.last_mark.get(p, 0)))
        return out

    def reset(self) -> None:
        """Partitions were revoked: what we knew of them may be stale (another worker may have
        processed and marked them meanwhile). Start again from the consumer's view."""
        self.last_tick.clear()
        self.next_offset.clear()
        self.declared.clear()
        self.checked_at = None
