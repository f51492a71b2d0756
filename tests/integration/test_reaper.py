"""The reaper tells its workers' silence from its own: after a stall of the server, live
leases are extended before anything is reaped. Driven by a hand-held clock, on both
databases."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from scitq_bench.server.queue.models import Execution, Worker, utcnow
from scitq_bench.server.reaper import Instant, Reaper
from tests.support.scheduling import claim, make_tasks, make_worker, send, task_state

LEASE = 30.0
INTERVAL = 2.0


class Clock:
    """Both clocks, moved by hand."""

    def __init__(self) -> None:
        self.wall: datetime = utcnow()
        self.monotonic = 1000.0

    def __call__(self) -> Instant:
        return Instant(wall=self.wall, monotonic=self.monotonic)

    def advance(self, seconds: float, *, monotonic: bool = True) -> None:
        self.wall += timedelta(seconds=seconds)
        if monotonic:
            self.monotonic += seconds


def running_execution(db: Any) -> tuple[int, int, int]:
    task = make_tasks(db, {"command": "x", "retry": 0})[0]
    worker = make_worker(db)
    execution = claim(db, worker)[0]["execution_id"]
    send(db, worker, {"execution_id": execution, "status": "running"})
    return task, worker, execution


def lease_deadline(db: Any, execution: int) -> datetime:
    with db.read() as session:
        return session.get(Execution, execution).lease_deadline


def worker_status(db: Any, worker: int) -> str:
    with db.read() as session:
        return session.get(Worker, worker).status


def test_a_reaper_on_time_reaps_an_expired_lease(db) -> None:
    task, _worker, _execution = running_execution(db)
    clock = Clock()
    reaper = Reaper(db, LEASE, INTERVAL, clock=clock)
    assert reaper.run_once()["lost"] == 0
    for _ in range(int(LEASE / INTERVAL) + 1):  # passes on time, the worker silent
        clock.advance(INTERVAL)
        reaper.run_once()
    assert task_state(db, task).status == "pending"
    assert task_state(db, task).losses == 1


def test_a_stalled_server_does_not_blame_its_workers(db) -> None:
    task, worker, execution = running_execution(db)
    clock = Clock()
    reaper = Reaper(db, LEASE, INTERVAL, clock=clock)
    reaper.run_once()
    clock.advance(2 * LEASE)  # SIGSTOP for two leases: every lease has run out
    result = reaper.run_once()
    assert result == {"lost": 0, "requeued": 0, "offline": 0}
    assert task_state(db, task).status == "running"
    assert worker_status(db, worker) != "offline"
    assert lease_deadline(db, execution) == clock.wall + timedelta(seconds=LEASE)


def test_a_worker_silent_for_a_lease_after_the_stall_loses_its_work(db) -> None:
    task, worker, execution = running_execution(db)
    clock = Clock()
    reaper = Reaper(db, LEASE, INTERVAL, clock=clock)
    reaper.run_once()
    clock.advance(2 * LEASE)
    reaper.run_once()
    for _ in range(int(LEASE / INTERVAL) - 1):  # still inside the fresh lease
        clock.advance(INTERVAL)
        assert reaper.run_once()["lost"] == 0
    for _ in range(2):  # a whole lease of silence after the server came back
        clock.advance(INTERVAL)
        reaper.run_once()
    state = task_state(db, task)
    assert (state.status, state.retries_used, state.losses) == ("pending", 0, 1)
    assert worker_status(db, worker) == "offline"


def test_a_wall_clock_jump_counts_as_a_stall(db) -> None:
    """A resumed virtual machine may move only its wall clock forward."""
    task, _worker, _execution = running_execution(db)
    clock = Clock()
    reaper = Reaper(db, LEASE, INTERVAL, clock=clock)
    reaper.run_once()
    clock.advance(2 * LEASE, monotonic=False)
    assert reaper.run_once()["lost"] == 0
    assert task_state(db, task).status == "running"


def test_a_short_delay_is_not_a_stall(db) -> None:
    """A pass a little late (under the tolerance) extends nothing."""
    _task, _worker, execution = running_execution(db)
    before = lease_deadline(db, execution)
    clock = Clock()
    reaper = Reaper(db, LEASE, INTERVAL, clock=clock)
    reaper.run_once()
    clock.advance(INTERVAL + 0.5)
    reaper.run_once()
    assert lease_deadline(db, execution) == before


def test_grace_at_start_never_shortens_a_lease(db) -> None:
    _task, _worker, execution = running_execution(db)
    far = utcnow() + timedelta(seconds=10 * LEASE)
    with db.write() as session:
        session.get(Execution, execution).lease_deadline = far
    Reaper(db, LEASE, INTERVAL).grant_grace()
    assert lease_deadline(db, execution) == far
