"""The backtest report: what a run's recorded decisions and executions add up to.

:func:`build_report` is a pure fold over the ``RiskDecision`` and ``Execution`` records of one run
(the shapes of ``huracan/schemas/risk_decision.avsc`` and ``execution.avsc``; ``ts`` in epoch
microseconds). It reads no clock and no files; the same inputs give the same report.

Decisions
    Counted by ``decision`` (APPROVE, THROTTLE, BLOCK are always listed) and by
    ``reason_code``, once per ``request_id`` (a redelivered decision is counted in
    ``duplicate_decisions`` only).

Trades
    A trade is the OPEN execution and, when it was closed, the CLOSE execution with the same
    ``trade_id``. Executions are de-duplicated on ``execution_id`` (the first one counts; the
    rest are counted in ``duplicate_executions``). A CLOSE whose OPEN is not in the input is an
    *orphan close*: it is counted, its ``realized_pnl_usd`` is taken as is, its entry fee stays
    inside its gross PnL and no funding is charged (its holding time is unknown).

Per closed trade (the paper exchange's ``realized_pnl_usd`` is net of both legs' taker fees)::

    fees_usd      = entry fees_usd + exit fees_usd
    pnl_gross_usd = realized_pnl_usd + fees_usd                         (price PnL alone)
    funding_usd   = sign × entry size_usd / 1e4 × ∫ rate_bps(t) dt / funding_interval_hours
    pnl_net_usd   = pnl_gross_usd − fees_usd − funding_usd = realized_pnl_usd − funding_usd

Funding is charged at the rate *in force* over each trade's life, from OPEN to CLOSE (``t`` in
hours): ``funding_rates`` maps a coin to its ``(ts_us, rate_bps)`` changes, each rate in force
from its ``ts`` until the next, none (0) before the first. A rate published after a trade
closed never reaches it (no look-ahead). ``funding_rate_bps`` (coin → one rate) is the
fallback for callers with no history: that rate is taken as in force for the whole run.
Sign convention (as :mod:`huracan.domain.costs`: rates are per funding interval and a positive
rate means longs pay): ``sign`` is +1 for a LONG and −1 for a SHORT, so with a positive rate a
long *pays* (``funding_usd`` > 0, a cost) and a short *receives* (< 0, a gain). The paper
exchange charges no funding; the report does.

Per trade still open at the end (marked at the price a close would get, as the exit rules'
exchange would fill it)::

    mark          = bid for a LONG, ask for a SHORT, from ``last_quotes[coin]`` (else the
                    coin's last mark)
    pnl_gross_usd = units × (mark − entry price)  for a LONG
                    units × (entry price − mark)  for a SHORT
    fees_usd      = entry fees_usd + the exit fee: units × mark × the entry's fee rate
                    (entry fees_usd / entry size_usd); the sum of these exit fees is
                    ``exit_fees_open_usd``
    funding_usd   = as above, held until the end of the curve

A coin with no quote is marked at its entry price (unrealized PnL 0, the exit fee still
charged) and listed in ``unmarked_coins``.

Totals: ``pnl_gross_usd``, ``fees_usd``, ``funding_usd`` are the sums over all trades, and
``pnl_net_usd = pnl_gross_usd − fees_usd − funding_usd``; ``final_equity_usd = equity_usd +
pnl_net_usd``; ``return_pct = 100 × pnl_net_usd / equity_usd``.

Equity curve: mark to market (``(ts_us, equity_usd)``). ``marks`` are ``(ts_us, coin, bid,
ask)`` price samples in time order (:class:`QuoteMarks` thins a tick stream to each coin's last
quote per second). The curve has a point at every fill and every mark::

    equity(t) = equity_usd − fees paid − funding of closed trades + their realized PnL
                + Σ open trades (units × (mark − entry) signed − exit fee at mark − funding
                  accrued to t)

with an open trade marked at its coin's latest mark (the entry price before the first), so a
position under water mid-trade shows on the curve. It starts at ``equity_usd`` at ``min(
start_us, first fill ts)`` and ends at ``final_equity_usd`` at ``max(end_us, last fill ts)``;
points with the same ``ts`` are merged (the last value stands). Without ``marks`` the curve
moves only at fills and at the end (the assumptions say so). The exposure curve is the gross
open notional (entry ``size_usd``) at the fills.

Drawdown over the mark-to-market curve, from the running peak (which starts at
``equity_usd``): ``max_drawdown_usd = max(peak − E)`` and ``max_drawdown_pct = max(100 ×
(peak − E) / peak)``; the two maxima may fall at different points.

Sharpe: the curve is sampled at the end of each ``sharpe_bucket_us`` bucket (default one
minute) from its start to its end (the last bucket may be partial); ``r_k = E_k / E_{k−1} − 1``
with ``E_0 = equity_usd``; ``sharpe = mean(r) / stdev(r) × sqrt(buckets per 365-day year)``
(sample standard deviation, risk-free rate 0, 365 days since crypto trades around the clock;
with one-minute buckets the factor is sqrt(525,600) ≈ 725). It is reported only with at least
``sharpe_min_periods`` returns (default 30: half an hour of one-minute returns, the fewest
with which a standard deviation means anything), else ``None`` ("n/a"); also ``None`` for a
zero standard deviation. ``sharpe_periods`` is the number of returns, ``sharpe_annualisation``
says how it was scaled.

Win rate: ``trades_won / trades_closed`` where a closed trade is won when its ``pnl_net_usd``
(after fees and funding) is > 0; ``None`` with no closed trade.

``assumptions`` lists, in words, what the figures rest on (fills, fees, funding, marking,
Sharpe, drawdown); the rendered report prints them.
"""

from __future__ import annotations

import itertools
import json
import math
import operator
import os
import statistics
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from huracan.backtest.errors import ChartError, EmptyBacktest, InvalidBacktestInput

if TYPE_CHECKING:
    from rich.console import Console

#: microseconds in a 365-day year (crypto trades 24/7)
YEAR_US: Final = 365 * 24 * 3600 * 1_000_000
#: microseconds per hour
HOUR_US: Final = 3600 * 1_000_000
#: outcomes always listed in ``decisions_by_outcome``, in this order
OUTCOMES: Final = ("APPROVE", "THROTTLE", "BLOCK")
#: fewest returns a Sharpe ratio is reported with (else "n/a")
SHARPE_MIN_PERIODS: Final = 30
#: default spacing of the price marks of the mark-to-market curve (one second)
MARK_INTERVAL_US: Final = 1_000_000

#: ``(ts_us, coin, bid, ask)``: one price sample
Mark = tuple[int, str, float, float]

Curve = tuple[tuple[int, float], ...]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class CoinPnl:
    """One coin's share of the report; the fields add up as the run's totals do."""

    coin: str
    trades_closed: int = 0
    trades_won: int = 0
    trades_open: int = 0
    pnl_gross_usd: float = 0.0
    fees_usd: float = 0.0
    funding_usd: float = 0.0
    pnl_net_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "coin": self.coin,
            "trades_closed": self.trades_closed,
            "trades_won": self.trades_won,
            "trades_open": self.trades_open,
            "pnl_gross_usd": self.pnl_gross_usd,
            "fees_usd": self.fees_usd,
            "funding_usd": self.funding_usd,
            "pnl_net_usd": self.pnl_net_usd,
        }


@dataclass(frozen=True)
class BacktestReport:
    """The figures of one run; the module docstring defines each one."""

    start_us: int
    end_us: int
    coins: tuple[str, ...]
    ticks: int
    equity_usd: float
    final_equity_usd: float
    pnl_gross_usd: float
    pnl_unrealized_usd: float
    fees_usd: float
    funding_usd: float
    pnl_net_usd: float
    return_pct: float
    sharpe: float | None
    sharpe_bucket_us: int
    max_drawdown_usd: float
    max_drawdown_pct: float
    max_exposure_usd: float
    win_rate: float | None
    trades_closed: int
    trades_won: int
    trades_open_at_end: int
    executions: int
    duplicate_executions: int
    orphan_closes: int
    unmarked_coins: tuple[str, ...]
    funding_interval_hours: float
    decisions: int
    duplicate_decisions: int
    decisions_by_outcome: dict[str, int]
    decisions_by_reason: dict[str, int]
    cost_rejections: dict[str, int]
    per_coin: dict[str, CoinPnl]
    equity_curve: Curve = field(repr=False)
    exposure_curve: Curve = field(repr=False)
    sharpe_periods: int = 0
    sharpe_min_periods: int = SHARPE_MIN_PERIODS
    sharpe_annualisation: str = ""
    exit_fees_open_usd: float = 0.0
    marks: int = 0
    assumptions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data in a stable key order; a non-finite float becomes ``None``."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "per_coin":
                value = {c: p.to_dict() for c, p in value.items()}
            elif name in ("equity_curve", "exposure_curve"):
                value = [[ts, v] for ts, v in value]
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = dict(value)
            out[name] = value
        return _finite_only(out)  # type: ignore[no-any-return]

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON (sorted keys, indent 2); never contains ``NaN``/``Infinity``."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BacktestReport:
        """Rebuild a report from :meth:`to_dict` (or parsed :meth:`to_json`) output.

        Raises :class:`InvalidBacktestInput` naming the field when ``data`` is not such output.
        """
        try:
            kwargs: dict[str, Any] = {}
            fields = cls.__dataclass_fields__
            for name in fields:
                if name not in data and name in _OPTIONAL_FIELDS:
                    continue  # a report written before the field existed
                value = data[name]
                if name == "per_coin":
                    value = {c: CoinPnl(**p) for c, p in value.items()}
                elif name in ("equity_curve", "exposure_curve"):
                    value = tuple((int(ts), float(v)) for ts, v in value)
                elif name in ("coins", "unmarked_coins", "assumptions"):
                    value = tuple(value)
                elif name in ("decisions_by_outcome", "decisions_by_reason", "cost_rejections"):
                    value = {str(k): int(v) for k, v in value.items()}
                kwargs[name] = value
        except KeyError as exc:
            raise InvalidBacktestInput(f"report data has no field {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise InvalidBacktestInput(f"report data is malformed: {exc}") from None
        return cls(**kwargs)


_OPTIONAL_FIELDS: Final = frozenset(
    (
        "sharpe_periods",
        "sharpe_min_periods",
        "sharpe_annualisation",
        "exit_fees_open_usd",
        "marks",
        "assumptions",
    )
)


class QuoteMarks:
    """Each coin's last quote per ``interval_us`` of event time: the price marks of the
    mark-to-market equity curve, thinned from a tick stream (at most one per coin and interval,
    so memory grows with coins × duration / interval, not with ticks)."""

    def __init__(self, interval_us: int = MARK_INTERVAL_US) -> None:
        if interval_us <= 0:
            raise InvalidBacktestInput(f"mark interval must be > 0 µs, got {interval_us}")
        self.interval_us = interval_us
        self._held: dict[str, tuple[int, int, float, float]] = {}
        self._marks: list[Mark] = []

    def add(self, ts_us: int, coin: str, bid: float, ask: float) -> None:
        """Record a quote; the coin's previous one is kept when it closed an interval."""
        bucket = ts_us // self.interval_us
        held = self._held.get(coin)
        if held is not None and held[0] != bucket:
            self._marks.append((held[1], coin, held[2], held[3]))
        self._held[coin] = (bucket, ts_us, bid, ask)

    def marks(self) -> list[Mark]:
        """The marks so far, the held last quotes included, in ``(ts, coin)`` order."""
        out = self._marks + [(h[1], c, h[2], h[3]) for c, h in self._held.items()]
        out.sort(key=operator.itemgetter(0, 1))
        return out


def _finite_only(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_only(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_only(v) for v in value]
    return value


@dataclass
class _Trade:
    trade_id: str
    coin: str
    direction: str
    units: float
    entry_price: float
    size_usd: float
    entry_fees_usd: float
    opened_us: int

    @property
    def sign(self) -> float:
        return 1.0 if self.direction == "LONG" else -1.0

    def marked(self, bid: float, ask: float) -> tuple[float, float]:
        """``(pnl_gross, exit_fee)`` if closed at ``bid``/``ask`` now (the exit fee at the
        entry's fee rate)."""
        mark = bid if self.direction == "LONG" else ask
        fee_rate = self.entry_fees_usd / self.size_usd if self.size_usd else 0.0
        return self.sign * self.units * (mark - self.entry_price), self.units * mark * fee_rate


def _field(record: Mapping[str, Any], key: str, what: str) -> Any:
    try:
        value = record[key]
    except KeyError:
        raise InvalidBacktestInput(f"{what} has no {key!r}") from None
    if value is None:
        raise InvalidBacktestInput(f"{what} has {key!r} = None")
    return value


def _number(record: Mapping[str, Any], key: str, what: str) -> float:
    value = _field(record, key, what)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidBacktestInput(f"{what}: {key!r} is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise InvalidBacktestInput(f"{what}: {key!r} is not finite: {value!r}")
    return number


def _ts(record: Mapping[str, Any], what: str) -> int:
    """``ts`` as epoch microseconds: an integer (numpy's too) or a datetime (naive = UTC)."""
    value = _field(record, "ts", what)
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return (aware - _EPOCH) // timedelta(microseconds=1)
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise InvalidBacktestInput(f"{what}: 'ts' must be int epoch microseconds, got {value!r}")


def _check_args(
    equity_usd: float,
    start_us: int,
    end_us: int,
    ticks: int,
    funding_interval_hours: float,
    sharpe_bucket_us: int,
    funding_rate_bps: Mapping[str, float],
    sharpe_min_periods: int = SHARPE_MIN_PERIODS,
) -> None:
    if not (math.isfinite(equity_usd) and equity_usd > 0):
        raise InvalidBacktestInput(f"equity_usd must be finite and > 0, got {equity_usd!r}")
    if end_us < start_us:
        raise InvalidBacktestInput(f"end_us {end_us} is before start_us {start_us}")
    if ticks < 0:
        raise InvalidBacktestInput(f"ticks must be >= 0, got {ticks}")
    if not (math.isfinite(funding_interval_hours) and funding_interval_hours > 0):
        raise InvalidBacktestInput(
            f"funding_interval_hours must be finite and > 0, got {funding_interval_hours!r}"
        )
    if sharpe_bucket_us <= 0:
        raise InvalidBacktestInput(f"sharpe_bucket_us must be > 0, got {sharpe_bucket_us}")
    if sharpe_min_periods < 2:
        raise InvalidBacktestInput(f"sharpe_min_periods must be >= 2, got {sharpe_min_periods}")
    for coin, rate in funding_rate_bps.items():
        if not math.isfinite(rate):
            raise InvalidBacktestInput(f"funding_rate_bps[{coin!r}] is not finite: {rate!r}")


def build_report(
    *,
    decisions: Sequence[Mapping[str, Any]],
    executions: Sequence[Mapping[str, Any]],
    equity_usd: float,
    start_us: int,
    end_us: int,
    ticks: int,
    coins: Sequence[str],
    funding_rate_bps: Mapping[str, float] | None = None,
    funding_interval_hours: float = 8.0,
    cost_rejections: Mapping[str, int] | None = None,
    last_quotes: Mapping[str, tuple[float, float]] | None = None,
    sharpe_bucket_us: int = 60_000_000,
    funding_rates: Mapping[str, Sequence[tuple[int, float]]] | None = None,
    marks: Sequence[Mark] | None = None,
    mark_interval_us: int | None = None,
    sharpe_min_periods: int = SHARPE_MIN_PERIODS,
) -> BacktestReport:
    """Fold one run's ``decisions``, ``executions`` and price ``marks`` into a
    :class:`BacktestReport`.

    ``equity_usd`` is the starting equity; ``start_us``/``end_us`` bound the run's event time
    (first and last tick); ``ticks`` and ``coins`` describe the input; ``funding_rates`` maps a
    coin to its ``(ts_us, rate_bps)`` changes (rates in bps per ``funding_interval_hours``),
    ``funding_rate_bps`` one rate per coin taken as in force all run (used only without
    ``funding_rates``); ``cost_rejections`` counts the signals the cost check dropped, by reason
    code; ``last_quotes`` maps a coin to its last ``(bid, ask)``, to mark the trades still open;
    ``marks`` are ``(ts_us, coin, bid, ask)`` samples in time order for the mark-to-market
    curve (``mark_interval_us`` says how they were thinned, for the assumptions). Formulas:
    see the module docstring.

    Raises :class:`EmptyBacktest` when there are no ticks, decisions or executions, and
    :class:`InvalidBacktestInput` for a bad argument or an execution missing a needed field
    (the message names the execution and the field).
    """
    rates = dict(funding_rate_bps or {})
    quotes = dict(last_quotes or {})
    _check_args(
        equity_usd, start_us, end_us, ticks, funding_interval_hours, sharpe_bucket_us, rates,
        sharpe_min_periods,
    )  # fmt: skip
    schedules = _schedules(funding_rates, rates)
    price_marks = list(marks or ())
    if ticks == 0 and not decisions and not executions:
        raise EmptyBacktest("nothing to report: no ticks, no decisions and no executions")

    # 1. de-duplicate on execution_id, order by event time (ties keep the recorded order)
    seen: set[str] = set()
    unique: list[tuple[int, Mapping[str, Any]]] = []
    for i, e in enumerate(executions):
        exec_id = str(e.get("execution_id") or e.get("event_id") or f"#{i}")
        if exec_id in seen:
            continue
        seen.add(exec_id)
        unique.append((_ts(e, f"execution {exec_id}"), e))
    duplicates = len(executions) - len(unique)
    unique.sort(key=lambda pair: pair[0])

    # 2. the OPEN of every trade
    opens: dict[str, _Trade] = {}
    for ts, e in unique:
        if e.get("action") != "OPEN":
            continue
        what = f"execution {e.get('execution_id')}"
        trade_id = str(_field(e, "trade_id", what))
        if trade_id in opens:
            raise InvalidBacktestInput(f"{what}: trade {trade_id!r} opened twice")
        direction = str(_field(e, "direction", what))
        if direction not in ("LONG", "SHORT"):
            raise InvalidBacktestInput(f"{what}: cannot open direction {direction!r}")
        opens[trade_id] = _Trade(
            trade_id, str(_field(e, "coin", what)), direction, _number(e, "size", what),
            _number(e, "price", what), _number(e, "size_usd", what),
            _number(e, "fees_usd", what), ts,
        )  # fmt: skip

    curve_start = min([start_us] + [ts for ts, _ in unique[:1]])
    curve_end = max([end_us] + [ts for ts, _ in unique[-1:]])

    per_hour = 1.0 / (1e4 * funding_interval_hours)

    def funding_of(trade: _Trade, until_us: int) -> float:
        """Funding of ``trade`` from its OPEN to ``until_us`` at the rates in force."""
        schedule = schedules.get(trade.coin)
        if not schedule or until_us <= trade.opened_us:
            return 0.0
        rate_us = _integrate(schedule, trade.opened_us, until_us)
        return trade.sign * trade.size_usd * per_hour * rate_us / HOUR_US

    # 3. walk the fills, the price marks and the funding rate changes in event time: totals,
    #    per coin, the mark-to-market equity curve and the exposure curve
    per_coin: dict[str, dict[str, float]] = {}

    def coin_row(coin: str) -> dict[str, float]:
        return per_coin.setdefault(coin, dict.fromkeys(_COIN_SUMS, 0.0))

    events: list[tuple[int, int, int, Any]] = []
    for coin, schedule in schedules.items():
        for ts, rate in schedule:
            if ts > curve_start:
                events.append((ts, 0, len(events), (coin, rate)))
    for ts, e in unique:
        events.append((ts, 1, len(events), e))
    for mark in price_marks:
        events.append((int(mark[0]), 2, len(events), mark))
    events.sort(key=operator.itemgetter(0, 1, 2))

    realized_equity = equity_usd  # cash: fees paid, realized PnL and funding of closed trades
    exposure = 0.0
    equity_points: list[tuple[int, float]] = [(curve_start, equity_usd)]
    exposure_points: list[tuple[int, float]] = [(curve_start, exposure)]
    closed: set[str] = set()
    orphans = 0
    open_by_coin: dict[str, dict[str, _Trade]] = {}
    last_mark: dict[str, tuple[float, float]] = {}
    marked_value: dict[str, float] = {}  # coin -> Σ open (pnl − exit fee) at its last mark
    value_total = 0.0
    rate_now = {c: _rate_at(sch, curve_start) for c, sch in schedules.items()}
    flow = 0.0  # funding accrual of the open trades, USD per µs
    accrued = 0.0  # funding accrued by the open trades so far
    clock = curve_start

    def revalue(coin: str) -> None:
        nonlocal value_total
        quote = last_mark.get(coin)
        value = 0.0
        for trade in open_by_coin.get(coin, {}).values():
            bid, ask = quote if quote is not None else (trade.entry_price, trade.entry_price)
            pnl, exit_fee = trade.marked(bid, ask)
            value += pnl - exit_fee
        value_total += value - marked_value.get(coin, 0.0)
        marked_value[coin] = value

    def trade_flow(trade: _Trade, rate: float) -> float:
        return trade.sign * trade.size_usd * per_hour * rate / HOUR_US

    for ts, kind, _, item in events:
        accrued += flow * (ts - clock)
        clock = ts
        if kind == 0:
            coin, rate = item
            old = rate_now.get(coin, 0.0)
            for trade in open_by_coin.get(coin, {}).values():
                flow += trade_flow(trade, rate - old)
            rate_now[coin] = rate
        elif kind == 2:
            _, coin, bid, ask = item
            last_mark[coin] = (float(bid), float(ask))
            if open_by_coin.get(coin):
                revalue(coin)
            else:
                continue
        else:
            e = item
            what = f"execution {e.get('execution_id')}"
            action = e.get("action")
            if action == "OPEN":
                trade = opens[str(e["trade_id"])]
                realized_equity -= trade.entry_fees_usd
                exposure += trade.size_usd
                open_by_coin.setdefault(trade.coin, {})[trade.trade_id] = trade
                flow += trade_flow(trade, rate_now.get(trade.coin, 0.0))
                revalue(trade.coin)
                row = coin_row(trade.coin)
                row["fees_usd"] += trade.entry_fees_usd
            elif action == "CLOSE":
                trade_id = str(_field(e, "trade_id", what))
                if trade_id in closed:
                    raise InvalidBacktestInput(f"{what}: trade {trade_id!r} closed twice")
                closed.add(trade_id)
                realized = _number(e, "realized_pnl_usd", what)
                exit_fees = _number(e, "fees_usd", what)
                opened = opens.get(trade_id)
                row = coin_row(str(_field(e, "coin", what)))
                if opened is None:
                    orphans += 1
                    funding = 0.0
                    gross = realized + exit_fees
                    realized_equity += realized
                else:
                    funding = funding_of(opened, ts)
                    gross = realized + opened.entry_fees_usd + exit_fees
                    realized_equity += realized + opened.entry_fees_usd - funding
                    exposure -= opened.size_usd
                    if open_by_coin.get(opened.coin, {}).pop(trade_id, None) is not None:
                        flow -= trade_flow(opened, rate_now.get(opened.coin, 0.0))
                        accrued -= funding
                        revalue(opened.coin)
                net = realized - funding
                row["fees_usd"] += exit_fees
                row["pnl_gross_usd"] += gross
                row["funding_usd"] += funding
                row["trades_closed"] += 1
                row["trades_won"] += 1 if net > 0 else 0
            else:
                raise InvalidBacktestInput(f"{what}: action must be OPEN or CLOSE, got {action!r}")
            _append(exposure_points, ts, max(0.0, exposure))
        _append(equity_points, ts, realized_equity + value_total - accrued)

    # 4. mark what is still open at the end, net of its exit fee
    final_quotes = {**last_mark, **quotes}
    unmarked: set[str] = set()
    unrealized = 0.0
    open_exit_fees = 0.0
    for trade_id, trade in opens.items():
        if trade_id in closed:
            continue
        quote = final_quotes.get(trade.coin)
        if quote is None:
            unmarked.add(trade.coin)
            bid = ask = trade.entry_price
        else:
            bid, ask = float(quote[0]), float(quote[1])
        pnl, exit_fee = trade.marked(bid, ask)
        funding = funding_of(trade, curve_end)
        unrealized += pnl
        open_exit_fees += exit_fee
        row = coin_row(trade.coin)
        row["pnl_gross_usd"] += pnl
        row["fees_usd"] += exit_fee
        row["funding_usd"] += funding
        row["trades_open"] += 1

    # 5. totals
    coin_pnls = {}
    for coin in sorted(per_coin):
        r = per_coin[coin]
        coin_pnls[coin] = CoinPnl(
            coin=coin,
            trades_closed=int(r["trades_closed"]),
            trades_won=int(r["trades_won"]),
            trades_open=int(r["trades_open"]),
            pnl_gross_usd=r["pnl_gross_usd"],
            fees_usd=r["fees_usd"],
            funding_usd=r["funding_usd"],
            pnl_net_usd=r["pnl_gross_usd"] - r["fees_usd"] - r["funding_usd"],
        )
    gross = math.fsum(p.pnl_gross_usd for p in coin_pnls.values())
    fees = math.fsum(p.fees_usd for p in coin_pnls.values())
    funding_total = math.fsum(p.funding_usd for p in coin_pnls.values())
    net = gross - fees - funding_total
    trades_closed = sum(p.trades_closed for p in coin_pnls.values())
    trades_won = sum(p.trades_won for p in coin_pnls.values())
    _append(equity_points, curve_end, equity_usd + net)
    _append(exposure_points, curve_end, max(0.0, exposure))
    equity_curve = tuple(equity_points)
    dd_usd, dd_pct = _drawdown(equity_usd, equity_curve)
    sharpe, periods = _sharpe(equity_usd, equity_curve, sharpe_bucket_us, sharpe_min_periods)
    per_year = YEAR_US / sharpe_bucket_us
    annualisation = (
        f"mean / sample stdev of {_span(sharpe_bucket_us)} returns of the mark-to-market "
        f"equity × sqrt({per_year:,.0f} periods per 365-day year), risk-free rate 0; reported "
        f"with at least {sharpe_min_periods} returns"
    )
    decided: dict[str, Mapping[str, Any]] = {}
    for i, d in enumerate(decisions):
        decided.setdefault(str(d.get("request_id") or d.get("event_id") or f"#{i}"), d)
    outcomes = Counter(str(d.get("decision")) for d in decided.values())
    reasons = Counter(str(d.get("reason_code")) for d in decided.values())
    by_outcome = {o: outcomes.get(o, 0) for o in OUTCOMES}
    by_outcome.update({o: outcomes[o] for o in sorted(outcomes) if o not in by_outcome})
    return BacktestReport(
        start_us=start_us,
        end_us=end_us,
        coins=tuple(coins),
        ticks=ticks,
        equity_usd=equity_usd,
        final_equity_usd=equity_usd + net,
        pnl_gross_usd=gross,
        pnl_unrealized_usd=unrealized,
        fees_usd=fees,
        funding_usd=funding_total,
        pnl_net_usd=net,
        return_pct=100.0 * net / equity_usd,
        sharpe=sharpe,
        sharpe_bucket_us=sharpe_bucket_us,
        max_drawdown_usd=dd_usd,
        max_drawdown_pct=dd_pct,
        max_exposure_usd=max(v for _, v in exposure_points),
        win_rate=trades_won / trades_closed if trades_closed else None,
        trades_closed=trades_closed,
        trades_won=trades_won,
        trades_open_at_end=sum(p.trades_open for p in coin_pnls.values()),
        executions=len(unique),
        duplicate_executions=duplicates,
        orphan_closes=orphans,
        unmarked_coins=tuple(sorted(unmarked)),
        funding_interval_hours=funding_interval_hours,
        decisions=len(decided),
        duplicate_decisions=len(decisions) - len(decided),
        decisions_by_outcome=by_outcome,
        decisions_by_reason={r: reasons[r] for r in sorted(reasons)},
        cost_rejections={str(k): int(v) for k, v in sorted((cost_rejections or {}).items())},
        per_coin=coin_pnls,
        equity_curve=equity_curve,
        exposure_curve=tuple(exposure_points),
        sharpe_periods=periods,
        sharpe_min_periods=sharpe_min_periods,
        sharpe_annualisation=annualisation,
        exit_fees_open_usd=open_exit_fees,
        marks=len(price_marks),
        assumptions=_assumptions(
            funding_rates is not None,
            bool(rates),
            funding_interval_hours,
            len(price_marks),
            mark_interval_us,
            annualisation,
            equity_usd,
        ),
    )


_COIN_SUMS: Final = (
    "trades_closed",
    "trades_won",
    "trades_open",
    "pnl_gross_usd",
    "fees_usd",
    "funding_usd",
)


def _append(points: list[tuple[int, float]], ts: int, value: float) -> None:
    """Add a point; a point at the same ``ts`` as the last replaces it."""
    if points and points[-1][0] == ts:
        points[-1] = (ts, value)
    else:
        points.append((ts, value))


def _drawdown(equity_usd: float, curve: Curve) -> tuple[float, float]:
    peak = equity_usd
    worst_usd = worst_pct = 0.0
    for _, value in curve:
        peak = max(peak, value)
        dd = peak - value
        worst_usd = max(worst_usd, dd)
        if peak > 0:
            worst_pct = max(worst_pct, 100.0 * dd / peak)
    return worst_usd, worst_pct


def _sharpe(
    equity_usd: float, curve: Curve, bucket_us: int, min_periods: int
) -> tuple[float | None, int]:
    """``(sharpe or None, number of returns)``; see the module docstring."""
    if not curve:
        return None, 0
    start, end = curve[0][0], curve[-1][0]
    buckets = -(-(end - start) // bucket_us)  # ceil
    if buckets < min_periods:
        return None, buckets
    samples = [equity_usd]
    i = 0
    value = curve[0][1]
    for k in range(1, buckets + 1):
        edge = min(start + k * bucket_us, end)
        while i < len(curve) and curve[i][0] <= edge:
            value = curve[i][1]
            i += 1
        samples.append(value)
    if any(v <= 0 for v in samples[:-1]):
        return None, buckets
    returns = [b / a - 1.0 for a, b in itertools.pairwise(samples)]
    std = statistics.stdev(returns)
    if std == 0 or not math.isfinite(std):
        return None, buckets
    return statistics.fmean(returns) / std * math.sqrt(YEAR_US / bucket_us), buckets


def _span(us: int) -> str:
    if us % 60_000_000 == 0:
        minutes = us // 60_000_000
        return "1-minute" if minutes == 1 else f"{minutes}-minute"
    return f"{us / 1e6:g}-second"


def _schedules(
    funding_rates: Mapping[str, Sequence[tuple[int, float]]] | None,
    constant: Mapping[str, float],
) -> dict[str, list[tuple[int, float]]]:
    """Each coin's funding rate changes, sorted by time (the constant rates from the start of
    time when no history is given); raises :class:`InvalidBacktestInput` for a bad entry."""
    if funding_rates is None:
        return {c: [(-(1 << 62), float(r))] for c, r in constant.items()}
    out: dict[str, list[tuple[int, float]]] = {}
    for coin, changes in funding_rates.items():
        rows = []
        for ts, rate in changes:
            if not math.isfinite(rate):
                raise InvalidBacktestInput(f"funding_rates[{coin!r}] has a rate {rate!r}")
            rows.append((int(ts), float(rate)))
        rows.sort(key=operator.itemgetter(0))  # stable: the later of two at one ts stands
        out[coin] = rows
    return out


def _rate_at(schedule: Sequence[tuple[int, float]], ts: int) -> float:
    rate = 0.0
    for at, r in schedule:
        if at > ts:
            break
        rate = r
    return rate


def _integrate(schedule: Sequence[tuple[int, float]], start: int, end: int) -> float:
    """``∫ rate dt`` over ``[start, end)`` in bps × µs; no rate (0) before the first."""
    total = 0.0
    for i, (at, rate) in enumerate(schedule):
        until = schedule[i + 1][0] if i + 1 < len(schedule) else end
        lo, hi = max(at, start), min(until, end)
        if hi > lo:
            total += rate * (hi - lo)
    return total


def _assumptions(
    history: bool,
    constant: bool,
    interval_h: float,
    n_marks: int,
    mark_interval_us: int | None,
    annualisation: str,
    equity_usd: float,
) -> tuple[str, ...]:
    if history:
        funding = (
            "funding: at the rate in force over each trade's life (the recorded funding "
            f"updates, no look-ahead), pro rata per hour of a {interval_h:g} h interval; none "
            "before a coin's first known rate"
        )
    elif constant:
        funding = (
            f"funding: one rate per coin taken as in force for the whole run, pro rata per "
            f"hour of a {interval_h:g} h interval (no rate history was given)"
        )
    else:
        funding = "funding: none (no funding rate known)"
    if n_marks:
        spacing = (
            f"each coin's last quote per {_span(mark_interval_us)} interval"
            if mark_interval_us
            else "the given price marks"
        )
        marking = (
            f"equity marked to market at every fill and at {n_marks:,} price marks ({spacing}):"
            " open trades at the price a close would get (bid for longs, ask for shorts), less "
            "the exit fee at their entry fee rate and the funding accrued"
        )
    else:
        marking = (
            "no price marks given: the equity curve moves only at fills and at the end, so "
            "drawdown and Sharpe miss price moves between fills"
        )
    return (
        f"starting equity {equity_usd:,.2f} USD; trade sizes as decided, no compounding",
        "fills: the paper exchange's recorded executions (taker, the coin's taker fee from "
        "the cost book, slippage of the configured depth model, event-time latency)",
        funding,
        marking,
        "open trades at the end: marked at each coin's last quote less the exit fee at the "
        "entry's fee rate; a coin without a quote at its entry price",
        f"Sharpe: {annualisation}; otherwise n/a",
        "drawdown: from the running peak of the mark-to-market equity curve",
    )


# -- presentation ---------------------------------------------------------------------------


def _iso(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / 1e6, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _usd(x: float | None) -> str:
    return "—" if x is None else f"{x:,.2f}"


def _num(x: float | None, fmt: str = ".2f", suffix: str = "") -> str:
    return "—" if x is None else f"{x:{fmt}}{suffix}"


def render_report(report: BacktestReport, console: Console, *, top_coins: int = 10) -> None:
    """Print ``report`` on ``console`` as tables: summary, decisions, reasons, cost
    rejections, and the ``top_coins`` coins with the largest absolute net PnL."""
    from rich.table import Table

    summary = Table(title="Backtest", show_header=False, title_justify="left")
    summary.add_column("figure", style="bold")
    summary.add_column("value", justify="right")
    rows = [
        ("period (UTC)", f"{_iso(report.start_us)} → {_iso(report.end_us)}"),
        ("ticks / coins", f"{report.ticks:,} / {len(report.coins)}"),
        ("equity start → end", f"{_usd(report.equity_usd)} → {_usd(report.final_equity_usd)}"),
        ("PnL gross", _usd(report.pnl_gross_usd)),
        ("  of which unrealized", _usd(report.pnl_unrealized_usd)),
        ("fees", _usd(report.fees_usd)),
        ("  of which exit fees on open trades", _usd(report.exit_fees_open_usd)),
        ("funding (+ paid, − received)", _usd(report.funding_usd)),
        ("PnL net", _usd(report.pnl_net_usd)),
        ("return", _num(report.return_pct, ".4f", " %")),
        ("Sharpe (annualised)", _sharpe_text(report)),
        ("max drawdown", f"{_usd(report.max_drawdown_usd)} ({report.max_drawdown_pct:.4f} %)"),
        ("max gross exposure", _usd(report.max_exposure_usd)),
        (
            "win rate",
            "—" if report.win_rate is None else f"{100 * report.win_rate:.1f} %",
        ),
        ("trades closed / won / open", (
            f"{report.trades_closed:,} / {report.trades_won:,} / {report.trades_open_at_end:,}"
        )),
        ("executions", f"{report.executions:,}"),
    ]  # fmt: skip
    if report.duplicate_executions:
        rows.append(("duplicate executions ignored", f"{report.duplicate_executions:,}"))
    if report.duplicate_decisions:
        rows.append(("duplicate decisions ignored", f"{report.duplicate_decisions:,}"))
    if report.orphan_closes:
        rows.append(("closes without their open", f"{report.orphan_closes:,}"))
    if report.unmarked_coins:
        rows.append(("open, no last quote", ", ".join(report.unmarked_coins)))
    for name, value in rows:
        summary.add_row(name, value)
    console.print(summary)

    decisions = Table(title=f"Risk decisions ({report.decisions:,})", title_justify="left")
    decisions.add_column("outcome")
    decisions.add_column("count", justify="right")
    decisions.add_column("share", justify="right")
    for outcome, count in report.decisions_by_outcome.items():
        share = 100.0 * count / report.decisions if report.decisions else 0.0
        decisions.add_row(outcome, f"{count:,}", f"{share:.1f} %")
    console.print(decisions)

    for title, counts in (
        ("Decisions by reason", report.decisions_by_reason),
        ("Signals dropped by the cost check", report.cost_rejections),
    ):
        if not counts:
            continue
        table = Table(title=title, title_justify="left")
        table.add_column("reason")
        table.add_column("count", justify="right")
        for reason, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            table.add_row(reason, f"{count:,}")
        console.print(table)

    if report.per_coin and top_coins > 0:
        best = sorted(report.per_coin.values(), key=lambda p: (-abs(p.pnl_net_usd), p.coin))
        coins = Table(
            title=f"Coins by |net PnL| (top {min(top_coins, len(best))} of {len(best)})",
            title_justify="left",
        )
        for name in ("coin", "closed", "won", "open", "gross", "fees", "funding", "net"):
            coins.add_column(name, justify="left" if name == "coin" else "right")
        for p in best[:top_coins]:
            coins.add_row(
                p.coin, str(p.trades_closed), str(p.trades_won), str(p.trades_open),
                _usd(p.pnl_gross_usd), _usd(p.fees_usd), _usd(p.funding_usd),
                _usd(p.pnl_net_usd),
            )  # fmt: skip
        console.print(coins)

    if report.assumptions:
        notes = Table(title="Assumptions", title_justify="left", show_header=False)
        notes.add_column("assumption")
        for line in report.assumptions:
            notes.add_row(f"• {line}")
        console.print(notes)


def _sharpe_text(report: BacktestReport) -> str:
    if report.sharpe is not None:
        return f"{report.sharpe:.2f}"
    if report.sharpe_periods < report.sharpe_min_periods:
        return f"n/a ({report.sharpe_periods} of {report.sharpe_min_periods} periods)"
    return "n/a (flat equity)"


def write_equity_png(
    report: BacktestReport, path: str | Path, *, title: str | None = None, dpi: int = 100
) -> Path:
    """Draw the equity curve over the gross-exposure curve into a PNG at ``path``.

    Uses matplotlib's Agg canvas (no display, no pyplot state). The file is written to a
    temporary name in the same folder and renamed, so ``path`` is either the old file or the
    complete new one, never a partial PNG; missing parent folders are created. Returns the
    path. Raises :class:`ChartError` naming the path when drawing or writing fails.
    """
    target = Path(path)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency
        raise ChartError(f"{target}: matplotlib is not installed ({exc})") from None

    def times(curve: Curve) -> list[datetime]:
        return [datetime.fromtimestamp(ts / 1e6, tz=UTC) for ts, _ in curve]

    fig = Figure(figsize=(10, 6), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax_eq, ax_ex = fig.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]}, squeeze=True
    )
    eq = report.equity_curve
    ax_eq.step(times(eq), [v for _, v in eq], where="post", color="tab:blue", linewidth=1.2)
    ax_eq.axhline(report.equity_usd, color="grey", linewidth=0.8, linestyle="--")
    ax_eq.set_ylabel("equity marked to market, USD")
    ax_eq.set_title(
        title
        or (
            f"Backtest {_iso(report.start_us)} → {_iso(report.end_us)} UTC · net "
            f"{_usd(report.pnl_net_usd)} USD ({report.return_pct:+.3f} %) · "
            f"Sharpe {_sharpe_text(report)} · max DD {report.max_drawdown_pct:.3f} %"
        ),
        fontsize=9,
    )
    ax_eq.ticklabel_format(axis="y", useOffset=False, style="plain")
    ax_eq.grid(True, alpha=0.3)
    ex = report.exposure_curve
    ax_ex.fill_between(
        times(ex), [v for _, v in ex], step="post", color="tab:orange", alpha=0.5, linewidth=0
    )
    ax_ex.set_ylabel("gross exposure, USD")
    ax_ex.ticklabel_format(axis="y", useOffset=False, style="plain")
    ax_ex.set_xlabel("event time (UTC)")
    ax_ex.grid(True, alpha=0.3)
    fig.autofmt_xdate()

    tmp_name: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False
        ) as fh:
            tmp_name = fh.name
            fig.savefig(fh, format="png")
        os.replace(tmp_name, target)
        tmp_name = None
    except (OSError, ValueError, RuntimeError) as exc:
        raise ChartError(f"{target}: cannot write the equity chart: {exc}") from None
    finally:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
    return target
