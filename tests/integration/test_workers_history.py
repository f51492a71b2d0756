"""What the workers pages read from the database, on both backends: workers counted and
paged, executions counted by status per worker, when workers were up, and what
recruited machines cost over time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from scitq_bench.server.queue import workers as domain
from scitq_bench.server.queue.costs import spend_over_time
from scitq_bench.server.queue.models import Batch, Execution, Task, Worker, utcnow


def test_workers_are_counted_and_paged_by_the_database(db) -> None:
    with db.write() as session:
        session.add_all([Worker(name=f"w{i:02d}", status="paused" if i % 3 else "running")
                         for i in range(10)])
    with db.read() as session:
        assert domain.count_workers(session) == 10
        assert domain.count_workers(session, statuses=("running",)) == 4
        assert domain.count_workers(session, name="w0%") == 10
        page = domain.list_workers(session, offset=4, limit=3)
        assert [w.name for w in page] == ["w04", "w05", "w06"]
        assert [w.name for w in domain.list_workers(session, name="%1", limit=5)] == ["w01"]


def test_executions_are_counted_by_status_per_worker(db) -> None:
    with db.write() as session:
        batch = Batch(name="b")
        busy, idle = Worker(name="busy"), Worker(name="idle")
        session.add_all([batch, busy, idle])
        session.flush()
        for status in ("running", "failed", "failed", "succeeded"):
            task = Task(batch_id=batch.id, command="true", status="running")
            session.add(task)
            session.flush()
            session.add(Execution(task_id=task.id, worker_id=busy.id, status=status))
        ids = [busy.id, idle.id]
    with db.read() as session:
        counts = domain.execution_counts(session, ids)
    assert counts == {ids[0]: {"running": 1, "failed": 2, "succeeded": 1}, ids[1]: {}}


def test_lifetimes_of_workers_up_in_a_window(db) -> None:
    now = utcnow()
    hours = lambda n: now - timedelta(hours=n)  # noqa: E731
    with db.write() as session:
        session.add_all([
            Worker(name="up", status="running", created_at=hours(30)),
            Worker(name="paused", status="paused", created_at=hours(2)),
            Worker(name="silent", status="offline", created_at=hours(5),
                   last_contact_at=hours(3)),
            Worker(name="long-silent", status="offline", created_at=hours(50),
                   last_contact_at=hours(48)),
            Worker(name="given-back", status="offline", provider="fake", created_at=hours(6),
                   released_at=hours(1), last_contact_at=hours(1)),
            Worker(name="released-early", status="failed", provider="fake",
                   created_at=hours(40), released_at=hours(30)),
            Worker(name="never-seen", status="offline", created_at=hours(4)),
        ])
    with db.read() as session:
        lives = domain.worker_lifetimes(session, hours(24), now)
    assert sorted((now - start, None if end is None else now - end, recruited)
                  for start, end, recruited in lives) == sorted([
        (timedelta(hours=30), None, False),
        (timedelta(hours=2), None, False),
        (timedelta(hours=5), timedelta(hours=3), False),
        (timedelta(hours=6), timedelta(hours=1), True),
        (timedelta(hours=4), timedelta(hours=4), False),  # up for no time
    ])


def test_spend_grows_with_the_machines_up(db) -> None:
    now = utcnow()
    since = now - timedelta(hours=10)
    with db.write() as session:
        session.add_all([
            # 2.0/h for the 4 hours from since+2 h to since+6 h
            Worker(name="a", provider="fake", cost_per_hour=2.0,
                   created_at=since + timedelta(hours=2), released_at=since + timedelta(hours=6)),
            # 1.0/h from before the window to now: 10 hours counted
            Worker(name="b", provider="fake", cost_per_hour=1.0,
                   created_at=since - timedelta(hours=5)),
            Worker(name="free", provider="local", cost_per_hour=0.0, created_at=since),
            Worker(name="gone-before", provider="fake", cost_per_hour=9.0,
                   created_at=since - timedelta(hours=9), released_at=since - timedelta(hours=1)),
        ])
    with db.read() as session:
        points = spend_over_time(session, since, now)
    assert [(round((when - since).total_seconds() / 3600, 3), spent) for when, spent in points] \
        == [(0.0, 0.0), (2.0, pytest.approx(2.0)), (6.0, pytest.approx(14.0)),
            (10.0, pytest.approx(18.0))]
