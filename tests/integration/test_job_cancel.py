"""Cancelling jobs through the API, with real job threads and a provider whose machine
never comes up: a running deploy stops where it is and gives its instance back,
`worker undeploy` of a machine being deployed cancels that deploy instead of starting
a second job, pending jobs are cancelled too, and a cancel made in another process is
seen through the database."""

from __future__ import annotations

import time
from typing import Any

import pytest

from scitq_bench.server.app import start_recruitment
from scitq_bench.server.recruit import service
from scitq_bench.server.recruit.jobs import JobRunner, JobSettings
from scitq_bench.server.recruit.runtime import EXTENSION
from scitq_bench.states import FINAL_JOB_VALUES as ENDED
from tests.support.recruitment import NeverUp, add_job, job_of, worker_of
from tests.support.stack import wait_until


@pytest.fixture
def recruiting(app: Any) -> Any:
    """The app's recruitment (loop idle), its jobs hiring from ``NeverUp``."""
    start_recruitment(app, "http://127.0.0.1:1", start=False)
    runtime = app.extensions[EXTENSION]
    runtime.provider = NeverUp()
    runtime.runner.providers = lambda name: runtime.provider
    yield runtime
    runtime.runner.shutdown()


def test_undeploy_while_deploying_cancels_the_deploy(api, db, recruiting) -> None:
    job_id, worker_id = add_job(db, "deploy")
    recruiting.runner.submit(job_id)
    wait_until(lambda: "instance i-1 created" in job_of(db, job_id).log, timeout=10,
               what="the instance")
    refused = api.delete(f"/jobs/{job_id}")
    assert refused.status_code == 409
    assert refused.json["message"] == (f"job {job_id} is running; cancel it first "
                                       f"(job cancel {job_id}), then delete it")

    started = time.monotonic()
    answer = api.post(f"/workers/{worker_id}/undeploy")
    assert answer.status_code == 200, answer.json
    assert (answer.json["id"], answer.json["kind"]) == (job_id, "deploy")
    assert answer.json["status"] == "cancelled" and answer.json["cancelled_by"] == "admin"
    wait_until(lambda: recruiting.provider.deleted == ["i-1"], timeout=10,
               what="the instance to be given back")
    assert time.monotonic() - started < 5
    job = wait_until(lambda: (j := job_of(db, job_id)).error != "cancelled by admin" and j,
                     timeout=10, what="the job to say where it stopped")
    assert job.status == "cancelled" and job.cancelled_at is not None
    assert job.error == "cancelled by admin in step 'wait for the instance to run'"
    assert "cancel requested by admin (the job was running)" in job.log
    worker = worker_of(db, worker_id)
    assert worker.status == "failed" and worker.released_at is not None
    assert [j["id"] for j in api.get(f"/jobs?worker={worker_id}").json] == [job_id]  # no destroy

    again = api.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert "only a pending or running job is cancelled" in again.json["message"]
    assert api.post(f"/workers/{worker_id}/undeploy").status_code == 409  # given back already
    assert api.delete(f"/jobs/{job_id}").status_code == 200


def test_a_second_undeploy_does_not_start_a_second_destroy(
        api, db, recruiting, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[int] = []
    monkeypatch.setattr(recruiting.runner, "submit", started.append)  # the destroy waits
    _, worker_id = add_job(db, "deploy", instance_id="i-5", status="succeeded")
    first = api.post(f"/workers/{worker_id}/undeploy")
    assert first.status_code == 201 and first.json["kind"] == "destroy"
    second = api.post(f"/workers/{worker_id}/undeploy")
    assert second.status_code == 409
    assert f"being given back already (job {first.json['id']})" in second.json["message"]
    assert started == [first.json["id"]]


def test_pending_jobs_are_cancelled(api, db, recruiting) -> None:
    deploy_id, deployed = add_job(db, "deploy")
    assert api.post(f"/jobs/{deploy_id}/cancel").json["status"] == "cancelled"
    worker = worker_of(db, deployed)
    assert worker.status == "failed" and worker.released_at is not None
    recruiting.runner.submit(deploy_id)  # too late: nothing runs
    destroy_id, destroyed = add_job(db, "destroy", instance_id="i-9")
    assert api.post(f"/jobs/{destroy_id}/cancel").status_code == 200
    # a cancelled destroy still gives the machine back, without its playbook
    wait_until(lambda: recruiting.provider.deleted == ["i-9"], timeout=10, what="i-9 back")
    wait_until(lambda: worker_of(db, destroyed).released_at is not None, timeout=10,
               what="the worker's record to close")
    assert recruiting.provider.created == []
    assert job_of(db, deploy_id).status == "cancelled"
    assert job_of(db, destroy_id).status == "cancelled"


def test_a_cancel_from_another_process_is_seen_in_the_database(db) -> None:
    provider = NeverUp()
    runner = JobRunner(db=db, providers=lambda name: provider, server_url="http://x",
                       enroll_token=lambda name: "token",
                       settings=JobSettings(deploy_timeout=60, boot_poll=0.2))
    try:
        job_id, _ = add_job(db, "deploy")
        runner.submit(job_id)
        wait_until(lambda: provider.created, timeout=10, what="the instance")
        started = time.monotonic()
        with db.write() as session:  # as another server process would: no runner here
            service.cancel_job(session, job_id, "bob")
        wait_until(lambda: provider.deleted == ["i-1"], timeout=10, what="the instance back")
        assert time.monotonic() - started < 4
        job = wait_until(lambda: (j := job_of(db, job_id)).status in ENDED and
                         "in step" in (j.error or "") and j, timeout=10, what="the job")
        assert job.status == "cancelled" and job.cancelled_by == "bob"
        # the cancel may land before the job moved on from the instance it just created
        assert job.error in ("cancelled by bob in step 'wait for the instance to run'",
                             "cancelled by bob in step 'create the instance'"), job.error
    finally:
        runner.shutdown()


def test_a_cancel_racing_the_start_of_a_deploy_knows_it_was_running(db) -> None:
    """A runner takes the deploy (pending → running) while a cancel is on its way: the
    cancel reports the status it actually moved from, and so leaves the worker record
    to the running deploy, which gives its machine back (on SQLite the write lock
    orders the two transactions; on PostgreSQL the row lock does)."""
    import threading

    from scitq_bench.server.recruit.transitions import move_job
    from scitq_bench.states import JobStatus

    job_id, worker_id = add_job(db, "deploy")
    taken, release = threading.Event(), threading.Event()

    def runner_takes_it() -> None:
        with db.write() as session:
            assert move_job(session, job_id, JobStatus.RUNNING, only_from=[JobStatus.PENDING])
            taken.set()
            release.wait(10)

    runner = threading.Thread(target=runner_takes_it)
    runner.start()
    assert taken.wait(10)
    answers: list[str] = []

    def cancel() -> None:
        with db.write() as session:
            answers.append(service.cancel_job(session, job_id, "bob")[1])

    canceller = threading.Thread(target=cancel)
    canceller.start()
    canceller.join(0.5)  # waits for the runner's transaction
    release.set()
    runner.join(10)
    canceller.join(10)
    assert answers == ["running"]
    assert job_of(db, job_id).status == "cancelled"
    worker = worker_of(db, worker_id)
    assert worker.status != "failed" and worker.released_at is None
