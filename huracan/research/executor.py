"""Where research tasks run: one small interface, a Dask distributed adapter, a serial one.

A task is a module-level function and one JSON-like argument (paths, coins, times, a config as
a dict — never the data), and it returns a small dict. :class:`TaskExecutor` runs many of them
and hands each result back exactly once, keyed by the task's key, whatever happens to the
workers on the way:

* :class:`DaskExecutor` submits every task to a Dask distributed scheduler — a
  ``LocalCluster`` of worker processes (one thread each) started for the run, or a running
  scheduler given as ``tcp://HOST:8786``. A worker that dies with tasks on it is replaced by
  the scheduler rescheduling those tasks on the workers left (up to
  ``distributed.scheduler.allowed-failures`` times per task); the result the client gets is the
  one of the run that finished, so a point is never counted twice. Workers of a real cluster
  need this package installed and the archive path readable at the same path.
* :class:`SerialExecutor` runs the tasks one after the other in this process (unit tests,
  debugging, ``--scheduler serial``).

Task keys are unique per run (``<prefix>-<key>-<run id>``): the scheduler keeps results of a key
it has seen, so two runs on one scheduler must not share keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

from huracan.research.errors import ExecutorError, TaskFailed

Task = Callable[[Mapping[str, Any]], dict[str, Any]]
#: called after each finished task with (key, result, finished so far, total)
OnDone = Callable[[str, dict[str, Any], int, int], None]

#: the ``--scheduler`` value that selects :class:`SerialExecutor`
SERIAL = "serial"


class TaskExecutor(Protocol):
    """Runs independent tasks and returns each result exactly once, keyed."""

    @property
    def workers(self) -> int:
        """Workers available now (1 for the serial executor)."""
        ...

    def run(
        self,
        task: Task,
        specs: Mapping[str, Mapping[str, Any]],
        *,
        on_done: OnDone | None = None,
    ) -> dict[str, dict[str, Any]]:
        """``task(spec)`` for every ``key → spec``; ``{key: result}`` for all of them.

        Raises :class:`TaskFailed` when a task raises (after the executor's retries)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class SerialExecutor:
    """Every task in this process, in the order given."""

    workers = 1

    def run(
        self,
        task: Task,
        specs: Mapping[str, Mapping[str, Any]],
        *,
        on_done: OnDone | None = None,
    ) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for key, spec in specs.items():
            try:
                out[key] = task(spec)
            except Exception as exc:
                raise TaskFailed(key, exc) from exc
            if on_done is not None:
                on_done(key, out[key], len(out), len(specs))
        return out

    def close(self) -> None:
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return "SerialExecutor()"


class DaskExecutor:
    """Tasks on Dask distributed: a running scheduler at ``scheduler``, or a local cluster.

    ``scheduler=None`` starts a ``LocalCluster`` of ``local_workers`` processes with one
    thread each and no dashboard, and stops it on :meth:`close`. ``retries`` is how often a
    task that *raised* is run again (a task lost with its worker is rescheduled by the
    scheduler regardless). Connecting waits at most ``timeout_s``. Raises
    :class:`ExecutorError` when the scheduler cannot be reached or dask is not installed.
    """

    def __init__(
        self,
        scheduler: str | None = None,
        *,
        local_workers: int = 2,
        retries: int = 0,
        timeout_s: float = 30.0,
    ) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - a dependency of the research extra
            raise ExecutorError(
                f"dask distributed is not installed ({exc}); pip install 'huracan[research]'"
            ) from None
        if local_workers < 1:
            raise ExecutorError(f"local_workers must be >= 1, got {local_workers}")
        self.address = scheduler
        self.retries = retries
        self._run_id = uuid.uuid4().hex[:12]
        self._cluster: Any = None
        try:
            if scheduler is None:
                self._cluster = LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=local_workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    host="127.0.0.1",
                )
                self.address = self._cluster.scheduler_address
                self._client: Any = Client(self._cluster, timeout=timeout_s)  # type: ignore[no-untyped-call]
            else:
                self._client = Client(scheduler, timeout=timeout_s)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as exc:
            self.close()
            raise ExecutorError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (for callers that need more than :meth:`run`)."""
        return self._client

    @property
    def workers(self) -> int:
        return len(self._client.scheduler_info().get("workers", {}))

    def wait_for_workers(self, n: int, timeout_s: float = 60.0) -> None:
        """Block until ``n`` workers are connected; :class:`ExecutorError` after ``timeout_s``."""
        try:
            self._client.wait_for_workers(n, timeout=timeout_s)
        except TimeoutError as exc:
            raise ExecutorError(f"fewer than {n} Dask workers after {timeout_s}s: {exc}") from None

    def run(
        self,
        task: Task,
        specs: Mapping[str, Mapping[str, Any]],
        *,
        on_done: OnDone | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Submit every spec as one task (``pure=False``), gather the results as they finish.

        A task that raised is cancelled with the rest of the run and :class:`TaskFailed` names
        it. Results are collected by key: a key is filled once, from the future the scheduler
        completed (a rescheduled task completes once)."""
        from distributed import as_completed

        prefix = getattr(task, "__name__", "task")
        futures: dict[Any, str] = {}
        for key, spec in specs.items():
            fut = self._client.submit(
                task,
                dict(spec),
                key=f"{prefix}-{key}-{self._run_id}",
                pure=False,
                retries=self.retries,
            )
            futures[fut] = key
        out: dict[str, dict[str, Any]] = {}
        try:
            for fut in as_completed(list(futures)):  # type: ignore[no-untyped-call]
                key = futures[fut]
                if fut.status == "error":
                    raise TaskFailed(key, fut.exception())
                if fut.status != "finished":  # cancelled: the scheduler went away
                    raise ExecutorError(f"task {key} ended {fut.status}")
                if key in out:  # never happens with distributed; the contract is checked
                    raise ExecutorError(f"task {key} returned twice")
                out[key] = fut.result()
                if on_done is not None:
                    on_done(key, out[key], len(out), len(specs))
        finally:
            self._client.cancel([f for f in futures if f.status != "finished"])
        return out

    def close(self) -> None:
        client, self._client = getattr(self, "_client", None), None
        if client is not None:
            client.close()
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            cluster.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DaskExecutor({self.address!r})"


def make_executor(scheduler: str | None, *, local_workers: int = 2) -> TaskExecutor:
    """:class:`SerialExecutor` for ``"serial"``, else :class:`DaskExecutor` (``None``: local)."""
    if scheduler is not None and scheduler.strip().lower() == SERIAL:
        return SerialExecutor()
    return DaskExecutor(scheduler, local_workers=local_workers)


def keyed(items: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, Mapping[str, Any]]:
    """``{key: spec}`` from pairs; :class:`ExecutorError` when a key repeats."""
    out: dict[str, Mapping[str, Any]] = {}
    for key, spec in items:
        if key in out:
            raise ExecutorError(f"task key {key!r} given twice")
        out[key] = spec
    return out


__all__: Sequence[str] = (
    "SERIAL",
    "DaskExecutor",
    "OnDone",
    "SerialExecutor",
    "Task",
    "TaskExecutor",
    "keyed",
    "make_executor",
)
