"""Read-only views of a Faust worker's consumer state that Faust keeps in private fields.

Promises: each function reads, never changes, the app's consumer or topic conductor; the
consumer lag gauge, the coin agent's idleness check and the ``/consumer`` page use these, so a
faust-streaming upgrade that moves a field breaks here (and in tests/unit/test_faust_fixes.py),
not in three places. Decision record: docs/decisions/0002-faust-corrections.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from faust.types import TP


def committed_offsets(app: faust.App) -> Mapping[TP, int]:
    """The offsets this worker's consumer has committed, per topic partition (live view)."""
    consumer: Any = app.consumer
    offsets: Mapping[TP, int] = consumer._committed_offset
    return offsets


def read_offsets(app: faust.App) -> Mapping[TP, int | None]:
    """The offset of the last record the consumer handed out, per topic partition."""
    consumer: Any = app.consumer
    offsets: Mapping[TP, int | None] = consumer._read_offset
    return offsets


def consumer_partitions(app: faust.App) -> dict[str, Any]:
    """The partitions the consumer fetches from (``active``), has paused for recovery
    (``paused``) and has paused for a full stream buffer (``buffered``)."""
    consumer: Any = app.consumer
    return {
        "active": consumer._active_partitions,
        "paused": consumer._paused_partitions,
        "buffered": consumer._buffered_partitions,
    }


def stream_buffers(app: faust.App) -> dict[str, dict[str, int]]:
    """Per agent's topics (comma-joined): its stream buffer's ``size``, ``maxsize`` and the
    ``pressure_drop_pending`` callbacks (the buffer was full and its partitions are paused)."""
    streams: dict[str, dict[str, int]] = {}
    for chan in getattr(app.topics, "_topics", ()):  # the channels the conductor delivers to
        queue: Any = getattr(chan, "queue", None)
        if queue is not None:
            streams[",".join(chan.topics)] = {
                "size": queue.qsize(),
                "maxsize": queue.maxsize,
                "pressure_drop_pending": len(
                    getattr(queue, "_pending_pressure_drop_callbacks", ())
                ),
            }
    return streams
