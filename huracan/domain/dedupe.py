"""A bounded window of recently seen ids: how the sequencer and the paper exchange de-duplicate.

Kafka redelivers at most the records since the last committed offset, so remembering the last
``size`` ids (oldest forgotten first) is enough to make a redelivery harmless.

The window is the larger part of a stateful agent's state (100,000 ids are about 3 MB of JSON),
so an agent that persists its state after every batch must not rewrite it whole. Each id gets a
number, in the order ids were remembered; :meth:`DedupeWindow.journal` starts a journal of what
was remembered and forgotten, :meth:`DedupeWindow.take_changes` hands it over, and
:meth:`DedupeWindow.load` rebuilds the window from ``(id, number)`` pairs stored one per key.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable


class DedupeWindow:
    """The last ``size`` ids seen, oldest forgotten first (module docstring)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"dedupe window size must be >= 1, got {size}")
        self.size = size
        #: id -> its number (the order ids were remembered in)
        self._ids: OrderedDict[str, int] = OrderedDict()
        #: how many ids were ever remembered: the next id's number
        self.remembered = 0
        self._journal: tuple[list[tuple[str, int]], list[str]] | None = None

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def add(self, key: str) -> bool:
        """Remember ``key``; ``False`` when it was already there."""
        ids = self._ids
        if key in ids:
            return False
        n = self.remembered
        self.remembered = n + 1
        ids[key] = n
        journal = self._journal
        if journal is not None:
            journal[0].append((key, n))
        if len(ids) > self.size:
            old, _ = ids.popitem(last=False)
            if journal is not None:
                journal[1].append(old)
        return True

    def to_list(self) -> list[str]:
        """The ids, oldest first."""
        return list(self._ids)

    def load(self, ids: Iterable[str] = (), *, pairs: Iterable[tuple[str, int]] = ()) -> None:
        """Add ``ids`` (oldest first) or ``(id, number)`` pairs in any order; only the newest
        ``size`` are kept. Not journaled: they are stored already."""
        numbered = sorted(((str(k), int(n)) for k, n in pairs), key=lambda kn: kn[1])
        start = max(self.remembered, numbered[-1][1] + 1 if numbered else 0)
        numbered += [(str(k), start + i) for i, k in enumerate(ids)]
        for key, n in numbered:
            self._ids[key] = n
            self._ids.move_to_end(key)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)
        if numbered:
            self.remembered = max(self.remembered, numbered[-1][1] + 1)

    def journal(self, *, include_current: bool = False) -> None:
        """Journal the changes from now on (``include_current``: report every id already in
        the window as just remembered, to store a window that was kept in one piece)."""
        self._journal = (list(self._ids.items()) if include_current else [], [])

    def take_changes(self) -> tuple[list[tuple[str, int]], list[str]]:
        """``(remembered, forgotten)`` since the last call: ``(id, number)`` pairs added, and
        ids dropped (an id may be in both). Needs :meth:`journal`."""
        if self._journal is None:
            raise RuntimeError("take_changes: journal() was not called")
        changes, self._journal = self._journal, ([], [])
        return changes
