"""Claims run jointly (both databases): several workers' claims in one transaction are
each answered as the worker's own claim would be (its room, its batch, its resources,
claim order in worker id order); a burst of long polls woken by new tasks is claimed in
groups through the API, and no task is handed twice."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from scitq_bench.server.queue import scheduling
from scitq_bench.server.queue import workers as worker_domain
from scitq_bench.server.queue.models import Execution, Worker, utcnow
from scitq_bench.server.schemas import WorkerUpdate
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


@pytest.mark.parametrize("workers", [12])
def test_a_burst_of_woken_long_polls_is_claimed_in_groups_without_double_claims(
        api: ApiClient, monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    groups: list[list[int]] = []
    slow = threading.Event()  # once set, each group is held a moment: the next queue up
    run = scheduling.claim_jointly

    def spy(db: Any, wanted: dict[int, int], lease: float) -> Any:
        groups.append(sorted(wanted))
        if slow.is_set():
            time.sleep(0.2)
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
    slow.set()
    created = api.post("/tasks", json={"tasks": [{"command": f"t{i}"} for i in range(20)]})
    assert created.status_code == 201, created.json
    for thread in threads:
        thread.join(15)
    assert all(answers[w].status_code == 200 for w in tokens), answers
    claimed = [e["task_id"] for w in tokens for e in answers[w].json["executions"]]
    assert len(claimed) == len(set(claimed)) == workers  # one each, none twice
    woken = groups[looked:]
    assert sum(len(group) for group in woken) == workers
    assert max(len(group) for group in woken) > 1  # they went together
    listed = api.get("/tasks?limit=100").json["tasks"]
    assert sorted(t["status"] for t in listed).count("assigned") == workers
