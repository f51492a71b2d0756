"""The fault suite: a real server and real workers, on SQLite and PostgreSQL, through
the faults production sees. Each test prints its counts."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.conftest import SUMMARY_PROPERTY
from tests.support.stack import Stack, counts, executions_by_task, succeeded, wait_until

pytestmark = pytest.mark.e2e

# MiB the server's processes may grow by, together, while a 200 MB log streams through
# and is read back: far less than the log, so no process holds it whole
SERVER_GROWTH_MIB = 150


@pytest.fixture
def report(record_property: Callable[[str, object], None]) -> Callable[[str], None]:
    """Print a scenario's counts in the run's summary (tests/conftest.py shows them)."""
    return lambda text: record_property(SUMMARY_PROPERTY, text)


def test_server_killed_twice_mid_batch_loses_and_repeats_nothing(stack: Stack, report: Callable[[str], None]) -> None:
    """300 tasks with a log line and an output file each; the server is SIGKILLed twice
    while they run. Every task succeeds exactly once; outputs and logs are byte-exact."""
    total = 300
    client = stack.client()
    client.tasks_create([
        {"command": f'echo "log {i}"; sleep 0.2; printf "payload-{i}" > "$OUTPUT/result.txt"',
         "shell": True, "batch": "crash", "output": f"server://crash/{i}/"}
        for i in range(total)
    ])
    stack.start_worker("a", concurrency=4)
    stack.start_worker("b", concurrency=4)
    done_at_kill = []
    for threshold in (30, 150):
        wait_until(lambda t=threshold: succeeded(stack, "crash") >= t, timeout=120,
                   what=f"{threshold} tasks done")
        done_at_kill.append(succeeded(stack, "crash"))
        stack.kill_server()
        time.sleep(1)
        stack.start_server()
    assert done_at_kill[-1] < total, "the second kill came after the batch ended"
    wait_until(lambda: succeeded(stack, "crash") == total, timeout=240, interval=0.5,
               what="every task after two restarts")
    by_task = executions_by_task(stack, "crash")
    runs = [[e["status"] for e in runs] for runs in by_task.values()]
    wins = [statuses.count("succeeded") for statuses in runs]
    stuck = {s for s, n in counts(stack, "crash").items() if n and s != "succeeded"}
    tasks = client.task_list(batch="crash")
    logs_exact = outputs_exact = 0
    for task in tasks:
        index = int(task["output"].rstrip("/").rsplit("/", 1)[1])
        logs_exact += client.task_output(task["id"])[0] == f"log {index}\n".encode()
    stored = {f["path"]: f["size"] for f in client.file_list("crash/")}
    for index in range(total):
        path = f"crash/{index}/result.txt"
        if path in stored:
            target = stack.root / "download.txt"
            client.file_download(path, target)
            outputs_exact += target.read_bytes() == f"payload-{index}".encode()
    report(f"server killed at {done_at_kill} of {total} succeeded; "
          f"tasks {len(by_task)}, succeeded once {wins.count(1)}, twice or more "
          f"{sum(w > 1 for w in wins)}, never {wins.count(0)}; executions lost "
          f"{sum(s.count('lost') for s in runs)}; stuck statuses {sorted(stuck)}; "
          f"logs exact {logs_exact}, outputs exact {outputs_exact}, files stored {len(stored)}")
    assert len(by_task) == total and wins == [1] * total
    assert not stuck
    assert logs_exact == total and outputs_exact == total and len(stored) == total
    assert all(w.poll() is None for w in stack.workers.values()), "workers must survive"


def test_server_stopped_for_two_leases_declares_no_worker_lost(stack: Stack, report: Callable[[str], None]) -> None:
    """The server process is suspended (SIGSTOP) for twice the lease while healthy
    workers run long tasks: when it resumes, nothing is lost and nothing runs twice."""
    client = stack.client()
    stack.start_worker("a", concurrency=2)
    stack.start_worker("b", concurrency=2)
    wait_until(lambda: len(client.worker_list()) == 2, timeout=30, what="two workers")
    tasks = client.tasks_create([
        {"command": f"sleep 10; echo done {i}", "shell": True, "batch": "stall"}
        for i in range(4)
    ])
    wait_until(lambda: counts(stack, "stall").get("running") == 4, timeout=30,
               what="four tasks running")
    time.sleep(1)  # a heartbeat or two at the normal pace
    os.killpg(stack.server.pid, signal.SIGSTOP)
    time.sleep(2 * stack.lease_seconds)
    os.killpg(stack.server.pid, signal.SIGCONT)
    final = client.join(tasks, timeout=60)
    by_task = executions_by_task(stack, "stall")
    statuses = sorted(e["status"] for runs in by_task.values() for e in runs)
    report(f"server stopped {2 * stack.lease_seconds:g}s (lease {stack.lease_seconds:g}s); "
          f"executions {statuses}; losses {[t['losses'] for t in final]}")
    assert [t["status"] for t in final] == ["succeeded"] * 4
    assert statuses == ["succeeded"] * 4
    assert [t["losses"] for t in final] == [0] * 4
    assert "unresponsive" in stack.tail("server.log", 100_000)


def test_twenty_workers_claim_two_thousand_tasks_once_each(
        tmp_path: Path, database_url: str, report: Callable[[str], None]) -> None:
    """20 worker processes claim concurrently: no task is claimed twice, no two runs
    of a task overlap, and the server answers every call with a 2xx."""
    stack = Stack(root=tmp_path / "stack", database_url=database_url, access_log=True)
    stack.init()
    stack.start_server()
    try:
        client = stack.client()
        for index in range(20):
            stack.start_worker(f"s{index}", concurrency=1, prefetch=1)
        wait_until(lambda: len(client.worker_list()) == 20, timeout=120, what="20 workers")
        total = 2000
        client.tasks_create([{"command": "true", "batch": "s"} for _ in range(total)])
        wait_until(lambda: succeeded(stack, "s") == total, timeout=300, interval=0.5,
                   what=f"{total} tasks on 20 workers")
        by_task = executions_by_task(stack, "s")
        wins = [sum(e["status"] == "succeeded" for e in runs) for runs in by_task.values()]
        overlaps = 0
        for runs in by_task.values():  # never two live executions: runs never overlap
            runs.sort(key=lambda e: e["created_at"])
            for earlier, later in zip(runs, runs[1:], strict=False):
                overlaps += not (earlier["finished_at"]
                                 and earlier["finished_at"] <= later["created_at"])
        answers = stack.status_counts()
        failed = {code: n for code, n in answers.items() if not 200 <= code < 300}
        workers = {e["worker_id"] for runs in by_task.values() for e in runs}
        report(f"{total} tasks, 20 workers: claimed twice {sum(w > 1 for w in wins)}, "
              f"overlapping runs {overlaps}, workers used {len(workers)}, "
              f"answers {sum(answers.values())}, non-2xx {failed}")
        assert len(by_task) == total and wins == [1] * total and overlaps == 0
        assert sum(answers.values()) > total and not failed
        assert len(workers) >= 10
    finally:
        stack.stop()


def test_two_hundred_megabyte_log_keeps_memory_bounded(stack: Stack, report: Callable[[str], None]) -> None:
    """A task prints 200 MB: each server process and the worker stay under 300 MB
    resident, the server's processes together grow by less than the log (nowhere is it
    held whole), the log reads back whole and by offset, and the worker's folder is
    emptied afterwards."""
    client = stack.client()
    size = 200 * 1000 * 1000
    worker = stack.start_worker("chatty", concurrency=1)
    wait_until(lambda: client.worker_list(name="chatty"), timeout=30, what="registration")
    server, chatty = psutil.Process(stack.server.pid), psutil.Process(worker.pid)
    peaks = {name: 0 for name in ("server largest", "server sum", "worker")}

    def sample() -> None:
        largest, total, _count = _server_rss(server)
        for name, value in (("server largest", largest), ("server sum", total),
                            ("worker", _python_rss(chatty))):
            peaks[name] = max(peaks[name], value)

    _largest, idle, count = _server_rss(server)
    task = client.task_create(f"head -c {size} /dev/zero | tr '\\0' 'x'", shell=True,
                              batch="big")
    deadline = time.monotonic() + 240
    while client.task_get(task["id"])["status"] not in ("succeeded", "failed"):
        sample()
        assert time.monotonic() < deadline, "the chatty task did not finish"
        time.sleep(0.1)
    assert client.task_get(task["id"])["status"] == "succeeded"
    digest, offset = hashlib.sha256(), 0
    while True:  # reading it back must not hold it whole either
        data, offset, _status = client.task_output(task["id"], offset=offset, limit=8 * 2**20)
        sample()
        if not data:
            break
        digest.update(data)
    tail, end, _ = client.task_output(task["id"], offset=size - 5)
    wait_until(lambda: _folder_bytes(stack.root / "work-chatty") < 2**20, timeout=30,
               what="the worker's folder emptied")
    left = _folder_bytes(stack.root / "work-chatty")
    mib = {name: round(peak / 2**20) for name, peak in peaks.items()}
    growth = mib["server sum"] - round(idle / 2**20)
    report(f"200 MB log: peak RSS {mib} MiB over the server's {count} processes and the "
          f"worker; server sum idle {round(idle / 2**20)} MiB, grew {growth} MiB; read "
          f"back {offset} bytes; worker folder left {left} bytes")
    assert mib["server largest"] < 300 and mib["worker"] < 300, mib
    assert growth < SERVER_GROWTH_MIB, (growth, mib)
    assert offset == size and digest.hexdigest() == hashlib.sha256(b"x" * size).hexdigest()
    assert (tail, end) == (b"xxxxx", size)


def _server_rss(supervisor: psutil.Process) -> tuple[int, int, int]:
    """Resident memory of ``server run``'s processes (supervisor, API processes,
    background process): the largest one's, their sum, and how many they are."""
    sizes = []
    for process in [supervisor, *supervisor.children(recursive=True)]:
        try:
            sizes.append(process.memory_info().rss)
        except psutil.NoSuchProcess:
            pass
    return max(sizes), sum(sizes), len(sizes)


def _python_rss(process: psutil.Process) -> int:
    """Resident memory of a process and its Python children (not the task itself)."""
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            if "python" in child.name() or "gunicorn" in child.name():
                total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def _folder_bytes(root: Path) -> int:
    total = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except FileNotFoundError:
                pass
    return total
