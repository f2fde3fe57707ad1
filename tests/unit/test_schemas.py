"""The packaged Avro schemas: one per topic, namespaced, versioned, evolvable."""

from __future__ import annotations

import json
import re
import struct

import avro.schema
import pytest

from huracan.streams.serde import PACKAGED_SCHEMA_DIR, EventSchema, SchemaCatalog, crc64_avro
from huracan.streams.topics import TOPIC_DEFINITIONS

NAMESPACE = "io.huracan.events.v1"
ENVELOPE = ("event_id", "correlation_id", "causation_id")
CURRENT_FILES = sorted(
    p for p in PACKAGED_SCHEMA_DIR.glob("*.avsc") if not re.search(r"\.v\d+\.avsc$", p.name)
)


def _rabin_fingerprint(data: bytes) -> int:
    """CRC-64-AVRO exactly as written in the Avro specification ("Schema Fingerprints")."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for b in data:
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
    return fp


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _walk(node: object):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


@pytest.fixture(scope="module")
def catalog() -> SchemaCatalog:
    return SchemaCatalog.load()


def test_load_when_packaged_schemas_then_one_per_topic_event_type(catalog: SchemaCatalog) -> None:
    # arrange
    expected = {d.event_type for d in TOPIC_DEFINITIONS}
    expected |= {p for d in TOPIC_DEFINITIONS for p in d.punctuation}

    # act
    event_types = set(catalog.event_types)

    # assert
    assert event_types == expected
    assert len(CURRENT_FILES) == len(expected)


@pytest.mark.parametrize("path", CURRENT_FILES, ids=lambda p: p.name)
def test_schema_file_when_parsed_then_namespaced_versioned_and_named_after_file(path) -> None:
    # act
    schema = EventSchema.from_file(path)

    # assert
    assert schema.full_name == f"{NAMESPACE}.{schema.event_type}"
    assert path.stem == _snake(schema.event_type)
    assert isinstance(schema.schema["version"], int)
    assert schema.schema["version"] >= 1
    assert schema.schema.get("doc")


@pytest.mark.parametrize("path", CURRENT_FILES, ids=lambda p: p.name)
def test_schema_when_inspected_then_carries_envelope_ids_first(path) -> None:
    # act
    fields = {f["name"]: f for f in json.loads(path.read_text())["fields"]}
    names = list(fields)

    # assert
    assert tuple(names[:3]) == ENVELOPE
    assert fields["event_id"]["type"] == "string"
    assert fields["correlation_id"]["type"] == "string"
    assert fields["causation_id"]["type"] == ["null", "string"]
    assert fields["causation_id"]["default"] is None


@pytest.mark.parametrize("path", CURRENT_FILES, ids=lambda p: p.name)
def test_schema_when_it_has_time_fields_then_all_are_timestamp_micros(path) -> None:
    # arrange
    schema = json.loads(path.read_text())

    # act
    logical = [n["logicalType"] for n in _walk(schema) if "logicalType" in n]

    # assert: at least one event time, and only micros (consistency across topics)
    assert logical
    assert set(logical) == {"timestamp-micros"}


@pytest.mark.parametrize("path", CURRENT_FILES, ids=lambda p: p.name)
def test_schema_when_it_has_enums_then_each_defaults_to_unknown(path) -> None:
    # act
    enums = [n for n in _walk(json.loads(path.read_text())) if n.get("type") == "enum"]

    # assert
    for enum in enums:
        assert enum["symbols"][-1] == "UNKNOWN", enum["name"]
        assert enum["default"] == "UNKNOWN", enum["name"]


@pytest.mark.parametrize("path", CURRENT_FILES, ids=lambda p: p.name)
def test_schema_when_a_field_is_nullable_then_null_first_and_default_null(path) -> None:
    # act
    fields = json.loads(path.read_text())["fields"]
    nullable = [f for f in fields if isinstance(f["type"], list) and "null" in f["type"]]

    # assert
    for f in nullable:
        assert f["type"][0] == "null", f["name"]
        assert f.get("default", "missing") is None, f["name"]


def test_fingerprint_when_computed_then_matches_avro_spec_algorithm(
    catalog: SchemaCatalog,
) -> None:
    # act / assert: little-endian 8 bytes of the spec's Rabin fingerprint of the canonical form
    for event_type in catalog.event_types:
        s = catalog.schema(event_type)
        expected = struct.pack("<Q", _rabin_fingerprint(s.canonical_form.encode()))
        assert s.fingerprint == expected, event_type


def test_fingerprint_when_spec_test_vector_then_matches() -> None:
    # the Avro test suite's vector: "int" -> 8247732601305521295 (signed Java long)
    assert crc64_avro('"int"') == struct.pack("<q", 8247732601305521295)


def test_fingerprint_when_schema_has_no_logical_types_then_agrees_with_avro_library() -> None:
    # arrange: the avro library keeps {"type": "long"} for logical types in its canonical form
    # (the spec collapses it to "long", as fastavro and Java do), so compare a plain schema
    raw = {
        "type": "record",
        "name": "Plain",
        "namespace": NAMESPACE,
        "fields": [{"name": "a", "type": "string"}, {"name": "b", "type": ["null", "double"]}],
    }

    # act
    ours = EventSchema.from_json(raw).fingerprint

    # assert
    assert ours == avro.schema.parse(json.dumps(raw)).fingerprint()


def test_catalog_when_built_then_fingerprints_are_distinct(catalog: SchemaCatalog) -> None:
    fps = [catalog.schema(t).fingerprint for t in catalog.event_types]
    assert len(set(fps)) == len(fps)


def test_catalog_when_schemas_parsed_then_avro_library_accepts_them_too() -> None:
    for path in CURRENT_FILES:
        avro.schema.parse(path.read_text())  # raises on an invalid schema


@pytest.mark.parametrize(
    ("event_type", "fields"),
    [
        ("MarketTick", {"coin", "exchange", "ts", "bid", "ask", "last", "volume", "seq"}),
        ("FeatureVector", {"coin", "ts", "mid", "ret_bps", "volatility_bps", "spread_bps", "vwap"}),
        ("Signal", {"coin", "ts", "direction", "edge_bps", "size_usd", "exchange"}),
        ("CostUpdate", {"coin", "exchange", "kind", "bid", "ask", "maker_bps", "taker_bps"}),
        ("TradeRequest", {"request_id", "coin", "direction", "size_usd", "intent", "trade_id"}),
        ("RiskDecision", {"request_id", "decision", "reason_code", "approved_size_usd"}),
        ("Execution", {"execution_id", "trade_id", "side", "price", "fees_usd", "action"}),
        ("ControlEvent", {"command", "key", "value", "operator", "reason"}),
        ("DeadLetter", {"original_value", "source_topic", "source_offset", "error_type"}),
    ],
)
def test_schema_when_inspected_then_has_design_fields(
    catalog: SchemaCatalog, event_type: str, fields: set[str]
) -> None:
    assert fields <= set(catalog.schema(event_type).field_names)
