"""The risk desk: what the single-writer sequencer does with its inputs, in one pure object.

A :class:`RiskDesk` is a :class:`~huracan.domain.sequencer.RiskSequencer` (decisions,
de-duplication, control) behind an :class:`~huracan.domain.ordering.EventTimeOrder` (hold and
release in event-time order). The in-process engine (:class:`huracan.domain.engine.TradingEngine`)
and the Faust sequencer agent (:mod:`huracan.agents.sequencer_agent`) both drive it, so live and
backtest decide with the same code. Per batch of inputs, the caller:

1. hands each input over in log order: :meth:`apply_control` for a ``ControlEvent``,
   :meth:`watermark` for a ``Watermark`` (a negative partition is a heartbeat: it only wakes the
   caller), :meth:`submit` for a ``TradeRequest`` (held; a late one is decided at once and
   returned). :meth:`submit` and :meth:`watermark` raise
   :class:`~huracan.domain.ordering.OrderingError` for an input they cannot place, and then
   change nothing;
2. calls :meth:`release` once: the held requests whose turn has come are decided, in order
   (all of them, on a stall: ``now_us`` is the caller's wall clock, passed in);
3. calls :meth:`take_changes` to learn what to persist: ``None`` when the batch changed nothing
   (a batch of heartbeats that released nothing), else the requests newly held and no longer
   held, the de-duplication window's changes, and the sequencer's and order's state without
   them.

Every decision comes back as a :class:`Decided`: the request and its decision record, or
``None`` for a redelivery (de-duplicated). Nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from huracan.domain.ordering import EventTimeOrder
from huracan.domain.sequencer import ControlOutcome, RiskSequencer


@dataclass(frozen=True, slots=True)
class Decided:
    """One request the desk decided: its ``decision`` record, ``None`` for a redelivery;
    ``late`` when it came after its turn (decided at once, out of event-time order)."""

    request: Mapping[str, Any]
    decision: dict[str, Any] | None
    late: bool = False


@dataclass(frozen=True, slots=True)
class Release:
    """What :meth:`RiskDesk.release` decided, in order; ``stalled`` when the slowest watermark
    had not moved for the order's stall time and everything held was released."""

    decided: list[Decided]
    stalled: bool = False


@dataclass(frozen=True, slots=True)
class DeskChanges:
    """What a batch changed, for a caller that persists the desk row by row."""

    #: request id -> request, for requests held now and not at the last :meth:`take_changes`
    held_added: dict[str, dict[str, Any]]
    #: request ids held then and not now
    held_removed: list[str]
    #: the de-duplication window's ``(id, number)`` pairs remembered and ids forgotten
    seen_remembered: list[tuple[str, int]]
    seen_forgotten: list[str]
    #: ``RiskSequencer.to_dict(include_seen=False)``
    sequencer: dict[str, Any]
    #: ``EventTimeOrder.to_dict()`` without ``held``
    order: dict[str, Any]


class RiskDesk:
    """The sequencer behind its event-time order; see the module docstring for the steps.

    ``stored_held``: the ids of the held requests the caller has persisted (restoring from
    rows), so :meth:`take_changes` reports only what differs from them."""

    def __init__(
        self,
        sequencer: RiskSequencer,
        order: EventTimeOrder,
        *,
        stored_held: Iterable[str] = (),
    ) -> None:
        self.sequencer = sequencer
        self.order = order
        self._stored_held: set[str] = set(stored_held)
        self._changed = False
        self._released = False

    @property
    def held(self) -> int:
        """How many requests are held."""
        return self.order.held

    # -- inputs ----------------------------------------------------------------------------

    def apply_control(self, record: Mapping[str, Any]) -> ControlOutcome:
        """Apply a ``ControlEvent`` (:meth:`RiskSequencer.apply_control`)."""
        self._changed = True
        return self.sequencer.apply_control(record)

    def watermark(self, record: Mapping[str, Any], now_us: int | None = None) -> None:
        """Apply a ``Watermark``: advance its partition, or mark it idle when ``idle`` is set;
        a negative partition (a heartbeat) changes nothing."""
        if record["partition"] < 0:
            return
        self._changed = True
        part, ts = int(record["partition"]), int(record["ts"])
        if record.get("idle"):
            self.order.mark_idle(part, ts, now_us)
        else:
            self.order.advance(part, ts, now_us)

    def advance(self, partition: int, ts: int, now_us: int | None = None) -> None:
        """``partition`` has sent every request below ``ts`` (the engine's per-tick mark)."""
        self._changed = True
        self.order.advance(partition, ts, now_us)

    def submit(self, request: Mapping[str, Any], now_us: int | None = None) -> list[Decided]:
        """Hold a ``TradeRequest``; a late one is decided now and returned."""
        self._changed = True
        late = self.order.add(request, now_us)
        return [self._decide(r, late=True) for r in late]

    # -- decisions -------------------------------------------------------------------------

    def release(self, now_us: int | None = None) -> Release:
        """Decide the held requests whose turn has come (step 2)."""
        order = self.order
        if not order.held:  # an empty order releases nothing and changes nothing
            return Release([])
        stalls_before = order.stats.stall_releases
        released = order.release(now_us)
        if released:
            self._released = True
        return Release(
            [self._decide(r) for r in released], order.stats.stall_releases > stalls_before
        )

    def drain(self) -> list[Decided]:
        """Decide everything held, in order (the end of a finite replay)."""
        drained = self.order.drain()
        if drained:
            self._released = True
        return [self._decide(r) for r in drained]

    def decide(self, request: Mapping[str, Any]) -> Decided:
        """Decide ``request`` now, outside the order (a replay of recorded requests)."""
        return self._decide(request)

    def _decide(self, request: Mapping[str, Any], *, late: bool = False) -> Decided:
        return Decided(request, self.sequencer.decide(request), late)

    # -- persistence -----------------------------------------------------------------------

    def take_changes(self) -> DeskChanges | None:
        """What changed since the last call (step 3), or ``None`` when nothing did."""
        if not (self._changed or self._released):
            return None
        self._changed = self._released = False
        order_state = self.order.to_dict()
        held_now = {str(r["request_id"]): r for r in order_state.pop("held")}
        stored = self._stored_held
        added = {rid: held_now[rid] for rid in held_now.keys() - stored}
        removed = list(stored - held_now.keys())
        self._stored_held = set(held_now)
        remembered, forgotten = self.sequencer.take_seen_changes()
        return DeskChanges(
            held_added=added,
            held_removed=removed,
            seen_remembered=remembered,
            seen_forgotten=forgotten,
            sequencer=self.sequencer.to_dict(include_seen=False),
            order=order_state,
        )
