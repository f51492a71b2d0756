"""Recruiters of one workflow under its shared cap, on both databases: hiring stops at
the cap, idle workers pass from step to step at the cap, workers from outside count
like hires; the API and CLI show the workflow fields."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from scitq_bench.server.queue.models import Batch, Execution, Task, Worker
from scitq_bench.server.queue.tasks import get_or_create_batch
from scitq_bench.server.recruit import catalog
from scitq_bench.server.recruit.engine import RecruitSettings, plan
from scitq_bench.server.recruit.models import Recruiter
from tests.support.cli import as_json, ok
from tests.support.recruitment import OFFERS, hired

NOW = datetime(2030, 1, 1)


def _step(session: Any, name: str, pending: int, **recruiter: Any) -> tuple[Batch, Recruiter]:
    """A step's batch with ``pending`` tasks and its recruiter (small machines)."""
    batch = get_or_create_batch(session, name)
    session.flush()
    fields = {"flavor": "auto:cpu>=2", "provider": "fake", "region": "auto",
              "maximum_workers": 3, **recruiter}
    rec = Recruiter(batch_id=batch.id, rank=1, **fields)
    session.add(rec)
    for _ in range(pending):
        session.add(Task(batch_id=batch.id, command="true", status="pending"))
    session.flush()
    return batch, rec


def _up(session: Any) -> None:
    """The hired machines came up: running, in contact (so they may become idle)."""
    for worker in hired(session):
        worker.status, worker.last_contact_at = "running", NOW
    session.flush()


def _finish(session: Any, batch: Batch) -> None:
    session.execute(update(Task).where(Task.batch_id == batch.id).values(status="succeeded"))


def _batch_id(session: Any, name: str) -> int | None:
    return session.scalar(select(Batch.id).where(Batch.name == name))


def _outsider(session: Any) -> Worker:
    """An idle recruited machine of a batch outside the workflow."""
    other = get_or_create_batch(session, "elsewhere")
    session.flush()
    worker = Worker(name="outsider", status="running", permanent=False, provider="fake",
                    region="r1", flavor="small", cpus=2, batch_id=other.id,
                    last_contact_at=NOW, instance_id="i-out", stats={})
    session.add(worker)
    session.flush()
    return worker


def test_the_workflow_cap_bounds_hires_then_steps_pass_workers_along(db) -> None:
    with db.write() as session:
        catalog.upsert_offers(session, "fake", OFFERS)
        first, _ = _step(session, "step1", 10, workflow="wf", workflow_maximum_workers=4)
        second, _ = _step(session, "step2", 10, workflow="wf", workflow_maximum_workers=4)
        _step(session, "alone", 10, maximum_workers=2)  # no workflow: not counted
        result = plan(session, RecruitSettings(), now=NOW)
        by_batch = [w.batch_id for w in hired(session)]
        assert len(result.deploy_jobs) == 6
        assert by_batch.count(first.id) + by_batch.count(second.id) == 4
        assert by_batch.count(first.id) == 3  # in order: step1 takes what it wants
        assert "workflow wf has its 4 worker(s)" in " ".join(result.notes)
        assert plan(session, RecruitSettings(), now=NOW).deploy_jobs == []
        _up(session)
        outsider = _outsider(session)
        _finish(session, first)
        passed = plan(session, RecruitSettings(), now=NOW + timedelta(seconds=1))
        assert passed.deploy_jobs == []
        assert len(passed.recycled) == 2 and outsider.id not in passed.recycled
        moved = [session.get(Worker, worker_id) for worker_id in passed.recycled]
        assert {w.batch_id for w in moved} == {second.id}
        in_workflow = [w for w in hired(session) if w.batch_id in (first.id, second.id)]
        assert len(in_workflow) == 4 and outsider.batch_id == _batch_id(session, "elsewhere")


def test_an_outside_worker_counts_like_a_hire(db) -> None:
    with db.write() as session:
        catalog.upsert_offers(session, "fake", OFFERS)
        # the smallest cap stated applies; a recruiter stating none shares it
        first, _ = _step(session, "step1", 10, workflow="wf", maximum_workers=1)
        second, _ = _step(session, "step2", 10, workflow="wf", workflow_maximum_workers=2)
        _step(session, "step3", 0, workflow="wf", workflow_maximum_workers=5)
        outsider = _outsider(session)
        result = plan(session, RecruitSettings(), now=NOW)
        # step1 takes the outsider (1 of 2), step2 hires the second and stops there
        assert result.recycled == [outsider.id] and len(result.deploy_jobs) == 1
        assert outsider.batch_id == first.id
        assert [w.batch_id for w in hired(session)] == [first.id, second.id]
        assert "workflow wf has its 2 worker(s)" in " ".join(result.notes)


def test_a_cap_of_zero_only_passes_workers_along(db) -> None:
    with db.write() as session:
        catalog.upsert_offers(session, "fake", OFFERS)
        first, step1 = _step(session, "step1", 1, workflow="wf", maximum_workers=1)
        second, _ = _step(session, "step2", 5, workflow="wf", workflow_maximum_workers=0)
        # a worker step1 recruited before the cap was set, busy with its task
        mine = Worker(name="mine", status="running", permanent=False, provider="fake",
                      region="r1", flavor="small", cpus=2, batch_id=first.id,
                      recruiter_id=step1.id, last_contact_at=NOW, stats={})
        session.add(mine)
        session.flush()
        task = session.scalar(select(Task).where(Task.batch_id == first.id))
        execution = Execution(task_id=task.id, worker_id=mine.id, status="running")
        session.add(execution)
        outsider = _outsider(session)
        busy = plan(session, RecruitSettings(), now=NOW)
        assert busy.deploy_jobs == [] and busy.recycled == []  # nor the outsider
        assert "workflow wf has its 0 worker(s)" in " ".join(busy.notes)
        execution.status = "succeeded"
        _finish(session, first)
        passed = plan(session, RecruitSettings(), now=NOW + timedelta(seconds=1))
        assert passed.recycled == [mine.id] and passed.deploy_jobs == []
        assert mine.batch_id == second.id and outsider.batch_id == _batch_id(session, "elsewhere")


# -- API and CLI -----------------------------------------------------------------------


def test_recruiter_workflow_fields_in_the_api(api) -> None:
    created = api.post("/recruiters", json={"batch": "s1", "flavor": "auto:cpu>=2",
                                            "workflow": "wf-1", "workflow_maximum_workers": 4})
    assert created.status_code == 201, created.json
    assert created.json["workflow"] == "wf-1" and created.json["workflow_maximum_workers"] == 4
    plain = api.post("/recruiters", json={"batch": "s2", "flavor": "auto:cpu>=2"}).json
    assert plain["workflow"] is None and plain["workflow_maximum_workers"] is None
    for bad in ({"workflow": "bad\nname"}, {"workflow": "x" * 201},
                {"workflow_maximum_workers": -1}, {"workflow_maximum_workers": 10_001}):
        refused = api.post("/recruiters", json={"batch": "s3", "flavor": "auto:cpu>=2", **bad})
        assert refused.status_code == 400, bad
        assert refused.json["message"].startswith(next(iter(bad))), refused.json
    changed = api.patch(f"/recruiters/{plain['id']}", json={"workflow": "wf-1",
                                                            "workflow_maximum_workers": 0})
    assert changed.status_code == 200, changed.json
    assert changed.json["workflow_maximum_workers"] == 0
    cleared = api.patch(f"/recruiters/{created.json['id']}",
                        json={"workflow": None, "workflow_maximum_workers": None}).json
    assert cleared["workflow"] is None and cleared["workflow_maximum_workers"] is None
    listed = {r["batch"]: r for r in api.get("/recruiters").json}
    assert listed["s2"]["workflow"] == "wf-1" and listed["s1"]["workflow"] is None


def test_recruiter_workflow_options_in_the_cli(run) -> None:
    ok(run("recruiter", "create", "-b", "s1", "-f", "auto:cpu>=2", "--create-batch",
           "--workflow", "wf", "--workflow-max-workers", "4"))
    (listed,) = as_json(run("recruiter", "list", "--json"))
    assert (listed["workflow"], listed["workflow_maximum_workers"]) == ("wf", 4)
    ok(run("recruiter", "update", listed["id"], "--workflow-max-workers", "2",
           "--workflow", "other"))
    long = ok(run("recruiter", "list", "-L")).stdout
    assert "workflow max" in long and "other" in long
    row = [line for line in long.splitlines() if "other" in line][0]
    assert row.split()[-1] == "2"
    assert "workflow max" not in ok(run("recruiter", "list")).stdout
