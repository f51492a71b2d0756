"""The README's run command: `scitq-bench up` brings a usable server and worker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from scitq_bench.client import Client
from tests.support.postgres import free_port

pytestmark = pytest.mark.e2e


def test_up_runs_tasks_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, HOME=str(tmp_path), SCITQ_BENCH_DATA_DIR=str(tmp_path / "data"),
               SCITQ_BENCH_CONFIG=str(tmp_path / "client.json"), PYTHONUNBUFFERED="1")
    for name in ("SCITQ_BENCH_SERVER", "SCITQ_BENCH_TOKEN", "SCITQ_BENCH_DATABASE_URL"):
        env.pop(name, None)
    log = tmp_path / "up.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "scitq_bench.cli.main", "up", "--port", str(port),
             "--concurrency", "2", "--prefetch", "5"],
            env=env, stdout=output, stderr=subprocess.STDOUT,
        )
        try:
            token = _wait_for_token(log, process)
            client = Client(f"http://127.0.0.1:{port}", token)
            task = client.task_create("echo $((6*7))", shell=True, batch="tour")
            final = client.join([task], timeout=60)[0]
            assert final["status"] == "succeeded"
            (worker,) = client.worker_list()
            assert (worker["provider"], worker["permanent"], worker["concurrency"],
                    worker["prefetch"]) == ("local", True, 2, 5)
            assert client.task_output(task["id"])[0] == b"42\n"
            assert (tmp_path / "data" / "admin_token").stat().st_mode & 0o777 == 0o600
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=60)
    assert code == 0, log.read_text()
    # the worker was hired through the local provider and given back: nothing is left
    url = f"http://127.0.0.1:{port}"
    left = [p.pid for p in psutil.process_iter(["cmdline"])
            if url in " ".join(p.info["cmdline"] or [])]
    assert left == [], log.read_text()


def _wait_for_token(log: Path, process: subprocess.Popen) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        found = re.search(r"Admin token: (\S+)", log.read_text())
        if found:
            return found.group(1)
        assert process.poll() is None, log.read_text()
        time.sleep(0.2)
    raise AssertionError(f"`up` printed no token: {log.read_text()}")
