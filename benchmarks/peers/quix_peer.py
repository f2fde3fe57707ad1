"""Quix Streams peer: an ``Application`` whose ``StreamingDataFrame`` does the same work.

Runs in the Quix Streams venv (:mod:`benchmarks.peers.env`), not the project's: Quix Streams
pins an older confluent-kafka. The work is split the way Quix Streams is used:

* the source topic's value deserializer is the project's Avro serde (:class:`TickDeserializer`);
* ``sdf.apply(step, expand=True)`` runs the engine on the tick and yields one item per output,
  ``(event type, key, record)``;
* ``sdf.to_topic(<topic of the item's event type>, key=<the item's key>)`` produces each
  output; each output topic's value serializer is the project's serde for its event type
  (:class:`OutputSerializer`).

``--guarantee`` maps to ``processing_guarantee`` (``at-least-once`` / ``exactly-once``) and
``--commit-every`` to ``commit_every`` (0, the default: a checkpoint every 5 s only); the other
settings are Quix Streams' defaults (its producer and consumer configs). The step that takes
the last tick also decides what the engine still holds (``finish()``) and stops the
application, which commits its last checkpoint on the way out.

The ``Application`` is built by :func:`make_application`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import confluent_kafka
import quixstreams
from quixstreams import Application
from quixstreams.models import Deserializer, SerializationContext, Serializer, Topic

from benchmarks.peers.common import PeerResult, PeerSpec, Pending, TickWork, Window

QUIX_GUARANTEE = {"at_least_once": "at-least-once", "exactly_once": "exactly-once"}


def make_application(spec: PeerSpec) -> Application:
    """The peer's application: its own group, from the earliest offset, the spec's guarantee
    and ``commit_every``, Quix Streams' defaults else."""
    return Application(
        broker_address=spec.bootstrap,
        consumer_group=spec.group,
        auto_offset_reset="earliest",
        processing_guarantee=QUIX_GUARANTEE[spec.guarantee],
        commit_every=spec.commit_every,
        loglevel="WARNING",
    )


class TickDeserializer(Deserializer):
    """A MarketTick record from its Avro value (the project's serde)."""

    def __init__(self, work: TickWork, window: Window) -> None:
        super().__init__()
        self.decode = work.decode
        self.window = window

    def __call__(self, value: bytes, ctx: SerializationContext) -> dict[str, Any]:
        self.window.open()
        return self.decode(value)


class OutputSerializer(Serializer):
    """The Avro value of an ``(event type, key, record)`` item (the project's serde)."""

    def __init__(self, work: TickWork, event_type: str) -> None:
        self.encode = work.encode
        self.event_type = event_type

    def __call__(self, value: Pending, ctx: SerializationContext) -> bytes:
        return self.encode(self.event_type, value[2])


def run(spec: PeerSpec, work: TickWork, window: Window) -> dict[str, Any]:
    app = make_application(spec)
    source = app.topic(
        spec.source_topic,
        key_deserializer="bytes",
        value_deserializer=TickDeserializer(work, window),
    )
    outputs: dict[str, Topic] = {
        event_type: app.topic(
            name, key_serializer="bytes", value_serializer=OutputSerializer(work, event_type)
        )
        for event_type, name in work.topics.items()
    }
    seen = 0

    def step(tick: dict[str, Any]) -> list[Pending]:
        nonlocal seen
        items = work.step(tick)
        seen += 1
        if seen == spec.ticks:
            items += work.finish()
            app.stop()
        return items

    def topic_of(value: Pending, _key: Any, _ts: int, _headers: Any) -> Topic:
        return outputs[value[0]]

    sdf = app.dataframe(source)
    sdf = sdf.apply(step, expand=True)
    sdf.to_topic(topic_of, key=lambda value: value[1])
    app.run()
    window.close()
    if seen != spec.ticks:
        raise RuntimeError(f"stopped after {seen} of {spec.ticks} ticks")
    return {
        "processing_guarantee": QUIX_GUARANTEE[spec.guarantee],
        "commit_interval_s": app.config.commit_interval,
        "commit_every": app.config.commit_every,
    }


def main(argv: Sequence[str]) -> int:
    spec = PeerSpec.from_argv(argv)
    work = TickWork(spec.config())
    window = Window()
    settings = run(spec, work, window)
    PeerResult(
        peer="quixstreams",
        guarantee=spec.guarantee,
        ticks=spec.ticks,
        seconds=window.seconds,
        cpu_seconds=window.cpu,
        sent=dict(work.sent),
        client={
            "quixstreams": quixstreams.__version__,
            "confluent-kafka": confluent_kafka.version()[0],
        },
        settings=settings,
    ).write(spec.result_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
