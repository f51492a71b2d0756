"""Claiming, leases, retries, dependencies and signals, at the domain level, on both
databases."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select

from scitq_bench.server.queue import batches, heartbeats, scheduling
from scitq_bench.server.queue import tasks as task_domain
from scitq_bench.server.queue.models import Execution, Task, utcnow
from scitq_bench.server.schemas import BatchStop, Heartbeat
from scitq_bench.states import Signal
from tests.support.scheduling import LEASE, claim, make_tasks, make_worker, send, task_state


def test_claim_assigns_and_respects_room(db) -> None:
    ids = make_tasks(db, *[{"command": f"echo {i}"} for i in range(10)])
    worker = make_worker(db, concurrency=2, prefetch=1)
    first = claim(db, worker, 10)
    assert [p["task_id"] for p in first] == ids[:3]
    assert claim(db, worker, 10) == []  # full: concurrency + prefetch
    assert task_state(db, ids[0]).status == "assigned"
    assert first[0]["command"] == "echo 0" and first[0]["attempt"] == 1


def test_claim_order_priority_then_age_and_filters(db) -> None:
    low, high = make_tasks(db, {"command": "a"}, {"command": "b", "priority": 5})
    other = make_tasks(db, {"command": "c", "batch": "other"})[0]
    big = make_tasks(db, {"command": "d", "cpu": 64})[0]
    gpu = make_tasks(db, {"command": "e", "gpu": 1})[0]
    worker = make_worker(db, batch="default", cpus=4)
    claimed = [p["task_id"] for p in claim(db, worker)]
    assert claimed == [high, low]
    assert {other, big, gpu}.isdisjoint(claimed)


def test_paused_batch_is_not_claimed(db) -> None:
    task = make_tasks(db, {"command": "x", "batch": "b"})[0]
    with db.write() as session:
        batch = batches.find_batch(session, "b")
        batches.stop(session, batch.id, BatchStop())
    worker = make_worker(db)
    assert claim(db, worker) == []
    with db.write() as session:
        batches.go(session, batches.find_batch(session, "b").id)
    assert [p["task_id"] for p in claim(db, worker)] == [task]


def test_full_success_path(db) -> None:
    task = make_tasks(db, {"command": "x", "inputs": ["file:///etc/hostname"]})[0]
    worker = make_worker(db)
    execution = claim(db, worker)[0]["execution_id"]
    assert send(db, worker, {"execution_id": execution, "status": "accepted"})[0]["ok"]
    assert task_state(db, task).status == "accepted"
    send(db, worker, {"execution_id": execution, "status": "running", "age": 0.5})
    assert task_state(db, task).status == "running"
    result = send(db, worker, {"execution_id": execution, "status": "succeeded",
                               "return_code": 0, "duration": 0.4, "output_files": ["a.txt"]})
    assert result[0]["ok"]
    assert task_state(db, task).status == "succeeded"
    with db.read() as session:
        row = session.get(Execution, execution)
        assert row.status == "succeeded" and row.output_files == ["a.txt"]
        assert row.started_at is not None and row.snapshot["command"] == "x"


def test_failures_spend_retries_then_fail(db) -> None:
    task = make_tasks(db, {"command": "x", "retry": 1})[0]
    worker = make_worker(db)
    for attempt, expected in ((1, "pending"), (2, "failed")):
        payload = claim(db, worker)[0]
        assert payload["attempt"] == attempt
        send(db, worker, {"execution_id": payload["execution_id"], "status": "running"},
             {"execution_id": payload["execution_id"], "status": "failed", "return_code": 3})
        state = task_state(db, task)
        assert state.status == expected
    assert state.retries_used == 1 and state.status_reason == "exit code 3"


def test_timeout_spends_a_retry(db) -> None:
    task = make_tasks(db, {"command": "x", "retry": 0})[0]
    worker = make_worker(db)
    execution = claim(db, worker)[0]["execution_id"]
    send(db, worker, {"execution_id": execution, "status": "running"},
         {"execution_id": execution, "status": "timeout"})
    assert task_state(db, task).status == "failed"
    assert task_state(db, task).status_reason == "timed out"


def test_expired_lease_requeues_without_spending_retries(db) -> None:
    task = make_tasks(db, {"command": "x", "retry": 0})[0]
    worker = make_worker(db)
    execution = claim(db, worker)[0]["execution_id"]
    send(db, worker, {"execution_id": execution, "status": "running"})
    assert scheduling.reap(db, LEASE)["lost"] == 0
    result = scheduling.reap(db, LEASE, now=utcnow() + timedelta(seconds=LEASE + 1))
    assert result["lost"] == 1 and result["requeued"] == 1
    state = task_state(db, task)
    assert (state.status, state.retries_used, state.losses) == ("pending", 0, 1)
    # the old worker's late report is refused: the task cannot succeed twice
    late = send(db, worker, {"execution_id": execution, "status": "succeeded", "return_code": 0})
    assert not late[0]["ok"] and "lost" in late[0]["error"]
    assert task_state(db, task).status == "pending"


def test_heartbeat_renews_leases_and_drops_unknown(db) -> None:
    make_tasks(db, {"command": "x"})
    worker = make_worker(db)
    execution = claim(db, worker)[0]["execution_id"]
    with db.write() as session:  # the lease is about to run out...
        session.get(Execution, execution).lease_deadline = utcnow() + timedelta(seconds=1)
    with db.write() as session:  # ...and the heartbeat renews it
        answer = heartbeats.heartbeat(
            session, worker, Heartbeat(executions=[execution, 999_999]), LEASE)
    assert answer.drop == [999_999]
    assert scheduling.reap(db, LEASE, now=utcnow() + timedelta(seconds=5))["lost"] == 0
    assert scheduling.reap(db, LEASE, now=utcnow() + timedelta(seconds=LEASE + 1))["lost"] == 1


def test_signals_are_redelivered_until_acknowledged(db) -> None:
    task = make_tasks(db, {"command": "x"})[0]
    worker = make_worker(db)
    execution = claim(db, worker)[0]["execution_id"]
    send(db, worker, {"execution_id": execution, "status": "running"})
    with db.write() as session:
        task_domain.signal_task(session, task, Signal.PAUSE)
    assert task_state(db, task).status == "paused"
    for _ in range(2):
        with db.write() as session:
            answer = heartbeats.heartbeat(session, worker, Heartbeat(executions=[execution]), LEASE)
        assert [s.signal for s in answer.signals] == ["pause"]
    with db.write() as session:
        heartbeats.heartbeat(session, worker, Heartbeat(
            executions=[execution], acknowledged_signals=[answer.signals[0].id]), LEASE)
        assert heartbeats.heartbeat(session, worker, Heartbeat(), LEASE).signals == []


def test_dependencies_release_and_failure_propagation(db) -> None:
    a = make_tasks(db, {"command": "a"})[0]
    b = make_tasks(db, {"command": "b", "requires": [a]})[0]
    c = make_tasks(db, {"command": "c", "requires": [a, b]})[0]
    assert task_state(db, b).status == "waiting"
    worker = make_worker(db)
    payload = claim(db, worker)
    assert [p["task_id"] for p in payload] == [a]
    send(db, worker, {"execution_id": payload[0]["execution_id"], "status": "running"},
         {"execution_id": payload[0]["execution_id"], "status": "failed", "return_code": 1})
    assert task_state(db, b).status == "failed"
    assert task_state(db, b).status_reason == f"prerequisite task {a} failed"
    assert task_state(db, c).status == "failed"
    # relaunching the prerequisite revives the chain
    with db.write() as session:
        task_domain.relaunch(session, a)
    assert task_state(db, a).status == "pending"
    assert (task_state(db, b).status, task_state(db, c).status) == ("waiting", "waiting")
    payload = claim(db, worker)
    send(db, worker, {"execution_id": payload[0]["execution_id"], "status": "running"},
         {"execution_id": payload[0]["execution_id"], "status": "succeeded", "return_code": 0})
    assert task_state(db, b).status == "pending"
    assert task_state(db, c).status == "waiting"  # still needs b


def test_created_after_failed_prerequisite_fails_at_once(db) -> None:
    a = make_tasks(db, {"command": "a"})[0]
    with db.write() as session:
        session.get(Task, a).status = "failed"
    b = make_tasks(db, {"command": "b", "requires": [a]})[0]
    assert task_state(db, b).status == "failed"


def test_bulk_creation_is_all_or_nothing(db) -> None:
    import pytest

    from scitq_bench.exceptions import InvalidInput

    with pytest.raises(InvalidInput, match="unknown task id"):
        make_tasks(db, {"command": "ok"}, {"command": "bad", "requires": [424242]})
    with db.read() as session:
        assert session.scalars(select(Task)).all() == []


def test_restarted_worker_requeues_its_old_executions(db) -> None:
    task = make_tasks(db, {"command": "x"})[0]
    worker = make_worker(db, name="same")
    claim(db, worker)
    again = make_worker(db, name="same")
    assert again == worker
    state = task_state(db, task)
    assert (state.status, state.losses, state.retries_used) == ("pending", 1, 0)


def test_batch_kill_pauses_and_go_does_not_double_run(db) -> None:
    task = make_tasks(db, {"command": "x", "batch": "k"})[0]
    worker = make_worker(db)
    execution = claim(db, worker)[0]["execution_id"]
    send(db, worker, {"execution_id": execution, "status": "running"})
    with db.write() as session:
        batch_id = batches.find_batch(session, "k").id
        assert batches.stop(session, batch_id, BatchStop(signal="kill"))["signalled"] == 1
    assert task_state(db, task).status == "paused"
    with db.write() as session:
        batches.go(session, batch_id)
    assert task_state(db, task).status == "pending"
    # the killed execution has not reported yet: the task must not get a second one
    assert claim(db, worker) == []
    send(db, worker, {"execution_id": execution, "status": "cancelled"})
    assert [p["task_id"] for p in claim(db, worker)] == [task]


def test_concurrent_claimers_never_share_a_task(db) -> None:
    make_tasks(db, *[{"command": f"t{i}"} for i in range(200)])
    worker_ids = [make_worker(db, name=f"c{i}", concurrency=50) for i in range(10)]
    claimed: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run(worker_id: int) -> None:
        try:
            for _ in range(5):
                got = claim(db, worker_id, 10)
                with lock:
                    claimed.extend(p["task_id"] for p in got)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in worker_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(claimed) == len(set(claimed)) == 200


def test_one_report_carries_a_whole_life_and_refusals(db) -> None:
    first, second, third = make_tasks(db, {"command": "a"}, {"command": "b"}, {"command": "c"})
    worker = make_worker(db)
    other = make_worker(db, name="other")
    one, two, three = (p["execution_id"] for p in claim(db, worker, 3))
    results = send(
        db, worker,
        {"execution_id": one, "status": "accepted"},
        {"execution_id": one, "status": "running", "age": 0.2},
        {"execution_id": three, "status": "running", "age": 0.2},
        {"execution_id": one, "status": "succeeded", "return_code": 0, "duration": 0.1},
        {"execution_id": three, "status": "succeeded", "return_code": 0, "duration": 0.1},
        {"execution_id": two, "status": "succeeded", "return_code": 0},  # never ran: refused
        {"execution_id": 987654, "status": "running"},
    )
    assert [r["ok"] for r in results] == [True, True, True, True, True, False, False]
    assert "pending" in results[5]["error"] and "not found" in results[6]["error"]
    assert task_state(db, first).status == task_state(db, third).status == "succeeded"
    assert task_state(db, second).status == "assigned"
    stolen = send(db, other, {"execution_id": two, "status": "running"})
    assert not stolen[0]["ok"] and "another worker" in stolen[0]["error"]


def test_report_order_across_executions_is_kept(db) -> None:
    """[succeeded A, running B, succeeded B]: B's two events must both land."""
    make_tasks(db, {"command": "a"}, {"command": "b"})
    worker = make_worker(db)
    a, b = (p["execution_id"] for p in claim(db, worker, 2))
    send(db, worker, {"execution_id": a, "status": "running"})
    results = send(
        db, worker,
        {"execution_id": a, "status": "succeeded", "return_code": 0},
        {"execution_id": b, "status": "running"},
        {"execution_id": b, "status": "succeeded", "return_code": 0, "duration": 0.01},
    )
    assert all(r["ok"] for r in results)
    with db.read() as session:
        statuses = {e.id: e.status for e in session.scalars(select(Execution))}
        started = session.get(Execution, b).started_at
    assert statuses == {a: "succeeded", b: "succeeded"}
    assert started is not None


def test_claim_prefers_higher_priority_batches(db) -> None:
    from scitq_bench.server.queue.models import Batch

    low = make_tasks(db, {"command": "a", "batch": "low"})[0]
    urgent = make_tasks(db, {"command": "b", "batch": "urgent"})[0]
    with db.write() as session:
        session.scalars(select(Batch).where(Batch.name == "urgent")).one().priority = 10
    worker = make_worker(db)
    assert [p["task_id"] for p in claim(db, worker, 1)] == [urgent]
    assert [p["task_id"] for p in claim(db, worker, 1)] == [low]


def test_batch_stop_and_go_pause_and_resume_its_workers(db) -> None:
    from scitq_bench.server.queue.models import Worker

    make_tasks(db, {"command": "x", "batch": "wb"})
    attached = make_worker(db, name="attached", batch="wb")
    elsewhere = make_worker(db, name="elsewhere")
    with db.write() as session:
        batch_id = batches.find_batch(session, "wb").id
        assert batches.stop(session, batch_id, BatchStop(workers=True))["workers_paused"] == 1
    with db.read() as session:
        assert session.get(Worker, attached).status == "paused"
        assert session.get(Worker, elsewhere).status == "running"
    with db.write() as session:
        assert batches.go(session, batch_id)["workers_resumed"] == 1
    with db.read() as session:
        assert session.get(Worker, attached).status == "running"


def test_final_event_with_duration_implies_running(db) -> None:
    quick, unproven = make_tasks(db, {"command": "a", "inputs": ["file:///etc/hostname"]},
                                 {"command": "b"})
    worker = make_worker(db)
    one, two = (p["execution_id"] for p in claim(db, worker, 2))
    send(db, worker, {"execution_id": one, "status": "accepted"})
    results = send(
        db, worker,
        {"execution_id": one, "status": "succeeded", "return_code": 0, "duration": 0.2},
        {"execution_id": two, "status": "succeeded", "return_code": 0},  # no duration
    )
    assert [r["ok"] for r in results] == [True, False]
    assert task_state(db, quick).status == "succeeded"
    assert task_state(db, unproven).status == "assigned"
    with db.read() as session:
        row = session.get(Execution, one)
        assert row.status == "succeeded" and row.started_at < row.finished_at
