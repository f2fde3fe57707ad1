"""Parquet archive throughput: the writer and the history readers next to raw pyarrow, one run.

Data: 1,000,000 MarketTicks for 400 coins from :class:`~huracan.simulate.MarketSimulator`
(seed 7), written by :class:`~huracan.storage.archive.ArchiveWriter` into 400 files
(``<coin>/YYYYMMDD.parquet``) in a temporary directory.

Baselines (same data, same run):

* write: ``pa.Table.from_pylist`` + one plain ``pq.write_table`` per coin file — no sort,
  no de-duplication, no metadata, no fsync, no rename (what the writer adds for atomicity
  and idempotence);
* read: ``pq.read_table(root)`` of the whole directory (multi-threaded dataset scan: the
  limit for getting the rows into Arrow), and ``Table.to_pylist()`` of that table for dicts
  (which yields datetimes, not int micros);
* slice: ``pq.read_table(root, filters=[ts in range])`` for a 10 % time slice.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.harness import Report
from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator
from huracan.storage.archive import ArchiveWriter, archive_kind
from huracan.storage.history import read_archive, read_archive_table

N = 1_000_000
COINS = 400
REPEATS = 3


def _rate(run: Callable[[], int], repeats: int = REPEATS) -> tuple[float, float]:
    """(median rows/s, median seconds) over ``repeats`` runs of ``run`` (returns rows)."""
    rates, secs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows = run()
        dt = time.perf_counter() - t0
        rates.append(rows / dt)
        secs.append(dt)
    return statistics.median(rates), statistics.median(secs)


def main() -> int:
    started = time.perf_counter()
    ticks = list(MarketSimulator(universe(COINS), seed=7).ticks(N))
    kind = archive_kind("MarketTick")
    workdir = Path(tempfile.mkdtemp(prefix="huracan-bench-archive-"))
    report = Report("archive", ["operation", "rows/s (median)", "seconds", "vs baseline"])
    try:
        # --- write ---------------------------------------------------------------------------
        runs = iter(range(100))

        def write_archive() -> int:
            root = workdir / f"w{next(runs)}"
            ArchiveWriter(root).write(ticks)
            return N

        def write_plain() -> int:
            root = workdir / f"p{next(runs)}"
            table = pa.Table.from_pylist(ticks, schema=kind.arrow)
            table = table.append_column("__day", pc.cast(table.column("ts"), pa.date32()))
            table = table.sort_by([("coin", "ascending"), ("__day", "ascending")])
            groups = table.group_by(["coin", "__day"], use_threads=False).aggregate(
                [("ts", "count")]
            )
            start = 0
            for coin, day, n in zip(
                groups.column("coin").to_pylist(),
                groups.column("__day").to_pylist(),
                groups.column("ts_count").to_pylist(),
                strict=True,
            ):
                (root / coin).mkdir(parents=True, exist_ok=True)
                part = table.slice(start, n).drop_columns(["__day"])
                pq.write_table(part, root / coin / f"{day:%Y%m%d}.parquet")
                start += n
            return N

        plain_w, plain_w_s = _rate(write_plain)
        arch_w, arch_w_s = _rate(write_archive)
        root = max(workdir.glob("w*"), key=lambda p: int(p.name[1:]))
        for extra in workdir.iterdir():
            if extra != root:
                shutil.rmtree(extra)
        files = sum(1 for _ in root.rglob("*.parquet"))

        # --- rewrite of already-archived rows (a re-archive after a crash) ---------------------
        rewrite, rewrite_s = _rate(
            lambda: sum(f.rows - f.added for f in ArchiveWriter(root).write(ticks)), repeats=1
        )

        # --- read ----------------------------------------------------------------------------
        raw, raw_s = _rate(lambda: pq.read_table(root).num_rows)
        tables, tables_s = _rate(lambda: read_archive_table(root).num_rows)
        merged, merged_s = _rate(lambda: read_archive_table(root, merge=True).num_rows)
        raw_dicts, raw_dicts_s = _rate(lambda: len(pq.read_table(root).to_pylist()), repeats=1)

        def count(it: Any) -> int:
            n = 0
            for _ in it:
                n += 1
            return n

        dicts, dicts_s = _rate(lambda: count(read_archive(root)))
        dicts_m, dicts_m_s = _rate(lambda: count(read_archive(root, merge=True)))

        # --- a 10 % time slice -----------------------------------------------------------------
        lo, hi = ticks[N // 2]["ts"], ticks[N // 2 + N // 10]["ts"]
        ts_type = kind.arrow.field("ts").type
        raw_slice, raw_slice_s = _rate(
            lambda: (
                pq.read_table(
                    root,
                    filters=[
                        ("ts", ">=", pa.scalar(lo, ts_type)),
                        ("ts", "<", pa.scalar(hi, ts_type)),
                    ],
                ).num_rows
            )
        )
        arch_slice, arch_slice_s = _rate(
            lambda: read_archive_table(root, start=lo, end=hi, merge=True).num_rows
        )
        assert read_archive_table(root, start=lo, end=hi).num_rows == N // 10

        report.add("write: plain pq.write_table per coin (baseline)", plain_w, plain_w_s, "1.00x")
        report.add(
            "write: ArchiveWriter (sorted, atomic, fsync)",
            arch_w,
            arch_w_s,
            f"{arch_w / plain_w:.2f}x",
        )
        report.add("re-write the same rows (all duplicates, 1 run)", rewrite, rewrite_s, "")
        report.add("read: pq.read_table(root) (the limit)", raw, raw_s, "1.00x")
        report.add("read: read_archive_table per coin", tables, tables_s, f"{tables / raw:.2f}x")
        report.add("read: read_archive_table merged", merged, merged_s, f"{merged / raw:.2f}x")
        report.add(
            "dicts: pq.read_table().to_pylist() (baseline, 1 run)", raw_dicts, raw_dicts_s, "1.00x"
        )
        report.add("dicts: read_archive per coin", dicts, dicts_s, f"{dicts / raw_dicts:.2f}x")
        report.add("dicts: read_archive merged", dicts_m, dicts_m_s, f"{dicts_m / raw_dicts:.2f}x")
        report.add("10% slice: pq.read_table(filters) (baseline)", raw_slice, raw_slice_s, "1.00x")
        report.add(
            "10% slice: read_archive_table(start, end) merged",
            arch_slice,
            arch_slice_s,
            f"{arch_slice / raw_slice:.2f}x",
        )
        report.notes.append(
            f"{N:,} MarketTicks, {COINS} coins, {files} files; median of {REPEATS} runs each; "
            "slice rows/s counts the rows returned."
        )
        report.notes.append(
            "dicts are shaped like the serde's output (ts as int micros); to_pylist gives "
            "datetimes. 'merged' = one stream in (ts, coin, seq) order."
        )
        report.notes.append(f"total benchmark time {time.perf_counter() - started:.0f} s")
        report.extra = {"rows": N, "coins": COINS, "files": files}
        report.emit()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
