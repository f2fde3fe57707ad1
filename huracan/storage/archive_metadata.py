"""The key-value metadata in each archive file's Parquet footer, and reading it back.

Every key starts with ``huracan.``; every value is a string, the structured ones JSON: event
type, Avro schema full name, version, fingerprint and text, coin, day, rows, ts range, sort
key, the source topics with, per partition, the inclusive offset intervals the file's rows came
from, and the writer's format version (:data:`FORMAT_VERSION`, bumped on an incompatible
change). A file whose metadata is missing or malformed raises
:class:`~huracan.storage.archive_errors.ArchiveFileCorrupt` naming it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from huracan.storage.archive_errors import (
    ArchiveFileCorrupt,
)
from huracan.streams.serde import EventSchema

#: version of the file layout and metadata written here; bumped on an incompatible change
FORMAT_VERSION: Final = 1
#: key-value metadata keys all start with this
METADATA_PREFIX: Final = "huracan."


#: ``{topic: {partition: ((first, last), …)}}`` — offset intervals, inclusive
SourceOffsets = dict[str, dict[int, tuple[tuple[int, int], ...]]]


def _writer_id() -> str:
    try:
        version = importlib_metadata.version("huracan")
    except importlib_metadata.PackageNotFoundError:
        version = "unknown"
    return f"huracan-archive/{FORMAT_VERSION} (huracan {version})"


def merge_intervals(intervals: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sorted, disjoint inclusive intervals; overlapping or adjacent ones are joined."""
    out: list[list[int]] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def merge_sources(a: SourceOffsets, b: SourceOffsets) -> SourceOffsets:
    """The union of two source-offset maps (intervals merged per topic and partition)."""
    out: SourceOffsets = {}
    for src in (a, b):
        for topic, parts in src.items():
            dest = out.setdefault(topic, {})
            for p, intervals in parts.items():
                dest[p] = merge_intervals([*dest.get(p, ()), *intervals])
    return {t: dict(sorted(parts.items())) for t, parts in sorted(out.items())}


@dataclass(frozen=True, slots=True)
class ArchiveFileMetadata:
    """The key-value metadata of an archive file (``huracan.*`` keys of the Parquet footer).

    ``sources`` maps each source topic to, per partition, the inclusive offset intervals the
    file's rows were consumed from (an interval may also contain offsets of other coins and
    days, which live in other files). Files written without a topic have no sources.
    """

    format_version: int
    writer: str
    event_type: str
    schema_full_name: str
    schema_version: int
    schema_fingerprint: str
    coin: str
    day: date
    rows: int
    ts_min: int
    ts_max: int
    sort_key: tuple[str, ...]
    sources: SourceOffsets = field(default_factory=dict)

    @property
    def source_topics(self) -> list[str]:
        return list(self.sources)

    def to_kv(self, schema: EventSchema) -> dict[str, str]:
        p = METADATA_PREFIX
        return {
            f"{p}format_version": str(self.format_version),
            f"{p}writer": self.writer,
            f"{p}event_type": self.event_type,
            f"{p}schema.full_name": self.schema_full_name,
            f"{p}schema.version": str(self.schema_version),
            f"{p}schema.fingerprint": self.schema_fingerprint,
            f"{p}schema.avro": schema.schema_str,
            f"{p}coin": self.coin,
            f"{p}day": self.day.isoformat(),
            f"{p}rows": str(self.rows),
            f"{p}ts_min": str(self.ts_min),
            f"{p}ts_max": str(self.ts_max),
            f"{p}sort_key": ",".join(self.sort_key),
            f"{p}source_topics": json.dumps(list(self.sources)),
            f"{p}source_offsets": json.dumps(
                {
                    t: {str(part): [list(i) for i in iv] for part, iv in parts.items()}
                    for t, parts in self.sources.items()
                },
                separators=(",", ":"),
            ),
        }

    @classmethod
    def from_kv(cls, kv: Mapping[bytes, bytes] | None, path: Path) -> ArchiveFileMetadata:
        """Parse the footer metadata; raises :class:`ArchiveFileCorrupt` naming ``path``."""
        p = METADATA_PREFIX
        raw = {
            k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
            for k, v in (kv or {}).items()
        }
        try:
            offsets = json.loads(raw.get(f"{p}source_offsets", "{}"))
            sources: SourceOffsets = {
                str(t): {
                    int(part): tuple((int(lo), int(hi)) for lo, hi in iv)
                    for part, iv in parts.items()
                }
                for t, parts in offsets.items()
            }
            return cls(
                format_version=int(raw[f"{p}format_version"]),
                writer=raw.get(f"{p}writer", ""),
                event_type=raw[f"{p}event_type"],
                schema_full_name=raw[f"{p}schema.full_name"],
                schema_version=int(raw[f"{p}schema.version"]),
                schema_fingerprint=raw[f"{p}schema.fingerprint"],
                coin=raw[f"{p}coin"],
                day=date.fromisoformat(raw[f"{p}day"]),
                rows=int(raw[f"{p}rows"]),
                ts_min=int(raw[f"{p}ts_min"]),
                ts_max=int(raw[f"{p}ts_max"]),
                sort_key=tuple(raw[f"{p}sort_key"].split(",")),
                sources=sources,
            )
        except KeyError as exc:
            raise ArchiveFileCorrupt(path, f"metadata key {exc.args[0]} is missing") from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise ArchiveFileCorrupt(path, f"metadata is malformed: {exc}") from None


def _open_parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ArchiveFileCorrupt(path, f"{type(exc).__name__}: {exc}") from None


def read_metadata(path: str | Path) -> ArchiveFileMetadata:
    """The archive metadata of one file; raises :class:`ArchiveFileCorrupt` naming it."""
    p = Path(path)
    pf = _open_parquet(p)
    try:
        return ArchiveFileMetadata.from_kv(pf.metadata.metadata, p)
    finally:
        pf.close()
