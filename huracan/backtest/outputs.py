"""Writing a backtest's outputs: the report, the decisions and executions, the equity chart.

Every file is written atomically (a temporary file in the same folder, renamed over the final
name), so a reader never sees a half-written one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from huracan.backtest.errors import BacktestError
from huracan.backtest.report import BacktestReport, write_equity_png

if TYPE_CHECKING:
    pass
from huracan.backtest.replay import ReplayResult

#: file names :func:`write_outputs` writes into its folder
REPORT_FILE: Final = "report.json"
DECISIONS_FILE: Final = "decisions.jsonl"
EXECUTIONS_FILE: Final = "executions.jsonl"
EQUITY_FILE: Final = "equity.png"


@dataclass(frozen=True)
class OutputPaths:
    """The files :func:`write_outputs` wrote (``equity_png`` is ``None`` when not drawn)."""

    report_json: Path
    decisions_jsonl: Path
    executions_jsonl: Path
    equity_png: Path | None


def _write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    """Write ``path`` through a temp file in its folder, fsynced and renamed over it."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
            delete=False,
        ) as fh:  # fmt: skip
            tmp = fh.name
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise BacktestError(f"{path}: cannot write: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``records`` to ``path``, one JSON object per line in the given order and with
    each record's own key order (floats as Python's shortest round-trip repr, so the records
    read back equal the originals). Atomic. Raises :class:`BacktestError` naming the path."""
    target = Path(path)

    def write(fh: Any) -> None:
        for record in records:
            fh.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False))
            fh.write("\n")

    _write_atomic(target, write)
    return target


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a file :func:`write_jsonl` wrote."""
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_outputs(
    result: ReplayResult,
    report: BacktestReport,
    out_dir: str | Path,
    *,
    chart: bool = True,
    title: str | None = None,
) -> OutputPaths:
    """Write ``report.json`` (:meth:`BacktestReport.to_json`), ``decisions.jsonl`` and
    ``executions.jsonl`` (:func:`write_jsonl`: exactly the engine's records, in order) and,
    with ``chart``, ``equity.png`` into ``out_dir`` (created if missing). Each file is
    written atomically. Raises :class:`BacktestError` (the chart: :class:`ChartError`) naming
    the file that could not be written."""
    folder = Path(out_dir)
    report_path = folder / REPORT_FILE
    text = report.to_json()
    _write_atomic(report_path, lambda fh: fh.write(text + "\n"))
    decisions = write_jsonl(folder / DECISIONS_FILE, result.decisions)
    executions = write_jsonl(folder / EXECUTIONS_FILE, result.executions)
    png = write_equity_png(report, folder / EQUITY_FILE, title=title) if chart else None
    return OutputPaths(report_path, decisions, executions, png)
