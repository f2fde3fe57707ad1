"""Run ``faust -A huracan worker`` as a child process for a given config (demo, replay, tests,
bench): :func:`running_worker` starts it with the config passed through environment overrides
(:func:`config_env`), waits until it serves its web port, and stops it (SIGTERM, then SIGKILL)
on exit; :class:`WorkerStartError` carries the log tail of a worker that did not start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from huracan.config import HuracanConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_env(cfg: HuracanConfig, port: int, datadir: Path) -> dict[str, str]:
    """Environment overrides that make a child worker use ``cfg``'s topics, app id and sizes."""
    p = cfg.kafka.partitions
    registry = cfg.engine.model_registry
    archive = cfg.storage.archive
    return {
        # the archive agent: the root resolved here, since the child runs in its own workdir
        "HURACAN__storage__archive__enabled": str(archive.enabled).lower(),
        "HURACAN__storage__archive__root": str(Path(archive.root).resolve()),
        "HURACAN__storage__archive__topics": ",".join(archive.topics),
        "HURACAN__storage__archive__flush_rows": str(archive.flush_rows),
        "HURACAN__storage__archive__flush_seconds": str(archive.flush_seconds),
        "HURACAN__storage__archive__row_group_size": str(archive.row_group_size),
        "HURACAN_KAFKA_BOOTSTRAP": cfg.kafka.bootstrap_servers,
        "HURACAN__kafka__topic_prefix": cfg.kafka.topic_prefix,
        "HURACAN__faust__app_id": cfg.faust.app_id,
        "HURACAN__faust__web_port": str(port),
        "HURACAN__faust__batch_size": str(cfg.faust.batch_size),
        "HURACAN__faust__batch_timeout_s": str(cfg.faust.batch_timeout_s),
        "HURACAN__faust__order_idle_ms": str(cfg.faust.order_idle_ms),
        "HURACAN__faust__order_stall_ms": str(cfg.faust.order_stall_ms),
        "HURACAN__faust__processing_guarantee": cfg.faust.processing_guarantee,
        "HURACAN__faust__datadir": str(datadir),
        **{f"HURACAN__kafka__partitions__{k}": str(getattr(p, k)) for k in type(p).model_fields},
        # the model registry the signals come from (the child runs in its own workdir)
        "HURACAN__engine__model_registry__storage_path": str(Path(registry.storage_path).resolve()),
        "HURACAN__engine__model_registry__metadata_db": (
            registry.metadata_db.get_secret_value() if registry.metadata_db else ""
        ),
        "HURACAN__engine__model_registry__refresh_seconds": str(registry.refresh_seconds),
    }


@dataclass
class WorkerHandle:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def get(self, path: str, timeout: float = 5.0) -> bytes | None:
        """GET ``path`` from the worker's web server; the body (also of an error), or None."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}{path}", timeout=timeout
            ) as r:
                return bytes(r.read())
        except urllib.error.HTTPError as exc:
            return bytes(exc.read())
        except OSError:
            return None


class WorkerStartError(RuntimeError):
    """The worker exited or did not serve its web port in time; the message has its log tail."""


@contextmanager
def running_worker(
    cfg: HuracanConfig,
    workdir: Path,
    *,
    extra_env: dict[str, str] | None = None,
    start_timeout: float = 90.0,
) -> Iterator[WorkerHandle]:
    """Start a worker for ``cfg`` in ``workdir``; stop it with SIGTERM (then SIGKILL) on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, **config_env(cfg, port, workdir / "faust"), **(extra_env or {})}
    log_path = workdir / f"worker-{port}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter's faust script
        [str(Path(sys.executable).with_name("faust")), "-A", "huracan", "worker", "-l", "info"],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    handle = WorkerHandle(proc, port, log_path)
    try:
        deadline = time.monotonic() + start_timeout
        while handle.get("/metrics") is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise WorkerStartError(f"worker did not start (exit {proc.poll()}):\n{tail}")
            time.sleep(0.2)
        yield handle
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
