"""The keeper with real processes: a worker that dies takes its tasks' processes with it
(groups, sessions, children that moved to a group of their own), a keeper killed too
leaves a journal the next start reaps, and a reused pid is never taken for a task."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from scitq_bench.client.worker.keeper import Keeper, proc_info, reap
from tests.support.stack import wait_until

# A task with a child in its process group, and a grandchild that moved to a process
# group of its own (same session): all three must go.
TASK = ("sleep {n} & " + sys.executable
        + " -c 'import os, time; os.setpgid(0, 0); time.sleep({n})' & wait")
# A stand-in for the worker: starts its keeper and two tasks the way the agent does,
# prints their pids, then waits to be killed.
WORKER = """
import json, subprocess, sys, time
from pathlib import Path
from scitq_bench.client.worker.keeper import Keeper
keeper = Keeper.start(Path(sys.argv[1]), "fake")
tasks = [subprocess.Popen(["sh", "-c", command], start_new_session=True)
         for command in sys.argv[2:]]
for task in tasks:
    keeper.watch_process(task.pid)
print(json.dumps({"keeper": keeper.pid, "tasks": [t.pid for t in tasks]}), flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    try:
        return [pid] + [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def start_task(seconds: int) -> subprocess.Popen[bytes]:
    """A task started the way the executor starts one (a session of its own); waits
    until its grandchild has moved to its own group."""
    task = subprocess.Popen(["sh", "-c", TASK.format(n=seconds)], start_new_session=True)
    wait_until(lambda: len(groups(task.pid)) == 2, timeout=10, interval=0.02,
               what="the task's processes")
    return task


def groups(pid: int) -> set[int]:
    """The process groups of ``pid`` and its descendants."""
    found = set()
    for member in tree(pid):
        try:
            found.add(os.getpgid(member))
        except ProcessLookupError:
            pass
    return found


@pytest.fixture
def tasks() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Tasks to clean up whatever the test did."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for task in started:
        for pid in tree(task.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        task.wait()


def test_a_killed_worker_takes_its_tasks_along(tmp_path: Path) -> None:
    journal = tmp_path / "live-tasks"
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(journal), TASK.format(n=401), TASK.format(n=402)],
        stdout=subprocess.PIPE, start_new_session=True,
    )
    pids: list[int] = []
    try:
        assert worker.stdout is not None
        started = json.loads(worker.stdout.readline())
        pids += wait_until(lambda: (found := [p for t in started["tasks"] for p in tree(t)])
                           and len(found) == 6 and found, timeout=10, interval=0.02,
                           what="both tasks' processes")
        assert os.getsid(started["keeper"]) not in (os.getsid(worker.pid), os.getsid(0))
        os.killpg(worker.pid, signal.SIGKILL)  # the worker's whole group: not its keeper
        worker.wait()
        killed_at = time.monotonic()
        wait_until(lambda: not any(alive(pid) for pid in pids), timeout=2, interval=0.02,
                   what="no process of the tasks")
        wait_until(lambda: not alive(started["keeper"]), timeout=2, interval=0.02,
                   what="the keeper gone too")
        assert time.monotonic() - killed_at < 2
        assert not journal.exists()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        for pid in pids:  # whatever a failure left
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_signals_do_not_end_the_keeper_only_eof_does(tmp_path: Path, tasks: list) -> None:
    keeper = Keeper.start(tmp_path / "live-tasks", "w")
    assert keeper.pid is not None
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        os.kill(keeper.pid, signum)
    tasks.append(start_task(403))
    keeper.watch_process(tasks[0].pid)  # still listening: it ends the task at EOF
    pids = tree(tasks[0].pid)
    keeper.close()
    assert not [pid for pid in pids if alive(pid)]


def test_a_keeper_killed_with_its_worker_is_reaped_at_the_next_start(
        tmp_path: Path, tasks: list) -> None:
    journal = tmp_path / "live-tasks"
    keeper = Keeper.start(journal, "w")
    tasks.extend([start_task(404), start_task(405)])
    for task in tasks:
        keeper.watch_process(task.pid)
    keeper.forget_process(tasks[1].pid)  # ended, as far as the worker knows
    pids = tree(tasks[0].pid)
    spared = tree(tasks[1].pid)
    wait_until(lambda: journal.exists() and journal.read_text().count("\n") == 5,
               timeout=5, interval=0.02, what="the journal written")
    assert keeper.pid is not None
    os.kill(keeper.pid, signal.SIGKILL)
    wait_until(lambda: not alive(keeper.pid), timeout=5, what="the keeper killed")  # type: ignore[arg-type]
    assert all(alive(pid) for pid in pids)  # nobody ended them: what reap is for

    assert reap(journal) == (3, 0)
    assert not [pid for pid in pids if alive(pid)]
    assert all(alive(pid) for pid in spared)
    assert not journal.exists()
    keeper.close()


def test_a_reused_pid_or_another_boot_is_spared(tmp_path: Path, tasks: list) -> None:
    tasks.append(start_task(406))
    pid = tasks[0].pid
    info = proc_info(pid)
    assert info is not None
    journal = tmp_path / "live-tasks"
    journal.write_text(f"boot {Path('/proc/sys/kernel/random/boot_id').read_text().strip()}\n"
                       f"docker -\n+P {pid} {info.start + 1}\n")
    assert reap(journal) == (0, 0)  # same pid, another process: not ours
    journal.write_text(f"boot another-boot\ndocker -\n+P {pid} {info.start}\n")
    assert reap(journal) == (0, 0)  # the machine restarted since
    assert all(alive(p) for p in tree(pid))


def test_a_dead_keeper_is_replaced_with_everything_live(tmp_path: Path, tasks: list) -> None:
    keeper = Keeper.start(tmp_path / "live-tasks", "w")
    tasks.extend([start_task(407), start_task(408)])
    keeper.watch_process(tasks[0].pid)
    first = keeper.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: not alive(first), timeout=5, what="the keeper killed")
    keeper.watch_process(tasks[1].pid)  # the broken pipe starts another keeper
    assert keeper.pid not in (None, first)
    pids = tree(tasks[0].pid) + tree(tasks[1].pid)
    keeper.close()
    assert not [pid for pid in pids if alive(pid)]
