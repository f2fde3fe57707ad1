"""The Parquet archive of the event log: one file per coin and UTC day, written atomically.

This module gathers the archive's public names; each part lives in a module of its own:

* :mod:`huracan.storage.archive_paths` — the layout (``<root>[/_<kind>]/<coin>/YYYYMMDD.parquet``),
  days and coin names;
* :mod:`huracan.storage.archive_schema` — each event type's Arrow schema, from its Avro schema;
* :mod:`huracan.storage.archive_metadata` — the ``huracan.*`` metadata in each file's footer;
* :mod:`huracan.storage.archive_files` — reading one file, and :class:`ArchiveWriter`
  (atomic, merged, de-duplicated on ``event_id``);
* :mod:`huracan.storage.archiver` — :func:`archive_topic` and :class:`TopicArchiver`, the one
  topic archiver of ``huracan archive`` and of the worker's archive agent;
* :mod:`huracan.streams.bounded_reader` — reading a Kafka topic between fixed offsets.

Errors are in :mod:`huracan.storage.archive_errors`. Why it is split this way:
docs/decisions/0003-storage-and-archiver.md.
"""

from __future__ import annotations

from huracan.storage.archive_errors import ArchiveError
from huracan.storage.archive_files import (
    DEFAULT_ROW_GROUP_SIZE,
    ArchivedFile,
    ArchiveWriter,
    read_archive_file,
    write_events,
)
from huracan.storage.archive_metadata import (
    FORMAT_VERSION,
    METADATA_PREFIX,
    ArchiveFileMetadata,
    SourceOffsets,
    merge_intervals,
    merge_sources,
    read_metadata,
)
from huracan.storage.archive_paths import (
    COIN_PATTERN,
    DAY_US,
    FILE_SUFFIX,
    KIND_FOLDERS,
    archive_path,
    check_coin,
    day_of,
    day_start_us,
    file_name,
    kind_dir,
    kind_folder,
    parse_file_name,
    to_micros,
)
from huracan.storage.archive_schema import (
    ArchiveKind,
    archive_kind,
    arrow_schema,
    make_kind,
    records_to_table,
)
from huracan.storage.archiver import (
    ArchiveReport,
    TopicArchiver,
    archive_topic,
    default_archiver_group,
)
from huracan.streams.bounded_reader import (
    BoundedReader,
    ConsumerFactory,
    ProducerFactory,
    retry_kafka,
    topic_partitions,
    topic_watermarks,
)

__all__ = [
    "COIN_PATTERN",
    "DAY_US",
    "DEFAULT_ROW_GROUP_SIZE",
    "FILE_SUFFIX",
    "FORMAT_VERSION",
    "KIND_FOLDERS",
    "METADATA_PREFIX",
    "ArchiveError",
    "ArchiveFileMetadata",
    "ArchiveKind",
    "ArchiveReport",
    "ArchiveWriter",
    "ArchivedFile",
    "BoundedReader",
    "ConsumerFactory",
    "ProducerFactory",
    "SourceOffsets",
    "TopicArchiver",
    "archive_kind",
    "archive_path",
    "archive_topic",
    "arrow_schema",
    "check_coin",
    "day_of",
    "day_start_us",
    "default_archiver_group",
    "file_name",
    "kind_dir",
    "kind_folder",
    "make_kind",
    "merge_intervals",
    "merge_sources",
    "parse_file_name",
    "read_archive_file",
    "read_metadata",
    "records_to_table",
    "retry_kafka",
    "to_micros",
    "topic_partitions",
    "topic_watermarks",
    "write_events",
]
