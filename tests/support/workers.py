"""Worker agents in threads, for tests against a live server: start one (waiting for
its registration), stop it, read what its tasks did."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scitq_bench.client import Client
from scitq_bench.client.worker.agent import WorkerAgent
from tests.support.waiting import wait_until

# short timings, so stopping and signals take well under a second
FAST = {"kill_grace": 1.0, "claim_wait": 1.0, "stop_timeout": 10.0, "claim_stop_wait": 1.5}


def run_worker_in_thread(live_server: Any, work_dir: Path, name: str = "w1",
                         client: Client | None = None,
                         **options: Any) -> tuple[WorkerAgent, threading.Thread]:
    """Start an agent in a thread and wait until it is registered."""
    settings = {"concurrency": 2, **FAST, **options}
    agent = WorkerAgent(client or live_server.client(), name=name, work_dir=work_dir,
                        **settings)
    thread = threading.Thread(target=agent.run, name=f"agent-{name}", daemon=True)
    thread.start()
    wait_until(lambda: agent.worker_id is not None, what="registration")
    return agent, thread


def stop_worker(agent: WorkerAgent, thread: threading.Thread, timeout: float = 15.0) -> float:
    """Stop the agent and wait for ``run()`` to return; the seconds that took."""
    began = time.monotonic()
    agent.stop()
    thread.join(timeout)
    assert not thread.is_alive(), "run() did not return after stop()"
    return time.monotonic() - began


@contextmanager
def running_worker(live_server: Any, tmp_path: Path, name: str = "w1",
                   **options: Any) -> Iterator[WorkerAgent]:
    """An agent working for ``live_server`` while the block runs."""
    agent, thread = run_worker_in_thread(live_server, tmp_path / f"work-{name}", name, **options)
    try:
        yield agent
    finally:
        stop_worker(agent, thread)


def finish(client: Client, tasks: list[dict[str, Any]], timeout: float = 15.0) -> list[dict]:
    """The tasks once they all ended."""
    return client.join(tasks, interval=0.05, timeout=timeout)


def executions(client: Client, task_id: int) -> list[dict[str, Any]]:
    return client.task_executions(task_id)


def stdout_of(client: Client, task: dict[str, Any]) -> bytes:
    """The stdout of the task's last execution."""
    execution = executions(client, task["id"])[-1]
    return client.execution_log(execution["id"], "stdout")[0]
