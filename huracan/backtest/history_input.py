"""Loading a backtest's history: ticks and cost updates from the Parquet archive or a topic.

:func:`load_ticks` yields ``MarketTick`` records merged across coins by ``(ts, coin, seq)``;
:func:`load_cost_updates` returns the recorded ``CostUpdate`` records with ``ts`` before the
end of the range (also those before its start: they set the cost book the range starts with).
Both read through :mod:`huracan.storage.history` and raise its errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from huracan.backtest.errors import InvalidBacktestInput
from huracan.config import HuracanConfig
from huracan.storage.archive_errors import NoDataInRange
from huracan.storage.history import ArchiveReader, read_archive, read_topic
from huracan.wiring import coin_sectors

if TYPE_CHECKING:
    pass
from huracan.backtest.arguments import TimeInput, parse_coins, parse_time

Source = Literal["archive", "topic"]
SOURCES: Final = ("archive", "topic")


def _check_coins_in_universe(
    cfg: HuracanConfig, coins: Sequence[str] | None, archive: Path | None = None
) -> None:
    """The engine knows the sector of the configured universe's coins only (the risk
    controller refuses a request without one), so other coins cannot be replayed."""
    if coins is None:
        return
    known = coin_sectors(cfg)
    unknown = [c for c in coins if c not in known]
    if not unknown:
        return
    shown = ", ".join(unknown[:10]) + (f", … ({len(unknown)} in all)" if len(unknown) > 10 else "")
    universe_text = f"the universe of engine.max_coins={cfg.engine.max_coins} coins"
    if archive is not None:
        raise InvalidBacktestInput(
            f"the archive {archive} holds coin(s) outside {universe_text}: {shown}; "
            "choose coins with --coins or raise engine.max_coins"
        )
    raise InvalidBacktestInput(f"unknown coin(s) {shown}: not in {universe_text}")


def _check_source(
    source: str, root: str | Path | None, start_offsets: Mapping[int, int] | None
) -> None:
    if source not in SOURCES:
        raise InvalidBacktestInput(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if source == "archive" and root is None:
        raise InvalidBacktestInput("an archive replay needs the archive root (--root)")
    if source == "archive" and start_offsets is not None:
        raise InvalidBacktestInput("start offsets (--offsets) apply to --from topic only")


def load_ticks(
    cfg: HuracanConfig,
    *,
    source: Source | str = "archive",
    root: str | Path | None = None,
    coins: str | Iterable[str] | None = None,
    start: TimeInput = None,
    end: TimeInput = None,
    start_offsets: Mapping[int, int] | None = None,
    topic_options: Mapping[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """The ticks of ``coins`` (all when ``None``) in ``[start, end)``, merged by
    ``(ts, coin, seq)``: from the archive under ``root`` or from the market-data topic of
    ``cfg`` (from ``start_offsets`` when given, else located by time with ``offsets_for_times``;
    bounded by the high watermarks taken now).

    The checks run now: :class:`InvalidBacktestInput` for a bad source, time or coin (a coin
    outside the configured universe, asked for or — without ``coins`` — archived), and the
    history readers' errors —
    :class:`~huracan.storage.archive_errors.ArchiveNotFound`,
    :class:`~huracan.storage.archive_errors.UnknownCoin` (never archived),
    :class:`~huracan.storage.archive_errors.NoDataInRange`,
    :class:`~huracan.storage.archive_errors.TopicReadError`. Iterating may raise
    :class:`~huracan.storage.archive_errors.ArchiveFileCorrupt` (naming the file) and
    ``NoDataInRange`` when nothing in range matched. ``topic_options`` are passed on to
    :func:`~huracan.storage.history.read_topic` (``idle_timeout_s``, ``consumer_factory``…).
    """
    _check_source(source, root, start_offsets)
    wanted = parse_coins(coins)
    _check_coins_in_universe(cfg, wanted)
    start_us, end_us = parse_time(start, "start"), parse_time(end, "end")
    if start_us is not None and end_us is not None and start_us >= end_us:
        raise NoDataInRange(
            f"empty time range: start {_iso(start_us)} is not before end {_iso(end_us)}"
        )
    if source == "archive":
        assert root is not None  # _check_source
        if wanted is None:
            _check_coins_in_universe(cfg, ArchiveReader(root).coins(), Path(root))
        return read_archive(root, wanted, start_us, end_us, merge=True)
    return read_topic(
        cfg,
        "MarketTick",
        start_offsets=start_offsets,
        start_time=start_us,
        end_time=end_us,
        coins=wanted,
        merge=True,
        **(topic_options or {}),
    )


def _iso(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / 1e6, tz=UTC).isoformat()


def load_cost_updates(
    cfg: HuracanConfig,
    *,
    source: Source | str = "archive",
    root: str | Path | None = None,
    coins: str | Iterable[str] | None = None,
    end: TimeInput = None,
    topic_options: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every recorded ``CostUpdate`` of ``coins`` with ``ts < end``, sorted by
    ``(ts, coin, event_id)``; empty when the history holds none (no ``_cost_update`` folder in
    the archive, nothing on the topic). Coins never updated are simply absent.

    Raises the history readers' errors other than "no data" (a corrupt file, Kafka failures).
    """
    _check_source(source, root, None)
    wanted = parse_coins(coins)
    end_us = parse_time(end, "end")
    try:
        if source == "archive":
            assert root is not None  # _check_source
            reader = ArchiveReader(root, "CostUpdate")
            archived = set(reader.coins())
            pick = sorted(archived) if wanted is None else [c for c in wanted if c in archived]
            if not pick:
                return []
            events: Iterable[dict[str, Any]] = reader.events(pick, None, end_us, merge=True)
        else:
            events = read_topic(
                cfg, "CostUpdate", end_time=end_us, coins=wanted, merge=True,
                **(topic_options or {}),
            )  # fmt: skip
        records = list(events)
    except NoDataInRange:
        return []
    records.sort(key=lambda r: (r["ts"], r["coin"], r["event_id"]))
    return records
