"""The Parquet archive and its readers, on a temporary directory (no services).

Kafka-facing parts (``archive_topic``, ``read_topic``) are in tests/integration.
"""

from __future__ import annotations

import json
import os
import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from huracan.domain.universe import universe
from huracan.simulate import MarketSimulator
from huracan.storage.archive import (
    FORMAT_VERSION,
    ArchiveWriter,
    archive_kind,
    archive_path,
    arrow_schema,
    merge_intervals,
    read_metadata,
)
from huracan.storage.archive_errors import (
    ArchiveError,
    ArchiveFileCorrupt,
    ArchiveNotFound,
    ArchiveSchemaError,
    ArchiveWriteError,
    NoDataInRange,
    UnknownCoin,
)
from huracan.storage.history import (
    ArchiveReader,
    read_archive,
    read_archive_table,
    read_archive_tables,
)
from huracan.streams.serde import SchemaCatalog, SingleObjectSerde

#: 2026-01-02T00:00:00Z in epoch microseconds
MIDNIGHT = 1_767_312_000_000_000
COINS = 5


def make_ticks(n: int = 600, *, coins: int = COINS, seed: int = 3, start: int | None = None):
    """``n`` simulated ticks, 1 ms apart, starting 300 ms before midnight (so they span two
    UTC days) unless ``start`` says otherwise."""
    sim = MarketSimulator(
        universe(coins),
        seed=seed,
        start_ts_us=MIDNIGHT - 300_000 if start is None else start,
        rate=1000.0,
    )
    return list(sim.ticks(n))


def by_merge_key(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: (r["ts"], r["coin"], r["seq"]))


def execution(i: int, coin: str = "BTC", ts: int = MIDNIGHT + 1_000, **over: Any) -> dict:
    record = {
        "event_id": f"exec:{coin}:{i}",
        "correlation_id": f"tick:{coin}:{i}",
        "causation_id": f"req:{coin}:{i}",
        "execution_id": f"exec:{coin}:{i}",
        "trade_id": f"trade:{coin}:{i}",
        "request_id": f"req:{coin}:{i}",
        "coin": coin,
        "side": "BUY" if i % 2 else "SELL",
        "direction": "LONG",
        "size": 0.5 + i,
        "size_usd": 1000.0 * (i + 1),
        "price": 50_000.0 + i,
        "fees_usd": 0.25,
        "exchange": "binance",
        "sector": None if i % 3 == 0 else "L1",
        "ts": ts + i,
        "action": "OPEN" if i % 2 else "CLOSE",
        "liquidity": "TAKER",
        "realized_pnl_usd": None if i % 2 else 12.5 * i,
    }
    record.update(over)
    return record


def decision(i: int, coin: str = "ETH", ts: int = MIDNIGHT + 5_000) -> dict:
    return {
        "event_id": f"decision:{coin}:{i}",
        "correlation_id": f"tick:{coin}:{i}",
        "causation_id": None,
        "request_id": f"req:{coin}:{i}",
        "coin": coin,
        "exchange": "coinbase",
        "sector": "L1",
        "direction": "SHORT",
        "intent": "OPEN",
        "trade_id": None,
        "ts": ts + i,
        "decision": ["APPROVE", "THROTTLE", "BLOCK"][i % 3],
        "reason_code": "ok",
        "reason": "within limits",
        "limit": None,
        "requested_size_usd": 1000.0,
        "approved_size_usd": 1000.0 if i % 3 == 0 else 0.0,
        "max_approvable_size_usd": 2000.0,
        "max_allowed_size_usd": 3000.0,
        "risk_reducing": i % 2 == 0,
        "global_exposure_pct": 10.0,
        "coin_exposure_pct": 1.0,
        "sector_exposure_pct": 2.0,
        "exchange_exposure_pct": 3.0,
        "global_exposure_after_pct": 11.0,
        "coin_exposure_after_pct": 2.0,
        "sector_exposure_after_pct": 3.0,
        "exchange_exposure_after_pct": 4.0,
        "active_trades": i,
        "in_flight_trades": i + 1,
    }


def as_decoded(event_type: str, records: list[dict]) -> list[dict]:
    """``records`` as the serde decodes them (fields a record omits take their defaults)."""
    serde = SingleObjectSerde(SchemaCatalog.load())
    return [serde.decode(serde.encode(event_type, r)) for r in records]


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# --- round trip and layout -----------------------------------------------------------------


def test_write_when_ticks_then_read_back_equals_input(tmp_path: Path) -> None:
    # arrange
    ticks = make_ticks()

    # act
    ArchiveWriter(tmp_path).write(ticks)
    back = list(read_archive(tmp_path, merge=True))

    # assert: same dicts, same values and types (ts as int micros, causation_id None)
    assert back == by_merge_key(ticks)
    assert all(type(r["ts"]) is int and type(r["seq"]) is int for r in back)


def test_write_when_ticks_cross_midnight_then_one_file_per_coin_and_utc_day(
    tmp_path: Path,
) -> None:
    # arrange
    ticks = make_ticks()
    coins = sorted({t["coin"] for t in ticks})

    # act
    written = ArchiveWriter(tmp_path).write(ticks)

    # assert
    expected = sorted(
        tmp_path / c / d for c in coins for d in ("20260101.parquet", "20260102.parquet")
    )
    assert files_under(tmp_path) == expected
    assert sorted(f.path for f in written) == expected
    for f in written:
        day_start = int(datetime(f.day.year, f.day.month, f.day.day, tzinfo=UTC).timestamp())
        ts = pq.read_table(f.path).column("ts").cast(pa.int64()).to_pylist()
        assert all(day_start * 1_000_000 <= t < (day_start + 86_400) * 1_000_000 for t in ts)
    assert sum(f.rows for f in written) == len(ticks)


def test_read_when_not_merged_then_coin_by_coin_in_event_time_order(tmp_path: Path) -> None:
    # arrange
    ticks = make_ticks()
    ArchiveWriter(tmp_path).write(ticks)

    # act
    back = list(read_archive(tmp_path))

    # assert: coins in sorted order, each coin's ticks in (ts, seq) order
    coins_in_order = list(dict.fromkeys(r["coin"] for r in back))
    assert coins_in_order == sorted(coins_in_order)
    for coin in coins_in_order:
        mine = [r for r in back if r["coin"] == coin]
        assert mine == sorted((t for t in ticks if t["coin"] == coin), key=lambda t: t["seq"])


def test_read_when_merged_then_global_order_by_ts_coin_seq_with_ties(tmp_path: Path) -> None:
    # arrange: two coins with identical timestamps, so the coin breaks the tie
    ticks = make_ticks(200, coins=1)
    twins = [{**t, "coin": "ETH", "event_id": f"tick:ETH:{t['seq']}"} for t in ticks]
    ArchiveWriter(tmp_path).write(twins + ticks)

    # act
    back = list(read_archive(tmp_path, merge=True))

    # assert
    assert back == by_merge_key(ticks + twins)
    assert [r["coin"] for r in back[:2]] == ["BTC", "ETH"]


def test_arrow_schema_when_market_tick_then_explicit_types_and_nullability() -> None:
    # act
    schema = arrow_schema(SchemaCatalog.load().schema("MarketTick"))

    # assert
    assert schema == pa.schema(
        [
            pa.field("event_id", pa.string(), nullable=False),
            pa.field("correlation_id", pa.string(), nullable=False),
            pa.field("causation_id", pa.string(), nullable=True),
            pa.field("coin", pa.string(), nullable=False),
            pa.field("exchange", pa.string(), nullable=False),
            pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("bid", pa.float64(), nullable=False),
            pa.field("ask", pa.float64(), nullable=False),
            pa.field("last", pa.float64(), nullable=False),
            pa.field("volume", pa.float64(), nullable=False),
            pa.field("seq", pa.int64(), nullable=False),
        ]
    )


def test_arrow_schema_when_execution_and_decision_then_enums_strings_and_unions_nullable() -> None:
    # act
    execution_schema = archive_kind("Execution").arrow
    decision_schema = archive_kind("RiskDecision").arrow

    # assert
    assert execution_schema.field("side").type == pa.string()
    assert not execution_schema.field("side").nullable
    assert execution_schema.field("realized_pnl_usd").type == pa.float64()
    assert execution_schema.field("realized_pnl_usd").nullable
    assert decision_schema.field("active_trades").type == pa.int32()
    assert decision_schema.field("risk_reducing").type == pa.bool_()
    assert decision_schema.field("limit").nullable


def test_archive_kind_when_event_type_has_no_coin_then_schema_error() -> None:
    # act / assert: dead letters are keyed by the original key, not by coin
    with pytest.raises(ArchiveSchemaError, match="coin"):
        ArchiveWriter("unused", "DeadLetter")


def test_write_when_row_group_size_small_then_many_row_groups_with_ts_statistics(
    tmp_path: Path,
) -> None:
    # arrange
    ticks = make_ticks(500, coins=1, start=MIDNIGHT)

    # act
    [written] = ArchiveWriter(tmp_path, row_group_size=100).write(ticks)

    # assert
    md = pq.ParquetFile(written.path).metadata
    assert md.num_row_groups == 5
    ts_col = md.schema.to_arrow_schema().get_field_index("ts")
    stats = [md.row_group(g).column(ts_col).statistics for g in range(5)]
    assert all(s.has_min_max for s in stats)
    assert [s.min_raw for s in stats] == [ticks[i]["ts"] for i in (0, 100, 200, 300, 400)]
    assert md.row_group(0).sorting_columns  # the sort order is declared


def test_write_when_executions_and_decisions_then_kind_folders_and_round_trip(
    tmp_path: Path,
) -> None:
    # arrange
    executions = [execution(i) for i in range(7)]
    decisions = [decision(i) for i in range(6)]

    # act
    ArchiveWriter(tmp_path, "Execution").write(executions)
    ArchiveWriter(tmp_path, "RiskDecision").write(decisions)

    # assert
    assert files_under(tmp_path) == [
        tmp_path / "_executions" / "BTC" / "20260102.parquet",
        tmp_path / "_risk_decisions" / "ETH" / "20260102.parquet",
    ]
    assert list(read_archive(tmp_path, event_type="Execution")) == as_decoded(
        "Execution", executions
    )
    assert list(read_archive(tmp_path, event_type="RiskDecision")) == as_decoded(
        "RiskDecision", decisions
    )
    # the kind folders are not coins of the tick archive
    with pytest.raises(NoDataInRange):
        read_archive(tmp_path)


# --- atomicity -----------------------------------------------------------------------------


def test_write_when_replace_fails_then_no_file_under_final_name_and_no_temp_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # arrange: the crash happens after the temporary file is written, at the rename
    ticks = make_ticks(50, coins=1, start=MIDNIGHT)

    def crash(src: object, dst: object) -> None:
        assert Path(str(src)).stat().st_size > 0  # the temp file was complete
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)

    # act
    with pytest.raises(ArchiveWriteError) as err:
        ArchiveWriter(tmp_path).write(ticks)

    # assert
    final = archive_path(tmp_path, "MarketTick", "BTC", datetime(2026, 1, 2).date())
    assert err.value.path == final
    assert not final.exists()
    assert list(final.parent.iterdir()) == []


def test_write_when_replace_fails_on_merge_then_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # arrange
    ticks = make_ticks(100, coins=1, start=MIDNIGHT)
    [first] = ArchiveWriter(tmp_path).write(ticks[:60])
    before = first.path.read_bytes()
    monkeypatch.setattr(os, "replace", lambda *_: (_ for _ in ()).throw(OSError(5, "EIO")))

    # act
    with pytest.raises(ArchiveWriteError):
        ArchiveWriter(tmp_path).write(ticks[60:])

    # assert
    assert first.path.read_bytes() == before
    assert list(first.path.parent.iterdir()) == [first.path]
    monkeypatch.undo()
    assert list(read_archive(tmp_path)) == ticks[:60]


def test_write_when_parquet_writer_fails_midway_then_temp_removed_and_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # arrange
    ticks = make_ticks(100, coins=1, start=MIDNIGHT)
    [first] = ArchiveWriter(tmp_path).write(ticks[:50])
    before = first.path.read_bytes()

    def half_written(table: pa.Table, where: Any, **kwargs: Any) -> None:
        where.write(b"PAR1 half a file")
        raise pa.ArrowIOError("disk went away")

    monkeypatch.setattr(pq, "write_table", half_written)

    # act
    with pytest.raises(ArchiveWriteError, match="disk went away"):
        ArchiveWriter(tmp_path).write(ticks[50:])

    # assert
    assert first.path.read_bytes() == before
    assert list(first.path.parent.iterdir()) == [first.path]


def test_read_when_temp_file_left_by_crash_then_ignored(tmp_path: Path) -> None:
    # arrange: a crash between write and rename leaves a dot-file behind
    ticks = make_ticks(40, coins=1, start=MIDNIGHT)
    [f] = ArchiveWriter(tmp_path).write(ticks)
    (f.path.parent / f".{f.path.name}.deadbeef.tmp").write_bytes(b"PAR1 partial")

    # act
    back = list(read_archive(tmp_path))

    # assert
    assert back == ticks
    assert pq.read_table(tmp_path).num_rows == len(ticks)  # pyarrow skips dot-files too


# --- merge and de-duplication --------------------------------------------------------------


def test_write_when_same_events_archived_twice_then_one_copy_and_file_untouched(
    tmp_path: Path,
) -> None:
    # arrange
    ticks = make_ticks()
    writer = ArchiveWriter(tmp_path)
    writer.write(ticks, source_topic="md", offsets=[(0, i) for i in range(len(ticks))])
    snapshot = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files_under(tmp_path)}

    # act: the log is re-archived after a crash
    again = writer.write(ticks, source_topic="md", offsets=[(0, i) for i in range(len(ticks))])

    # assert
    assert all(f.added == 0 for f in again)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files_under(tmp_path)} == snapshot
    assert list(read_archive(tmp_path, merge=True)) == by_merge_key(ticks)


def test_write_when_overlapping_batches_then_union_sorted_without_duplicates(
    tmp_path: Path,
) -> None:
    # arrange
    ticks = make_ticks()
    writer = ArchiveWriter(tmp_path)
    batches = [ticks[400:], ticks[:250], ticks[200:450], ticks[100:101] * 3]

    # act
    added = [sum(f.added for f in writer.write(b)) for b in batches]

    # assert
    assert added == [200, 250, 150, 0]
    assert list(read_archive(tmp_path, merge=True)) == by_merge_key(ticks)
    for f in files_under(tmp_path):
        table = pq.read_table(f)
        ts = table.column("ts").cast(pa.int64()).to_pylist()
        assert ts == sorted(ts)
        assert len(table.column("event_id").unique()) == table.num_rows


def test_write_when_event_id_reappears_with_other_content_then_first_archived_wins(
    tmp_path: Path,
) -> None:
    # arrange
    ticks = make_ticks(10, coins=1, start=MIDNIGHT)
    writer = ArchiveWriter(tmp_path)
    writer.write(ticks)
    changed = {**ticks[3], "bid": -1.0}

    # act
    [f] = writer.write([changed])

    # assert
    assert f.added == 0
    assert list(read_archive(tmp_path)) == ticks


def test_write_when_threads_write_one_coin_day_concurrently_then_no_row_lost(
    tmp_path: Path,
) -> None:
    # arrange
    ticks = make_ticks(400, coins=1, start=MIDNIGHT)
    chunks = [ticks[i::8] for i in range(8)]
    errors: list[BaseException] = []

    def write(chunk: list[dict]) -> None:
        try:
            ArchiveWriter(tmp_path).write(chunk)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(c,)) for c in chunks]

    # act
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    # assert
    assert errors == []
    assert list(read_archive(tmp_path)) == ticks


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cuts=st.lists(st.tuples(st.integers(0, 120), st.integers(0, 120)), min_size=1, max_size=6),
    seed=st.integers(0, 10_000),
)
def test_write_when_any_batches_with_repeats_then_archive_is_sorted_union(
    tmp_path_factory: pytest.TempPathFactory, cuts: list[tuple[int, int]], seed: int
) -> None:
    # arrange
    root = tmp_path_factory.mktemp("prop")
    ticks = make_ticks(120, coins=3, seed=seed)
    rng = random.Random(seed)
    batches = []
    for a, b in cuts:
        batch = ticks[min(a, b) : max(a, b)]
        rng.shuffle(batch)
        batches.append(batch)
    writer = ArchiveWriter(root, row_group_size=16)

    # act
    for batch in batches:
        writer.write(batch)

    # assert
    union = {t["event_id"]: t for batch in batches for t in batch}
    if not union:
        with pytest.raises(NoDataInRange):
            read_archive(root)
        return
    assert list(read_archive(root, merge=True)) == by_merge_key(list(union.values()))


# --- metadata ------------------------------------------------------------------------------


def test_metadata_when_written_from_topic_offsets_then_records_source_schema_and_rows(
    tmp_path: Path,
) -> None:
    # arrange
    ticks = make_ticks(30, coins=1, start=MIDNIGHT)
    offsets = [(i % 3, 100 + i) for i in range(30)]
    schema = SchemaCatalog.load().schema("MarketTick")

    # act
    [f] = ArchiveWriter(tmp_path).write(ticks, source_topic="huracan.market-data", offsets=offsets)
    meta = read_metadata(f.path)
    raw = pq.read_metadata(f.path).metadata

    # assert
    assert meta.event_type == "MarketTick"
    assert meta.schema_full_name == "io.huracan.events.v1.MarketTick"
    assert meta.schema_fingerprint == schema.fingerprint.hex()
    assert meta.schema_version == schema.version
    assert meta.rows == 30 == pq.read_metadata(f.path).num_rows
    assert (meta.coin, meta.day.isoformat()) == ("BTC", "2026-01-02")
    assert (meta.ts_min, meta.ts_max) == (ticks[0]["ts"], ticks[-1]["ts"])
    assert meta.sort_key == ("ts", "seq")
    assert meta.format_version == FORMAT_VERSION
    assert meta.writer.startswith("huracan-archive/")
    assert meta.source_topics == ["huracan.market-data"]
    assert meta.sources == {
        "huracan.market-data": {0: ((100, 127),), 1: ((101, 128),), 2: ((102, 129),)}
    }
    # plain strings in the footer, readable by any Parquet tool
    assert raw[b"huracan.event_type"] == b"MarketTick"
    assert json.loads(raw[b"huracan.schema.avro"])["name"] == "MarketTick"
    assert json.loads(raw[b"huracan.source_offsets"]) == {
        "huracan.market-data": {"0": [[100, 127]], "1": [[101, 128]], "2": [[102, 129]]}
    }


def test_metadata_when_rewritten_with_new_offsets_then_intervals_merged(tmp_path: Path) -> None:
    # arrange
    ticks = make_ticks(40, coins=1, start=MIDNIGHT)
    writer = ArchiveWriter(tmp_path)
    writer.write(ticks[:10], source_topic="md", offsets=[(0, i) for i in range(10)])
    writer.write(ticks[20:30], source_topic="md", offsets=[(0, i) for i in range(20, 30)])

    # act
    [f] = writer.write(ticks[5:25], source_topic="md", offsets=[(0, i) for i in range(5, 25)])

    # assert
    meta = read_metadata(f.path)
    assert meta.sources == {"md": {0: ((0, 29),)}}
    assert meta.rows == 30


def test_merge_intervals_when_overlapping_adjacent_and_apart_then_joined_where_touching() -> None:
    assert merge_intervals([(5, 9), (0, 3), (4, 4), (12, 20), (15, 16)]) == ((0, 9), (12, 20))


# --- other readers -------------------------------------------------------------------------


@pytest.fixture
def one_file(tmp_path: Path) -> tuple[Path, list[dict]]:
    ticks = make_ticks(300, coins=1, start=MIDNIGHT)
    [f] = ArchiveWriter(tmp_path, row_group_size=64).write(ticks)
    return f.path, ticks


def test_file_when_read_by_pyarrow_then_same_rows(one_file: tuple[Path, list[dict]]) -> None:
    path, ticks = one_file
    table = pq.read_table(path)
    assert table.num_rows == len(ticks)
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert table.column("event_id").to_pylist() == [t["event_id"] for t in ticks]


def test_file_when_read_by_duckdb_then_same_rows(one_file: tuple[Path, list[dict]]) -> None:
    path, ticks = one_file
    [(count, first_ts, total)] = duckdb.sql(
        f"select count(*), min(epoch_us(ts)), sum(seq) from '{path}'"
    ).fetchall()
    assert count == len(ticks)
    assert first_ts == ticks[0]["ts"]
    assert total == sum(t["seq"] for t in ticks)


def test_file_when_read_by_polars_then_same_rows(one_file: tuple[Path, list[dict]]) -> None:
    path, ticks = one_file
    frame = pl.read_parquet(path)
    assert frame.height == len(ticks)
    assert frame["bid"].to_list() == [t["bid"] for t in ticks]
    assert str(frame.schema["ts"]) == "Datetime(time_unit='us', time_zone='UTC')"


def test_file_when_read_by_pandas_then_same_rows(one_file: tuple[Path, list[dict]]) -> None:
    path, ticks = one_file
    frame = pd.read_parquet(path)
    assert len(frame) == len(ticks)
    assert frame["seq"].tolist() == [t["seq"] for t in ticks]
    assert str(frame["ts"].dt.tz) == "UTC"
    assert frame["causation_id"].isna().all()


def test_read_when_range_given_as_datetime_or_micros_then_half_open_slice(tmp_path: Path) -> None:
    # arrange
    ticks = make_ticks()
    ArchiveWriter(tmp_path, row_group_size=32).write(ticks)
    start_us, end_us = ticks[100]["ts"], ticks[500]["ts"]
    start_dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=start_us)

    # act
    by_int = list(read_archive(tmp_path, start=start_us, end=end_us, merge=True))
    by_datetime = list(read_archive(tmp_path, start=start_dt, end=end_us, merge=True))

    # assert
    assert by_int == by_merge_key(ticks[100:500])
    assert by_datetime == by_int


def test_read_when_coins_given_then_only_those_coins(tmp_path: Path) -> None:
    # arrange
    ticks = make_ticks()
    ArchiveWriter(tmp_path).write(ticks)

    # act
    back = list(read_archive(tmp_path, coins=["ETH", "BTC"], merge=True))
    one = list(read_archive(tmp_path, coins="SOL"))

    # assert
    assert back == by_merge_key([t for t in ticks if t["coin"] in {"BTC", "ETH"}])
    assert one == [t for t in ticks if t["coin"] == "SOL"]


def test_read_tables_when_range_then_arrow_tables_with_utc_timestamps(tmp_path: Path) -> None:
    # arrange
    ticks = make_ticks()
    ArchiveWriter(tmp_path).write(ticks)

    # act
    per_file = list(read_archive_tables(tmp_path, start=ticks[0]["ts"], end=ticks[-1]["ts"] + 1))
    per_day = list(read_archive_tables(tmp_path, merge=True, columns=["ts", "coin", "bid"]))
    one = read_archive_table(tmp_path, coins="BTC")

    # assert
    assert len(per_file) == 2 * COINS
    assert sum(t.num_rows for t in per_file) == len(ticks)
    before_midnight = sum(t["ts"] < MIDNIGHT for t in ticks)
    assert 0 < before_midnight < len(ticks)
    # one table per UTC day
    assert [t.num_rows for t in per_day] == [before_midnight, len(ticks) - before_midnight]
    assert per_day[0].column_names == ["ts", "coin", "bid"]
    assert per_day[0].schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert one.column("coin").unique().to_pylist() == ["BTC"]
    assert one.num_rows == sum(t["coin"] == "BTC" for t in ticks)


def test_reader_when_listing_then_coins_and_days(tmp_path: Path) -> None:
    # arrange
    ArchiveWriter(tmp_path).write(make_ticks())
    reader = ArchiveReader(tmp_path)

    # act / assert
    assert reader.coins() == sorted(c.symbol for c in universe(COINS))
    assert [d.isoformat() for d in reader.days("BTC")] == ["2026-01-01", "2026-01-02"]


# --- errors --------------------------------------------------------------------------------


def test_read_when_file_is_not_parquet_then_archive_file_corrupt_names_it(tmp_path: Path) -> None:
    # arrange
    ArchiveWriter(tmp_path).write(make_ticks())
    bad = tmp_path / "ETH" / "20260101.parquet"
    bad.write_bytes(b"this is not parquet at all")

    # act
    with pytest.raises(ArchiveFileCorrupt) as err:
        list(read_archive(tmp_path))

    # assert
    assert err.value.path == bad
    assert str(bad) in str(err.value)
    assert err.value.__cause__ is None  # no raw pyarrow traceback chained
    assert err.value.__suppress_context__


def test_read_when_file_truncated_then_archive_file_corrupt(tmp_path: Path) -> None:
    # arrange
    [f] = ArchiveWriter(tmp_path).write(make_ticks(100, coins=1, start=MIDNIGHT))
    data = f.path.read_bytes()
    f.path.write_bytes(data[: len(data) // 2])

    # act / assert
    with pytest.raises(ArchiveFileCorrupt, match=r"20260102\.parquet"):
        list(read_archive(tmp_path))


def test_read_when_data_pages_damaged_then_archive_file_corrupt(tmp_path: Path) -> None:
    # arrange: keep the footer, scramble the column chunks
    [f] = ArchiveWriter(tmp_path).write(make_ticks(300, coins=1, start=MIDNIGHT))
    data = bytearray(f.path.read_bytes())
    for i in range(8, len(data) // 2):
        data[i] = (data[i] * 7 + 13) % 256
    f.path.write_bytes(bytes(data))

    # act / assert
    with pytest.raises(ArchiveFileCorrupt):
        list(read_archive(tmp_path))


def test_read_when_parquet_without_archive_metadata_then_archive_file_corrupt(
    tmp_path: Path,
) -> None:
    # arrange: someone dropped a foreign Parquet file into a coin folder
    (tmp_path / "BTC").mkdir()
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "BTC" / "20260102.parquet")

    # act / assert
    with pytest.raises(ArchiveFileCorrupt, match="no huracan archive metadata"):
        list(read_archive(tmp_path))


def test_read_when_file_holds_other_event_type_then_archive_file_corrupt(tmp_path: Path) -> None:
    # arrange
    [f] = ArchiveWriter(tmp_path, "Execution").write([execution(1)])
    (tmp_path / "BTC").mkdir()
    f.path.rename(tmp_path / "BTC" / f.path.name)

    # act / assert
    with pytest.raises(ArchiveFileCorrupt, match="holds Execution events, not MarketTick"):
        list(read_archive(tmp_path))


def test_write_when_existing_file_corrupt_then_refuses_and_leaves_it(tmp_path: Path) -> None:
    # arrange
    (tmp_path / "BTC").mkdir()
    bad = tmp_path / "BTC" / "20260102.parquet"
    bad.write_bytes(b"garbage")

    # act
    with pytest.raises(ArchiveFileCorrupt) as err:
        ArchiveWriter(tmp_path).write(make_ticks(5, coins=1, start=MIDNIGHT))

    # assert
    assert err.value.path == bad
    assert bad.read_bytes() == b"garbage"


def test_read_when_file_lacks_a_newer_field_with_default_then_default_filled(
    tmp_path: Path,
) -> None:
    # arrange: a file from before causation_id existed (schema evolution: field with default)
    ticks = make_ticks(20, coins=1, start=MIDNIGHT)
    [f] = ArchiveWriter(tmp_path).write(ticks)
    table = pq.read_table(f.path)
    pq.write_table(table.drop_columns(["causation_id"]), f.path)

    # act
    back = list(read_archive(tmp_path))

    # assert
    assert back == ticks


def test_read_when_range_between_archived_days_then_no_data_in_range(tmp_path: Path) -> None:
    # arrange
    ArchiveWriter(tmp_path).write(make_ticks(10, coins=1, start=MIDNIGHT))
    later = MIDNIGHT + 10 * 86_400_000_000

    # act / assert (raised by the call, before iterating)
    with pytest.raises(NoDataInRange, match="BTC"):
        read_archive(tmp_path, start=later, end=later + 1_000)


def test_read_when_range_inside_a_day_without_rows_then_no_data_in_range(tmp_path: Path) -> None:
    # arrange
    ArchiveWriter(tmp_path).write(make_ticks(10, coins=1, start=MIDNIGHT + 3_600_000_000))

    # act
    events = read_archive(tmp_path, start=MIDNIGHT, end=MIDNIGHT + 60_000_000)

    # assert (the day file exists; no row is in range)
    with pytest.raises(NoDataInRange):
        list(events)


def test_read_when_start_not_before_end_then_no_data_in_range(tmp_path: Path) -> None:
    ArchiveWriter(tmp_path).write(make_ticks(10, coins=1, start=MIDNIGHT))
    with pytest.raises(NoDataInRange, match="start is not before end"):
        read_archive(tmp_path, start=MIDNIGHT + 5, end=MIDNIGHT + 5)


def test_read_when_coin_unknown_then_unknown_coin_lists_known(tmp_path: Path) -> None:
    # arrange
    ArchiveWriter(tmp_path).write(make_ticks())

    # act
    with pytest.raises(UnknownCoin) as err:
        read_archive(tmp_path, coins=["BTC", "DOGE"])

    # assert
    assert err.value.coins == ("DOGE",)
    assert "BTC" in err.value.known
    assert isinstance(err.value, LookupError)


def test_read_when_root_missing_then_archive_not_found(tmp_path: Path) -> None:
    with pytest.raises(ArchiveNotFound, match="nope"):
        read_archive(tmp_path / "nope")


def test_read_when_event_type_never_archived_then_no_data_in_range(tmp_path: Path) -> None:
    ArchiveWriter(tmp_path).write(make_ticks(10, coins=1))
    with pytest.raises(NoDataInRange, match="Execution"):
        read_archive(tmp_path, event_type="Execution")


def test_read_when_naive_datetime_then_schema_error(tmp_path: Path) -> None:
    ArchiveWriter(tmp_path).write(make_ticks(10, coins=1))
    with pytest.raises(ArchiveSchemaError, match="naive"):
        read_archive(tmp_path, start=datetime(2026, 1, 1))


def test_write_when_required_field_missing_then_schema_error_and_nothing_written(
    tmp_path: Path,
) -> None:
    # arrange
    ticks = make_ticks(5, coins=1)
    del ticks[3]["bid"]

    # act
    with pytest.raises(ArchiveSchemaError, match="bid"):
        ArchiveWriter(tmp_path).write(ticks)

    # assert
    assert files_under(tmp_path) == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("coin", "../etc", "not a valid archive directory name"),
        ("coin", "_executions", "not a valid archive directory name"),
        ("ts", "yesterday", "ts"),
        ("seq", None, "not nullable"),
    ],
)
def test_write_when_field_invalid_then_schema_error(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    # arrange
    ticks = make_ticks(3, coins=1)
    ticks[1][field] = value

    # act / assert
    with pytest.raises(ArchiveSchemaError, match=message):
        ArchiveWriter(tmp_path).write(ticks)
    assert files_under(tmp_path) == []


def test_write_when_enum_symbol_unknown_then_schema_error(tmp_path: Path) -> None:
    with pytest.raises(ArchiveSchemaError, match="HOLD"):
        ArchiveWriter(tmp_path, "Execution").write([execution(1, side="HOLD")])


def test_errors_when_raised_then_all_are_archive_errors() -> None:
    for cls in (
        ArchiveFileCorrupt,
        ArchiveNotFound,
        ArchiveSchemaError,
        ArchiveWriteError,
        NoDataInRange,
        UnknownCoin,
    ):
        assert issubclass(cls, ArchiveError)
