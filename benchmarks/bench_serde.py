"""Serde throughput for MarketTick: the engine's framings next to raw fastavro and json, one run.

Baselines: fastavro ``schemaless_writer``/``schemaless_reader`` with the same pre-parsed schema
and no framing (the floor the serde adds its header, lookup and checks to), and ``json``
``dumps``/``loads`` of the same dict. The Confluent row uses confluent-kafka's in-memory
registry client, so it measures the cached path (no HTTP after the first record).
"""

from __future__ import annotations

import io
import json
import statistics
from collections.abc import Callable
from typing import Any

import fastavro
from confluent_kafka.schema_registry import SchemaRegistryClient

from benchmarks.harness import Report, median_rate
from huracan.streams.serde import ConfluentSerde, SchemaCatalog, Serde, SingleObjectSerde

N = 20_000
REPEATS = 5


def _ticks(n: int) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"tick-BTC-binance-{i}",
            "correlation_id": f"tick-BTC-binance-{i}",
            "causation_id": None,
            "coin": "BTC",
            "exchange": "binance",
            "ts": 1_700_000_000_000_000 + i * 1000,
            "bid": 50_000.0 + i * 0.01,
            "ask": 50_000.5 + i * 0.01,
            "last": 50_000.25 + i * 0.01,
            "volume": 0.001 * (i % 100),
            "seq": i,
        }
        for i in range(n)
    ]


Pass = Callable[[], int]


def _per_record(
    encode: Callable[[dict[str, Any]], Any], decode: Callable[[Any], Any], records: list
) -> tuple[Pass, Pass, float]:
    """Passes that encode / decode every record with one call each, and the mean size."""
    encoded = [encode(r) for r in records]
    assert decode(encoded[7]) is not None

    def run_encode() -> int:
        for r in records:
            encode(r)
        return len(records)

    def run_decode() -> int:
        for b in encoded:
            decode(b)
        return len(encoded)

    return run_encode, run_decode, sum(map(len, encoded)) / len(encoded)


def _batched(serde: Serde, records: list) -> tuple[Pass, Pass, float]:
    """Passes through encode_many / decode_many."""
    encoded = serde.encode_many("MarketTick", records)
    return (
        lambda: len(serde.encode_many("MarketTick", records)),
        lambda: len(serde.decode_many(encoded, "MarketTick")),
        sum(map(len, encoded)) / len(encoded),
    )


def _round_robin(
    codecs: dict[str, tuple[Pass, Pass, float]],
) -> dict[str, tuple[float, float, float]]:
    """Median encode/decode rates per codec, passes interleaved so machine noise hits all alike."""
    enc_rates: dict[str, list[float]] = {name: [] for name in codecs}
    dec_rates: dict[str, list[float]] = {name: [] for name in codecs}
    for _ in range(REPEATS):
        for name, (run_encode, run_decode, _) in codecs.items():
            enc_rates[name].append(median_rate(run_encode, 1)[0])
            dec_rates[name].append(median_rate(run_decode, 1)[0])
    return {
        name: (statistics.median(enc_rates[name]), statistics.median(dec_rates[name]), size)
        for name, (_, _, size) in codecs.items()
    }


def main() -> int:
    records = _ticks(N)
    catalog = SchemaCatalog.load()
    schema = catalog.schema("MarketTick")
    single = SingleObjectSerde(catalog)
    confluent = ConfluentSerde(catalog, SchemaRegistryClient.new_client({"url": "mock://bench"}))
    writer_schema, reader_schema = schema.parsed, schema.wire

    def raw_encode(r: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, writer_schema, r)
        return buf.getvalue()

    def raw_decode(b: bytes) -> Any:
        return fastavro.schemaless_reader(io.BytesIO(b), reader_schema)

    results = _round_robin(
        {
            "fastavro raw": _per_record(raw_encode, raw_decode, records),
            "single-object": _per_record(
                lambda r: single.encode("MarketTick", r), single.decode, records
            ),
            "single-object batch": _batched(single, records),
            "confluent": _per_record(
                lambda r: confluent.encode("MarketTick", r), confluent.decode, records
            ),
            "json": _per_record(lambda r: json.dumps(r).encode(), json.loads, records),
        }
    )
    raw_enc, raw_dec, _ = results["fastavro raw"]
    report = Report(
        "serde",
        ["codec", "encode rec/s", "decode rec/s", "bytes/rec", "enc vs raw", "dec vs raw"],
    )
    for name, (enc, dec, size) in results.items():
        report.add(name, enc, dec, size, f"{enc / raw_enc:.2f}x", f"{dec / raw_dec:.2f}x")
    report.notes.append(
        f"MarketTick, {N} records per pass, median of {REPEATS} interleaved passes; one thread."
    )
    report.notes.append(
        "baselines: 'fastavro raw' = schemaless_writer/reader, same pre-parsed schema, no "
        "framing; 'json' = json.dumps/loads of the same dict. The serde adds the header, a "
        "fingerprint (or cached schema id) lookup, unknown-field rejection and a trailing-bytes "
        "check. 'confluent' uses the in-memory registry client (ids cached after record 1)."
    )
    report.emit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
