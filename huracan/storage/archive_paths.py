"""Where the archive keeps each file, and the days and coins that name them.

Layout (``root`` is any directory)::

    <root>/<coin>/YYYYMMDD.parquet                      MarketTick (the spec's data/<coin>/…)
    <root>/_executions/<coin>/YYYYMMDD.parquet          Execution
    <root>/_risk_decisions/<coin>/YYYYMMDD.parquet      RiskDecision
    <root>/_<snake_case event type>/<coin>/…            any other event type with coin and ts

The day is the UTC date of the event's ``ts``. Coin directories never start with ``_`` (a coin
must match :data:`COIN_PATTERN`), so the ``_<kind>`` folders cannot collide with a coin.
Files whose name starts with ``.`` are temporary files of a writer (or left by one that
crashed) and are ignored by the readers. Pure functions: nothing here touches the disk.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final

from huracan.storage.archive_errors import (
    ArchiveSchemaError,
)

#: what a coin (a directory name) may look like
COIN_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,63}$")
#: event types with a fixed folder; others get ``_<snake_case>``
KIND_FOLDERS: Final[Mapping[str, str]] = {
    "MarketTick": "",
    "Execution": "_executions",
    "RiskDecision": "_risk_decisions",
}
FILE_SUFFIX: Final = ".parquet"
DAY_US: Final = 86_400_000_000
_DAY_FILE = re.compile(r"^(?P<day>[0-9]{8})\.parquet$")
_EPOCH_DAY = date(1970, 1, 1)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def kind_folder(event_type: str) -> str:
    """The folder of ``event_type`` under the root: ``""`` for MarketTick, else ``_<kind>``."""
    folder = KIND_FOLDERS.get(event_type)
    return folder if folder is not None else f"_{_snake(event_type)}"


def day_of(ts_us: int) -> date:
    """The UTC date of an epoch-microsecond timestamp."""
    return _EPOCH_DAY + timedelta(days=ts_us // DAY_US)


def day_start_us(day: date) -> int:
    """Epoch microseconds of ``day`` 00:00:00 UTC."""
    return (day - _EPOCH_DAY).days * DAY_US


def file_name(day: date) -> str:
    return f"{day:%Y%m%d}{FILE_SUFFIX}"


def parse_file_name(name: str) -> date | None:
    """The day of an archive file name ``YYYYMMDD.parquet``; None for any other name."""
    m = _DAY_FILE.match(name)
    if m is None:
        return None
    try:
        return datetime.strptime(m["day"], "%Y%m%d").replace(tzinfo=UTC).date()
    except ValueError:
        return None


def check_coin(coin: object) -> str:
    """``coin`` if it is a safe directory name (:data:`COIN_PATTERN`), else
    :class:`ArchiveSchemaError`."""
    if not isinstance(coin, str) or not COIN_PATTERN.match(coin) or ".." in coin:
        raise ArchiveSchemaError(f"coin {coin!r} is not a valid archive directory name")
    return coin


def kind_dir(root: str | Path, event_type: str) -> Path:
    """The folder holding ``event_type``'s coin folders under ``root``."""
    folder = kind_folder(event_type)
    return Path(root) / folder if folder else Path(root)


def archive_path(root: str | Path, event_type: str, coin: str, day: date) -> Path:
    """``<root>[/_<kind>]/<coin>/YYYYMMDD.parquet``."""
    return kind_dir(root, event_type) / check_coin(coin) / file_name(day)


def to_micros(value: datetime | int | None, what: str = "time") -> int | None:
    """An aware datetime or int epoch microseconds as int microseconds (None stays None).

    Raises :class:`ArchiveSchemaError` for a naive datetime (ambiguous) or another type.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ArchiveSchemaError(f"{what} {value!r} is a naive datetime; give it a timezone")
        delta = value - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ArchiveSchemaError(f"{what} must be a datetime or int microseconds, got {value!r}")
