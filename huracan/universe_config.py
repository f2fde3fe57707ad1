"""The universe the config names: ``engine.universe`` inline, from a file, or today's table.

:func:`load_universe` is the one place that turns config into a
:class:`~huracan.domain.universe.Universe`; :mod:`huracan.wiring` calls it, so the worker, the
demo and every replay trade the same coins.

File formats (``engine.universe.file``, by extension):

* ``.yaml`` / ``.yml``: a list of mappings ``{symbol, sector, exchange}`` (or a mapping with
  that list under ``coins``);
* ``.csv``: a header row naming ``symbol``, ``sector`` and ``exchange`` (in any order, other
  columns ignored), one coin per row.

Errors raise :class:`~huracan.config.ConfigError` naming ``engine.universe`` and the file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from huracan.config import ConfigError, HuracanConfig
from huracan.domain.universe import Universe, UniverseError, default_universe

_COLUMNS = ("symbol", "sector", "exchange")


def load_universe(cfg: HuracanConfig) -> Universe:
    """The configured universe (module docstring); raises :class:`ConfigError`."""
    ucfg = cfg.engine.universe
    try:
        if ucfg.coins:
            rows = [(c.symbol, c.sector, c.exchange) for c in ucfg.coins]
            source = "engine.universe.coins"
        elif ucfg.file:
            rows = read_universe_file(Path(ucfg.file))
            source = f"engine.universe.file ({ucfg.file})"
        else:
            return default_universe(cfg.engine.max_coins)
        universe = Universe.from_rows(rows)
    except UniverseError as exc:
        raise ConfigError(f"engine.universe: {exc}") from None
    if not universe.coins:
        raise ConfigError(f"{source}: the universe holds no coin")
    if len(universe) > cfg.engine.max_coins:
        raise ConfigError(
            f"{source}: {len(universe)} coins exceed engine.max_coins ({cfg.engine.max_coins})"
        )
    return universe


def read_universe_file(path: Path) -> list[tuple[str, str, str]]:
    """``(symbol, sector, exchange)`` rows of a YAML or CSV file; raises :class:`ConfigError`."""
    where = f"engine.universe.file ({path})"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ConfigError(f"{where}: the header lacks column(s) {missing}")
        return _rows(reader, where)
    if suffix in (".yaml", ".yml"):
        try:
            data: Any = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}: not YAML: {exc}") from None
        if isinstance(data, Mapping):
            data = data.get("coins")
        if not isinstance(data, list) or not all(isinstance(r, Mapping) for r in data):
            raise ConfigError(f"{where}: expected a list of {{symbol, sector, exchange}}")
        return _rows(data, where)
    raise ConfigError(f"{where}: unknown format {suffix!r} (use .yaml, .yml or .csv)")


def _rows(records: Iterable[Mapping[str, Any]], where: str) -> list[tuple[str, str, str]]:
    rows = []
    for n, r in enumerate(records, 1):
        values = [r.get(c) for c in _COLUMNS]
        if not all(isinstance(v, str) and v.strip() for v in values):
            raise ConfigError(f"{where}: coin #{n} needs a non-empty {', '.join(_COLUMNS)}")
        symbol, sector, exchange = (str(v).strip() for v in values)
        rows.append((symbol, sector, exchange))
    return rows
