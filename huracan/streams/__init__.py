"""Kafka-facing plumbing: the topic catalog, the Avro serde, dead letters (and the bus adapters).

Import what you need from the modules (``huracan.streams.serde``, ``.topics``, ``.dead_letter``,
``.errors``); the names below are re-exported for convenience. Importing this package opens no
connection.
"""

from huracan.streams.dead_letter import (
    build_dead_letter,
    dead_letter_from_message,
    encode_dead_letter,
)
from huracan.streams.errors import (
    SchemaCatalogError,
    SerdeError,
    StreamsError,
    TopicAdminError,
    UnknownEventType,
)
from huracan.streams.serde import (
    ConfluentSerde,
    DecodedEvent,
    EventSchema,
    SchemaCatalog,
    Serde,
    SingleObjectSerde,
    make_serde,
    micros_to_seconds,
    seconds_to_micros,
)
from huracan.streams.topics import (
    TopicCatalog,
    TopicReport,
    TopicSpec,
    ensure_topics,
)

__all__ = [
    "ConfluentSerde",
    "DecodedEvent",
    "EventSchema",
    "SchemaCatalog",
    "SchemaCatalogError",
    "Serde",
    "SerdeError",
    "SingleObjectSerde",
    "StreamsError",
    "TopicAdminError",
    "TopicCatalog",
    "TopicReport",
    "TopicSpec",
    "UnknownEventType",
    "build_dead_letter",
    "dead_letter_from_message",
    "encode_dead_letter",
    "ensure_topics",
    "make_serde",
    "micros_to_seconds",
    "seconds_to_micros",
]
