"""The spec's names are importable from the top level, and importing huracan stays cheap."""

from __future__ import annotations

import subprocess
import sys

import huracan

SPEC_NAMES = [
    "GlobalRiskController", "RiskLimits", "TradeRequest", "RiskDecision", "RealTimeCostModel",
    "ModelRegistry", "ModelStatus", "EventLoopManager", "create_message_bus", "Message",
    "StreamType",
]  # fmt: skip


def test_top_level_when_spec_names_imported_then_each_resolves() -> None:
    for name in SPEC_NAMES:
        assert getattr(huracan, name) is not None, name
        assert name in huracan.__all__


def test_import_huracan_when_fresh_interpreter_then_no_faust_kafka_or_db_clients_loaded() -> None:
    code = (
        "import sys, huracan; "
        "heavy = [m for m in ('faust', 'confluent_kafka', 'aiokafka', 'psycopg', 'redis', "
        "'pyarrow') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
