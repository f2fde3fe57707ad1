"""The topic catalog: names, schemas, keys and settings derived from the config."""

from __future__ import annotations

import pytest

from huracan.config import build_config
from huracan.streams.errors import UnknownEventType
from huracan.streams.serde import SchemaCatalog
from huracan.streams.topics import (
    DEAD_LETTER_MAX_MESSAGE_BYTES,
    TOPIC_DEFINITIONS,
    TopicCatalog,
    TopicReport,
    min_insync_replicas,
    topic_catalog,
    topic_name,
)

EXPECTED_NAMES = [
    "huracan.market-data",
    "huracan.features",
    "huracan.signals",
    "huracan.cost-updates",
    "huracan.trade-requests",
    "huracan.risk-decisions",
    "huracan.executions",
    "huracan.control",
    "huracan.dead-letter",
]


def test_catalog_when_default_config_then_has_the_design_topics() -> None:
    # act
    catalog = TopicCatalog.from_config(build_config({}, environ={}))

    # assert
    assert catalog.names == EXPECTED_NAMES
    assert len(catalog) == 9


def test_catalog_when_every_topic_checked_then_each_has_a_packaged_schema() -> None:
    # arrange
    schemas = SchemaCatalog.load()

    # act / assert
    for spec in TopicCatalog.from_config(build_config({}, environ={})):
        schema = schemas.schema(spec.event_type)
        assert schema.full_name == f"io.huracan.events.v1.{spec.event_type}"
        assert schemas.topic_for(spec.event_type) == spec.name
        assert schemas.event_type_for_topic(spec.name) == spec.event_type


def test_catalog_when_custom_prefix_then_every_name_uses_it() -> None:
    # act
    catalog = TopicCatalog.from_config(
        build_config({"kafka": {"topic_prefix": "test.abc"}}, environ={})
    )

    # assert
    assert catalog.names == [n.replace("huracan.", "test.abc.", 1) for n in EXPECTED_NAMES]
    assert catalog.prefix == "test.abc"


def test_catalog_when_partitions_configured_then_each_topic_has_its_count() -> None:
    # arrange
    config = build_config(
        {"kafka": {"partitions": {"market_data": 24, "executions": 6, "dead_letter": 2}}},
        environ={},
    )

    # act
    catalog = TopicCatalog.from_config(config)

    # assert
    assert catalog.for_event_type("MarketTick").partitions == 24
    assert catalog.for_event_type("Execution").partitions == 6
    assert catalog.for_event_type("DeadLetter").partitions == 2
    assert catalog.for_event_type("TradeRequest").partitions == 1  # the single-writer sequencer
    assert catalog.for_event_type("ControlEvent").partitions == 1


def test_catalog_when_retention_configured_then_event_topics_and_dead_letter_differ() -> None:
    # arrange
    config = build_config(
        {"kafka": {"retention_ms": 86_400_000, "dead_letter_retention_ms": 3_600_000}},
        environ={},
    )

    # act
    catalog = TopicCatalog.from_config(config)

    # assert
    for spec in catalog:
        expected = "3600000" if spec.event_type == "DeadLetter" else "86400000"
        assert spec.config["retention.ms"] == expected
        assert spec.config["cleanup.policy"] == "delete"
    assert catalog.for_event_type("DeadLetter").config["max.message.bytes"] == str(
        DEAD_LETTER_MAX_MESSAGE_BYTES
    )


def test_catalog_when_default_retention_then_event_topics_keep_forever() -> None:
    catalog = TopicCatalog.from_config(build_config({}, environ={}))
    assert catalog.for_event_type("Execution").config["retention.ms"] == "-1"
    assert catalog.for_event_type("DeadLetter").config["retention.ms"] == str(30 * 86_400_000)


@pytest.mark.parametrize(("rf", "isr"), [(1, 1), (2, 1), (3, 2), (5, 2)])
def test_min_insync_replicas_when_replication_factor_then_tolerates_one_loss(
    rf: int, isr: int
) -> None:
    # act
    catalog = TopicCatalog.from_config(
        build_config({"kafka": {"replication_factor": rf}}, environ={})
    )

    # assert
    assert min_insync_replicas(rf) == isr
    assert {s.config["min.insync.replicas"] for s in catalog} == {str(isr)}
    assert {s.replication_factor for s in catalog} == {rf}


def test_catalog_when_keys_listed_then_coin_except_control_and_dead_letter() -> None:
    catalog = TopicCatalog.from_config(build_config({}, environ={}))
    keys = {spec.event_type: spec.key for spec in catalog}
    assert keys.pop("ControlEvent") == "control_key"
    assert keys.pop("DeadLetter") == "original_key"
    assert set(keys.values()) == {"coin"}


def test_catalog_when_unknown_event_type_or_topic_then_unknown_event_type_error() -> None:
    catalog = TopicCatalog.from_config(build_config({}, environ={}))
    with pytest.raises(UnknownEventType, match="Nope"):
        catalog.for_event_type("Nope")
    with pytest.raises(LookupError, match=r"huracan\.nope"):
        catalog.by_name("huracan.nope")


def test_topic_name_when_prefix_empty_then_bare_suffix() -> None:
    assert topic_name("", "signals") == "signals"
    assert topic_name("x", "signals") == "x.signals"


def test_definitions_when_listed_then_partition_fields_exist_in_config() -> None:
    partitions = build_config({}, environ={}).kafka.partitions
    for d in TOPIC_DEFINITIONS:
        assert d.partitions_field in partitions


def test_topic_catalog_when_prefix_given_then_overrides_config_prefix() -> None:
    # act
    catalog = topic_catalog(build_config({}, environ={}), prefix="demo.1")

    # assert
    assert catalog.names[0] == "demo.1.market-data"
    assert catalog.prefix == "demo.1"


def test_topic_spec_when_read_then_exposes_schema_policy_and_retention() -> None:
    spec = topic_catalog(build_config({}, environ={})).for_event_type("DeadLetter")
    assert (spec.value_schema, spec.cleanup_policy, spec.retention_ms) == (
        "DeadLetter",
        "delete",
        30 * 86_400_000,
    )


@pytest.mark.parametrize(
    ("partitions", "drift", "ok", "note_part"),
    [
        (3, {}, True, ""),
        (1, {}, False, "1 partitions, config says 3 (grow with grow_partitions)"),
        (5, {}, False, "(Kafka cannot shrink)"),
        (3, {"retention.ms": ("1000", "-1")}, False, "retention.ms=1000 (config: -1)"),
    ],
)
def test_topic_report_when_differs_from_catalog_then_not_ok_and_note_says_why(
    partitions: int, drift: dict[str, tuple[str, str]], ok: bool, note_part: str
) -> None:
    # act
    report = TopicReport(
        "p.signals",
        "Signal",
        "exists",
        partitions,
        3,
        drift,
        {"cleanup.policy": "delete", "retention.ms": "-1"},
    )

    # assert
    assert report.ok is ok
    assert note_part in report.note
    assert (report.name, report.action, report.retention_ms) == ("p.signals", "exists", -1)
    if ok:
        assert report.note == ""
