"""A real Dask scheduler and ``dask worker`` processes on loopback, for the research tests.

Each worker is started with ``--no-nanny``, so the process the test holds *is* the worker: a
SIGKILL to it is a worker dying mid-task, with no nanny to restart it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.services import tcp_reachable
from tests.waiting import wait_until

DASK = str(Path(sys.executable).with_name("dask"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DaskCluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def kill_worker(self, name: str) -> int:
        """SIGKILL the worker process ``name``; its pid."""
        proc = self.workers[name]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        return proc.pid


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


@contextmanager
def dask_cluster(folder: Path, workers: int = 2) -> Iterator[DaskCluster]:
    """A scheduler on a free loopback port (no dashboard) and ``workers`` single-threaded
    worker processes named ``w0``, ``w1``…; everything is stopped on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = open(folder / "dask.log", "wb")  # noqa: SIM115 - closed below
    scheduler = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=log, stderr=subprocess.STDOUT, cwd=folder,
    )  # fmt: skip
    cluster = DaskCluster(address, scheduler)
    try:
        wait_until(lambda: tcp_reachable("127.0.0.1", port), 60, what="the Dask scheduler")
        for i in range(workers):
            name = f"w{i}"
            cluster.workers[name] = subprocess.Popen(
                [DASK, "worker", address, "--name", name, "--nthreads", "1", "--no-nanny",
                 "--no-dashboard", "--host", "127.0.0.1",
                 "--local-directory", str(folder / name)],
                stdout=log, stderr=subprocess.STDOUT, cwd=folder,
            )  # fmt: skip
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
        yield cluster
    finally:
        for proc in cluster.workers.values():
            _stop(proc)
        _stop(scheduler)
        log.close()
