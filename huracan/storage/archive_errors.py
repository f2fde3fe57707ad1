"""Errors of the Parquet archive and the history readers (:mod:`huracan.storage.archive`,
:mod:`huracan.storage.history`).

Every error derives from :class:`ArchiveError` (itself a
:class:`~huracan.storage.errors.StorageError`); no pyarrow, OS or Kafka exception escapes the
archive's public functions unwrapped. Messages name the file, coin, range or topic at fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from huracan.storage.errors import StorageError


class ArchiveError(StorageError):
    """Base class of every archive and history-reader error."""


class ArchiveNotFound(ArchiveError, LookupError):
    """The archive root does not exist (or is not a directory)."""

    def __init__(self, root: str | Path) -> None:
        super().__init__(f"archive root {str(root)!r} does not exist or is not a directory")
        self.root = Path(root)


class ArchiveFileCorrupt(ArchiveError):
    """A file under the archive is not a readable archive Parquet file.

    Raised for a file that is not Parquet at all, is truncated, cannot be decoded, holds
    another event type, or lacks a column the schema needs. ``path`` names it; the archive
    never rewrites or deletes it (a merge into it is refused).
    """

    def __init__(self, path: str | Path, detail: str) -> None:
        super().__init__(f"archive file {str(path)!r} is corrupt or not an archive file: {detail}")
        self.path = Path(path)
        self.detail = detail


class ArchiveWriteError(ArchiveError):
    """Writing an archive file failed (disk full, permissions, a failed rename…).

    The file under its final name is untouched (the old version, or none) and the temporary
    file has been removed.
    """

    def __init__(self, path: str | Path, detail: str) -> None:
        super().__init__(f"cannot write archive file {str(path)!r}: {detail}")
        self.path = Path(path)
        self.detail = detail


class ArchiveSchemaError(ArchiveError, ValueError):
    """Records do not fit the event type's schema (a missing required field, a wrong type,
    a coin that is not a safe directory name), or the event type cannot be archived (it has
    no ``coin`` and ``ts`` fields)."""


class NoDataInRange(ArchiveError, LookupError):
    """The archive (or topic) holds no event of the requested type, coins and time range."""


class UnknownCoin(ArchiveError, LookupError):
    """A requested coin has never been archived for this event type.

    ``coins`` are the unknown ones; ``known`` the coins the archive has (sorted).
    """

    def __init__(self, coins: Sequence[str], known: Sequence[str], event_type: str) -> None:
        shown = ", ".join(known[:20]) + (f", … ({len(known)} in all)" if len(known) > 20 else "")
        super().__init__(
            f"no {event_type} archive for coin(s) {', '.join(coins)}; "
            f"archived coins: {shown or 'none'}"
        )
        self.coins = tuple(coins)
        self.known = tuple(known)
        self.event_type = event_type


class TopicReadError(ArchiveError):
    """Reading a Kafka topic failed: the topic is missing, the broker did not answer, a
    dead letter could not be delivered, or offsets could not be committed."""


class TopicReadTimeout(TopicReadError):
    """The end offsets captured at the start were not reached in time.

    ``pending`` maps each unfinished partition to ``(position, end_offset)``.
    """

    def __init__(self, topic: str, pending: dict[int, tuple[int, int]], timeout_s: float) -> None:
        detail = ", ".join(f"p{p}: at {pos} of {end}" for p, (pos, end) in sorted(pending.items()))
        super().__init__(
            f"reading {topic!r}: end offsets not reached after {timeout_s}s without progress "
            f"({detail})"
        )
        self.topic = topic
        self.pending = dict(pending)
        self.timeout_s = timeout_s


class UndecodableRecord(TopicReadError):
    """A record read by :func:`~huracan.storage.history.read_topic` failed to decode and no
    ``on_error`` callback was given. Names the record's coordinates and the serde reason."""

    def __init__(self, topic: str, partition: int, offset: int, reason: str, detail: str) -> None:
        super().__init__(f"record {topic}:{partition}:{offset} cannot be decoded ({detail})")
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.reason = reason


__all__ = [
    "ArchiveError",
    "ArchiveFileCorrupt",
    "ArchiveNotFound",
    "ArchiveSchemaError",
    "ArchiveWriteError",
    "NoDataInRange",
    "TopicReadError",
    "TopicReadTimeout",
    "UndecodableRecord",
    "UnknownCoin",
]
