"""Model registry: lookup latency of both stores, next to a raw baseline measured in the same run.

Baselines: for PostgreSQL, the same primary-key SELECT through one plain psycopg connection
(no pool, no validation); for files, ``json.loads`` of the record file. Also the cost of the
sha256 check in ``get_model_path`` against hashing the same file with ``hashlib`` directly.
Needs the PostgreSQL of ``HURACAN_POSTGRES_DSN`` (default: the local launcher's); it works in a
schema of its own and drops it at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks.harness import Report, median_rate, time_calls
from huracan.config import DEFAULT_POSTGRES_DSN
from huracan.storage import ModelRegistry

COINS = 100
VERSIONS = 4
N = 2000


def _populate(registry: ModelRegistry, model_file: Path) -> None:
    for c in range(COINS):
        for v in range(1, VERSIONS + 1):
            registry.register_model(
                coin=f"C{c:03d}",
                version=v,
                sharpe_ratio=(c * 7 + v * 13) % 50 / 10,
                win_rate=0.5,
                regime="trending" if v % 2 else "ranging",
                performance_metrics={"avg_return": 0.01 * v},
                model_path=model_file,
                is_active=v != VERSIONS,
            )


def main() -> int:
    dsn = os.environ.get("HURACAN_POSTGRES_DSN") or DEFAULT_POSTGRES_DSN
    schema = f"bench_registry_{uuid.uuid4().hex[:8]}"
    report = Report(
        "registry",
        ["store", "operation", "p50 µs", "p99 µs", "ops/s", "baseline", "baseline p50 µs"],
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_file = root / "model.pkl"
        model_file.write_bytes(os.urandom(1 << 20))  # a 1 MiB model
        small_file = root / "small.pkl"
        small_file.write_bytes(os.urandom(1 << 10))
        pg = ModelRegistry(root, metadata_db=dsn, schema=schema)
        files = ModelRegistry(root, metadata_db=None)
        try:
            for name, registry in (("postgres", pg), ("file", files)):
                counter = iter(range(10**9))

                def register_one(reg: ModelRegistry = registry, it: object = counter) -> int:
                    for _ in range(200):
                        reg.register_model(
                            coin="REG",
                            version=next(it) + 1,  # type: ignore[call-overload]
                            sharpe_ratio=1.0,
                            win_rate=0.5,
                            model_path=small_file,
                        )
                    return 200

                rate, _ = median_rate(register_one, repeats=3)
                report.add(name, "register_model (1 KiB file)", "", "", rate, "", "")
                _populate(registry, model_file)

            with psycopg.connect(dsn) as raw:
                query = sql.SQL("SELECT * FROM {} WHERE coin = %s AND version = %s").format(
                    sql.Identifier(schema, "models")
                )
                raw_pg = time_calls(
                    lambda: raw.execute(query, ("C042", 2)).fetchone(), N, warmup=200
                )
            record = root / "registry" / "C042" / "v2.json"
            raw_file = time_calls(lambda: json.loads(record.read_bytes()), N, warmup=200)
            raw_hash = time_calls(
                lambda: hashlib.file_digest(model_file.open("rb"), "sha256"), 200, warmup=20
            )

            for name, registry, base_name, base in (
                ("postgres", pg, "psycopg SELECT, 1 conn", raw_pg),
                ("file", files, "json.loads(file)", raw_file),
            ):
                get = time_calls(lambda r=registry: r.get_model_metadata("C042", 2), N, 200)
                latest = time_calls(lambda r=registry: r.get_model_metadata("C042"), N, 200)
                active = time_calls(
                    lambda r=registry: r.get_active_models(coin="C042", limit=5), N, 200
                )
                ranked = time_calls(
                    lambda r=registry: r.get_active_models(regime="trending", limit=10), 50, 5
                )
                path = time_calls(lambda r=registry: r.get_model_path("C042", 2), 200, 20)
                for op, stats, bname, bstats in (
                    ("get_model_metadata(coin, v)", get, base_name, base),
                    ("get_model_metadata(coin)", latest, "", None),
                    ("get_active_models(coin, limit=5)", active, "", None),
                    (f"get_active_models(all {COINS} coins)", ranked, "", None),
                    ("get_model_path (1 MiB sha256)", path, "hashlib.file_digest", raw_hash),
                ):
                    report.add(
                        name,
                        op,
                        stats.p50_us,
                        stats.p99_us,
                        1e6 / stats.mean_us,
                        bname,
                        bstats.p50_us if bstats else "",
                    )
        finally:
            pg.close()
            files.close()
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
    report.notes.append(
        f"{COINS} coins x {VERSIONS} versions + 600 registrations per store; "
        "file store with fsync on; PostgreSQL on loopback, pool of 1..10."
    )
    report.emit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
