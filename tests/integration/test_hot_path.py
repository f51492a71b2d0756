"""The worker protocol's hot path on both databases: what heartbeats write (and when
they write nothing), leases against the reaper's rules, claims across batches."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, select, update

from scitq_bench.server.queue import heartbeats, reports, scheduling
from scitq_bench.server.queue import tasks as task_domain
from scitq_bench.server.queue.models import Batch, Execution, Worker, utcnow
from scitq_bench.server.schemas import ExecutionEvent, Heartbeat
from scitq_bench.states import Signal, WorkerStatus
from tests.support.scheduling import make_tasks, make_worker

LEASE = 30.0
SLACK = scheduling.contact_slack(LEASE)
STATS = {"cpu_percent": 3.0, "load1": 0.1}


def start(db: Any, worker: int, count: int) -> list[int]:
    """Claim ``count`` executions and report them running."""
    ids = [p["execution_id"] for p in scheduling.claim(db, worker, count, LEASE)]
    reports.report(db, worker, [ExecutionEvent(execution_id=i, status="running") for i in ids])
    return ids


def beat(db: Any, worker: int, held: list[int], now: datetime | None = None,
         **fields: Any) -> heartbeats.HeartbeatAnswer:
    with db.write() as session:
        return heartbeats.heartbeat(
            session, worker, Heartbeat(stats=STATS, executions=held, **fields), LEASE, now=now)


def leases(db: Any, ids: list[int]) -> dict[int, datetime]:
    with db.read() as session:
        return dict(session.execute(
            select(Execution.id, Execution.lease_deadline).where(Execution.id.in_(ids))).all())


def contact(db: Any, worker: int) -> datetime | None:
    with db.read() as session:
        return session.scalar(select(Worker.last_contact_at).where(Worker.id == worker))


@contextmanager
def statements(db: Any) -> Iterator[list[str]]:
    """The SQL the database is sent meanwhile (SQLite's BEGIN and PRAGMAs left out)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA")):
            seen.append(statement.lstrip().split(None, 1)[0].upper())

    event.listen(db.writer, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.writer, "before_cursor_execute", record)


def age(db: Any, worker: int, seconds: float) -> None:
    """As if the worker's last renewal were ``seconds`` older (times computed here:
    SQLite does no date arithmetic)."""
    shift = timedelta(seconds=seconds)
    with db.write() as session:
        for execution in session.scalars(select(Execution).where(Execution.worker_id == worker)):
            execution.lease_deadline -= shift
        record = session.get(Worker, worker)
        record.last_contact_at -= shift


def test_a_heartbeat_with_nothing_due_is_one_read(db) -> None:
    make_tasks(db, {"command": "a"}, {"command": "b"})
    worker = make_worker(db)
    held = start(db, worker, 2)
    beat(db, worker, held)
    before = leases(db, held), contact(db, worker)
    with statements(db) as sent:
        answer = beat(db, worker, held)
    assert sent == ["SELECT"]
    assert (leases(db, held), contact(db, worker)) == before
    assert answer.drop == [] and answer.signals == []
    assert (answer.status, answer.concurrency, answer.batch) == ("running", 4, None)


def test_a_due_heartbeat_renews_leases_contact_and_stats(db) -> None:
    make_tasks(db, {"command": "a"}, {"command": "b"})
    worker = make_worker(db)
    held = start(db, worker, 2)
    age(db, worker, SLACK.total_seconds() + 1)
    with statements(db) as sent:
        beat(db, worker, held)
    assert sent.count("UPDATE") == 2  # the leases in one statement, then the worker
    now = utcnow()
    assert all(abs((d - now).total_seconds() - LEASE) < 5 for d in leases(db, held).values())
    assert abs((contact(db, worker) - now).total_seconds()) < 5
    with db.read() as session:
        assert session.get(Worker, worker).stats == STATS


def test_leases_of_a_worker_heartbeating_every_third_of_a_lease_never_expire(db) -> None:
    """Heartbeats every third of a lease, each followed closely by another (which
    writes nothing): a lease always keeps more than half of one, so neither the reaper
    nor a server stall it cannot see (under half a lease) expires it, and the worker
    is never called silent; once the heartbeats stop, the lease runs out."""
    make_tasks(db, {"command": "a"})
    worker = make_worker(db)
    held = start(db, worker, 1)
    t0 = utcnow()
    for k in range(1, 10):
        now = t0 + timedelta(seconds=k * LEASE / 3)
        beat(db, worker, held, now=now)
        with statements(db) as sent:
            beat(db, worker, held, now=now + SLACK * 0.9)
        assert "UPDATE" not in sent
        assert leases(db, held)[held[0]] - now >= timedelta(seconds=LEASE) - SLACK
        stalled = now + timedelta(seconds=LEASE / 3 + LEASE / 2 - 0.1)
        assert scheduling.reap(db, LEASE, now=stalled) == {"lost": 0, "requeued": 0, "offline": 0}
    last = t0 + timedelta(seconds=9 * LEASE / 3)
    assert scheduling.reap(db, LEASE, now=last + timedelta(seconds=LEASE + 1))["lost"] == 1


def test_only_executions_the_worker_still_lists_are_renewed(db) -> None:
    """An execution the worker lost track of (its claim answer never arrived, say) is
    not kept alive by the worker's heartbeats: its lease runs out and its task goes
    back to the queue."""
    make_tasks(db, {"command": "a"}, {"command": "b"})
    worker = make_worker(db)
    kept, forgotten = start(db, worker, 2)
    age(db, worker, LEASE / 2)
    beat(db, worker, [kept])
    deadlines = leases(db, [kept, forgotten])
    assert deadlines[kept] - deadlines[forgotten] >= timedelta(seconds=LEASE / 2 - 1)
    assert scheduling.reap(db, LEASE, now=deadlines[forgotten] + timedelta(seconds=1)) == {
        "lost": 1, "requeued": 1, "offline": 0}


def test_an_offline_worker_that_heartbeats_is_running_again_at_once(db) -> None:
    make_tasks(db, {"command": "a"})
    worker = make_worker(db)
    held = start(db, worker, 1)
    beat(db, worker, held)
    with db.write() as session:  # inside the slack: only the status says to write
        session.execute(update(Worker).where(Worker.id == worker).values(
            status=WorkerStatus.OFFLINE.value))
    assert beat(db, worker, held).status == "running"
    with db.read() as session:
        assert session.get(Worker, worker).status == "running"


def test_signals_are_read_only_when_some_wait(db) -> None:
    task = make_tasks(db, {"command": "a"})[0]
    worker = make_worker(db)
    held = start(db, worker, 1)
    beat(db, worker, held)
    with db.write() as session:
        task_domain.signal_task(session, task, Signal.PAUSE)
    answer = beat(db, worker, held)
    assert [s.signal for s in answer.signals] == ["pause"]
    assert beat(db, worker, held, acknowledged_signals=[answer.signals[0].id]).signals == []
    with statements(db) as sent:
        assert beat(db, worker, held).signals == []
    assert sent == ["SELECT"]


def test_a_claim_fills_its_room_from_the_next_batches(db) -> None:
    urgent = make_tasks(db, {"command": "a", "batch": "urgent"})
    gpu_only = make_tasks(db, {"command": "g", "batch": "gpu", "gpu": 1})
    normal = make_tasks(db, *[{"command": f"n{i}", "batch": "normal"} for i in range(3)])
    with db.write() as session:
        for name, priority, network in (("urgent", 10, True), ("gpu", 5, False)):
            batch = session.scalars(select(Batch).where(Batch.name == name)).one()
            batch.priority, batch.network = priority, network
    worker = make_worker(db, concurrency=3)
    claimed = scheduling.claim(db, worker, 5, LEASE)
    assert [p["task_id"] for p in claimed] == urgent + normal[:2]
    assert [p["network"] for p in claimed] == [True, False, False]
    assert gpu_only[0] not in [p["task_id"] for p in claimed]


def test_a_worker_of_one_batch_claims_only_there(db) -> None:
    mine = make_tasks(db, {"command": "a", "batch": "mine"})
    make_tasks(db, {"command": "b", "batch": "other", "priority": 9})
    worker = make_worker(db, batch="mine")
    assert [p["task_id"] for p in scheduling.claim(db, worker, 5, LEASE)] == mine
    assert scheduling.claim(db, worker, 5, LEASE) == []


def test_a_report_frees_its_slots_for_the_claim_it_carries(db) -> None:
    make_tasks(db, *[{"command": f"t{i}"} for i in range(4)])
    worker = make_worker(db, concurrency=2)
    first, _second = start(db, worker, 2)
    with db.write() as session:
        outcome = reports.report_in(db, session, worker, [
            ExecutionEvent(execution_id=first, status="succeeded", return_code=0)], LEASE)
        assert outcome.worker is not None and outcome.worker.held == 1
        claimed = scheduling.claim_in(db, session, worker, 5, LEASE, worker=outcome.worker)
    assert len(claimed) == 1
    assert scheduling.claim(db, worker, 5, LEASE) == []  # full again: 2 live


def test_stats_arrive_with_the_first_heartbeat_and_with_every_renewal(db) -> None:
    """Reports keep a busy worker's last contact fresh, but never carry its stats:
    those come with the first heartbeat, then whenever leases are renewed."""
    make_tasks(db, {"command": "a"}, {"command": "b"})
    worker = make_worker(db)  # registering wrote the last contact just now
    held = start(db, worker, 2)  # and so did the report
    beat(db, worker, held)
    with db.read() as session:
        assert session.get(Worker, worker).stats == STATS
    age(db, worker, SLACK.total_seconds() + 1)
    reports.report(db, worker, [ExecutionEvent(execution_id=held[0], status="succeeded",
                                                return_code=0)], LEASE)  # contact fresh
    newer = {**STATS, "load1": 2.5}
    with db.write() as session:
        heartbeats.heartbeat(session, worker, Heartbeat(stats=newer, executions=held[1:]), LEASE)
    with db.read() as session:
        assert session.get(Worker, worker).stats == newer
