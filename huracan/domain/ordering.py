"""Event-time order for the risk sequencer: the same decisions live as in a backtest.

Trade requests reach the single-partition ``trade-requests`` topic from every market-data
partition, interleaved however the brokers and workers happened to run. Deciding them in that
arrival order would make a live run's decisions depend on timing; a backtest over the same ticks
could never reproduce them. So the sequencer decides them in **event-time order** instead:

* every request has an order key ``(ts, coin, intent rank, request_id)``: earlier ticks first,
  then coins alphabetically, a coin's CLOSE requests before its OPEN, then the id;
* after each batch, the coin agent sends a :class:`Watermark` for each market-data partition it
  processed: "every request from this partition's ticks with ``ts`` < ``watermark`` is already
  on the topic" (the agent sends a batch's requests before its watermark, on the same partition);
* :meth:`EventTimeOrder.release` hands out, in key order, the held requests whose ``ts`` is
  below the smallest watermark of all ``partitions``. Those can never be preceded by a request
  still to come, so the order is fixed by the data alone.

The in-process engine (:class:`huracan.domain.engine.TradingEngine`) runs the same class with
one partition and the watermark set to each tick's ``ts`` before the tick is processed, which
yields exactly the same sequence.

A partition with nothing to say would hold everything back, so its owner says so:

* **idle partitions** (as Flink's idle sources): when a market-data partition's consumer is
  caught up (nothing left to read) and no tick has come for ``faust.order_idle_ms``, the coin
  agent sends a watermark marked ``idle``. :meth:`EventTimeOrder.mark_idle` takes the partition
  out of the smallest watermark until its next ordinary watermark; when every partition is idle,
  everything held is released. An idle partition has sent all it has, so this keeps event-time
  order. A partition that is merely *behind* (a slow worker, a backlog) is never idle, and the
  sequencer waits for it: that is what makes a live run's decisions those of its backtest.
* **waking**: data rarely comes back to one partition alone. When an idle partition speaks
  again, the others may be about to as well (a burst after a quiet spell, the first ticks after
  a start), and excluding them would release the first partition's requests before theirs.
  So for ``wake_grace_us`` after any partition wakes, idle partitions count again with their
  last watermark: each one either speaks (it had data) or, once the grace is over, is left out
  again. Only the quiet-to-busy transition pays this wait.

Two cases leave pure event time, and both are counted:

* **late**: a request whose ``ts`` is below what was already released (a producer that wrote a
  partition out of order, a partition that wakes from idle behind the others, or a request
  redelivered after its turn) is released at once, next;
* **stalled**: when requests are held and the smallest watermark has not moved for ``idle_us``
  of the caller's wall clock, :meth:`release` with ``now_us`` releases every held request, in
  order. This is the safety net for a partition whose owner says nothing at all (a worker that
  died and whose partitions were not reassigned yet, or requests written with no market data
  agent running), so trading cannot stop for good behind it. The caller passes wall time in;
  this module reads no clock. The pipeline sets it well above the idle time
  (``faust.order_stall_ms``), so it only fires when something is wrong.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from huracan.domain.errors import DomainError

_INTENT_RANK: Final = {"CLOSE": 0, "OPEN": 1}
_NEVER: Final = -(2**63)
_ALWAYS: Final = 2**63 - 1


class OrderingError(DomainError, ValueError):
    """A watermark or request the orderer cannot place (bad partition, missing field)."""


def order_key(request: Mapping[str, Any]) -> tuple[int, str, int, str]:
    """``(ts, coin, intent rank, request_id)``: the sequencer's decision order."""
    try:
        return (
            int(request["ts"]),
            str(request["coin"]),
            _INTENT_RANK.get(str(request.get("intent")), 2),
            str(request["request_id"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise OrderingError(f"trade request without an order key: {exc!r}") from None


@dataclass
class OrderStats:
    released: int = 0
    late: int = 0
    stall_releases: int = 0


@dataclass
class EventTimeOrder:
    """Holds trade requests until every partition's watermark has passed them.

    ``partitions``: how many input partitions send watermarks (0 … partitions-1).
    ``idle_us``: the stall timeout (module docstring); ``None`` never releases on a stall.
    ``idle``: the partitions their owner declared idle (:meth:`mark_idle`).
    ``wake_grace_us``: after a partition wakes from idle, idle partitions count again for this
    long (module docstring); ``None``: no grace.
    """

    partitions: int
    idle_us: int | None = 2_000_000
    watermarks: list[int] = field(default_factory=list)
    released_upto: int = _NEVER
    stats: OrderStats = field(default_factory=OrderStats)
    idle: set[int] = field(default_factory=set)
    _held: list[tuple[tuple[int, str, int, str], dict[str, Any]]] = field(default_factory=list)
    wake_grace_us: int | None = None
    _moved_at_us: int | None = None
    _woke_at_us: int | None = None

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise OrderingError(f"partitions must be >= 1, got {self.partitions}")
        if not self.watermarks:
            self.watermarks = [_NEVER] * self.partitions
        elif len(self.watermarks) != self.partitions:
            raise OrderingError(
                f"{len(self.watermarks)} watermarks for {self.partitions} partitions"
            )

    @property
    def held(self) -> int:
        return len(self._held)

    @property
    def low_watermark(self) -> int:
        """The smallest watermark of the partitions not idle (every request below it is on the
        topic); when every partition is idle, nothing more is coming: no limit."""
        idle = self.idle
        if not idle:
            return min(self.watermarks)
        active = [w for p, w in enumerate(self.watermarks) if p not in idle]
        return min(active) if active else _ALWAYS

    def add(self, request: Mapping[str, Any], now_us: int | None = None) -> list[dict[str, Any]]:
        """Hold ``request``; a late one (ts already released) is returned to decide now.

        ``now_us`` (wall clock) starts the idle timer if nothing has started it since the
        (re)start: a request that comes with no watermark at all (no market data flowing, a
        request written by hand) is still decided after ``idle_us``."""
        if now_us is not None and self._moved_at_us is None:
            self._moved_at_us = now_us
        key = order_key(request)
        if key[0] < self.released_upto:
            self.stats.late += 1
            self.stats.released += 1
            return [dict(request)]
        heapq.heappush(self._held, (key, dict(request)))
        return []

    def advance(self, partition: int, ts: int, now_us: int | None = None) -> None:
        """Partition ``partition`` has sent every request of ticks with ``ts`` below ``ts``.

        Watermarks only move forward; an older one (a redelivery) is ignored, but any ordinary
        watermark ends the partition's idleness. ``now_us`` (wall clock) starts the stall
        timer: it runs from the first watermark that moves (or the first request added) after
        a (re)start, and restarts whenever the smallest watermark moves, so requests restored
        with the state are never released on a stall while the worker is still recovering its
        partitions."""
        self._check_partition(partition)
        idle = self.idle
        if ts <= self.watermarks[partition] and partition not in idle:
            return  # the in-process engine's every tick: nothing moves
        low = self.low_watermark
        if partition in idle:
            idle.discard(partition)
            if now_us is not None and self.wake_grace_us:
                self._woke_at_us = now_us
        if ts > self.watermarks[partition]:
            self.watermarks[partition] = int(ts)
        self._moved(low, now_us)

    def mark_idle(self, partition: int, ts: int, now_us: int | None = None) -> None:
        """Partition ``partition`` is caught up and silent: it has sent every request it has
        (those of ticks below ``ts``), and it is left out of :attr:`low_watermark` until its
        next :meth:`advance`."""
        self._check_partition(partition)
        low = self.low_watermark
        if ts > self.watermarks[partition]:
            self.watermarks[partition] = int(ts)
        self.idle.add(partition)
        self._moved(low, now_us)

    def _check_partition(self, partition: int) -> None:
        if not 0 <= partition < self.partitions:
            raise OrderingError(f"watermark for partition {partition}, have {self.partitions}")

    def _moved(self, low_before: int, now_us: int | None) -> None:
        if now_us is not None and (self._moved_at_us is None or self.low_watermark > low_before):
            self._moved_at_us = now_us

    def limit(self, now_us: int | None = None) -> int:
        """Requests with ``ts`` below this may be released: :attr:`low_watermark`, or during a
        wake grace (``now_us`` within ``wake_grace_us`` of a partition waking) the smallest
        watermark of every partition, idle or not."""
        woke = self._woke_at_us
        if (
            woke is not None
            and now_us is not None
            and self.idle
            and len(self.idle) < self.partitions  # all idle: all have said all they have
            and self.wake_grace_us is not None
            and now_us - woke < self.wake_grace_us
        ):
            return min(self.watermarks)
        return self.low_watermark

    def release(self, now_us: int | None = None) -> list[dict[str, Any]]:
        """The held requests now in order, oldest key first (see the module docstring)."""
        limit = self.limit(now_us)
        if (
            self._held
            and self.idle_us is not None
            and now_us is not None
            and self._moved_at_us is not None
            and self._held[0][0][0] >= limit
            and now_us - self._moved_at_us >= self.idle_us
        ):
            self.stats.stall_releases += 1
            self._moved_at_us = now_us
            return self.drain()
        out: list[dict[str, Any]] = []
        while self._held and self._held[0][0][0] < limit:
            out.append(heapq.heappop(self._held)[1])
        if out:
            self.released_upto = max(self.released_upto, int(out[-1]["ts"]))
            self.stats.released += len(out)
        return out

    def drain(self) -> list[dict[str, Any]]:
        """Every held request in order (the end of a finite replay)."""
        out = [r for _, r in sorted(self._held, key=lambda item: item[0])]
        self._held.clear()
        if out:
            self.released_upto = max(self.released_upto, int(out[-1]["ts"]))
            self.stats.released += len(out)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "partitions": self.partitions,
            "idle_us": self.idle_us,
            "wake_grace_us": self.wake_grace_us,
            "watermarks": list(self.watermarks),
            "released_upto": self.released_upto,
            "idle": sorted(self.idle),
            "held": [r for _, r in sorted(self._held, key=lambda item: item[0])],
            "stats": [self.stats.released, self.stats.late, self.stats.stall_releases],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventTimeOrder:
        order = cls(
            partitions=int(data["partitions"]),
            idle_us=data.get("idle_us"),
            wake_grace_us=data.get("wake_grace_us"),
            watermarks=[int(w) for w in data["watermarks"]],
            released_upto=int(data["released_upto"]),
            idle={int(p) for p in data.get("idle", ())},
        )
        order._held = [(order_key(r), dict(r)) for r in data["held"]]
        heapq.heapify(order._held)
        released, late, idle = data.get("stats", [0, 0, 0])
        order.stats = OrderStats(int(released), int(late), int(idle))
        return order
