"""Table recovery that seeks the stream partitions before it lets them fetch.

Corrects (docs/decisions/0002-faust-corrections.md):

* recovery resumes the stream partitions before it seeks them to their committed offsets, so
  records fetched and dropped during recovery are skipped for good (faust-streaming issue
  #596), and a partition with no committed offset is not sought at all:
  :class:`SeekFirstRecovery` keeps them paused until recovery has resumed flow, seeks them again
  — to the committed offset, or to the beginning when there is none (the app's ``earliest``
  reset) — and resumes them last, so the first record they fetch is the first one not yet
  processed;
* under exactly_once recovery waits two idle 5-s rounds for a changelog's final transaction
  marker, which is never delivered: :meth:`SeekFirstRecovery._build_highwaters` asks the broker
  (:func:`ends_in_marker`) and, when the last entry is a marker, recovers up to the entry
  before it. An aborted last transaction still ends on Faust's own check.

Installed as the app's ``TableManager`` (:class:`SeekFirstTableManager`) by
:func:`huracan.agents.faust_fixes.create_app`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError
from confluent_kafka import TopicPartition as KafkaTopicPartition
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP

from huracan.config import HuracanConfig
from huracan.streams import clients

log = logging.getLogger(__name__)

#: how long the marker probe of a recovery may take before Faust's own check is relied on
MARKER_PROBE_TIMEOUT_S = 10.0


def ends_in_marker(
    config: HuracanConfig, ends: Mapping[TP, int], timeout_s: float = MARKER_PROBE_TIMEOUT_S
) -> set[TP]:
    """The partitions whose entry at ``ends[tp] - 1`` is a transaction marker.

    A ``read_uncommitted`` reader placed there gets that record when it is one (aborted or
    not); when it is a marker, it gets a later record (of a transaction still open) or reaches
    the end of the partition. Raises
    :class:`TimeoutError` when the broker does not answer for every partition in time."""
    consumer = clients.make_consumer(
        config,
        "recovery-probe",
        group_id="huracan-recovery-probe",
        isolation="read_uncommitted",
        overrides={"enable.partition.eof": True},
    )
    pending = {(tp.topic, tp.partition): tp for tp, end in ends.items() if end > 0}
    markers: set[TP] = set()
    try:
        consumer.assign([KafkaTopicPartition(t, p, ends[tp] - 1) for (t, p), tp in pending.items()])
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer for {len(pending)} changelog partitions")
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            key = (str(msg.topic()), int(msg.partition() or 0))
            tp = pending.get(key)
            if tp is None:
                continue
            err = msg.error()
            offset = msg.offset() or 0
            if err is None:
                # the first entry delivered from end - 1 on: that entry itself when it is a
                # record, a later one (an open transaction's, past the stable offset) when not
                pending.pop(key)
                if offset >= ends[tp]:
                    markers.add(tp)
            elif err.code() == KafkaError._PARTITION_EOF:
                pending.pop(key)
                if offset >= ends[tp]:
                    markers.add(tp)
    finally:
        consumer.close()
    return markers


class SeekFirstRecovery(Recovery):
    """:class:`Recovery` that resumes stream partitions only after seeking and resuming flow,
    and under exactly_once does not wait for a changelog's final marker (module doc)."""

    async def _build_highwaters(
        self, consumer: Any, tps: Any, destination: Any, title: str
    ) -> None:
        await super()._build_highwaters(consumer, tps, destination, title)
        cfg = getattr(self.app, "huracan_config", None)
        if not self.app.in_transaction or cfg is None:
            return
        # Faust's target is the last stable offset - 1; with two entries or more, that entry
        # may be a marker
        ends = {tp: destination[tp] + 1 for tp in tps if (destination.get(tp) or -1) >= 1}
        if not ends:
            return
        try:
            markers = await asyncio.to_thread(ends_in_marker, cfg, ends)
        except Exception as exc:  # noqa: BLE001 - Faust's own aborted-transaction check stays
            log.warning("changelog marker probe failed (recovery waits longer): %r", exc)
            return
        for tp in markers:
            destination[tp] = ends[tp] - 2
        if markers:
            log.info(
                "%s changelog partitions ending in a transaction marker: %d", title, len(markers)
            )

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        await self._with_resume_deferred(super().on_recovery_completed, generation_id)

    async def _resume_streams(self, generation_id: int = 0) -> None:
        await self._with_resume_deferred(super()._resume_streams, generation_id)

    async def _with_resume_deferred(self, step: Any, generation_id: int) -> None:
        consumer: Any = self.app.consumer
        resume = consumer.resume_partitions
        deferred: set[TP] = set()

        def defer(partitions: Iterable[TP]) -> None:
            deferred.update(partitions)

        own = vars(consumer).get("resume_partitions")
        consumer.resume_partitions = defer
        try:
            await step(generation_id)
        finally:
            if own is None:
                del consumer.resume_partitions  # the class's method again
            else:
                consumer.resume_partitions = own
        if not deferred or self.app.consumer_generation_id != generation_id:
            return  # rebalancing again: the next recovery resumes them
        # Seek again, now that nothing fetches these partitions: records handed out (and
        # dropped by flow control) during recovery moved the fetch positions past the
        # committed offsets. aiokafka's seek_to_committed leaves a partition with no committed
        # offset (or offset 0) where it is, so those go to their beginning (the earliest reset).
        consumer.pause_partitions(deferred)
        await consumer.perform_seek()
        committed = consumer._committed_offset
        fresh = [tp for tp in deferred if not committed.get(tp)]
        if fresh:
            await consumer.seek_wait(await consumer.earliest_offsets(*fresh))
        if self.app.consumer_generation_id == generation_id:
            resume(deferred)


class SeekFirstTableManager(TableManager):
    """The table manager of a Huracan app: its recovery is :class:`SeekFirstRecovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = SeekFirstRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
