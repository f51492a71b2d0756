"""No task outlives its worker: real server, worker and task processes (and a real
sandbox and container engine). A worker killed with SIGKILL takes its tasks' processes
along within 2 s, so the re-queued tasks never run twice at once; a worker restarted
under the same name kills what its predecessor left before it registers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil
import pytest

from scitq_bench.client.worker.container import LABEL_WORKER
from tests.support.engine import TEST_IMAGE
from tests.support.stack import Stack, wait_until

pytestmark = pytest.mark.e2e

FIRST_RUN = 5  # seconds the first run of a task sleeps; later runs are short
GONE_WITHIN = 2.0  # seconds after the worker's death by which its tasks must be gone
REQUEUED_WITHIN = 2.0  # seconds past the lease: the server's reaper passes every second
# The side effect of a task, before and after its sleep, one line per run: the
# execution's id. Only the first run sleeps long, so a surviving first run would
# write its "after" line while the test still watches.
COMMAND = (
    "m={marks}/{key}; echo $SCITQ_BENCH_EXECUTION_ID >> $m.before; "
    "if [ $(wc -l < $m.before) -eq 1 ]; then s={first}; else s=0.2; fi; "
    "sleep $s & wait; echo $SCITQ_BENCH_EXECUTION_ID >> $m.after"
)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def task_processes(worker: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """What the worker runs, less its keeper."""
    try:
        found = psutil.Process(worker.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in found if not _is_keeper(p)]


def _is_keeper(process: psutil.Process) -> bool:
    try:
        return any(part.endswith("keeper.py") for part in process.cmdline())
    except psutil.Error:
        return False


def keeper_of(worker: subprocess.Popen[bytes]) -> psutil.Process:
    return next(p for p in psutil.Process(worker.pid).children() if _is_keeper(p))


def sleeping(processes: list[psutil.Process], seconds: int | str) -> list[psutil.Process]:
    found = []
    for process in processes:
        try:
            if process.cmdline() == ["sleep", str(seconds)]:
                found.append(process)
        except psutil.Error:
            continue
    return found


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """Pids to kill at the end, whatever the test did."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def start_marked_tasks(stack: Stack, worker: subprocess.Popen[bytes], marks: Path,
                       keys: tuple[str, ...]) -> tuple[list[dict[str, Any]], list[int]]:
    """The tasks, once each runs its first sleep; with the pids of all their processes."""
    client = stack.client()
    tasks = client.tasks_create([
        {"command": COMMAND.format(marks=marks, key=key, first=FIRST_RUN), "shell": True,
         "batch": "death"} for key in keys])
    sleeps = wait_until(lambda: len(found := sleeping(task_processes(worker), FIRST_RUN))
                        == len(keys) and found, timeout=30, interval=0.05,
                        what="every task sleeping")
    return tasks, [p.pid for p in sleeps] + [p.ppid() for p in sleeps]  # with their shells


def kill(worker: subprocess.Popen[bytes]) -> datetime:
    """SIGKILL, as the OOM killer would; returns the moment, on the server's clock."""
    killed_at = datetime.now(timezone.utc).replace(tzinfo=None)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    return killed_at


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def check_ran_once_more(stack: Stack, tasks: list[dict[str, Any]], marks: Path,
                        keys: tuple[str, ...], first_started: float) -> None:
    """Each task: lost once (no retry spent), then succeeded; its side effect after the
    sleep happened exactly once, by the second run."""
    client = stack.client()
    finals = client.join(tasks, timeout=90)
    # a first run that survived would have written its "after" line by now
    time.sleep(max(0.0, first_started + FIRST_RUN + 1 - time.monotonic()))
    for task, key in zip(finals, keys, strict=True):
        assert task["status"] == "succeeded", task
        assert (task["retries_used"], task["losses"]) == (0, 1)
        runs = client.task_executions(task["id"])
        assert [e["status"] for e in runs] == ["lost", "succeeded"]
        assert lines(marks / f"{key}.before") == [str(e["id"]) for e in runs]
        assert lines(marks / f"{key}.after") == [str(runs[1]["id"])]


def first_runs_lost(stack: Stack, tasks: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    runs = [stack.client().task_executions(t["id"])[0] for t in tasks]
    return runs if all(run["status"] == "lost" for run in runs) else None


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.rstrip("Z"))


def busy_victim(stack: Stack, tmp_path: Path, name: str, keys: tuple[str, ...]
                ) -> tuple[Path, subprocess.Popen, list[dict], list[int], float]:
    """A worker running one marked task per key: (marks folder, worker, tasks, their
    pids, when they started)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    victim = stack.start_worker(name, concurrency=len(keys))
    wait_until(lambda: stack.client().worker_list(name=name), timeout=30, what="registration")
    first_started = time.monotonic()
    tasks, pids = start_marked_tasks(stack, victim, marks, keys)
    return marks, victim, tasks, pids, first_started


def test_a_killed_worker_takes_its_tasks_along(stack: Stack, tmp_path: Path,
                                               leftovers: list[int]) -> None:
    """Two long tasks, each with a child: SIGKILL the worker and within 2 s none of
    their processes is left; the leases expire within lease + 2 s, the
    tasks run again elsewhere, each side effect once."""
    keys = ("a", "b")
    marks, victim, tasks, pids, first_started = busy_victim(stack, tmp_path, "victim", keys)
    leftovers.extend(pids)

    killed_at = kill(victim)
    wait_until(lambda: not [pid for pid in pids if alive(pid)], timeout=GONE_WITHIN,
               interval=0.02, what="no process of the tasks")

    stack.start_worker("heir", concurrency=2)
    lost = wait_until(lambda: first_runs_lost(stack, tasks), interval=0.1,
                      timeout=stack.lease_seconds + REQUEUED_WITHIN + 10, what="leases expired")
    for execution in lost:
        late = (instant(execution["finished_at"]) - killed_at).total_seconds()
        assert late <= stack.lease_seconds + REQUEUED_WITHIN, late
    check_ran_once_more(stack, tasks, marks, keys, first_started)


def test_a_restarted_worker_kills_what_its_predecessor_left(
        stack: Stack, tmp_path: Path, leftovers: list[int]) -> None:
    """The keeper dies with its worker (both SIGKILLed), so the tasks live on; the
    worker started again under the same name kills them before it registers (which
    re-queues them), then runs them again: each side effect once."""
    keys = ("c", "d")
    marks, victim, tasks, pids, first_started = busy_victim(stack, tmp_path, "phoenix", keys)
    leftovers.extend(pids)
    keeper = keeper_of(victim)
    victim.send_signal(signal.SIGSTOP)  # or it would start another keeper at its next write
    keeper.kill()
    wait_until(lambda: not alive(keeper.pid), timeout=10, interval=0.02, what="the keeper gone")
    kill(victim)
    assert all(alive(pid) for pid in pids)  # left behind: nobody ends them now

    stack.start_worker("phoenix", concurrency=2)
    wait_until(lambda: first_runs_lost(stack, tasks), timeout=30, interval=0.02,
               what="the registration re-queuing the tasks")
    assert not [pid for pid in pids if alive(pid)]  # killed before registering
    check_ran_once_more(stack, tasks, marks, keys, first_started)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap is not installed")
def test_a_killed_worker_takes_its_sandboxed_task_along(stack: Stack,
                                                        leftovers: list[int]) -> None:
    """A task with the codabench layout and no image runs in bubblewrap, in a session
    and PID namespace of its own: it goes too."""
    seconds = 400000 + uuid.uuid4().int % 100000
    client = stack.client()
    victim = stack.start_worker("boxed", concurrency=1)
    task = client.task_create(f"sleep {seconds} & wait", shell=True, layout="codabench")
    wait_until(lambda: sleeping(task_processes(victim), seconds), timeout=30, interval=0.05,
               what="the sandboxed task sleeping")
    pids = [p.pid for p in task_processes(victim)]
    leftovers.extend(pids)
    kill(victim)
    wait_until(lambda: not [pid for pid in pids if alive(pid)], timeout=GONE_WITHIN,
               interval=0.02, what="no process of the sandboxed task")
    final = wait_until(lambda: (t := client.task_get(task["id"]))["losses"] == 1 and t,
                       timeout=stack.lease_seconds + REQUEUED_WITHIN + 10, what="the lease lost")
    assert (final["status"], final["retries_used"]) == ("pending", 0)


@pytest.mark.engine
def test_a_killed_worker_takes_its_container_along(stack: Stack, docker_host: str,
                                                   docker_client: Any) -> None:
    """The keeper kills and removes the container through the engine."""
    seconds = 500000 + uuid.uuid4().int % 100000
    stack.extra_env["DOCKER_HOST"] = docker_host
    client = stack.client()
    victim = stack.start_worker("shipped", concurrency=1, containers=True)
    try:
        _killed_with_its_container(stack, client, victim, seconds, docker_client)
    finally:
        for container in docker_client.api.containers(
                all=True, filters={"label": f"{LABEL_WORKER}=shipped"}):
            docker_client.api.remove_container(container["Id"], force=True)


def _killed_with_its_container(stack: Stack, client: Any, victim: subprocess.Popen[bytes],
                               seconds: int, docker_client: Any) -> None:
    task = client.task_create(f"sleep {seconds} & wait", shell=True, container=TEST_IMAGE)
    wait_until(lambda: _sleeping_anywhere(seconds), timeout=60, interval=0.1,
               what="the container's task sleeping")
    pids = [p.pid for p in _sleeping_anywhere(seconds)]
    kill(victim)
    wait_until(lambda: not [pid for pid in pids if alive(pid)], timeout=GONE_WITHIN,
               interval=0.02, what="no process of the container")
    wait_until(lambda: not docker_client.api.containers(  # a plain list: no inspect race
        all=True, filters={"label": f"{LABEL_WORKER}=shipped"}), timeout=10,
        what="the container removed")
    final = wait_until(lambda: (t := client.task_get(task["id"]))["losses"] == 1 and t,
                       timeout=stack.lease_seconds + REQUEUED_WITHIN + 10, what="the lease lost")
    assert (final["status"], final["retries_used"]) == ("pending", 0)


def _sleeping_anywhere(seconds: int) -> list[psutil.Process]:
    """The container's processes are the engine's children, not the worker's."""
    return sleeping(list(psutil.process_iter()), seconds)
