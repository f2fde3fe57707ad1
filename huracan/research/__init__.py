"""Research at scale: ``huracan retrain`` and ``huracan sweep`` on Dask distributed.

* :mod:`~huracan.research.executor` — the task executor: Dask distributed (a local cluster of
  processes, or a scheduler address) or serial; tasks get paths, results come back small;
* :mod:`~huracan.research.tasks` — what a task does on a worker: one backtest, fit or
  evaluation over its own slice of the Parquet archive;
* :mod:`~huracan.research.grid` — sweep grids and the influence of each axis;
* :mod:`~huracan.research.sweep` / :mod:`~huracan.research.retrain` — the two drivers;
* :mod:`~huracan.research.cli` — the two commands (registered by ``huracan/cli.py``).

Nothing here imports faust, and nothing connects at import time.
"""
