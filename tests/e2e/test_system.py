"""Whole-system runs: a real server process, real worker processes, real HTTP (the
faults production sees are in test_faults.py)."""

from __future__ import annotations

import os
import signal

import pytest

from tests.support.stack import Stack, wait_until

pytestmark = pytest.mark.e2e


def batch_counts(stack: Stack, name: str) -> dict[str, int]:
    found = stack.client().batch_list(name=name)
    return found[0]["counts"] if found else {}


def all_succeeded(stack: Stack, name: str, total: int) -> bool:
    return batch_counts(stack, name).get("succeeded") == total


def ended_locally(stack: Stack, worker: str) -> int:
    """Tasks whose stdout, in the worker's execution folders, says they ended."""
    ended = 0
    for log in (stack.root / f"work-{worker}" / "executions").glob("*/stdout.log"):
        try:
            ended += b"end " in log.read_bytes()
        except FileNotFoundError:  # a folder recycled meanwhile
            continue
    return ended


def test_thousand_tasks_across_two_workers(stack: Stack) -> None:
    client = stack.client()
    client.tasks_create([{"command": "true", "batch": "k"} for _ in range(1000)])
    stack.start_worker("a", concurrency=4, prefetch=4)
    stack.start_worker("b", concurrency=4, prefetch=4)
    wait_until(lambda: all_succeeded(stack, "k", 1000), timeout=240, interval=0.5,
               what="1000 tasks to succeed")
    executions = client.execution_list(batch="k")
    assert {e["status"] for e in executions} == {"succeeded"}
    assert len({e["task_id"] for e in executions}) == 1000
    assert len({e["worker_id"] for e in executions}) == 2


def test_worker_killed_mid_task_is_rerun_elsewhere_exactly_once(stack: Stack) -> None:
    client = stack.client()
    victim = stack.start_worker("victim", concurrency=1)
    wait_until(lambda: client.worker_list(name="victim"), timeout=30, what="registration")
    task = client.task_create("sleep 2; echo finished", shell=True, batch="kill")
    wait_until(lambda: client.task_get(task["id"])["status"] == "running", timeout=30,
               what="task running on the victim")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    stack.start_worker("survivor", concurrency=1)
    final = client.join([task], timeout=60)[0]
    assert final["status"] == "succeeded"
    assert (final["retries_used"], final["losses"]) == (0, 1)
    executions = client.task_executions(task["id"])
    assert [e["status"] for e in executions] == ["lost", "succeeded"]
    survivor = client.worker_list(name="survivor")[0]["id"]
    assert executions[1]["worker_id"] == survivor
    assert client.task_output(task["id"])[0] == b"finished\n"


def test_tasks_survive_the_network_going_away(stack: Stack) -> None:
    """The server vanishes while tasks run; logs and results arrive when it returns."""
    client = stack.client()
    stack.start_worker("patient", concurrency=2)
    wait_until(lambda: client.worker_list(name="patient"), timeout=30, what="registration")
    tasks = client.tasks_create([
        {"command": f"echo start {i}; sleep 3; echo end {i}", "shell": True, "batch": "net"}
        for i in range(2)
    ])
    wait_until(lambda: batch_counts(stack, "net").get("running") == 2, timeout=30,
               what="tasks running")
    stack.kill_server()
    # tasks finish while the server is gone: their ends are in the worker's own logs
    wait_until(lambda: ended_locally(stack, "patient") == 2, timeout=30,
               what="both tasks ended while the server is gone")
    stack.start_server()
    final = stack.client().join(tasks, timeout=60)
    assert [t["status"] for t in final] == ["succeeded", "succeeded"]
    for index, task in enumerate(tasks):
        assert stack.client().task_output(task["id"])[0] == f"start {index}\nend {index}\n".encode()
    assert os.path.isdir(stack.data_dir)
