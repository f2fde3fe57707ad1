"""The spec's Event Loop Manager: coins split into groups, one asyncio event loop per group.

Usage (the spec's)::

    manager = EventLoopManager(coins_per_loop=50, max_loops=10, timeout_seconds=300)
    manager.assign_coins(coins)                     # 400 coins -> 8 loops of 50
    for coin in coins:
        manager.register_processor(coin, process_coin)   # async def process_coin(coin)
    await manager.start()
    manager.get_metrics()   # {loop_id: LoopMetrics(coins_assigned=50, messages_processed=…)}
    await manager.stop(timeout=10.0)

**Threads or processes — both, chosen per manager with ``executor``.**

- ``executor="thread"`` (the default): each loop is a thread running its own event loop. The
  spec's processors are closures over shared objects — one message bus, one
  ``GlobalRiskController`` whose global limits only hold if every coin sees the same exposure —
  and those can neither be pickled nor shared across processes. Threads keep the spec's
  integration example working as written, and I/O-bound processors (awaiting the bus) overlap
  fine. But the GIL lets only one thread run Python bytecode at a time: CPU-bound processors in
  thread loops run no faster than in one loop.
- ``executor="process"``: each loop is a child process (``spawn`` start method) with its own
  interpreter, so CPU-bound processors really run in parallel, one core per process.
  Processors must be picklable by reference (module-level ``async def`` functions or
  ``functools.partial`` of them) and build their own clients (a bus, a model) inside the child;
  state shared between coins must live in a server (Kafka, Redis, PostgreSQL), not in memory.
  Counters and heartbeats come back through shared memory, so reading metrics costs nothing.

``benchmarks/bench_event_loops.py`` measures it: 400 coins of a CPU-bound processor on this
2-core machine, one plain event loop vs thread loops vs process loops, in one run.

Semantics (both executors):

- **Assignment** (:meth:`EventLoopManager.assign_coins`): ``ceil(n / coins_per_loop)`` loops;
  coins sorted, then cut into contiguous groups whose sizes differ by at most one — the same
  set of coins always gives the same assignment. More than ``max_loops * coins_per_loop`` coins
  raises :class:`TooManyCoinsError`.
- **Processors** are ``async def processor(coin)``. One that returns is called again at once
  (``repeat=True``, the default; set ``repeat=False`` to run each once); one that loops forever
  (``async for message in bus.subscribe(...)``) simply keeps running.
- **messages_processed** counts every completed processor call plus whatever processors report
  with :func:`report_processed` — a long-running subscriber calls ``report_processed()`` per
  message it handled.
- **Errors**: a processor that raises is counted in ``errors`` (the last one in
  ``last_error``) and restarted after an exponential backoff, ``restart_backoff_initial``
  doubling up to ``restart_backoff_max`` (:func:`backoff_delay`); the backoff resets once a
  call completes, reports progress, or ran longer than ``restart_backoff_max``. A child process
  that dies is started again the same way (counted in ``errors`` and ``restarts``).
- **Health**: every loop runs a heartbeat task; a loop whose heartbeat is older than
  ``timeout_seconds`` — its event loop is blocked by a stalled processor — or whose thread or
  process is gone is reported ``healthy=False`` by :meth:`EventLoopManager.get_metrics` and
  :meth:`EventLoopManager.health`.
- **Stop** (:meth:`EventLoopManager.stop`): every processor task is cancelled (graceful:
  ``finally`` blocks and ``async with`` exits run, async generators such as bus subscriptions
  are closed); tasks that swallow the cancellation are cancelled again until ``timeout``.
  Then, forcibly: a process still alive is terminated (SIGTERM, then SIGKILL); a thread blocked
  in synchronous code cannot be killed in Python, so it is left behind as a daemon thread and
  reported in :class:`ShutdownReport.abandoned`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import ctypes
import dataclasses
import inspect
import logging
import math
import multiprocessing
import multiprocessing.context
import multiprocessing.sharedctypes
import pickle
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal, Protocol

from huracan.runtime.errors import (
    CoinNotAssignedError,
    DuplicateCoinError,
    LoopStartError,
    ManagerStateError,
    ProcessorNotPicklableError,
    TooManyCoinsError,
)

log = logging.getLogger(__name__)

Processor = Callable[[str], Awaitable[object]]
Executor = Literal["thread", "process"]

# slots of a loop's shared counters
_PROCESSED, _ERRORS, _RESTARTS, _HB_MONO, _HB_WALL, _PHASE, _STOP_TIMEOUT = range(7)
_N_SLOTS = 7
_ERROR_BYTES = 512

# loop phases
_NEW, _RUNNING, _STOPPING, _STOPPED, _CRASHED = range(5)
_PHASE_NAMES = {_NEW: "new", _RUNNING: "running", _STOPPING: "stopping", _STOPPED: "stopped"}


def backoff_delay(failures: int, initial: float, maximum: float) -> float:
    """Delay before the restart that follows ``failures`` consecutive failures (>= 1):
    ``initial * 2 ** (failures - 1)``, capped at ``maximum``."""
    if failures < 1:
        return 0.0
    return min(maximum, initial * 2.0 ** min(failures - 1, 64))


class _CharBuffer(Protocol):
    value: bytes


class _Numbers(Protocol):
    def __getitem__(self, index: int, /) -> float: ...
    def __setitem__(self, index: int, value: float, /) -> None: ...


class _LoopState:
    """A loop's counters, heartbeat and phase; shared memory when the loop is a process.

    Written only by the loop itself (one thread), read by the manager.
    """

    def __init__(self, numbers: _Numbers, error: _CharBuffer) -> None:
        self.numbers = numbers
        self.error = error

    @classmethod
    def local(cls) -> _LoopState:
        return cls((ctypes.c_double * _N_SLOTS)(), ctypes.create_string_buffer(_ERROR_BYTES))

    @classmethod
    def shared(cls, ctx: multiprocessing.context.BaseContext) -> _LoopState:
        return cls(ctx.RawArray("d", _N_SLOTS), ctx.RawArray("c", _ERROR_BYTES))

    def beat(self) -> None:
        self.numbers[_HB_MONO] = time.monotonic()
        self.numbers[_HB_WALL] = time.time()

    def processed(self, n: int = 1) -> None:
        self.numbers[_PROCESSED] += n

    def failed(self, what: str) -> None:
        self.numbers[_ERRORS] += 1
        self.error.value = what.encode("utf-8", "replace")[: _ERROR_BYTES - 1]

    def restarted(self) -> None:
        self.numbers[_RESTARTS] += 1

    @property
    def phase(self) -> int:
        return int(self.numbers[_PHASE])

    @phase.setter
    def phase(self, value: int) -> None:
        self.numbers[_PHASE] = value


@dataclasses.dataclass(frozen=True, slots=True)
class _Settings:
    timeout_seconds: float
    heartbeat_interval: float
    backoff_initial: float
    backoff_max: float
    repeat: bool


@dataclasses.dataclass(slots=True)
class _ProcessorContext:
    coin: str
    state: _LoopState
    progressed: bool = False


_context: contextvars.ContextVar[_ProcessorContext | None] = contextvars.ContextVar(
    "huracan_processor", default=None
)


def report_processed(n: int = 1) -> bool:
    """Count ``n`` messages as processed by the calling processor's loop.

    Call it from inside a processor run by an :class:`EventLoopManager` (its task or tasks it
    created). Outside one it does nothing and returns ``False``, so processors also run bare.
    """
    ctx = _context.get()
    if ctx is None:
        return False
    ctx.state.processed(n)
    ctx.progressed = True
    return True


def current_coin() -> str | None:
    """The coin of the processor this code runs under, or ``None`` outside the manager."""
    ctx = _context.get()
    return ctx.coin if ctx else None


class _LoopRunner:
    """What runs inside one loop (thread or process): heartbeat plus one supervisor per coin."""

    def __init__(
        self,
        loop_id: int,
        processors: Mapping[str, Processor],
        state: _LoopState,
        settings: _Settings,
    ) -> None:
        self.loop_id = loop_id
        self.processors = dict(processors)
        self.state = state
        self.settings = settings
        self.abandoned_tasks = 0
        self.deadline: float | None = None  # time.monotonic() by which stopping must end
        self._stop_requested = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    async def run(self) -> None:
        # no await before the stop event exists: request_stop relies on it (see there)
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        if self._stop_requested.is_set():
            self._stop_event.set()
        state = self.state
        state.beat()
        heartbeat = asyncio.create_task(self._heartbeat(), name=f"loop-{self.loop_id}-heartbeat")
        tasks = [
            asyncio.create_task(self._supervise(coin, fn), name=f"processor-{coin}")
            for coin, fn in sorted(self.processors.items())
        ]
        await asyncio.sleep(0)  # every processor has begun (run to its first await)
        state.phase = _RUNNING
        await self._stop_event.wait()
        state.phase = _STOPPING
        loop = asyncio.get_running_loop()
        budget = max(0.0, state.numbers[_STOP_TIMEOUT])
        self.deadline = time.monotonic() + budget
        deadline = loop.time() + budget
        pending = {t for t in tasks if not t.done()}
        for task in pending:
            task.cancel()
        while pending:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            _, pending = await asyncio.wait(pending, timeout=min(0.05, remaining))
            for task in pending:  # swallowed the cancellation: cancel again
                task.cancel()
        self.abandoned_tasks = len(pending)
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        state.phase = _STOPPED

    def request_stop(self) -> None:
        """Ask the loop to stop; callable from any thread, before or after it started."""
        self._stop_requested.set()
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(self._set_stop)

    def _set_stop(self) -> None:
        if self._stop_event is not None:
            self._stop_event.set()

    async def _heartbeat(self) -> None:
        while True:
            self.state.beat()
            await asyncio.sleep(self.settings.heartbeat_interval)

    async def _supervise(self, coin: str, fn: Processor) -> None:
        """Run ``fn(coin)`` forever: count completions, count and back off on failures."""
        settings = self.settings
        state = self.state
        ctx = _ProcessorContext(coin, state)
        _context.set(ctx)
        failures = 0
        while True:
            ctx.progressed = False
            started = time.monotonic()
            try:
                await fn(coin)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure restarts the processor
                state.failed(f"{coin}: {exc!r}")
                log.warning("processor for %s raised %r; restarting", coin, exc)
                ran = time.monotonic() - started
                failures = 1 if ctx.progressed or ran >= settings.backoff_max else failures + 1
                await asyncio.sleep(
                    backoff_delay(failures, settings.backoff_initial, settings.backoff_max)
                )
                state.restarted()
                continue
            failures = 0
            state.processed(1)
            if not settings.repeat:
                return
            await asyncio.sleep(0)


def _run_in_new_loop(runner: _LoopRunner) -> None:
    """Run ``runner`` in a fresh event loop owned by the calling thread, then tidy the loop."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(runner.run())
        deadline = runner.deadline or time.monotonic()
        with contextlib.suppress(Exception):  # close subscriptions left open by processors
            budget = max(0.1, deadline - time.monotonic())
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), budget))
        with contextlib.suppress(Exception):
            budget = max(0.1, deadline - time.monotonic())
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_default_executor(), budget))
    except BaseException as exc:
        runner.state.failed(f"loop {runner.loop_id} crashed: {exc!r}")
        runner.state.phase = _CRASHED
        log.exception("event loop %s crashed", runner.loop_id)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _process_main(
    loop_id: int,
    processors: dict[str, Processor],
    numbers: _Numbers,
    error: _CharBuffer,
    settings: _Settings,
    stop: Any,
) -> None:
    """Entry point of a loop process (spawned): run the loop until the parent sets ``stop``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    runner = _LoopRunner(loop_id, processors, _LoopState(numbers, error), settings)

    def watch_stop() -> None:
        stop.wait()
        runner.request_stop()

    threading.Thread(target=watch_stop, name="stop-watcher", daemon=True).start()
    _run_in_new_loop(runner)


@dataclasses.dataclass(frozen=True, slots=True)
class LoopMetrics:
    """A snapshot of one loop. ``last_heartbeat`` is epoch seconds (``None`` before start);
    ``phase`` is ``new``, ``running``, ``stopping``, ``stopped`` or ``dead``."""

    loop_id: int
    executor: Executor
    coins: tuple[str, ...]
    coins_assigned: int
    messages_processed: int
    errors: int
    restarts: int
    last_heartbeat: float | None
    heartbeat_age_seconds: float | None
    running: bool
    healthy: bool
    phase: str
    last_error: str | None
    pid: int | None = None  # the loop's process id (executor="process")


@dataclasses.dataclass(frozen=True, slots=True)
class ManagerHealth:
    """``healthy`` when every loop is; ``unhealthy`` maps each other loop to the reason."""

    healthy: bool
    unhealthy: Mapping[int, str]


@dataclasses.dataclass(frozen=True, slots=True)
class ShutdownReport:
    """What :meth:`EventLoopManager.stop` achieved.

    ``forced``: loops that needed more than cancellation (processors that ignored it, or a
    process that had to be terminated). ``abandoned``: thread loops still blocked after the
    timeout (left behind as daemon threads).
    """

    clean: bool
    forced: tuple[int, ...]
    abandoned: tuple[int, ...]


class _Loop:
    """The manager's handle on one loop: a thread or a process, and its shared state."""

    def __init__(
        self, loop_id: int, coins: tuple[str, ...], state: _LoopState, executor: Executor
    ) -> None:
        self.loop_id = loop_id
        self.coins = coins
        self.state = state
        self.executor = executor
        self.thread: threading.Thread | None = None
        self.runner: _LoopRunner | None = None
        self.process: multiprocessing.process.BaseProcess | None = None
        self.stop_signal: Any = None
        self.process_failures = 0
        self.restart_at: float | None = None

    def alive(self) -> bool:
        if self.thread is not None:
            return self.thread.is_alive()
        if self.process is not None:
            return self.process.is_alive()
        return False


class EventLoopManager:
    """Runs each coin's processor on one of several event loops (threads or processes)."""

    def __init__(
        self,
        coins_per_loop: int = 50,
        max_loops: int = 10,
        timeout_seconds: float = 300.0,
        *,
        executor: Executor = "thread",
        repeat: bool = True,
        restart_backoff_initial: float = 0.1,
        restart_backoff_max: float = 30.0,
        heartbeat_interval: float | None = None,
        start_timeout: float = 60.0,
        mp_start_method: str = "spawn",
    ) -> None:
        """
        :param coins_per_loop: most coins one loop carries.
        :param max_loops: most loops; ``coins_per_loop * max_loops`` is the capacity.
        :param timeout_seconds: a loop without a heartbeat for this long is unhealthy.
        :param executor: ``"thread"`` (one thread per loop) or ``"process"`` (one process per
            loop; CPU-bound work in parallel) — see the module doc.
        :param repeat: call a processor again when it returns (``False``: once per coin).
        :param restart_backoff_initial: first delay before restarting a failed processor.
        :param restart_backoff_max: the backoff's cap.
        :param heartbeat_interval: how often loops beat; default ``min(1, timeout_seconds/4)``.
        :param start_timeout: how long :meth:`start` waits for every loop to come up.
        :param mp_start_method: multiprocessing start method for ``executor="process"``.
        """
        if coins_per_loop < 1:
            raise ValueError(f"coins_per_loop must be >= 1, got {coins_per_loop}")
        if max_loops < 1:
            raise ValueError(f"max_loops must be >= 1, got {max_loops}")
        if not timeout_seconds > 0:
            raise ValueError(f"timeout_seconds must be > 0, got {timeout_seconds}")
        if executor not in ("thread", "process"):
            raise ValueError(f"executor must be 'thread' or 'process', got {executor!r}")
        if not 0 < restart_backoff_initial <= restart_backoff_max:
            raise ValueError("need 0 < restart_backoff_initial <= restart_backoff_max")
        self.coins_per_loop = coins_per_loop
        self.max_loops = max_loops
        self.timeout_seconds = float(timeout_seconds)
        self.executor: Executor = executor
        interval = heartbeat_interval or min(1.0, self.timeout_seconds / 4)
        self._settings = _Settings(
            timeout_seconds=self.timeout_seconds,
            heartbeat_interval=max(0.005, interval),
            backoff_initial=restart_backoff_initial,
            backoff_max=restart_backoff_max,
            repeat=repeat,
        )
        self._start_timeout = start_timeout
        self._mp = multiprocessing.get_context(mp_start_method)
        self._assignment: dict[int, tuple[str, ...]] = {}
        self._coin_loop: dict[str, int] = {}
        self._processors: dict[str, Processor] = {}
        self._loops: dict[int, _Loop] = {}
        self._running = False
        self._watchdog: asyncio.Task[None] | None = None

    # -- assignment and registration ----------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self.coins_per_loop * self.max_loops

    def assign_coins(self, coins: Iterable[str]) -> dict[int, tuple[str, ...]]:
        """Place ``coins`` on loops; returns ``{loop_id: coins}`` (loop ids 0, 1, …).

        Deterministic (depends only on the set of coins) and balanced (group sizes differ by at
        most one). Raises :class:`TooManyCoinsError`, :class:`DuplicateCoinError`,
        ``ValueError`` for an empty or non-string coin, :class:`ManagerStateError` while
        running. Replaces any earlier assignment and drops processors of coins no longer
        assigned.
        """
        if self._running:
            raise ManagerStateError("cannot reassign coins while the manager is running")
        coins = list(coins)
        for coin in coins:
            if not isinstance(coin, str) or not coin:
                raise ValueError(f"coins must be non-empty strings, got {coin!r}")
        dupes = sorted(c for c, k in collections.Counter(coins).items() if k > 1)
        if dupes:
            raise DuplicateCoinError(f"coins listed more than once: {', '.join(dupes)}")
        n = len(coins)
        if n > self.capacity:
            raise TooManyCoinsError(
                f"{n} coins exceed the capacity of {self.capacity} "
                f"(max_loops={self.max_loops} x coins_per_loop={self.coins_per_loop}); "
                f"they need {math.ceil(n / self.coins_per_loop)} loops"
            )
        ordered = sorted(coins)
        loops = math.ceil(n / self.coins_per_loop)
        assignment: dict[int, tuple[str, ...]] = {}
        start = 0
        for loop_id in range(loops):
            size = n // loops + (1 if loop_id < n % loops else 0)
            assignment[loop_id] = tuple(ordered[start : start + size])
            start += size
        self._assignment = assignment
        self._coin_loop = {c: i for i, group in assignment.items() for c in group}
        self._processors = {c: f for c, f in self._processors.items() if c in self._coin_loop}
        return dict(assignment)

    @property
    def assignment(self) -> dict[int, tuple[str, ...]]:
        return dict(self._assignment)

    def loop_of(self, coin: str) -> int:
        """The loop id ``coin`` is assigned to; :class:`CoinNotAssignedError` if none."""
        try:
            return self._coin_loop[coin]
        except KeyError:
            raise CoinNotAssignedError(f"coin {coin!r} is not assigned to any loop") from None

    def register_processor(self, coin: str, processor: Processor) -> None:
        """Run ``await processor(coin)`` for ``coin`` on its loop (replaces an earlier one).

        Raises ``TypeError`` unless ``processor`` is an async callable,
        :class:`CoinNotAssignedError` for a coin :meth:`assign_coins` did not place,
        :class:`ManagerStateError` while running.
        """
        if self._running:
            raise ManagerStateError("cannot register processors while the manager is running")
        if not _is_async_callable(processor):
            raise TypeError(
                f"processor for {coin!r} must be an async function (async def f(coin)), "
                f"got {processor!r}"
            )
        self.loop_of(coin)
        self._processors[coin] = processor

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    async def start(self) -> None:
        """Start one loop per group of assigned coins; return once every loop is running.

        Raises :class:`ManagerStateError` (already running, nothing assigned),
        :class:`ProcessorNotPicklableError` (``executor="process"``) and
        :class:`LoopStartError` when a loop does not come up within ``start_timeout``.
        """
        if self._running:
            raise ManagerStateError("the manager is already running")
        if not self._assignment:
            raise ManagerStateError("assign_coins() first: no coins are assigned to loops")
        if self.executor == "process":
            for coin, fn in self._processors.items():
                try:
                    pickle.dumps(fn)
                except Exception as exc:
                    raise ProcessorNotPicklableError(
                        f"processor for {coin!r} cannot be sent to a loop process ({exc}); "
                        "use a module-level async function or functools.partial of one"
                    ) from exc
        self._loops = {}
        for loop_id, coins in self._assignment.items():
            state = (
                _LoopState.shared(self._mp) if self.executor == "process" else _LoopState.local()
            )
            self._loops[loop_id] = _Loop(loop_id, coins, state, self.executor)
        self._running = True
        for loop in self._loops.values():
            self._launch(loop)
        deadline = time.monotonic() + self._start_timeout
        try:
            for loop in self._loops.values():
                while loop.state.phase != _RUNNING:
                    if not loop.alive() and loop.state.phase != _RUNNING:
                        raise LoopStartError(
                            f"loop {loop.loop_id} exited while starting: "
                            f"{loop.state.error.value.decode(errors='replace') or 'no error'}"
                        )
                    if time.monotonic() > deadline:
                        raise LoopStartError(
                            f"loop {loop.loop_id} did not start within {self._start_timeout}s"
                        )
                    await asyncio.sleep(0.005)
        except BaseException:
            await self.stop(timeout=1.0)
            raise
        if self.executor == "process":
            self._watchdog = asyncio.create_task(self._watch_processes())

    def _processors_of(self, loop: _Loop) -> dict[str, Processor]:
        return {c: self._processors[c] for c in loop.coins if c in self._processors}

    def _launch(self, loop: _Loop) -> None:
        loop.state.numbers[_STOP_TIMEOUT] = 0.0
        loop.state.phase = _NEW
        if self.executor == "thread":
            runner = _LoopRunner(
                loop.loop_id, self._processors_of(loop), loop.state, self._settings
            )
            loop.runner = runner
            loop.thread = threading.Thread(
                target=_run_in_new_loop,
                args=(runner,),
                name=f"huracan-loop-{loop.loop_id}",
                daemon=True,
            )
            loop.thread.start()
        else:
            loop.stop_signal = self._mp.Event()
            process = self._mp.Process(  # type: ignore[attr-defined]
                target=_process_main,
                args=(
                    loop.loop_id,
                    self._processors_of(loop),
                    loop.state.numbers,
                    loop.state.error,
                    self._settings,
                    loop.stop_signal,
                ),
                name=f"huracan-loop-{loop.loop_id}",
                daemon=True,
            )
            process.start()
            loop.process = process

    async def _watch_processes(self) -> None:
        """Restart loop processes that died (with backoff), while the manager runs."""
        settings = self._settings
        while self._running:
            now = time.monotonic()
            for loop in self._loops.values():
                process = loop.process
                if process is None or process.is_alive() or not self._running:
                    continue
                if loop.restart_at is None:
                    loop.process_failures += 1
                    loop.state.failed(f"loop process exited with code {process.exitcode}")
                    loop.state.phase = _CRASHED
                    loop.restart_at = now + backoff_delay(
                        loop.process_failures, settings.backoff_initial, settings.backoff_max
                    )
                elif now >= loop.restart_at:
                    loop.restart_at = None
                    loop.state.restarted()
                    log.warning("restarting event loop process %s", loop.loop_id)
                    self._launch(loop)
            await asyncio.sleep(settings.heartbeat_interval)

    async def stop(self, timeout: float = 10.0) -> ShutdownReport:
        """Cancel every processor, wait up to ``timeout`` s for them, then force (see module
        doc). Returns a :class:`ShutdownReport`; calling it when not running is a no-op."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        if not self._running:
            return ShutdownReport(clean=True, forced=(), abandoned=())
        self._running = False
        for loop in self._loops.values():
            loop.state.numbers[_STOP_TIMEOUT] = timeout
            if loop.runner is not None:
                loop.runner.request_stop()
            elif loop.stop_signal is not None:
                loop.stop_signal.set()
        deadline = time.monotonic() + timeout + 1.0
        while any(lp.alive() for lp in self._loops.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        forced: list[int] = []
        abandoned: list[int] = []
        for loop in self._loops.values():
            if loop.runner is not None and loop.runner.abandoned_tasks:
                forced.append(loop.loop_id)
            if loop.process is not None:
                process = loop.process
                if process.is_alive():
                    forced.append(loop.loop_id)
                    process.terminate()
                    await asyncio.to_thread(process.join, 2.0)
                    if process.is_alive():
                        process.kill()
                        await asyncio.to_thread(process.join, 2.0)
                    loop.state.phase = _STOPPED
                else:
                    process.join(0)
            elif loop.thread is not None and loop.thread.is_alive():
                abandoned.append(loop.loop_id)
        return ShutdownReport(
            clean=not forced and not abandoned,
            forced=tuple(sorted(set(forced))),
            abandoned=tuple(abandoned),
        )

    # -- observation ----------------------------------------------------------------------

    def get_metrics(self) -> dict[int, LoopMetrics]:
        """``{loop_id: LoopMetrics}`` for every assigned loop (zeros before :meth:`start`)."""
        now = time.monotonic()
        out: dict[int, LoopMetrics] = {}
        for loop_id, coins in self._assignment.items():
            loop = self._loops.get(loop_id)
            if loop is None or tuple(loop.coins) != coins:
                out[loop_id] = LoopMetrics(
                    loop_id=loop_id,
                    executor=self.executor,
                    coins=coins,
                    coins_assigned=len(coins),
                    messages_processed=0,
                    errors=0,
                    restarts=0,
                    last_heartbeat=None,
                    heartbeat_age_seconds=None,
                    running=False,
                    healthy=False,
                    phase="new",
                    last_error=None,
                )
                continue
            numbers = loop.state.numbers
            phase = loop.state.phase
            beat_mono = numbers[_HB_MONO]
            age = now - beat_mono if beat_mono else None
            alive = loop.alive()
            running = alive and phase == _RUNNING
            healthy = running and age is not None and age <= self.timeout_seconds
            error = loop.state.error.value.decode("utf-8", "replace") or None
            out[loop_id] = LoopMetrics(
                loop_id=loop_id,
                executor=self.executor,
                coins=coins,
                coins_assigned=len(coins),
                messages_processed=int(numbers[_PROCESSED]),
                errors=int(numbers[_ERRORS]),
                restarts=int(numbers[_RESTARTS]),
                last_heartbeat=numbers[_HB_WALL] or None,
                heartbeat_age_seconds=age,
                running=running,
                healthy=healthy,
                phase=_phase_name(phase, alive),
                last_error=error,
                pid=loop.process.pid if loop.process is not None else None,
            )
        return out

    def health(self) -> ManagerHealth:
        """Whether every loop is running with a heartbeat younger than ``timeout_seconds``."""
        unhealthy: dict[int, str] = {}
        for loop_id, m in self.get_metrics().items():
            if m.healthy:
                continue
            if not self._running:
                unhealthy[loop_id] = "manager not running"
            elif not m.running:
                unhealthy[loop_id] = f"loop is {m.phase}"
            else:
                unhealthy[loop_id] = (
                    f"no heartbeat for {m.heartbeat_age_seconds:.1f}s "
                    f"(timeout {self.timeout_seconds:g}s): its event loop is blocked"
                )
        healthy = self._running and bool(self._assignment) and not unhealthy
        return ManagerHealth(healthy=healthy, unhealthy=unhealthy)


def _phase_name(phase: int, alive: bool) -> str:
    if phase == _CRASHED or (not alive and phase in (_RUNNING, _STOPPING)):
        return "dead"
    return _PHASE_NAMES.get(phase, "dead")


def _is_async_callable(fn: object) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return call is not None and inspect.iscoroutinefunction(call)
