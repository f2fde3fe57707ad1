"""Shared measurement helpers for the benchmarks (not used by tests)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: ``HURACAN_BENCH_QUICK=1``: benchmarks that support it run smaller (fewer ticks, fewer repeats)
#: for iterating on a change. Quick figures are only a direction: they are saved under
#: :func:`results_dir` in the temp folder, never in ``results/``, which holds full runs only.
QUICK = os.environ.get("HURACAN_BENCH_QUICK", "").strip() not in ("", "0")


def results_dir() -> Path:
    """Where results and profiles are saved: ``results/`` for a full run, a folder under the
    temp directory in quick mode (so a quick run never overwrites a full run's figures)."""
    if QUICK:
        out = Path(tempfile.gettempdir()) / "huracan-bench-quick"
        out.mkdir(parents=True, exist_ok=True)
        return out
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    return RESULTS_DIR


@dataclass
class LatencyStats:
    """Per-call latency figures in microseconds."""

    n: int
    p50_us: float
    p90_us: float
    p99_us: float
    max_us: float
    mean_us: float

    @classmethod
    def from_ns(cls, samples_ns: Sequence[int]) -> LatencyStats:
        s = sorted(samples_ns)
        n = len(s)

        def pct(q: float) -> float:
            return s[min(n - 1, int(q * n))] / 1000.0

        return cls(
            n=n,
            p50_us=pct(0.50),
            p90_us=pct(0.90),
            p99_us=pct(0.99),
            max_us=s[-1] / 1000.0,
            mean_us=statistics.fmean(s) / 1000.0,
        )


def time_calls(fn: Callable[[], Any], n: int, warmup: int = 1000) -> LatencyStats:
    """Call ``fn`` ``warmup`` + ``n`` times and return the latency of each of the last ``n``."""
    for _ in range(warmup):
        fn()
    samples = [0] * n
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        fn()
        samples[i] = clock() - t0
    return LatencyStats.from_ns(samples)


def median_rate(run: Callable[[], int], repeats: int = 5) -> tuple[float, list[float]]:
    """Run ``run`` (which returns the items it processed) ``repeats`` times; items/s median."""
    rates: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        items = run()
        dt = time.perf_counter() - t0
        rates.append(items / dt if dt > 0 else float("inf"))
    return statistics.median(rates), rates


@dataclass
class Report:
    """A benchmark's rows, printed as a table and saved as ``results/<name>.json``."""

    name: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, *row: Any) -> None:
        self.rows.append(list(row))

    def emit(self) -> Path:
        table = Table(title=self.name)
        for c in self.columns:
            table.add_column(c)
        for row in self.rows:
            table.add_row(*[_fmt(v) for v in row])
        console = Console()
        console.print(table)
        for note in self.notes:
            console.print(f"  {note}")
        out = results_dir() / f"{self.name}.json"
        payload = {
            "name": self.name,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **({"quick": True} if QUICK else {}),
            "machine": {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
            },
            "columns": self.columns,
            "rows": self.rows,
            "notes": self.notes,
            **({"extra": self.extra} if self.extra else {}),
        }
        out.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
        shown = out.relative_to(RESULTS_DIR.parent.parent) if not QUICK else out
        console.print(f"  saved {shown}" + (" (quick mode: not a result)" if QUICK else ""))
        return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v >= 1000:
            return f"{v:,.0f}"
        if v >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}"
    return str(v)


def _json_default(o: Any) -> Any:
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    return str(o)
