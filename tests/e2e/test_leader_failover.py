"""Background processes under leadership, as real processes: two ``server scheduler``
on one database, exactly one reaping; the leader killed (-9), the other taking over
within a lease and reaping what expires next, nothing reaped twice; the leader frozen
(SIGSTOP), taken over, stepping down when it resumes; and recruitment hiring once
across the two, before and after a leader's kill."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from sqlalchemy import func, select

from scitq_bench.server.db import Database
from scitq_bench.server.leader import FileLeaderLock, Leader
from scitq_bench.server.queue import scheduling
from scitq_bench.server.queue.models import Execution, Task, Worker
from scitq_bench.server.queue.tasks import get_or_create_batch
from scitq_bench.server.recruit import catalog
from scitq_bench.server.recruit.models import Job, Recruiter
from scitq_bench.server.setup import init_server
from scitq_bench.settings import ServerSettings
from tests.conftest import SUMMARY_PROPERTY
from tests.support.scheduling import make_tasks, make_worker, task_state
from tests.support.stack import CLI, wait_until

pytestmark = pytest.mark.e2e

LEASE = 3.0
LOST = re.compile(r"reaper: \{'lost': (\d+)")


class Schedulers:
    """``scitq-bench server scheduler`` processes sharing one database and data dir."""

    def __init__(self, root: Path, database_url: str, extra_env: dict[str, str] | None = None):
        self.root, self.database_url = root, database_url
        self.data_dir = root / "data"
        self.extra_env = extra_env or {}
        self.processes: dict[str, subprocess.Popen] = {}
        init_server(ServerSettings(data_dir=self.data_dir, database_url=database_url))
        self.db = Database(database_url)

    def start(self, name: str) -> subprocess.Popen:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("SCITQ_BENCH_")}
        env.update(SCITQ_BENCH_DATA_DIR=str(self.data_dir),
                   SCITQ_BENCH_DATABASE_URL=self.database_url,
                   SCITQ_BENCH_LEASE_SECONDS=str(LEASE), SCITQ_BENCH_REAPER_INTERVAL="0.5",
                   SCITQ_BENCH_CONFIG=str(self.root / "client.json"), PYTHONUNBUFFERED="1",
                   **self.extra_env)
        with open(self.root / f"{name}.log", "ab") as log:
            process = subprocess.Popen([*CLI, "server", "scheduler"], env=env, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def reaped(self, name: str) -> int:
        """Executions the process's reaper says it marked lost."""
        return sum(int(n) for n in LOST.findall(self.log(name)))

    def holder_pid(self) -> int | None:
        """The pid the leader's record names (PostgreSQL: the table; SQLite: the lock
        file)."""
        if self.db.is_sqlite:
            holder = FileLeaderLock(self.data_dir / "leader.lock", "").current_holder()
        else:
            with self.db.read() as session:
                holder = session.scalar(select(Leader.holder))
        return int(holder.rsplit(":", 1)[1]) if holder else None

    def start_pair(self) -> tuple[str, str]:
        """Start "a" and "b"; (the one that leads, the other)."""
        self.start("a")
        self.start("b")
        first = wait_until(self.leader, timeout=30, what="a leader")
        return first, "b" if first == "a" else "a"

    def leader(self, among: list[str] | None = None) -> str | None:
        """The name of the running process that leads now."""
        pid = self.holder_pid()
        for name, process in self.processes.items():
            if process.pid == pid and process.poll() is None and (among is None or name in among):
                return name
        return None

    def signal(self, name: str, signum: int) -> None:
        os.killpg(self.processes[name].pid, signum)

    def stop(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is None:
                self.signal(name, signal.SIGCONT)
                self.signal(name, signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.signal(name, signal.SIGKILL)
        self.db.dispose()


@pytest.fixture
def schedulers(tmp_path: Path, database_url: str,
               request: pytest.FixtureRequest) -> Iterator[Schedulers]:
    group = Schedulers(tmp_path, database_url)
    yield group
    group.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for name in group.processes:
            print(f"---- {name} ----\n{group.log(name)[-4000:]}")


def expiring_execution(db: Database, name: str, lease: float) -> tuple[int, int]:
    """A registered worker holding a live execution whose lease ends in ``lease`` s:
    (task id, execution id)."""
    task = make_tasks(db, {"command": "x", "retry": 0, "batch": name})[0]
    worker = make_worker(db, name, batch=name)  # not a task re-queued before
    (claimed,) = scheduling.claim(db, worker, 1, lease)
    return task, claimed["execution_id"]


def executions_of(db: Database, task: int) -> list[str]:
    with db.read() as session:
        return list(session.scalars(select(Execution.status).where(Execution.task_id == task)))


def test_one_of_two_reaps_and_the_other_takes_over_a_killed_leader(
        schedulers: Schedulers, record_property: Any) -> None:
    group, db = schedulers, schedulers.db
    first, other = group.start_pair()
    wait_until(lambda: "leading: running the background loops" in group.log(first),
               timeout=10, what="the leader to say it leads")
    wait_until(lambda: "stands by" in group.log(other), timeout=10,
               what="the follower to say it stands by")

    task1, execution1 = expiring_execution(db, "w1", 0.5)
    wait_until(lambda: executions_of(db, task1) == ["lost"], timeout=10, what="the reap")
    assert task_state(db, task1).status == "pending" and task_state(db, task1).losses == 1
    # the next expires after the leader is gone: its successor must reap it
    task2, execution2 = expiring_execution(db, "w2", 2.0)
    time.sleep(1.0)  # the leader's passes see it live
    assert (group.reaped(first), group.reaped(other)) == (1, 0)

    group.signal(first, signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: group.leader([other]), timeout=LEASE + 5, what="the takeover")
    took = time.monotonic() - killed
    assert took < LEASE, took
    wait_until(lambda: executions_of(db, task2) == ["lost"], timeout=LEASE + 5,
               what="the new leader's reap")
    reaped = time.monotonic() - killed
    time.sleep(1.5)  # more passes: nothing is reaped twice
    assert executions_of(db, task1) == ["lost"] and executions_of(db, task2) == ["lost"]
    assert task_state(db, task1).losses == 1 and task_state(db, task2).losses == 1
    assert task_state(db, task2).status == "pending"
    assert (group.reaped(first), group.reaped(other)) == (1, 1)
    record_property(SUMMARY_PROPERTY, f"takeover {took:.2f} s after kill -9 of the leader "
                                      f"(lease {LEASE:g} s); its pending reap done "
                                      f"{reaped:.2f} s after the kill")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite: one
# host, and a frozen leader keeps its file lock
def test_a_frozen_leader_is_taken_over_and_steps_down_when_it_resumes(
        schedulers: Schedulers, database_url: str, record_property: Any) -> None:
    group, db = schedulers, schedulers.db
    frozen, other = group.start_pair()
    group.signal(frozen, signal.SIGSTOP)
    stopped = time.monotonic()
    wait_until(lambda: group.leader([other]), timeout=LEASE + 6, what="the takeover")
    took = time.monotonic() - stopped
    assert LEASE < took < LEASE + 3, took
    task, _ = expiring_execution(db, "w1", 0.5)
    wait_until(lambda: executions_of(db, task) == ["lost"], timeout=10, what="the reap")

    group.signal(frozen, signal.SIGCONT)
    # frozen between passes it steps down before the next one; frozen while starting
    # its loops, the start fails on its ended session: either way it stops leading
    wait_until(lambda: "no longer leading" in group.log(frozen), timeout=10,
               what="the resumed leader to step down")
    time.sleep(1.5)
    assert group.leader() == other
    assert (group.reaped(frozen), group.reaped(other)) == (0, 1)
    assert executions_of(db, task) == ["lost"] and task_state(db, task).losses == 1
    record_property(SUMMARY_PROPERTY, f"frozen leader taken over {took:.2f} s after SIGSTOP "
                                      f"(lease {LEASE:g} s)")


# -- recruitment ----------------------------------------------------------------------------


@pytest.fixture
def recruiting(tmp_path: Path, database_url: str,
               request: pytest.FixtureRequest) -> Iterator[Schedulers]:
    """Two schedulers that recruit ``local`` workers whose program only sleeps: cheap
    machines that never register."""
    marker = tmp_path / "sleeping-worker"
    marker.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(600)\n")
    marker.chmod(marker.stat().st_mode | stat.S_IXUSR)
    group = Schedulers(tmp_path, database_url,
                       extra_env={"SCITQ_BENCH_PUBLIC_URL": "http://127.0.0.1:1"})
    (group.data_dir / "settings.yaml").write_text(yaml.safe_dump({"recruitment": {
        "interval": 0.5, "deploy_timeout": 300, "reconcile_interval": 3600,
        "catalog_interval": 86400,
        "providers": {"local": {"python": str(marker), "grace_seconds": 1}}}}))
    with group.db.write() as session:
        catalog.ensure_local_flavor(session, group.data_dir)
        batch = get_or_create_batch(session, "b")
        session.flush()
        session.add(Recruiter(batch_id=batch.id, rank=1, flavor="local", provider="local",
                              region="local", maximum_workers=3))
        for _ in range(10):
            session.add(Task(batch_id=batch.id, command="true", status="pending"))
    yield group
    group.stop()
    for process in psutil.process_iter(["cmdline"]):
        if str(marker) in " ".join(process.info["cmdline"] or []):
            process.kill()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for name in group.processes:
            print(f"---- {name} ----\n{group.log(name)[-4000:]}")


def job_counts(db: Database) -> dict[tuple[str, str], int]:
    with db.read() as session:
        rows = session.execute(select(Job.kind, Job.status, func.count())
                               .group_by(Job.kind, Job.status)).all()
    return {(kind, status): count for kind, status, count in rows}


def alive_workers(db: Database) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(Worker).where(
            Worker.permanent.is_(False), Worker.released_at.is_(None))) or 0


def watch(db: Database, seconds: float, most: list[int]) -> None:
    """Sample the recruited workers alive for ``seconds``; keep the most seen."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        most[0] = max(most[0], alive_workers(db))
        time.sleep(0.1)


def test_two_recruiting_processes_hire_once_and_again_once_after_a_kill(
        recruiting: Schedulers, record_property: Any) -> None:
    group, db = recruiting, recruiting.db
    first, other = group.start_pair()
    wait_until(lambda: job_counts(db).get(("deploy", "running")) == 3, timeout=20,
               what="three deploys running")
    most = [0]
    watch(db, 2.0, most)
    assert job_counts(db) == {("deploy", "running"): 3} and most[0] == 3

    group.signal(first, signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: group.leader([other]), timeout=LEASE + 5, what="the takeover")
    wanted = {("deploy", "failed"): 3, ("destroy", "succeeded"): 3, ("deploy", "running"): 3}

    def settled() -> bool:
        most[0] = max(most[0], alive_workers(db))
        return job_counts(db) == wanted

    wait_until(settled, timeout=30, what="recovery, then three deploys again")
    recovered = time.monotonic() - killed
    watch(db, 2.0, most)
    assert job_counts(db) == wanted and most[0] == 3
    with db.read() as session:
        errors = set(session.scalars(select(Job.error).where(Job.status == "failed")))
    assert errors == {"interrupted by a server restart"}
    record_property(SUMMARY_PROPERTY, f"3 hires, leader killed, 3 given back and 3 hired "
                                      f"again {recovered:.2f} s after the kill; at most "
                                      f"{most[0]} recruited workers alive at once")
