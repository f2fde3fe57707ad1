"""The Faust corrections (huracan.agents.faust_fixes) still fit the installed faust-streaming.

Each correction reaches into private attributes and methods of faust-streaming; an upgrade that
moves one would break a correction silently. These tests fail first, by the name of what moved.
"""

from __future__ import annotations

import asyncio
import importlib
from importlib.metadata import version

import faust
import pytest

from huracan.agents import faust_fixes


def test_faust_streaming_when_installed_then_the_version_the_corrections_were_written_for() -> None:
    assert version("faust-streaming") == faust_fixes.FAUST_STREAMING_VERSION


@pytest.mark.parametrize(
    ("module", "cls", "name"),
    [
        (module, cls, name)
        for (module, cls), names in faust_fixes.TOUCHED_CLASS_ATTRIBUTES.items()
        for name in names
    ],
    ids=lambda part: str(part),
)
def test_faust_class_when_inspected_then_has_what_a_correction_touches(
    module: str, cls: str, name: str
) -> None:
    owner = getattr(importlib.import_module(module), cls)

    assert hasattr(owner, name), f"{module}.{cls}.{name} moved: see huracan/agents/faust_fixes"


@pytest.mark.parametrize(
    ("what", "name"),
    [
        (what, name)
        for what, names in faust_fixes.TOUCHED_INSTANCE_ATTRIBUTES.items()
        for name in names
    ],
    ids=lambda part: str(part),
)
def test_faust_app_parts_when_built_then_have_what_a_correction_touches(
    what: str, name: str, tmp_path: object
) -> None:
    async def build() -> object:
        app = faust_fixes.create_app(
            "huracan-fixes-test", exactly_once=True, datadir=str(tmp_path), autodiscover=False
        )
        return faust_fixes.touched_instances(app)[what]

    part = asyncio.run(build())

    assert hasattr(part, name), f"{what}.{name} moved: see huracan/agents/faust_fixes"


def test_create_app_when_exactly_once_then_every_correction_installed(tmp_path: object) -> None:
    async def build() -> faust.App:
        return faust_fixes.create_app(
            "huracan-fixes-test", exactly_once=True, datadir=str(tmp_path), autodiscover=False
        )

    app = asyncio.run(build())

    assert app.conf.TableManager is faust_fixes.SeekFirstTableManager
    assert app.conf.Event is faust_fixes.ProcessedEvent
    assert app.transport.Consumer is faust_fixes.BatchDrainConsumer
    assert app.transport.TransactionManager is faust_fixes.TaskTransactions


def test_create_app_when_at_least_once_then_faust_transactions_kept(tmp_path: object) -> None:
    async def build() -> faust.App:
        return faust_fixes.create_app(
            "huracan-fixes-test", exactly_once=False, datadir=str(tmp_path), autodiscover=False
        )

    app = asyncio.run(build())

    assert app.transport.Consumer is faust_fixes.BatchDrainConsumer
    assert app.transport.TransactionManager is not faust_fixes.TaskTransactions
