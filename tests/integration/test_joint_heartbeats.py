"""Heartbeats run jointly (both databases): several workers' heartbeats in one
transaction are each answered and written as the worker's own heartbeat would be (its
leases, its drops, its signals, its status, its contact written only when due), in a
few statements; a burst of heartbeats goes in groups through the API."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from scitq_bench.exceptions import Forbidden
from scitq_bench.server.app import joint_calls
from scitq_bench.server.queue import heartbeats, scheduling, transitions
from scitq_bench.server.queue import tasks as task_domain
from scitq_bench.server.queue import workers as worker_domain
from scitq_bench.server.queue.models import Execution, Worker, utcnow
from scitq_bench.server.schemas import Heartbeat
from scitq_bench.states import Signal, WorkerStatus
from tests.conftest import ApiClient
from tests.support.scheduling import LEASE, make_tasks, make_worker, send
from tests.support.stack import wait_until

OLD = timedelta(minutes=5)  # older than the slack: due to be written again


def holding(db: Any, name: str, count: int) -> tuple[int, list[int]]:
    """A worker of concurrency ``count`` that claimed ``count`` tasks: its id, its
    executions."""
    make_tasks(db, *[{"command": f"{name}-{i}"} for i in range(count)])
    worker = make_worker(db, name=name, concurrency=count)
    return worker, [e["execution_id"] for e in scheduling.claim(db, worker, count, LEASE)]


def test_joint_heartbeats_answer_and_write_as_each_workers_own_would(db: Any) -> None:
    every, every_held = holding(db, "every", 2)
    part, part_held = holding(db, "part", 2)
    recent, recent_held = holding(db, "recent", 1)
    offline = make_worker(db, name="offline")
    signalled, signalled_held = holding(db, "signalled", 1)
    send(db, signalled, {"execution_id": signalled_held[0], "status": "running"})
    soon = utcnow() + timedelta(seconds=1)  # leases about to run out: renewals due
    with db.write() as session:
        for execution in (*every_held, *part_held, *signalled_held):
            session.get(Execution, execution).lease_deadline = soon
        for worker in (every, part, signalled):
            session.get(Worker, worker).last_contact_at = utcnow() - OLD
        session.get(Worker, recent).stats = {"load1": 0.5}  # stats and contact fresh
        transitions.move_worker(session, offline, WorkerStatus.OFFLINE)  # as the reaper does
        task = session.get(Execution, signalled_held[0]).task_id
        task_domain.signal_task(session, task, Signal.PAUSE)
    with db.read() as session:
        recent_row = session.get(Worker, recent)
        recent_contact, recent_stats = recent_row.last_contact_at, recent_row.stats
        recent_lease = session.get(Execution, recent_held[0]).lease_deadline
    stats = {"load1": 1.25}
    beats = {
        every: Heartbeat(stats=stats, executions=every_held),
        part: Heartbeat(stats=stats, executions=[part_held[0], 999_999]),
        recent: Heartbeat(stats=stats, executions=recent_held),
        offline: Heartbeat(stats=stats),
        signalled: Heartbeat(stats=stats, executions=signalled_held),
        9999: Heartbeat(stats=stats),
    }
    with db.write() as session:
        answers = heartbeats.heartbeats_in(session, beats, LEASE)

    def answer(worker: int) -> heartbeats.HeartbeatAnswer:
        found = answers[worker]
        assert isinstance(found, heartbeats.HeartbeatAnswer), found
        return found

    assert isinstance(answers[9999], Forbidden)  # not registered: as a lone heartbeat
    assert answer(part).drop == [999_999]  # not its own: the worker drops it
    assert all(answer(w).drop == [] for w in (every, recent, offline, signalled))
    assert answer(offline).status == "running"  # back from offline, as alone
    assert [s.signal for s in answer(signalled).signals] == ["pause"]
    assert all(answer(w).signals == [] for w in (every, part, recent, offline))
    assert (answer(every).concurrency, answer(every).prefetch) == (2, 0)
    renewed = utcnow() + timedelta(seconds=LEASE - 5)
    with db.read() as session:
        leases = {e: session.get(Execution, e).lease_deadline
                  for e in (*every_held, *part_held, *recent_held, *signalled_held)}
        rows = {w: session.get(Worker, w) for w in (every, part, recent, offline, signalled)}
        assert all(leases[e] > renewed for e in (*every_held, part_held[0], *signalled_held))
        assert leases[part_held[1]] < renewed  # not listed: left to run out
        assert leases[recent_held[0]] == recent_lease  # not due: not written
        assert rows[offline].status == "running"
        for worker in (every, part, offline, signalled):  # due: contact and stats
            assert rows[worker].stats == stats
            assert rows[worker].last_contact_at > utcnow() - timedelta(minutes=1)
        assert (rows[recent].last_contact_at, rows[recent].stats) == (recent_contact,
                                                                      recent_stats)


def test_joint_heartbeats_share_their_statements(db: Any) -> None:
    workers = [holding(db, f"w{i}", 1) for i in range(6)]
    with db.write() as session:  # every lease and contact due
        for worker, held in workers:
            session.get(Worker, worker).last_contact_at = utcnow() - OLD
            session.get(Execution, held[0]).lease_deadline = utcnow()
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    event.listen(db.writer, "before_cursor_execute", count)
    try:
        with db.write() as session:
            answers = heartbeats.heartbeats_in(
                session, {w: Heartbeat(stats={"n": w}, executions=held) for w, held in workers},
                LEASE)
    finally:
        event.remove(db.writer, "before_cursor_execute", count)
    # read the workers, renew the leases, write the contacts (and on SQLite its BEGIN):
    # a few for six heartbeats, not three each
    assert len(statements) <= 4, statements
    assert all(isinstance(a, heartbeats.HeartbeatAnswer) and a.drop == []
               for a in answers.values())
    with db.read() as session:
        assert all(session.get(Worker, w).stats == {"n": w} for w, _ in workers)
        assert all(session.get(Execution, held[0]).lease_deadline
                   > utcnow() + timedelta(seconds=LEASE - 5) for _, held in workers)


def test_a_burst_of_heartbeats_goes_in_groups_through_the_api(
        app: Any, api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = app.extensions["scitq_bench"]
    ctx.joint = joint_calls(ctx, at_once=1)  # one group at a time
    groups: list[list[int]] = []
    run = worker_domain.beats

    def spy(context: Any, bodies: dict[int, Heartbeat]) -> Any:
        groups.append(sorted(bodies))
        if len(groups) == 1:  # the first waits for the others to queue behind it
            wait_until(lambda: ctx.joint.beats.waiting == 5, timeout=10)
        return run(context, bodies)

    monkeypatch.setattr(worker_domain, "beats", spy)
    tokens = {}
    for i in range(6):
        answer = api.post("/workers", json={"name": f"w{i}", "concurrency": 1}).json
        tokens[answer["worker"]["id"]] = answer["token"]
    answers: dict[int, Any] = {}

    def beat(worker: int) -> None:
        answers[worker] = api.post(f"/workers/{worker}/heartbeat?wait=0", token=tokens[worker],
                                   json={"stats": {"worker": worker}, "executions": [7]})

    threads = [threading.Thread(target=beat, args=(w,), daemon=True) for w in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert [len(group) for group in groups] == [1, 5]  # the first alone, then the others
    for worker in tokens:  # each answered as alone
        assert answers[worker].status_code == 200, answers[worker].json
        assert answers[worker].json == {
            "status": "running", "concurrency": 1, "prefetch": 0, "batch": None,
            "signals": [], "drop": [7], "lease_seconds": ctx.settings.lease_seconds}
    listed = {w["id"]: w for w in api.get("/workers").json["workers"]}
    assert all(listed[w]["stats"] == {"worker": w} for w in tokens)
