"""Test hook, loaded by a worker whose ``PYTHONPATH`` starts with this folder: SIGKILL-like exit
at the worst moment of a batch.

With ``HURACAN_TEST_CRASH_AT_COMMIT=K`` the worker exits (``os._exit``: no shutdown, no final
commit, like ``kill -9``) at the K-th batch that has outputs, right after those outputs are on
the broker and before anything else of the batch is: at least once, before its state is
written and its offsets committed; exactly once, before its transaction is committed. The
replacement worker then processes the batch again. Nothing here runs unless the variable is set.
"""

from __future__ import annotations

import os
from typing import Any

_AT = int(os.environ.get("HURACAN_TEST_CRASH_AT_COMMIT", "0") or 0)

if _AT > 0:
    from huracan.agents import shared, transactions

    _seen = [0]

    def _due(has_outputs: bool) -> bool:
        if has_outputs:
            _seen[0] += 1
        return _seen[0] >= _AT

    _alo_delivered = shared.AtLeastOnceUnit.delivered
    _tx_commit = transactions.TaskUnit.commit

    async def _alo(self: Any) -> None:
        # at least once, an agent waits for its outputs before it writes its state
        due = _due(bool(self.out.pending))
        await _alo_delivered(self)
        if due:
            os._exit(137)

    async def _tx(self: Any, events: Any) -> None:
        if _due(self.sent > 0):
            # librdkafka: the transaction's records are on the broker once flushed
            await self.outputs.run(self.producer.flush)
            os._exit(137)
        await _tx_commit(self, events)

    shared.AtLeastOnceUnit.delivered = _alo  # type: ignore[method-assign]
    transactions.TaskUnit.commit = _tx  # type: ignore[method-assign]
