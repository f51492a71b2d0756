"""Whole-system runs: a real server process, real worker processes, real HTTP."""

from __future__ import annotations

import hashlib
import os
import signal
import time

import psutil
import pytest

from tests.support.stack import Stack, wait_until

pytestmark = pytest.mark.e2e


def batch_counts(stack: Stack, name: str) -> dict[str, int]:
    found = stack.client().batch_list(name=name)
    return found[0]["counts"] if found else {}


def all_succeeded(stack: Stack, name: str, total: int) -> bool:
    return batch_counts(stack, name).get("succeeded") == total


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


def test_server_killed_and_restarted_mid_batch(stack: Stack) -> None:
    client = stack.client()
    client.tasks_create([{"command": "sleep 0.05", "batch": "r"} for _ in range(200)])
    stack.start_worker("a", concurrency=4)
    stack.start_worker("b", concurrency=4)
    wait_until(lambda: batch_counts(stack, "r").get("succeeded", 0) >= 20, timeout=60,
               what="first tasks done")
    stack.kill_server()
    time.sleep(2)
    stack.start_server()
    wait_until(lambda: all_succeeded(stack, "r", 200), timeout=180, interval=0.5,
               what="all tasks after the restart")
    executions = stack.client().execution_list(batch="r", status="succeeded")
    assert len(executions) == 200 and len({e["task_id"] for e in executions}) == 200
    assert all(w.poll() is None for w in stack.workers.values()), "workers must survive"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_twenty_workers_claiming_concurrently(stack: Stack) -> None:
    """PostgreSQL's row locking under contention (SQLite has a single writer)."""
    client = stack.client()
    for index in range(20):
        stack.start_worker(f"s{index}", concurrency=1, prefetch=1)
    wait_until(lambda: len(client.worker_list()) == 20, timeout=120, what="20 workers")
    client.tasks_create([{"command": "true", "batch": "s"} for _ in range(400)])
    wait_until(lambda: all_succeeded(stack, "s", 400), timeout=240, interval=0.5,
               what="400 tasks on 20 workers")
    executions = client.execution_list(batch="s")
    succeeded = [e for e in executions if e["status"] == "succeeded"]
    assert len(succeeded) == 400 and len({e["task_id"] for e in succeeded}) == 400
    by_task: dict[int, list[dict]] = {}
    for execution in executions:
        by_task.setdefault(execution["task_id"], []).append(execution)
    for runs in by_task.values():  # never two live executions: runs never overlap
        runs.sort(key=lambda e: e["created_at"])
        for earlier, later in zip(runs, runs[1:], strict=False):
            assert earlier["finished_at"] and earlier["finished_at"] <= later["created_at"]
    assert len({e["worker_id"] for e in succeeded}) >= 10


def test_fifty_megabyte_log_keeps_memory_flat(stack: Stack) -> None:
    client = stack.client()
    size = 50 * 1000 * 1000
    worker = stack.start_worker("chatty", concurrency=1)
    wait_until(lambda: client.worker_list(name="chatty"), timeout=30, what="registration")
    server_process = psutil.Process(stack.server.pid)
    worker_process = psutil.Process(worker.pid)
    baseline = {"server": _rss_tree(server_process), "worker": _rss_tree(worker_process)}
    command = f"head -c {size} /dev/zero | tr '\\0' 'x'"
    task = client.task_create(command, shell=True, batch="big")
    peaks = dict(baseline)
    deadline = time.monotonic() + 180
    while client.task_get(task["id"])["status"] not in ("succeeded", "failed"):
        peaks["server"] = max(peaks["server"], _rss_tree(server_process))
        peaks["worker"] = max(peaks["worker"], _rss_tree(worker_process))
        assert time.monotonic() < deadline, "the chatty task did not finish"
        time.sleep(0.1)
    assert client.task_get(task["id"])["status"] == "succeeded"
    growth = {k: (peaks[k] - baseline[k]) / 2**20 for k in baseline}
    assert growth["server"] < 40 and growth["worker"] < 40, growth
    # read back whole, in pages, and by offset
    digest, offset = hashlib.sha256(), 0
    while True:
        data, offset, _status = client.task_output(task["id"], offset=offset, limit=4 * 2**20)
        if not data:
            break
        digest.update(data)
    assert offset == size
    assert digest.hexdigest() == hashlib.sha256(b"x" * size).hexdigest()
    tail, end, _ = client.task_output(task["id"], offset=size - 5)
    assert (tail, end) == (b"xxxxx", size)


def _rss_tree(process: psutil.Process) -> int:
    """Resident memory of a process and its Python children (not the task itself)."""
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            if "python" in child.name() or "gunicorn" in child.name():
                total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


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
    time.sleep(5)  # tasks finish while the server is gone
    stack.start_server()
    final = stack.client().join(tasks, timeout=60)
    assert [t["status"] for t in final] == ["succeeded", "succeeded"]
    for index, task in enumerate(tasks):
        assert stack.client().task_output(task["id"])[0] == f"start {index}\nend {index}\n".encode()
    assert os.path.isdir(stack.data_dir)
