"""Containers across a worker crash: real server and worker processes, a real engine."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from scitq_bench.client.worker.container import LABEL_WORKER
from tests.support.engine import TEST_IMAGE
from tests.support.stack import Stack, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.engine]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


def containers(docker_client: Any, worker: str) -> list[Any]:
    return docker_client.containers.list(all=True, filters={"label": f"{LABEL_WORKER}={worker}"})


def test_killed_worker_leaves_no_orphan_container(stack: Stack, docker_host: str,
                                                  docker_client: Any) -> None:
    """SIGKILL the worker while its container runs: the container survives the crash,
    the worker's next start removes it, and the task runs again (the lost run spends
    no retry)."""
    stack.extra_env["DOCKER_HOST"] = docker_host
    client = stack.client()
    worker = stack.start_worker("boxer", concurrency=1, containers=True)
    task = client.task_create("echo run; sleep 4; echo finished", shell=True,
                              container=TEST_IMAGE)
    wait_until(lambda: [c for c in containers(docker_client, "boxer") if c.status == "running"],
               timeout=60, what="the container running")
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert [c.status for c in containers(docker_client, "boxer")] == ["running"]

    stack.start_worker("boxer", concurrency=1, containers=True)
    final = client.join([task], timeout=90)[0]
    assert final["status"] == "succeeded"
    assert (final["retries_used"], final["losses"]) == (0, 1)
    runs = client.task_executions(task["id"])
    assert [e["status"] for e in runs] == ["lost", "succeeded"]
    assert client.task_output(task["id"])[0] == b"run\nfinished\n"
    wait_until(lambda: containers(docker_client, "boxer") == [], timeout=20,
               what="no container left")
