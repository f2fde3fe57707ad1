"""Every correction Huracan makes to faust-streaming, installed by one call: :func:`create_app`.

Written for faust-streaming :data:`FAUST_STREAMING_VERSION` (pinned in pyproject.toml). Why each
exists, and what it cost when it was missing: docs/decisions/0002-faust-corrections.md.

=====================================  ==================================================
correction                             faust-streaming behaviour it corrects
=====================================  ==================================================
:mod:`.consumer` BatchDrainConsumer    the fetch loop spends four asyncio tasks per record
:mod:`.consumer` ListOffsets thread    read_committed high watermarks are -1 until fetched
:mod:`.batching` take_batches          ``take_events`` acks a batch the agent never finished
:mod:`.batching` ProcessedEvent        events dropped by flow control are acked unprocessed
:mod:`.recovery` SeekFirstTableManager  stream partitions fetch before recovery seeks them
:mod:`.recovery` marker probe          recovery waits ~10 s for a changelog's final marker
:mod:`.transactions` TaskTransactions  per-group transactions deadlock this topology
:mod:`.introspection`                  consumer state Faust exposes only as private fields
=====================================  ==================================================

Every private attribute and method of Faust these modules touch is listed in
:data:`TOUCHED_CLASS_ATTRIBUTES` and :data:`TOUCHED_INSTANCE_ATTRIBUTES`;
tests/unit/test_faust_fixes.py fails by name when an upgrade moves one.
"""

from __future__ import annotations

from typing import Any, Final

import faust

from huracan.agents.faust_fixes.batching import ProcessedEvent, take_batches
from huracan.agents.faust_fixes.consumer import BatchDrainConsumer
from huracan.agents.faust_fixes.introspection import (
    committed_offsets,
    consumer_partitions,
    read_offsets,
    stream_buffers,
)
from huracan.agents.faust_fixes.recovery import SeekFirstTableManager
from huracan.agents.faust_fixes.transactions import TaskTransactions

__all__ = [
    "FAUST_STREAMING_VERSION",
    "TOUCHED_CLASS_ATTRIBUTES",
    "TOUCHED_INSTANCE_ATTRIBUTES",
    "BatchDrainConsumer",
    "ProcessedEvent",
    "SeekFirstTableManager",
    "TaskTransactions",
    "committed_offsets",
    "consumer_partitions",
    "create_app",
    "read_offsets",
    "stream_buffers",
    "take_batches",
]

#: the faust-streaming release these corrections were written for and checked against
FAUST_STREAMING_VERSION: Final = "0.15.3"

#: ``(module, class) -> names`` looked up on the class: methods we override or call, and class
#: attributes we read
TOUCHED_CLASS_ATTRIBUTES: Final[dict[tuple[str, str], tuple[str, ...]]] = {
    ("faust.transport.drivers.aiokafka", "AIOKafkaConsumerThread"): (
        "_highwaters",
        "_ensure_consumer",
    ),
    ("faust.transport.drivers.aiokafka", "Consumer"): (
        "_new_consumer_thread",
        "_drain_messages",
        "_add_gap",
        "getmany",
        "wait_first",
        "consumer_stopped_errors",
        "perform_seek",
        "seek_wait",
        "earliest_offsets",
        "highwater",
    ),
    ("faust.tables.recovery", "Recovery"): (
        "_build_highwaters",
        "_resume_streams",
        "on_recovery_completed",
    ),
    ("faust.transport.consumer", "TransactionManager"): (
        "on_rebalance",
        "on_partitions_revoked",
        "commit",
        "send",
        "send_and_wait",
        "send_soon",
    ),
    ("faust.transport.drivers.aiokafka", "Producer"): ("_new_producer",),
    ("faust.streams", "Stream"): ("_channel_stop_iteration",),
    ("faust", "Event"): ("ack",),
}

#: ``(what, names)`` looked up on instances of a never-started app (attributes set in
#: ``__init__``): see :func:`touched_instances`
TOUCHED_INSTANCE_ATTRIBUTES: Final[dict[str, tuple[str, ...]]] = {
    "consumer": (
        "_committed_offset",
        "_read_offset",
        "_unacked_messages",
        "_active_partitions",
        "_paused_partitions",
        "_buffered_partitions",
        "_commit_every",
        "_n_acked",
        "_stopped",
        "suspend_flow",
    ),
    "topics": ("_acking_topics", "_topics"),
    "tables": ("_recovery",),
}


def touched_instances(app: faust.App) -> dict[str, Any]:
    """The objects of ``app`` named in :data:`TOUCHED_INSTANCE_ATTRIBUTES`."""
    return {"consumer": app.consumer, "topics": app.topics, "tables": app.tables}


def create_app(app_id: str, *, exactly_once: bool, **settings: Any) -> faust.App:
    """A :class:`faust.App` with every correction installed; ``settings`` as for
    :class:`faust.App` (a ``TableManager`` or ``Event`` given there replaces ours).

    Installs: the table manager whose recovery seeks before it resumes
    (:class:`SeekFirstTableManager`), the event class acknowledged only once processed
    (:class:`ProcessedEvent`), the consumer with a per-batch fetch loop
    (:class:`BatchDrainConsumer`), and under ``exactly_once`` the per-task transactions
    (:class:`TaskTransactions`). Must run before the worker starts."""
    corrected: dict[str, Any] = {
        "TableManager": SeekFirstTableManager,
        "Event": ProcessedEvent,
    }
    app = faust.App(app_id, **{**corrected, **settings})
    transport: Any = app.transport
    transport.Consumer = BatchDrainConsumer
    if exactly_once:
        transport.TransactionManager = TaskTransactions
    return app
