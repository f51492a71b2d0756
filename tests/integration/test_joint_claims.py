"""Claims run jointly (both databases): several workers' claims in one transaction are
each answered as the worker's own claim would be (its room, its batch, its resources,
claim order in worker id order), and so are several workers' reports that claim; a
burst of long polls woken by new tasks, and a burst of reports that claim, go in groups
through the API, and no task is handed twice."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from scitq_bench.exceptions import Forbidden
from scitq_bench.server.app import joint_calls
from scitq_bench.server.notify import ANY_BATCH
from scitq_bench.server.queue import scheduling
from scitq_bench.server.queue import workers as worker_domain
from scitq_bench.server.queue.models import Execution, Worker, utcnow
from scitq_bench.server.schemas import ExecutionEvent, WorkerUpdate
from tests.conftest import ApiClient
from tests.support.scheduling import LEASE, make_tasks, make_worker, task_state
from tests.support.stack import wait_until


def test_joint_claims_answer_each_worker_as_its_own_claim_would(db: Any) -> None:
    plain = make_tasks(db, *[{"command": f"p{i}"} for i in range(6)])
    gpu_task = make_tasks(db, {"command": "g", "gpu": 1, "priority": 5})[0]
    bound_batch = make_tasks(db, {"command": "b1", "batch": "b"}, {"command": "b2", "batch": "b"})
    pair = [make_worker(db, name="w1", concurrency=2), make_worker(db, name="w2", concurrency=1)]
    bound = make_worker(db, name="w3", concurrency=4, batch="b")
    with_gpu = make_worker(db, name="w4", concurrency=2, gpus=1)
    paused = make_worker(db, name="w5", concurrency=2)
    with db.write() as session:
        worker_domain.update_worker(session, paused, WorkerUpdate(status="paused"))
    small = make_worker(db, name="w6", concurrency=5, cpus=4)
    with db.write() as session:  # the first's last contact is old: the claim writes it
        session.get(Worker, pair[0]).last_contact_at = utcnow() - timedelta(hours=1)
        recent = session.get(Worker, pair[1]).last_contact_at  # within the slack: kept

    wanted = {worker: 10 for worker in (*pair, bound, with_gpu, paused, small)}
    answers = scheduling.claim_jointly(db, {**wanted, 9999: 1}, LEASE)

    def tasks_of(worker: int) -> list[int]:
        return [e["task_id"] for e in answers[worker][0]]

    # the two alike share one pick, in worker id order: the oldest to the first
    assert tasks_of(pair[0]) == plain[:2] and tasks_of(pair[1]) == plain[2:3]
    assert tasks_of(bound) == bound_batch  # its batch only, room to spare
    assert tasks_of(with_gpu) == [gpu_task, plain[3]]  # the GPU task first (priority)
    assert tasks_of(small) == plain[4:]  # what is left that it may take
    def state(worker: int) -> scheduling.WorkerState:
        read = answers[worker][1]
        assert read is not None
        return read

    assert answers[paused][0] == [] and state(paused).status == "paused"
    assert answers[9999] == ([], None)  # not registered: as a lone claim answers
    assert state(pair[0]).held == 2 and state(bound).held == 2
    handed = [e for answer, _ in answers.values() for e in answer]
    assert all(e["attempt"] == 1 and e["command"] for e in handed)
    with db.read() as session:
        rows = {row.id: row for row in session.query(Execution)}
        assert {e["execution_id"] for e in handed} == set(rows)
        for worker in wanted:
            for execution in answers[worker][0]:
                row = rows[execution["execution_id"]]
                assert (row.worker_id, row.task_id, row.status) == (
                    worker, execution["task_id"], "pending")
                assert row.snapshot["command"] == execution["command"]
        assert session.get(Worker, pair[0]).last_contact_at > utcnow() - timedelta(minutes=1)
        assert session.get(Worker, pair[1]).last_contact_at == recent
    assert all(task_state(db, t).status == "assigned" for t in (*plain, gpu_task, *bound_batch))


def one_group_at_a_time(app: Any) -> Any:
    """The app's context, its claims and reports in one group at a time: what queues
    while a group runs is the next group, whatever the timing."""
    ctx = app.extensions["scitq_bench"]
    ctx.joint = joint_calls(ctx, at_once=1)
    return ctx


@pytest.mark.parametrize("workers", [12])
def test_a_burst_of_woken_long_polls_is_claimed_in_groups_without_double_claims(
        app: Any, api: ApiClient, monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    ctx = one_group_at_a_time(app)
    groups: list[list[int]] = []
    created = threading.Event()  # then the first group waits for the others to queue
    run = scheduling.claim_jointly

    def spy(db: Any, wanted: dict[int, int], lease: float) -> Any:
        groups.append(sorted(wanted))
        if created.is_set() and len(groups) == looked + 1:
            wait_until(lambda: ctx.joint.claims.waiting == workers - len(wanted), timeout=10)
        return run(db, wanted, lease)

    monkeypatch.setattr(scheduling, "claim_jointly", spy)
    tokens = {}
    for i in range(workers):
        answer = api.post("/workers", json={"name": f"w{i}", "concurrency": 1})
        tokens[answer.json["worker"]["id"]] = answer.json["token"]
    answers: dict[int, Any] = {}

    def long_poll(worker: int) -> None:
        answers[worker] = api.post(f"/workers/{worker}/claim?max=1&wait=5",
                                   token=tokens[worker])

    threads = [threading.Thread(target=long_poll, args=(w,), daemon=True) for w in tokens]
    for thread in threads:
        thread.start()
    # every worker's first look found nothing: each now waits for work
    wait_until(lambda: {w for group in groups for w in group} == set(tokens), timeout=10)
    time.sleep(0.2)
    looked = len(groups)
    created.set()
    answer = api.post("/tasks", json={"tasks": [{"command": f"t{i}"} for i in range(20)]})
    assert answer.status_code == 201, answer.json
    for thread in threads:
        thread.join(15)
    assert all(answers[w].status_code == 200 for w in tokens), answers
    claimed = [e["task_id"] for w in tokens for e in answers[w].json["executions"]]
    assert len(claimed) == len(set(claimed)) == workers  # one each, none twice
    woken = groups[looked:]
    assert sum(len(group) for group in woken) == workers
    assert len(woken) == 2  # the first alone, all the others together
    listed = api.get("/tasks?limit=100").json["tasks"]
    assert sorted(t["status"] for t in listed).count("assigned") == workers


def test_joint_reports_each_answered_as_alone_and_their_claims_share_one_pick(app: Any) -> None:
    ctx = app.extensions["scitq_bench"]
    db = ctx.db
    tasks = make_tasks(db, {"command": "a", "retry": 1}, {"command": "b"},
                       {"command": "c"}, {"command": "d"})
    first, second = make_worker(db, name="w1", concurrency=1), make_worker(db, name="w2",
                                                                          concurrency=1)
    held = {w: scheduling.claim(db, w, 1, LEASE)[0]["execution_id"] for w in (first, second)}
    woken = ctx.notifier.version(ANY_BATCH)

    def final(worker: int, status: str, code: int) -> list[ExecutionEvent]:
        return [ExecutionEvent(execution_id=held[worker], status="running", age=1.0),
                ExecutionEvent.model_validate({"execution_id": held[worker], "status": status,
                                               "return_code": code, "duration": 1.0})]

    answers = worker_domain.reports_and_claims(ctx, {
        second: (final(second, "succeeded", 0), 1),
        first: (final(first, "failed", 3), 1),  # a retry left: its task is queued again
        9999: ([ExecutionEvent(execution_id=held[first], status="running")], 1),
    })
    assert isinstance(answers[9999], Forbidden)  # its own answer, the others unharmed
    ok = {w: answers[w] for w in (first, second)}
    for answer in ok.values():
        assert isinstance(answer, dict) and all(r["ok"] for r in answer["results"])
    # reports in worker id order, then one pick: the retried task (oldest) goes first
    assert [e["task_id"] for e in ok[first]["executions"]] == [tasks[0]]  # type: ignore[index]
    assert [e["task_id"] for e in ok[second]["executions"]] == [tasks[2]]  # type: ignore[index]
    assert ok[first]["executions"][0]["attempt"] == 2  # type: ignore[index]
    assert task_state(db, tasks[1]).status == "succeeded"
    assert task_state(db, tasks[0]).retries_used == 1
    assert task_state(db, tasks[3]).status == "pending"
    assert ctx.notifier.version(ANY_BATCH) > woken  # the retry woke the claimers
    with db.read() as session:
        for worker in (first, second):
            new = ok[worker]["executions"][0]["execution_id"]  # type: ignore[index]
            assert session.get(Execution, new).worker_id == worker


def grouped_reports(monkeypatch: pytest.MonkeyPatch, queue: Any, others: int
                    ) -> list[dict[int, Any]]:
    """The groups ``workers.reports_and_claims`` runs, recorded; the first waits until
    ``others`` calls queue behind it on ``queue``."""
    groups: list[dict[int, Any]] = []
    run = worker_domain.reports_and_claims

    def spy(ctx: Any, calls: dict[int, Any]) -> Any:
        groups.append(dict(calls))
        if len(groups) == 1:
            wait_until(lambda: queue.waiting == others, timeout=10)
        return run(ctx, calls)

    monkeypatch.setattr(worker_domain, "reports_and_claims", spy)
    return groups


def workers_holding_one(api: ApiClient, count: int, tasks: int) -> dict[int, tuple[str, int]]:
    """``tasks`` new tasks, then ``count`` workers (concurrency 1) that each claimed one:
    worker id -> (its token, its execution)."""
    assert api.post("/tasks", json={"tasks": [{"command": f"t{i}"} for i in range(tasks)]}
                    ).status_code == 201
    held: dict[int, tuple[str, int]] = {}
    for i in range(count):
        answer = api.post("/workers", json={"name": f"w{i}", "concurrency": 1}).json
        worker, token = answer["worker"]["id"], answer["token"]
        claimed = api.post(f"/workers/{worker}/claim?max=1", token=token).json
        held[worker] = (token, claimed["executions"][0]["execution_id"])
    return held


def report_together(api: ApiClient, held: dict[int, tuple[str, int]], query: str,
                    event: dict[str, Any]) -> dict[int, Any]:
    """Each worker reports ``event`` of its execution at once, from its own thread;
    the answers, each checked 200."""
    answers: dict[int, Any] = {}

    def report(worker: int) -> None:
        token, execution = held[worker]
        answers[worker] = api.post(f"/workers/{worker}/report{query}", token=token,
                                   json={"events": [{"execution_id": execution, **event}]})

    threads = [threading.Thread(target=report, args=(w,), daemon=True) for w in held]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert all(answers[w].status_code == 200 for w in held), answers
    return answers


def test_a_burst_of_reports_that_claim_goes_in_groups_through_the_api(
        app: Any, api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    context = one_group_at_a_time(app)
    groups = grouped_reports(monkeypatch, context.joint.reports, others=7)
    held = workers_holding_one(api, 8, tasks=16)
    answers = report_together(api, held, "?claim=1", {"status": "succeeded",
                                                       "return_code": 0, "duration": 0.1})
    assert all(answers[w].json["results"][0]["ok"] for w in held)
    claimed = [e["task_id"] for w in held for e in answers[w].json["executions"]]
    assert len(claimed) == len(set(claimed)) == 8  # one each, none twice
    assert sorted(w for group in groups for w in group) == sorted(held)
    assert [len(group) for group in groups] == [1, 7]  # the first alone, then the others
    listed = api.get("/tasks?limit=100").json["tasks"]
    assert [t["status"] for t in listed].count("succeeded") == 8
    assert [t["status"] for t in listed].count("assigned") == 8


def test_joint_reports_share_their_statements_and_keep_each_workers_own_results(
        app: Any) -> None:
    ctx = app.extensions["scitq_bench"]
    db = ctx.db
    make_tasks(db, *[{"command": f"t{i}"} for i in range(20)])
    workers = [make_worker(db, name=f"w{i}", concurrency=1) for i in range(6)]
    held = {w: scheduling.claim(db, w, 1, LEASE)[0]["execution_id"] for w in workers}
    with db.write() as session:  # last contacts old enough to be written again
        for worker in workers:
            session.get(Worker, worker).last_contact_at = utcnow() - timedelta(minutes=5)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    def succeeded(execution: int) -> ExecutionEvent:
        return ExecutionEvent(execution_id=execution, status="succeeded", return_code=0,
                              duration=1.0)

    calls = {w: ([succeeded(held[w])], 1) for w in workers[:5]}
    # the last one starts its task and also reports another worker's: refused alone
    calls[workers[5]] = ([ExecutionEvent(execution_id=held[workers[5]], status="running"),
                          ExecutionEvent(execution_id=held[workers[0]], status="running")], 1)
    event.listen(db.writer, "before_cursor_execute", count)
    try:
        answers = worker_domain.reports_and_claims(ctx, calls)
    finally:
        event.remove(db.writer, "before_cursor_execute", count)
    # read executions, read workers, one move per kind of execution change, one task
    # move per target, the runs' probe, the contacts, the pick, the insert (and on
    # SQLite its BEGIN and rowid): a handful for six reports, not six each
    assert len(statements) <= 12, statements
    for worker in workers[:5]:
        answer = answers[worker]
        assert isinstance(answer, dict)
        assert [r["ok"] for r in answer["results"]] == [True]
        assert len(answer["executions"]) == 1  # its slot refilled
    last = answers[workers[5]]
    assert isinstance(last, dict)
    assert [r["ok"] for r in last["results"]] == [True, False]
    assert "belongs to another worker" in last["results"][1]["error"]
    assert last["executions"] == []  # concurrency 1, its task still running
    with db.read() as session:
        statuses = {w: session.get(Execution, held[w]).status for w in workers}
        contacts = [session.get(Worker, w).last_contact_at for w in workers]
    assert statuses == {**{w: "succeeded" for w in workers[:5]}, workers[5]: "running"}
    assert all(c > utcnow() - timedelta(minutes=1) for c in contacts)
    new_tasks = [e["task_id"] for w in workers[:5]
                 for e in answers[w]["executions"]]  # type: ignore[index]
    assert len(set(new_tasks)) == 5


def test_reports_that_claim_nothing_go_in_groups_as_bookkeeping(
        app: Any, api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    context = one_group_at_a_time(app)
    groups = grouped_reports(monkeypatch, context.joint.records, others=5)
    held = workers_holding_one(api, 6, tasks=6)
    answers = report_together(api, held, "", {"status": "running"})
    # each answered as a lone report that claims nothing is: its results, no executions
    assert all(answers[w].json == {"results": [{"execution_id": held[w][1], "ok": True,
                                                "error": None}]} for w in held)
    assert [len(group) for group in groups] == [1, 5]
    assert all(wanted == 0 for group in groups for _events, wanted in group.values())
    listed = api.get("/tasks?limit=100").json["tasks"]
    assert [t["status"] for t in listed] == ["running"] * 6
