"""The risk sequencer: one ordered decision stream over every coin's trade requests.

Global, sector and exchange limits need one consistent view, so every trade request of every
coin is decided here, one at a time, in the order of its log (the LMAX pattern: one thread of
business logic, no locks, replayable). The sequencer wraps a :class:`GlobalRiskController` and
turns ``TradeRequest`` and ``ControlEvent`` records (dicts in the shape of their Avro schemas)
into ``RiskDecision`` records.

Contract of :meth:`RiskSequencer.decide`, in steps:

1. a request whose ``request_id`` was already decided is a redelivery: return ``None`` and
   change nothing (the decision already went out under the same derived ``event_id``);
2. an OPEN request is checked by the controller. APPROVE registers the trade at its full size
   under ``trade_id = "trd:<request_id>"``; THROTTLE registers it at ``max_approvable_size_usd``
   (the largest size that is APPROVEd) when that is at least ``min_trade_usd``, else nothing is
   executed; BLOCK registers nothing;
3. a CLOSE request names an open ``trade_id``; it is risk-reducing, so it is approved even with a
   tripped breaker, and the trade is closed in full. A close of a trade that is not open (already
   closed, never opened) is BLOCKed with ``unknown_trade``;
4. a request the controller cannot even evaluate (bad size, unknown sector, …) is BLOCKed with
   ``invalid_request`` and the error text: it decoded, so it is audited, not dead-lettered;
5. the request's quote (``bid``/``ask``) is carried on the decision, for the paper exchange;
6. the decision's ids are derived: ``event_id = "dec:<request_id>"``, ``correlation_id`` from
   the request, ``causation_id`` = the request's ``event_id``; its ``ts`` is the request's event
   time. Nothing reads a clock, so a replay of the same requests yields byte-identical decisions.

Control events (:meth:`apply_control`) are applied in the same order: limit changes, breaker
trips and resets, the kill switch and equity updates. A control event seen twice is ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Final, cast

from huracan.domain.dedupe import DedupeWindow
from huracan.domain.errors import DomainError
from huracan.domain.risk import (
    BreakerName,
    Direction,
    GlobalRiskController,
    RiskCheckResult,
    RiskDecision,
    RiskLimits,
    TradeRequest,
)

INVALID_REQUEST: Final = "invalid_request"
UNKNOWN_TRADE: Final = "unknown_trade"
DUPLICATE: Final = "duplicate"
_LIMIT_FIELDS: Final = frozenset(
    f.name for f in fields(RiskLimits) if f.name not in ("exposure_mode",)
)


@dataclass(frozen=True, slots=True)
class ControlOutcome:
    """What a control event did: ``applied`` or not, with a reason code and text."""

    event_id: str
    command: str
    applied: bool
    reason_code: str
    detail: str


def trade_id_for(request_id: str) -> str:
    """The id under which an OPEN request's trade is registered."""
    return f"trd:{request_id}"


class RiskSequencer:
    """Decides trade requests in order; see the module docstring for the contract.

    ``dedupe_window`` bounds how many recent request and control ids are remembered for
    de-duplication (oldest forgotten first). Kafka redelivers at most the records since the last
    committed offset, far fewer than the default 100,000.

    The window is the larger part of the state (100,000 ids are about 3 MB of JSON), so a
    caller that persists the state after every batch does not rewrite it whole:
    :meth:`journal_seen` starts a journal of what each batch remembered and forgot,
    :meth:`take_seen_changes` hands it over, ``to_dict(include_seen=False)`` leaves the window
    out and ``from_dict(data, seen=...)`` puts it back.
    """

    def __init__(
        self,
        controller: GlobalRiskController,
        *,
        min_trade_usd: float = 10.0,
        dedupe_window: int = 100_000,
    ) -> None:
        if not (min_trade_usd > 0 and math.isfinite(min_trade_usd)):
            raise ValueError(f"min_trade_usd must be a finite number > 0, got {min_trade_usd!r}")
        if dedupe_window < 1:
            raise ValueError(f"dedupe_window must be >= 1, got {dedupe_window}")
        self.controller = controller
        self.min_trade_usd = min_trade_usd
        self.dedupe_window = dedupe_window
        self._seen = DedupeWindow(dedupe_window)
        self.duplicates = 0

    # -- state -----------------------------------------------------------------------------

    @property
    def remembered(self) -> int:
        """How many ids the window ever remembered."""
        return self._seen.remembered

    def to_dict(self, *, include_seen: bool = True) -> dict[str, Any]:
        """JSON-safe state: the controller's plus (unless left out) the de-duplication window,
        oldest id first."""
        data: dict[str, Any] = {
            "controller": self.controller.to_dict(),
            "min_trade_usd": self.min_trade_usd,
            "dedupe_window": self.dedupe_window,
            "remembered": self._seen.remembered,
        }
        if include_seen:
            data["seen"] = self._seen.to_list()
        return data

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, seen: Iterable[tuple[str, int]] | None = None
    ) -> RiskSequencer:
        """The sequencer of :meth:`to_dict`; ``seen`` (``(id, number)`` pairs, any order)
        gives the window when it was stored apart, and takes precedence over ``data["seen"]``."""
        seq = cls(
            GlobalRiskController.from_dict(data["controller"]),
            min_trade_usd=float(data["min_trade_usd"]),
            dedupe_window=int(data["dedupe_window"]),
        )
        window = seq._seen
        if seen is not None:
            window.load(pairs=seen)
        else:
            window.load([str(k) for k in data.get("seen", ())])
        window.remembered = max(window.remembered, int(data.get("remembered", 0)))
        return seq

    def journal_seen(self, *, include_current: bool = False) -> None:
        """Journal the window's changes from now on (:meth:`DedupeWindow.journal`)."""
        self._seen.journal(include_current=include_current)

    def take_seen_changes(self) -> tuple[list[tuple[str, int]], list[str]]:
        """The window's ``(remembered, forgotten)`` since the last call
        (:meth:`DedupeWindow.take_changes`)."""
        return self._seen.take_changes()

    def _remember(self, key: str) -> bool:
        """Record ``key``; ``False`` when it was already there."""
        return self._seen.add(key)

    # -- trade requests --------------------------------------------------------------------

    def decide(self, request: Mapping[str, Any]) -> dict[str, Any] | None:
        """The RiskDecision record for ``request``, or ``None`` for a redelivery."""
        request_id = str(request["request_id"])
        if not self._remember(f"req:{request_id}"):
            self.duplicates += 1
            return None
        intent = request.get("intent", "OPEN")
        if intent == "CLOSE":
            return self._decide_close(request, request_id)
        return self._decide_open(request, request_id)

    def _decide_open(self, request: Mapping[str, Any], request_id: str) -> dict[str, Any] | None:
        ctl = self.controller
        if ctl.get_trade(trade_id_for(request_id)) is not None:
            # a redelivery older than the de-duplication window whose trade is still open
            self.duplicates += 1
            return None
        try:
            trade = _trade_request(request)
            result = ctl.check_trade(trade)
        except DomainError as exc:
            return self._refusal(request, request_id, INVALID_REQUEST, str(exc))
        approved = 0.0
        trade_id = trade_id_for(request_id)
        if result.decision == RiskDecision.APPROVE:
            ctl.register_trade(trade_id, trade)
            approved = trade.size_usd
        elif result.decision == RiskDecision.THROTTLE:
            size = result.max_approvable_size_usd
            if size >= self.min_trade_usd:
                ctl.register_trade(trade_id, replace_size(trade, size))
                approved = size
        return self._record(request, request_id, result, approved, trade_id if approved else None)

    def _decide_close(self, request: Mapping[str, Any], request_id: str) -> dict[str, Any]:
        ctl = self.controller
        trade_id = request.get("trade_id")
        open_trade = ctl.get_trade(str(trade_id)) if trade_id else None
        if open_trade is None:
            return self._refusal(
                request, request_id, UNKNOWN_TRADE, f"no open trade {trade_id!r} to close"
            )
        close = TradeRequest(
            coin=open_trade.coin,
            direction=open_trade.direction,
            size_usd=open_trade.size_usd,
            exchange=open_trade.exchange,
            closes_trade_id=open_trade.trade_id,
        )
        result = ctl.check_trade(close)
        ctl.close_trade(open_trade.trade_id)
        return self._record(request, request_id, result, open_trade.size_usd, open_trade.trade_id)

    def _base(self, request: Mapping[str, Any], request_id: str) -> dict[str, Any]:
        return {
            "event_id": f"dec:{request_id}",
            "correlation_id": request.get("correlation_id") or request_id,
            "causation_id": request.get("event_id"),
            "request_id": request_id,
            "coin": request["coin"],
            "exchange": request["exchange"],
            "sector": request.get("sector"),
            "direction": request.get("direction", "UNKNOWN"),
            "intent": request.get("intent", "OPEN"),
            "ts": request["ts"],
            "requested_size_usd": float(request.get("size_usd", 0.0)),
            "bid": request.get("bid"),
            "ask": request.get("ask"),
        }

    def _record(
        self,
        request: Mapping[str, Any],
        request_id: str,
        result: RiskCheckResult,
        approved_usd: float,
        trade_id: str | None,
    ) -> dict[str, Any]:
        e = result.exposure
        decision = self._base(request, request_id)
        decision.update(
            trade_id=trade_id,
            decision=str(result.decision),
            reason_code=str(result.reason_code),
            reason=result.reason,
            limit=result.limit,
            approved_size_usd=approved_usd,
            max_approvable_size_usd=_finite(result.max_approvable_size_usd),
            max_allowed_size_usd=_finite(result.max_allowed_size_usd),
            risk_reducing=result.risk_reducing,
            global_exposure_pct=e.global_pct,
            coin_exposure_pct=e.coin_pct,
            sector_exposure_pct=e.sector_pct,
            exchange_exposure_pct=e.exchange_pct,
            global_exposure_after_pct=e.global_after_pct,
            coin_exposure_after_pct=e.coin_after_pct,
            sector_exposure_after_pct=e.sector_after_pct,
            exchange_exposure_after_pct=e.exchange_after_pct,
            active_trades=self.controller.active_trades,
            in_flight_trades=self.controller.in_flight_trades,
        )
        return decision

    def _refusal(
        self, request: Mapping[str, Any], request_id: str, code: str, text: str
    ) -> dict[str, Any]:
        summary = self.controller.get_exposure_summary()
        decision = self._base(request, request_id)
        decision.update(
            trade_id=request.get("trade_id"),
            decision=str(RiskDecision.BLOCK),
            reason_code=code,
            reason=text,
            limit=None,
            approved_size_usd=0.0,
            max_approvable_size_usd=0.0,
            max_allowed_size_usd=0.0,
            risk_reducing=False,
            global_exposure_pct=float(summary["global"]["total_exposure_pct"]),
            coin_exposure_pct=0.0,
            sector_exposure_pct=0.0,
            exchange_exposure_pct=0.0,
            global_exposure_after_pct=float(summary["global"]["total_exposure_pct"]),
            coin_exposure_after_pct=0.0,
            sector_exposure_after_pct=0.0,
            exchange_exposure_after_pct=0.0,
            active_trades=self.controller.active_trades,
            in_flight_trades=self.controller.in_flight_trades,
        )
        return decision

    # -- control ---------------------------------------------------------------------------

    def apply_control(self, event: Mapping[str, Any]) -> ControlOutcome:
        """Apply one control event; never raises for a bad command, reports it instead."""
        event_id = str(event["event_id"])
        command = str(event.get("command", "UNKNOWN"))
        if not self._remember(f"ctl:{event_id}"):
            self.duplicates += 1
            return ControlOutcome(event_id, command, False, DUPLICATE, "already applied")
        ctl = self.controller
        key, value, ts = event.get("key"), event.get("value"), event.get("ts")
        when = float(ts) / 1e6 if isinstance(ts, int | float) else None
        try:
            if command == "SET_LIMIT":
                if key not in _LIMIT_FIELDS:
                    return _rejected(event_id, command, f"unknown limit {key!r}")
                current = ctl.limits
                typed = type(getattr(current, str(key)))(value)
                ctl.set_limits(replace(current, **{str(key): typed}), timestamp=when)
                return ControlOutcome(event_id, command, True, "applied", f"{key}={typed}")
            if command in ("KILL_SWITCH_ON", "TRIP_BREAKER"):
                if command == "TRIP_BREAKER" and key not in (None, str(BreakerName.KILL_SWITCH)):
                    return _rejected(
                        event_id, command, f"only the kill switch trips by command, not {key!r}"
                    )
                ctl.engage_kill_switch(str(event.get("reason") or "manual"), timestamp=when)
                return ControlOutcome(event_id, command, True, "applied", "kill switch engaged")
            if command == "KILL_SWITCH_OFF":
                ctl.reset_breaker(BreakerName.KILL_SWITCH)
                return ControlOutcome(event_id, command, True, "applied", "kill switch reset")
            if command == "RESET_BREAKER":
                ctl.reset_breaker(str(key))
                return ControlOutcome(event_id, command, True, "applied", f"{key} reset")
            if command == "SET_EQUITY":
                equity = float(value)  # type: ignore[arg-type]
                drawdown = ctl.update_equity(equity, timestamp=when)
                return ControlOutcome(
                    event_id, command, True, "applied", f"equity={equity} dd={drawdown:.2f}%"
                )
        except (DomainError, TypeError, ValueError) as exc:
            return _rejected(event_id, command, str(exc))
        return _rejected(event_id, command, f"unknown command {command!r}")


def _rejected(event_id: str, command: str, detail: str) -> ControlOutcome:
    return ControlOutcome(event_id, command, False, "rejected", detail)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def replace_size(trade: TradeRequest, size_usd: float) -> TradeRequest:
    """``trade`` with another size (re-validated)."""
    return TradeRequest(
        coin=trade.coin,
        direction=trade.direction,
        size_usd=size_usd,
        exchange=trade.exchange,
        sector=trade.sector,
        closes_trade_id=trade.closes_trade_id,
    )


def _trade_request(request: Mapping[str, Any]) -> TradeRequest:
    direction = str(request.get("direction", "")).lower()
    return TradeRequest(
        coin=str(request["coin"]),
        direction=cast("Direction", direction),  # validated by TradeRequest
        size_usd=float(request["size_usd"]),
        exchange=str(request["exchange"]),
        sector=request.get("sector"),
    )
