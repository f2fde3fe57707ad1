"""`faust -A huracan worker` starts on the real broker, joins its group, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _group_state(admin: AdminClient, group: str) -> ConsumerGroupState | None:
    futures = admin.describe_consumer_groups([group], request_timeout=10)
    try:
        return futures[group].result(timeout=10).state
    except Exception:
        return None


def _web_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_faust_worker_when_started_then_joins_group_and_stops_cleanly_on_sigterm(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # arrange
    app_id = f"huracan-worker-test-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    env = {
        **os.environ,
        "HURACAN_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "HURACAN__faust__app_id": app_id,
        "HURACAN__faust__web_port": str(port),
    }
    faust_bin = Path(sys.executable).with_name("faust")
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [str(faust_bin), "-A", "huracan", "worker", "-l", "info"],
        cwd=tmp_path,  # not the repo: the installed package must be found on its own
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    try:
        # act: wait for the worker to be up
        wait_until(
            lambda: proc.poll() is None and _web_ok(port), timeout=90, what="worker web server"
        )
        wait_until(
            lambda: _group_state(admin, app_id) == ConsumerGroupState.STABLE,
            timeout=90,
            what="the worker's consumer group to become stable",
        )
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()

    # assert: exit status 0 and the group left, not timed out
    output = (tmp_path / "worker.log").read_text(errors="replace")
    assert rc == 0, output[-3000:]
    assert not _web_ok(port)
    wait_until(
        lambda: _group_state(admin, app_id) in (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD),
        timeout=30,
        what="the group to be left on shutdown",
    )
