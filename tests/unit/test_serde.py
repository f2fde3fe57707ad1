"""The Avro serde: both framings, evolution, malformed input, dead letters.

The Confluent framing runs against confluent-kafka's own in-memory registry client
(``SchemaRegistryClient.new_client({"url": "mock://…"})``), and its bytes are cross-checked with
confluent-kafka's ``AvroSerializer``/``AvroDeserializer``.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import shutil
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from huracan.config import build_config
from huracan.streams.dead_letter import (
    build_dead_letter,
    dead_letter_event_id,
    dead_letter_from_message,
    encode_dead_letter,
)
from huracan.streams.errors import SERDE_REASONS, SchemaCatalogError, SerdeError
from huracan.streams.serde import (
    PACKAGED_SCHEMA_DIR,
    ConfluentSerde,
    EventSchema,
    SchemaCatalog,
    Serde,
    SingleObjectSerde,
    make_serde,
    micros_to_seconds,
    seconds_to_micros,
)
from huracan.streams.topics import TopicCatalog

T0 = 1_700_000_000_123_456  # µs


def _env(i: int = 1) -> dict[str, Any]:
    return {"event_id": f"evt-{i}", "correlation_id": "tick-1", "causation_id": None}


SAMPLES: dict[str, dict[str, Any]] = {
    "MarketTick": {
        **_env(),
        "coin": "BTC",
        "exchange": "binance",
        "ts": T0,
        "bid": 50_000.1,
        "ask": 50_000.2,
        "last": 50_000.15,
        "volume": 0.25,
        "seq": 123_456,
    },
    "FeatureVector": {
        **_env(),
        "coin": "ETH",
        "exchange": "kraken",
        "ts": T0,
        "seq": 9,
        "mid": 3000.5,
        "bid": 3000.25,
        "ask": 3000.75,
        "ret_bps": -0.15,
        "mean_ret_bps": 0.02,
        "volatility_bps": 1.4,
        "spread_bps": 1.7,
        "vwap": 2999.9,
        "momentum_bps": 2.0,
        "n_ticks": 200,
        "extra": {"rsi": 55.5, "zscore": -0.3},
    },
    "Signal": {
        **_env(),
        "coin": "SOL",
        "ts": T0,
        "direction": "LONG",
        "edge_bps": 12.5,
        "size_usd": 10_000.0,
        "exchange": "binance",
        "model_version": "SOL:3",
        "mid": 150.05,
        "bid": 150.0,
        "ask": 150.1,
        "confidence": 0.7,
    },
    "CostUpdate": {
        **_env(),
        "coin": "BTC",
        "exchange": "binance",
        "ts": T0,
        "kind": "FEES",
        "bid": None,
        "ask": None,
        "maker_bps": 1.0,
        "taker_bps": 4.5,
        "funding_rate_bps": None,
    },
    "TradeRequest": {
        **_env(),
        "request_id": "req-1",
        "coin": "BTC",
        "ts": T0,
        "signal_ts": T0 - 5,
        "direction": "SHORT",
        "size_usd": 25_000.0,
        "exchange": "okx",
        "sector": "L1",
        "edge_bps": 20.0,
        "edge_after_cost_bps": 11.0,
        "intent": "CLOSE",
        "trade_id": "trade-7",
        "model_version": "BTC:1",
        "bid": 50_000.0,
        "ask": 50_010.0,
        "exit_reason": None,
    },
    "RiskDecision": {
        **_env(),
        "request_id": "req-1",
        "coin": "BTC",
        "exchange": "okx",
        "sector": "L1",
        "direction": "LONG",
        "intent": "OPEN",
        "trade_id": None,
        "ts": T0,
        "decision": "THROTTLE",
        "reason_code": "per_sector_soft_limit",
        "reason": "sector L1 at 85% of its limit",
        "limit": "per_sector_max_exposure_pct",
        "requested_size_usd": 25_000.0,
        "approved_size_usd": 0.0,
        "max_approvable_size_usd": 12_000.0,
        "max_allowed_size_usd": 20_000.0,
        "risk_reducing": False,
        "global_exposure_pct": 120.0,
        "coin_exposure_pct": 30.0,
        "sector_exposure_pct": 45.0,
        "exchange_exposure_pct": 80.0,
        "global_exposure_after_pct": 122.5,
        "coin_exposure_after_pct": 32.5,
        "sector_exposure_after_pct": 51.0,
        "exchange_exposure_after_pct": 82.5,
        "active_trades": 40,
        "in_flight_trades": 42,
        "bid": 50_000.0,
        "ask": None,
    },
    "Execution": {
        **_env(),
        "execution_id": "exec-req-1",
        "trade_id": "trade-7",
        "request_id": "req-1",
        "coin": "BTC",
        "side": "SELL",
        "direction": "LONG",
        "size": 0.5,
        "size_usd": 25_000.0,
        "price": 50_000.0,
        "fees_usd": 12.5,
        "exchange": "okx",
        "sector": "L1",
        "ts": T0,
        "action": "CLOSE",
        "liquidity": "TAKER",
        "realized_pnl_usd": 310.25,
    },
    "ControlEvent": {
        **_env(),
        "command": "SET_LIMIT",
        "key": "per_coin_max_exposure_pct",
        "value": 35.0,
        "ts": T0,
        "operator": "alice",
        "reason": "reduce BTC concentration",
    },
    "Watermark": {
        **_env(),
        "source_topic": "huracan.market-data",
        "partition": 3,
        "ts": T0,
        "idle": False,
    },
    "DeadLetter": {
        **_env(),
        "original_value": b"\xc3\x01garbage",
        "original_key": b"BTC",
        "source_topic": "huracan.market-data",
        "source_partition": 3,
        "source_offset": 42,
        "source_timestamp": T0,
        "headers": [{"key": "trace", "value": b"abc"}, {"key": "empty", "value": None}],
        "error_type": "huracan.streams.errors.SerdeError",
        "reason": "unknown_fingerprint",
        "error_message": "unknown_fingerprint: …",
        "failed_at": T0 + 1,
        "consumer": "features-agent",
        "attempts": 1,
    },
}


@pytest.fixture(scope="module")
def catalog() -> SchemaCatalog:
    return SchemaCatalog.load()


@pytest.fixture
def single(catalog: SchemaCatalog) -> SingleObjectSerde:
    return SingleObjectSerde(catalog)


@pytest.fixture
def registry() -> Any:
    return SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4().hex}"})


@pytest.fixture
def confluent(catalog: SchemaCatalog, registry: Any) -> ConfluentSerde:
    return ConfluentSerde(catalog, registry)


@pytest.fixture(params=["single-object", "confluent"])
def serde(request: pytest.FixtureRequest, catalog: SchemaCatalog) -> Serde:
    if request.param == "single-object":
        return SingleObjectSerde(catalog)
    client = SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4().hex}"})
    return ConfluentSerde(catalog, client)


# --- round trips ------------------------------------------------------------------------------


def test_samples_when_listed_then_cover_every_event_type(catalog: SchemaCatalog) -> None:
    assert set(SAMPLES) == set(catalog.event_types)


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_encode_decode_when_valid_record_then_round_trips(serde: Serde, event_type: str) -> None:
    # arrange
    record = SAMPLES[event_type]

    # act
    data = serde.encode(event_type, record)
    decoded = serde.decode_event(data)

    # assert
    assert decoded.event_type == event_type
    assert decoded.record == record
    assert decoded.writer_version == serde.catalog.schema(event_type).version


def test_encode_when_single_object_then_header_is_magic_and_fingerprint(
    single: SingleObjectSerde, catalog: SchemaCatalog
) -> None:
    # act
    data = single.encode("MarketTick", SAMPLES["MarketTick"])

    # assert
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == catalog.schema("MarketTick").fingerprint


def test_encode_when_confluent_then_header_is_zero_and_registered_id(
    confluent: ConfluentSerde, registry: Any
) -> None:
    # act
    data = confluent.encode("Signal", SAMPLES["Signal"])

    # assert
    schema_id = struct.unpack(">I", data[1:5])[0]
    assert data[0] == 0
    latest = registry.get_latest_version("huracan.signals-value")
    assert latest.schema_id == schema_id
    assert confluent.schema_id("Signal") == schema_id


def test_encode_when_confluent_and_custom_prefix_then_subject_uses_prefixed_topic(
    registry: Any,
) -> None:
    # arrange
    config = build_config({"kafka": {"topic_prefix": "test.iso"}}, environ={})
    serde = ConfluentSerde(SchemaCatalog.from_config(config), registry)

    # act
    serde.encode("MarketTick", SAMPLES["MarketTick"])
    serde.encode("MarketTick", SAMPLES["MarketTick"], topic="elsewhere")

    # assert
    assert set(registry.get_subjects()) == {"test.iso.market-data-value", "elsewhere-value"}


def test_encode_when_timestamp_is_aware_datetime_then_decodes_as_micros(serde: Serde) -> None:
    # arrange
    when = dt.datetime(2024, 1, 2, 3, 4, 5, 678_901, tzinfo=dt.UTC)
    record = {**SAMPLES["MarketTick"], "ts": when}

    # act
    decoded = serde.decode(serde.encode("MarketTick", record))

    # assert
    assert decoded["ts"] == round(when.timestamp() * 1_000_000)


def test_seconds_to_micros_when_round_tripped_then_preserves_microseconds() -> None:
    assert seconds_to_micros(1_700_000_000.123456) == 1_700_000_000_123_456
    assert micros_to_seconds(1_700_000_000_123_456) == pytest.approx(1_700_000_000.123456)


def test_encode_when_optional_fields_omitted_then_defaults_are_decoded(serde: Serde) -> None:
    # arrange
    record = {
        k: v for k, v in SAMPLES["FeatureVector"].items() if k not in ("causation_id", "extra")
    }

    # act
    decoded = serde.decode(serde.encode("FeatureVector", record))

    # assert
    assert decoded["causation_id"] is None
    assert decoded["extra"] == {}


def test_encode_many_when_batch_then_each_decodes(serde: Serde) -> None:
    # arrange
    records = [{**SAMPLES["MarketTick"], "seq": i} for i in range(50)]

    # act
    encoded = serde.encode_many("MarketTick", records)
    decoded = serde.decode_many(encoded, expected="MarketTick")

    # assert
    assert decoded == records


def test_decode_many_when_batch_has_bad_values_then_errors_in_place(serde: Serde) -> None:
    # arrange
    good = serde.encode("MarketTick", SAMPLES["MarketTick"])

    # act
    out = serde.decode_many([good, b"", good[:-3], good])

    # assert
    assert out[0] == SAMPLES["MarketTick"]
    assert out[3] == SAMPLES["MarketTick"]
    assert isinstance(out[1], SerdeError)
    assert out[1].reason == "empty"
    assert isinstance(out[2], SerdeError)
    assert out[2].reason == "truncated"


def test_decode_when_expected_type_differs_then_unexpected_event_type(serde: Serde) -> None:
    # arrange
    data = serde.encode("Signal", SAMPLES["Signal"])

    # act
    with pytest.raises(SerdeError) as info:
        serde.decode(data, expected="MarketTick")

    # assert
    assert info.value.reason == "unexpected_event_type"
    assert info.value.event_type == "Signal"


def test_decode_when_memoryview_or_bytearray_then_decodes(serde: Serde) -> None:
    data = serde.encode("Signal", SAMPLES["Signal"])
    assert serde.decode(memoryview(data)) == SAMPLES["Signal"]
    assert serde.decode(bytearray(data)) == SAMPLES["Signal"]


# --- encode violations ------------------------------------------------------------------------


def _without(event_type: str, field: str) -> dict[str, Any]:
    record = dict(SAMPLES[event_type])
    del record[field]
    return record


@pytest.mark.parametrize(
    ("event_type", "record"),
    [
        ("MarketTick", _without("MarketTick", "bid")),
        ("MarketTick", {**SAMPLES["MarketTick"], "bid": "not a number"}),
        ("MarketTick", {**SAMPLES["MarketTick"], "coin": None}),
        ("MarketTick", {**SAMPLES["MarketTick"], "seq": 2**70}),
        ("MarketTick", {**SAMPLES["MarketTick"], "ts": "yesterday"}),
        ("MarketTick", {**SAMPLES["MarketTick"], "bdi": 1.0}),  # a typo'd extra field
        ("Signal", {**SAMPLES["Signal"], "direction": "SIDEWAYS"}),
        ("Execution", {**SAMPLES["Execution"], "side": None}),
        ("FeatureVector", {**SAMPLES["FeatureVector"], "extra": {"x": "y"}}),
        ("DeadLetter", {**SAMPLES["DeadLetter"], "original_value": 12}),
        ("Signal", None),
        ("Signal", ["not", "a", "record"]),
    ],
    ids=[
        "missing",
        "wrong_type",
        "null_required",
        "overflow",
        "bad_timestamp",
        "extra_field",
        "bad_enum",
        "null_enum",
        "bad_map_value",
        "bad_bytes",
        "none",
        "list",
    ],
)
def test_encode_when_record_violates_schema_then_schema_violation(
    serde: Serde, event_type: str, record: Any
) -> None:
    # act
    with pytest.raises(SerdeError) as info:
        serde.encode(event_type, record)

    # assert
    assert info.value.reason == "schema_violation"
    assert info.value.event_type == event_type
    assert not info.value.transient


def test_encode_when_unknown_event_type_then_unknown_event_type(serde: Serde) -> None:
    with pytest.raises(SerdeError) as info:
        serde.encode("Nope", {})
    assert info.value.reason == "unknown_event_type"


def test_encode_many_when_one_record_bad_then_schema_violation_names_index(serde: Serde) -> None:
    records = [SAMPLES["MarketTick"], _without("MarketTick", "ask")]
    with pytest.raises(SerdeError, match="#1") as info:
        serde.encode_many("MarketTick", records)
    assert info.value.reason == "schema_violation"


# --- malformed bytes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (None, "empty"),
        ("text", "not_bytes"),
        (12, "not_bytes"),
        (b"\xc3", "truncated"),
        (b"\xc3\x01\x00", "truncated"),
        (b"{}", "bad_magic"),
        (b"\x00\x00\x00\x00\x01junk", "bad_magic"),
        (b"\xc3\x01" + b"\xee" * 8 + b"body", "unknown_fingerprint"),
    ],
)
def test_single_object_decode_when_bad_header_then_specific_reason(
    single: SingleObjectSerde, data: Any, reason: str
) -> None:
    with pytest.raises(SerdeError) as info:
        single.decode(data)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\x00\x00\x01", "truncated"),
        (b"\xc3\x01" + b"\x00" * 12, "bad_magic"),
        (b"\x00\x00\x00\x7f\xff" + b"body", "unknown_schema_id"),
    ],
)
def test_confluent_decode_when_bad_header_then_specific_reason(
    confluent: ConfluentSerde, data: bytes, reason: str
) -> None:
    with pytest.raises(SerdeError) as info:
        confluent.decode(data)
    assert info.value.reason == reason


def test_decode_when_body_truncated_then_truncated(serde: Serde) -> None:
    # arrange
    data = serde.encode("RiskDecision", SAMPLES["RiskDecision"])
    header = 10 if isinstance(serde, SingleObjectSerde) else 5

    # act / assert: every cut inside the body
    for cut in range(header, len(data)):
        with pytest.raises(SerdeError) as info:
            serde.decode(data[:cut])
        assert info.value.reason == "truncated", cut


def test_decode_when_trailing_bytes_then_malformed(serde: Serde) -> None:
    data = serde.encode("MarketTick", SAMPLES["MarketTick"])
    with pytest.raises(SerdeError) as info:
        serde.decode(data + b"\x00")
    assert info.value.reason == "malformed"


def test_decode_when_string_is_invalid_utf8_then_malformed(single: SingleObjectSerde) -> None:
    # arrange: event_id is the first field: a zigzag length 2 then two bytes that are not UTF-8
    data = single.encode("MarketTick", SAMPLES["MarketTick"])
    assert data[10] == 10  # len("evt-1") = 5, zigzag 10
    corrupt = data[:10] + b"\x04\xff\xfe" + data[16:]

    # act
    with pytest.raises(SerdeError) as info:
        single.decode(corrupt)

    # assert
    assert info.value.reason == "malformed"


def test_decode_when_enum_index_out_of_range_then_malformed(single: SingleObjectSerde) -> None:
    # arrange: a Signal whose direction index (zigzag 2*7) is past the symbols
    record = {**SAMPLES["Signal"], "direction": "UNKNOWN"}
    data = single.encode("Signal", record)
    index_of_unknown = bytes([2 * 3])
    marker = b"\x06SOL" + data[data.index(b"\x06SOL") + 4 : data.index(b"\x06SOL") + 12]
    at = data.index(marker) + len(marker)
    assert data[at : at + 1] == index_of_unknown
    corrupt = data[:at] + bytes([2 * 7]) + data[at + 1 :]

    # act
    with pytest.raises(SerdeError) as info:
        single.decode(corrupt)

    # assert
    assert info.value.reason == "malformed"


_CATALOG = SchemaCatalog.load()
_FUZZ_REGISTRY = SchemaRegistryClient.new_client({"url": "mock://fuzz"})
_FUZZ_CONFLUENT = ConfluentSerde(_CATALOG, _FUZZ_REGISTRY)
_FUZZ_SINGLE = SingleObjectSerde(_CATALOG)
_HEADERS = {
    "single": {t: _FUZZ_SINGLE.encode(t, SAMPLES[t])[:10] for t in SAMPLES},
    "confluent": {t: _FUZZ_CONFLUENT.encode(t, SAMPLES[t])[:5] for t in SAMPLES},
}


def _outcome(serde: Serde, data: Any) -> dict[str, Any] | str:
    """The decoded record, or the reason of the SerdeError; any other exception propagates."""
    try:
        return serde.decode(data)
    except SerdeError as exc:
        return exc.reason


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200))
def test_decode_when_random_bytes_then_only_serde_error_escapes(data: bytes) -> None:
    for serde in (_FUZZ_SINGLE, _FUZZ_CONFLUENT):
        # act
        outcome = _outcome(serde, data)

        # assert
        assert isinstance(outcome, dict) or outcome in SERDE_REASONS


@settings(max_examples=600, deadline=None)
@given(
    framing=st.sampled_from(["single", "confluent"]),
    event_type=st.sampled_from(sorted(SAMPLES)),
    body=st.binary(max_size=300),
)
def test_decode_when_valid_header_and_random_body_then_only_serde_error_escapes(
    framing: str, event_type: str, body: bytes
) -> None:
    # arrange: a known fingerprint / schema id, so the body really goes through fastavro
    serde = _FUZZ_SINGLE if framing == "single" else _FUZZ_CONFLUENT
    data = _HEADERS[framing][event_type] + body

    # act
    outcome = _outcome(serde, data)

    # assert
    assert isinstance(outcome, dict) or outcome in {"truncated", "malformed"}


@settings(max_examples=300, deadline=None)
@given(
    event_type=st.sampled_from(sorted(SAMPLES)),
    position=st.integers(min_value=0, max_value=10_000),
    flip=st.integers(min_value=1, max_value=255),
)
def test_decode_when_one_byte_of_valid_record_flipped_then_only_serde_error_escapes(
    event_type: str, position: int, flip: int
) -> None:
    # arrange
    data = bytearray(_FUZZ_SINGLE.encode(event_type, SAMPLES[event_type]))
    data[position % len(data)] ^= flip

    # act
    outcome = _outcome(_FUZZ_SINGLE, bytes(data))

    # assert
    assert isinstance(outcome, dict) or outcome in SERDE_REASONS


# --- evolution --------------------------------------------------------------------------------


def _tick_schema(*, version: int, extra_field: dict[str, Any] | None = None) -> dict[str, Any]:
    raw = json.loads((PACKAGED_SCHEMA_DIR / "market_tick.avsc").read_text())
    raw["version"] = version
    if extra_field is not None:
        raw["fields"].append(extra_field)
    return raw


VENUE_FIELD = {"name": "venue_latency_us", "type": "long", "default": -1, "doc": "added in v2"}


@pytest.fixture
def evolved_dir(tmp_path: Path) -> Path:
    """The packaged schemas with MarketTick at v2 (a defaulted field added) and v1 kept."""
    root = tmp_path / "schemas"
    shutil.copytree(PACKAGED_SCHEMA_DIR, root)
    shutil.copy(root / "market_tick.avsc", root / "market_tick.v1.avsc")
    (root / "market_tick.avsc").write_text(
        json.dumps(_tick_schema(version=2, extra_field=VENUE_FIELD))
    )
    return root


def test_single_object_when_reader_newer_than_writer_then_old_record_gets_default(
    catalog: SchemaCatalog, evolved_dir: Path
) -> None:
    # arrange: an old producer (packaged v1) and a new consumer (v2 + v1 in history)
    old = SingleObjectSerde(catalog)
    new = SingleObjectSerde(SchemaCatalog.load(evolved_dir))
    data = old.encode("MarketTick", SAMPLES["MarketTick"])

    # act
    decoded = new.decode_event(data)

    # assert
    assert decoded.record == {**SAMPLES["MarketTick"], "venue_latency_us": -1}
    assert decoded.writer_version == 1
    assert [s.version for s in new.catalog.versions("MarketTick")] == [1, 2]


def test_single_object_when_reader_newer_then_new_records_keep_new_field(
    evolved_dir: Path,
) -> None:
    new = SingleObjectSerde(SchemaCatalog.load(evolved_dir))
    record = {**SAMPLES["MarketTick"], "venue_latency_us": 250}
    assert new.decode(new.encode("MarketTick", record)) == record


def test_single_object_when_reader_older_than_writer_then_unknown_fingerprint(
    catalog: SchemaCatalog, evolved_dir: Path
) -> None:
    # arrange: a consumer that was not upgraded meets a v2 record
    new = SingleObjectSerde(SchemaCatalog.load(evolved_dir))
    old = SingleObjectSerde(catalog)
    data = new.encode("MarketTick", {**SAMPLES["MarketTick"], "venue_latency_us": 5})

    # act
    with pytest.raises(SerdeError) as info:
        old.decode(data)

    # assert: single-object carries no schema, so an unknown version cannot be read
    assert info.value.reason == "unknown_fingerprint"


def test_confluent_when_reader_newer_than_writer_then_old_record_gets_default(
    catalog: SchemaCatalog, evolved_dir: Path, registry: Any
) -> None:
    # arrange: both serdes share one registry
    old = ConfluentSerde(catalog, registry)
    new = ConfluentSerde(SchemaCatalog.load(evolved_dir), registry)
    data = old.encode("MarketTick", SAMPLES["MarketTick"])

    # act
    decoded = new.decode_event(data)

    # assert
    assert decoded.record == {**SAMPLES["MarketTick"], "venue_latency_us": -1}
    assert decoded.writer_version == 1


def test_confluent_when_reader_older_than_writer_then_reads_with_registry_schema(
    catalog: SchemaCatalog, evolved_dir: Path, registry: Any
) -> None:
    # arrange
    new = ConfluentSerde(SchemaCatalog.load(evolved_dir), registry)
    old = ConfluentSerde(catalog, registry)
    data = new.encode("MarketTick", {**SAMPLES["MarketTick"], "venue_latency_us": 5})

    # act: the writer schema comes from the registry, the reader drops the unknown field
    decoded = old.decode(data)

    # assert
    assert decoded == SAMPLES["MarketTick"]
    assert old.schema_id("MarketTick") != new.schema_id("MarketTick")


def test_decode_when_writer_has_enum_symbol_reader_lacks_then_unknown_symbol(
    catalog: SchemaCatalog, tmp_path: Path, registry: Any
) -> None:
    # arrange: a newer Signal adds direction "HEDGE"; the old consumer maps it to UNKNOWN
    root = tmp_path / "schemas"
    shutil.copytree(PACKAGED_SCHEMA_DIR, root)
    raw = json.loads((root / "signal.avsc").read_text())
    raw["version"] = 2
    direction = next(f for f in raw["fields"] if f["name"] == "direction")
    direction["type"]["symbols"] = ["LONG", "SHORT", "FLAT", "HEDGE", "UNKNOWN"]
    (root / "signal.avsc").write_text(json.dumps(raw))
    new = ConfluentSerde(SchemaCatalog.load(root), registry)
    old = ConfluentSerde(catalog, registry)

    # act
    decoded = old.decode(new.encode("Signal", {**SAMPLES["Signal"], "direction": "HEDGE"}))

    # assert
    assert decoded["direction"] == "UNKNOWN"


def test_confluent_when_writer_incompatible_then_incompatible_schema(
    catalog: SchemaCatalog, registry: Any
) -> None:
    # arrange: someone registered a MarketTick whose bid is a string
    raw = _tick_schema(version=7)
    next(f for f in raw["fields"] if f["name"] == "bid")["type"] = "string"
    schema_id = registry.register_schema("other-value", Schema(json.dumps(raw), "AVRO"))
    writer = EventSchema.from_json(raw)
    record = {**SAMPLES["MarketTick"], "bid": "oops"}
    import io

    import fastavro

    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, writer.parsed, record)
    data = b"\x00" + schema_id.to_bytes(4, "big") + buf.getvalue()

    # act
    with pytest.raises(SerdeError) as info:
        ConfluentSerde(catalog, registry).decode(data)

    # assert
    assert info.value.reason == "incompatible_schema"


def test_confluent_when_registry_schema_is_foreign_then_unknown_event_type(
    catalog: SchemaCatalog, registry: Any
) -> None:
    # arrange
    foreign = {"type": "record", "name": "Other", "namespace": "x", "fields": []}
    schema_id = registry.register_schema("x-value", Schema(json.dumps(foreign), "AVRO"))

    # act
    with pytest.raises(SerdeError) as info:
        ConfluentSerde(catalog, registry).decode(b"\x00" + schema_id.to_bytes(4, "big"))

    # assert
    assert info.value.reason == "unknown_event_type"


def test_catalog_when_history_version_not_older_then_schema_catalog_error(
    tmp_path: Path,
) -> None:
    root = tmp_path / "schemas"
    shutil.copytree(PACKAGED_SCHEMA_DIR, root)
    (root / "market_tick.v3.avsc").write_text(json.dumps(_tick_schema(version=3)))
    with pytest.raises(SchemaCatalogError, match="not older"):
        SchemaCatalog.load(root)


def test_catalog_when_schema_file_missing_then_names_event_type(tmp_path: Path) -> None:
    root = tmp_path / "schemas"
    shutil.copytree(PACKAGED_SCHEMA_DIR, root)
    (root / "execution.avsc").unlink()
    with pytest.raises(SchemaCatalogError, match="Execution"):
        SchemaCatalog.load(root)


def test_catalog_when_schema_file_invalid_then_names_file(tmp_path: Path) -> None:
    root = tmp_path / "schemas"
    shutil.copytree(PACKAGED_SCHEMA_DIR, root)
    raw = json.loads((root / "signal.avsc").read_text())
    raw["fields"][3]["type"] = "no_such_type"
    (root / "signal.avsc").write_text(json.dumps(raw))
    with pytest.raises(SchemaCatalogError, match=r"signal\.avsc"):
        SchemaCatalog.load(root)


# --- registry failures and interop ------------------------------------------------------------


class _DownRegistry:
    """A registry client whose server cannot be reached."""

    def register_schema(self, subject_name: str, schema: Schema) -> int:
        raise ConnectionError("connection refused")

    def lookup_schema(self, subject_name: str, schema: Schema) -> Any:
        raise ConnectionError("connection refused")

    def get_schema(self, schema_id: int) -> Schema:
        raise ConnectionError("connection refused")


def test_confluent_when_registry_down_then_transient_registry_unavailable(
    catalog: SchemaCatalog,
) -> None:
    serde = ConfluentSerde(catalog, _DownRegistry())
    for call in (
        lambda: serde.encode("MarketTick", SAMPLES["MarketTick"]),
        lambda: serde.decode(b"\x00\x00\x00\x00\x01\x00"),
    ):
        with pytest.raises(SerdeError) as info:
            call()
        assert info.value.reason == "registry_unavailable"
        assert info.value.transient


def test_confluent_when_not_auto_registering_and_unregistered_then_unknown_schema_id(
    catalog: SchemaCatalog, registry: Any
) -> None:
    serde = ConfluentSerde(catalog, registry, auto_register=False)
    with pytest.raises(SerdeError) as info:
        serde.encode("MarketTick", SAMPLES["MarketTick"])
    assert info.value.reason == "unknown_schema_id"


def test_confluent_when_schema_id_cached_then_registry_asked_once(catalog: SchemaCatalog) -> None:
    # arrange
    class Counting:
        def __init__(self) -> None:
            self.inner = SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4().hex}"})
            self.calls = 0

        def register_schema(self, subject_name: str, schema: Schema) -> int:
            self.calls += 1
            return int(self.inner.register_schema(subject_name, schema))

        def lookup_schema(self, subject_name: str, schema: Schema) -> Any:
            self.calls += 1
            return self.inner.lookup_schema(subject_name, schema)

        def get_schema(self, schema_id: int) -> Schema:
            self.calls += 1
            return self.inner.get_schema(schema_id)

    client = Counting()
    serde = ConfluentSerde(catalog, client)

    # act
    for _ in range(100):
        serde.decode(serde.encode("MarketTick", SAMPLES["MarketTick"]))

    # assert
    assert client.calls == 1


def test_confluent_when_bytes_read_by_confluent_deserializer_then_same_record(
    confluent: ConfluentSerde, registry: Any
) -> None:
    # arrange: what Kafka UI or any Confluent consumer does
    ctx = SerializationContext("huracan.executions", MessageField.VALUE)
    deserializer = AvroDeserializer(registry)

    # act
    data = confluent.encode("Execution", SAMPLES["Execution"])
    theirs = deserializer(data, ctx)

    # assert (their reader converts timestamps to datetimes)
    assert theirs["ts"] == dt.datetime.fromtimestamp(T0 / 1e6, tz=dt.UTC)
    assert {k: v for k, v in theirs.items() if k != "ts"} == {
        k: v for k, v in SAMPLES["Execution"].items() if k != "ts"
    }


def test_confluent_when_bytes_from_confluent_serializer_then_decodes(
    catalog: SchemaCatalog, registry: Any
) -> None:
    # arrange
    schema_str = catalog.schema("Signal").schema_str
    serializer = AvroSerializer(registry, schema_str)
    ctx = SerializationContext("huracan.signals", MessageField.VALUE)
    data = serializer(copy.deepcopy(SAMPLES["Signal"]), ctx)

    # act
    decoded = ConfluentSerde(catalog, registry).decode(data)

    # assert
    assert decoded == SAMPLES["Signal"]


# --- factory ----------------------------------------------------------------------------------


def test_make_serde_when_no_registry_url_then_single_object() -> None:
    serde = make_serde(build_config({}, environ={}))
    assert isinstance(serde, SingleObjectSerde)
    assert serde.framing == "single-object"


def test_make_serde_when_registry_url_then_confluent_with_prefixed_subjects() -> None:
    # arrange
    config = build_config(
        {"kafka": {"schema_registry_url": f"mock://{uuid.uuid4().hex}", "topic_prefix": "p"}},
        environ={},
    )

    # act
    serde = make_serde(config)
    serde.encode("ControlEvent", SAMPLES["ControlEvent"])

    # assert
    assert isinstance(serde, ConfluentSerde)
    assert serde.client.get_subjects() == ["p.control-value"]  # type: ignore[attr-defined]


def test_make_serde_when_registry_client_given_then_uses_it(registry: Any) -> None:
    serde = make_serde(build_config({}, environ={}), registry_client=registry)
    assert isinstance(serde, ConfluentSerde)
    assert serde.client is registry


def test_serde_error_when_pickled_then_keeps_reason() -> None:
    import pickle

    err = SerdeError("truncated", "body ends early", event_type="MarketTick")
    back = pickle.loads(pickle.dumps(err))
    assert (back.reason, back.event_type, str(back)) == ("truncated", "MarketTick", str(err))


def test_serde_error_when_unknown_reason_then_value_error() -> None:
    with pytest.raises(ValueError, match="unknown SerdeError reason"):
        SerdeError("whatever", "x")


# --- dead letters -----------------------------------------------------------------------------


def test_build_dead_letter_when_decode_fails_then_keeps_bytes_origin_and_reason(
    single: SingleObjectSerde,
) -> None:
    # arrange
    raw = b"\xc3\x01" + b"\x11" * 8 + b"body"
    with pytest.raises(SerdeError) as info:
        single.decode(raw)

    # act
    event = build_dead_letter(
        value=raw,
        topic="huracan.market-data",
        partition=4,
        offset=1234,
        key=b"BTC",
        error=info.value,
        consumer="features",
        failed_at_us=T0,
        headers=[("h", b"v"), (b"raw", None)],
        source_timestamp_ms=1_700_000_000_000,
    )
    key, value = encode_dead_letter(single, event)
    back = single.decode(value, expected="DeadLetter")

    # assert
    assert key == b"BTC"
    assert back["original_value"] == raw
    assert back["original_key"] == b"BTC"
    assert (back["source_topic"], back["source_partition"], back["source_offset"]) == (
        "huracan.market-data",
        4,
        1234,
    )
    assert back["reason"] == "unknown_fingerprint"
    assert back["error_type"] == "huracan.streams.errors.SerdeError"
    assert back["failed_at"] == T0
    assert back["source_timestamp"] == 1_700_000_000_000_000
    assert back["headers"] == [{"key": "h", "value": b"v"}, {"key": "raw", "value": None}]
    assert back["event_id"] == dead_letter_event_id("features", "huracan.market-data", 4, 1234)
    assert back["correlation_id"] == "huracan.market-data:4:1234"


def test_build_dead_letter_when_same_record_twice_then_same_event(
    single: SingleObjectSerde,
) -> None:
    kwargs: dict[str, Any] = {
        "value": b"x",
        "topic": "t",
        "partition": 0,
        "offset": 9,
        "key": None,
        "error": RuntimeError("boom"),
        "consumer": "risk",
        "failed_at_us": T0,
    }
    first = encode_dead_letter(single, build_dead_letter(**kwargs))
    second = encode_dead_letter(single, build_dead_letter(**kwargs))
    assert first == second


def test_build_dead_letter_when_processing_error_then_reason_and_truncated_message() -> None:
    # arrange
    class Weird(Exception):
        pass

    # act
    event = build_dead_letter(
        value=None,
        topic="t",
        partition=1,
        offset=2,
        key="BTC",
        error=Weird("x" * 10_000),
        consumer="c",
        failed_at_us=0,
    )

    # assert
    assert event["reason"] == "processing_error"
    assert event["original_value"] is None
    assert event["original_key"] == b"BTC"
    assert len(event["error_message"]) <= 4096
    assert event["error_type"].endswith("Weird")


def test_build_dead_letter_when_error_str_raises_then_still_builds() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    event = build_dead_letter(
        value=b"v",
        topic="t",
        partition=0,
        offset=0,
        key=None,
        error=Broken(),
        consumer="c",
        failed_at_us=0,
    )
    assert "Broken" in event["error_message"]


def test_dead_letter_from_message_when_confluent_message_then_fields_copied(
    single: SingleObjectSerde,
) -> None:
    # arrange: the accessors of confluent_kafka.Message
    class Msg:
        def value(self) -> bytes:
            return b"\x00bad"

        def key(self) -> bytes:
            return b"ETH"

        def topic(self) -> str:
            return "huracan.signals"

        def partition(self) -> int:
            return 2

        def offset(self) -> int:
            return 77

        def headers(self) -> list[tuple[str, bytes]]:
            return [("a", b"1")]

        def timestamp(self) -> tuple[int, int]:
            return (1, 1_700_000_000_001)

    # act
    event = dead_letter_from_message(
        Msg(), SerdeError("bad_magic", "x"), consumer="signals", failed_at_us=T0
    )
    back = single.decode(encode_dead_letter(single, event)[1])

    # assert
    assert back["original_value"] == b"\x00bad"
    assert back["source_offset"] == 77
    assert back["source_timestamp"] == 1_700_000_000_001_000
    assert back["reason"] == "bad_magic"


def test_topic_catalog_when_record_key_then_coin_or_control_key() -> None:
    topics = TopicCatalog.from_config(build_config({}, environ={}))
    assert topics.for_event_type("MarketTick").record_key(SAMPLES["MarketTick"]) == b"BTC"
    control = topics.for_event_type("ControlEvent")
    assert control.record_key(SAMPLES["ControlEvent"]) == b"per_coin_max_exposure_pct"
    assert control.record_key({"command": "KILL_SWITCH_ON", "key": None}) == b"KILL_SWITCH_ON"
    assert topics.for_event_type("DeadLetter").record_key(SAMPLES["DeadLetter"]) == b"BTC"


def test_packaged_history_when_v1_trade_request_written_then_current_reader_fills_quote_defaults(
    catalog: SchemaCatalog,
) -> None:
    """TradeRequest v2 added bid/ask/exit_reason; records written with v1 still decode."""
    import io

    import fastavro

    v1 = catalog.versions("TradeRequest")[0]
    assert v1.version == 1
    record = {k: v for k, v in SAMPLES["TradeRequest"].items() if k not in ("bid", "ask",
              "exit_reason")}  # fmt: skip
    body = io.BytesIO()
    fastavro.schemaless_writer(body, v1.parsed, record)
    data = b"\xc3\x01" + v1.fingerprint + body.getvalue()

    decoded = SingleObjectSerde(catalog).decode_event(data)

    assert decoded.writer_version == 1
    assert decoded.record == {**record, "bid": None, "ask": None, "exit_reason": None}


def test_single_object_when_watermark_written_by_v1_then_decoded_not_idle(
    catalog: SchemaCatalog, tmp_path: Path
) -> None:
    # arrange: a worker from before Watermark v2 (no idle flag) writes a watermark
    root = tmp_path / "schemas"
    shutil.copytree(PACKAGED_SCHEMA_DIR, root)
    shutil.copy(root / "watermark.v1.avsc", root / "watermark.avsc")
    (root / "watermark.v1.avsc").unlink()
    old = SingleObjectSerde(SchemaCatalog.load(root))
    v1_record = {k: v for k, v in SAMPLES["Watermark"].items() if k != "idle"}
    data = old.encode("Watermark", v1_record)

    # act
    decoded = SingleObjectSerde(catalog).decode_event(data)

    # assert
    assert decoded.record == {**v1_record, "idle": False}
    assert decoded.writer_version == 1
