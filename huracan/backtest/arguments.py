"""Parsing a backtest's arguments: times, offsets, coins and ``--set`` config overrides.

Times are half open (``start <= ts < end``) and may be a :class:`~datetime.datetime` (naive =
UTC), an ISO 8601 string (without an offset it is UTC) or int epoch microseconds
(:func:`parse_time`). Every parser raises
:class:`~huracan.backtest.errors.InvalidBacktestInput` naming what it could not read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import yaml
from pydantic import BaseModel

from huracan.backtest.errors import InvalidBacktestInput
from huracan.config import HuracanConfig, build_config

if TYPE_CHECKING:
    pass

TimeInput = datetime | str | int | None

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: ``--set`` shorthands: the first part of a key → the dotted section it stands for
_KEY_ALIASES: Final[Mapping[str, str]] = {
    "risk": "engine.risk",
    "cost_model": "engine.cost_model",
    "costs": "engine.cost_model",
}


def parse_time(value: TimeInput, what: str = "time") -> int | None:
    """``value`` as int epoch microseconds (``None`` stays ``None``).

    Accepts an aware datetime, a naive one (taken as UTC), int epoch microseconds, a string of
    digits (epoch microseconds) or an ISO 8601 date or date-time (without an offset: UTC).
    Raises :class:`InvalidBacktestInput` naming ``what`` and the value otherwise.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidBacktestInput(f"{what}: {value!r} is not a time")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidBacktestInput(
                f"{what}: {value!r} is not an ISO 8601 time (e.g. 2026-01-01 or "
                "2026-01-01T10:00:00Z) or epoch microseconds"
            ) from None
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        delta = aware - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    raise InvalidBacktestInput(f"{what}: {value!r} is not a datetime, ISO string or int")


def parse_offsets(text: str) -> dict[int, int]:
    """``"P:O,P:O"`` (partition:offset pairs) as ``{partition: offset}``.

    Raises :class:`InvalidBacktestInput` for a pair without ``:``, a part that is not a
    non-negative integer, or a partition given twice.
    """
    out: dict[int, int] = {}
    for raw in text.split(","):
        pair = raw.strip()
        if not pair:
            continue
        part, sep, off = pair.partition(":")
        if not sep:
            raise InvalidBacktestInput(f"offsets: {pair!r} is not PARTITION:OFFSET")
        try:
            partition, offset = int(part), int(off)
        except ValueError:
            raise InvalidBacktestInput(
                f"offsets: {pair!r} is not PARTITION:OFFSET with integers"
            ) from None
        if partition < 0 or offset < 0:
            raise InvalidBacktestInput(f"offsets: {pair!r} has a negative number")
        if partition in out:
            raise InvalidBacktestInput(f"offsets: partition {partition} is given twice")
        out[partition] = offset
    if not out:
        raise InvalidBacktestInput(f"offsets: {text!r} names no PARTITION:OFFSET pair")
    return out


def parse_coins(text: str | Iterable[str] | None) -> list[str] | None:
    """Coins from ``"BTC,ETH"`` or an iterable, upper-cased, de-duplicated in order; ``None``
    (all coins) for ``None`` or an empty list."""
    if text is None:
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    coins = list(dict.fromkeys(p.strip().upper() for p in parts if p.strip()))
    return coins or None


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` as ``(key, value)``; the value is parsed as a YAML scalar (``150``,
    ``0.5``, ``true``, ``net``), as the ``HURACAN__…`` environment overrides are.

    Raises :class:`InvalidBacktestInput` when there is no ``=`` or no key.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InvalidBacktestInput(f"{text!r} is not KEY=VALUE (e.g. risk.max_active_trades=20)")
    raw = raw.strip()
    try:
        value = yaml.safe_load(raw) if raw else raw
    except yaml.YAMLError:
        value = raw
    return key, value


def resolve_config_key(key: str) -> str:
    """The full dotted config key of ``key``, checked against :class:`HuracanConfig`.

    ``engine.risk.x`` is taken as is; ``risk.x`` stands for ``engine.risk.x``, ``costs.x`` and
    ``cost_model.x`` for ``engine.cost_model.x``, and a field of ``engine`` alone
    (``equity_usd``) for ``engine.<field>``. Raises :class:`InvalidBacktestInput` naming the
    key and the keys that exist there when it is unknown or names a whole section.
    """
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise InvalidBacktestInput(f"empty config key {key!r}")
    top = HuracanConfig.model_fields
    if parts[0] in _KEY_ALIASES:
        parts = _KEY_ALIASES[parts[0]].split(".") + parts[1:]
    elif parts[0] not in top:
        parts = ["engine", *parts]
    model: type[BaseModel] = HuracanConfig
    for i, part in enumerate(parts):
        fields = model.model_fields
        where = ".".join(parts[:i]) or "the config"
        if part not in fields:
            raise InvalidBacktestInput(
                f"unknown config key {key!r}: {where} has no {part!r} (it has: {', '.join(fields)})"
            )
        annotation = fields[part].annotation
        is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        last = i == len(parts) - 1
        if last and is_section:
            raise InvalidBacktestInput(
                f"config key {key!r} is a section; set one of its keys "
                f"({', '.join(annotation.model_fields)})"  # type: ignore[union-attr]
            )
        if not last:
            if not is_section:
                raise InvalidBacktestInput(
                    f"unknown config key {key!r}: {'.'.join(parts[: i + 1])} is not a section"
                )
            model = annotation  # type: ignore[assignment]
    return ".".join(parts)


def override_config(
    cfg: HuracanConfig, assignments: Mapping[str, Any] | Iterable[tuple[str, Any]]
) -> HuracanConfig:
    """A copy of ``cfg`` with each ``key → value`` set, validated like a loaded config.

    Keys as :func:`resolve_config_key` takes them. Raises :class:`InvalidBacktestInput` for an
    unknown key and :class:`huracan.config.ConfigError` (naming the key) for a bad value.
    """
    pairs = assignments.items() if isinstance(assignments, Mapping) else assignments
    data: dict[str, Any] = cfg.model_dump(mode="python")
    for key, value in pairs:
        path = resolve_config_key(key).split(".")
        node = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return build_config(data, environ={}, source="overrides")
