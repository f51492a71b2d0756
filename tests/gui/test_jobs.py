"""The jobs panel through the Flask test client: the list with its progress and
filters, a job's page and log tail, retry and delete (as the jobs API does them), CSRF
and roles."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from scitq_bench.server import auth
from scitq_bench.server.app import start_recruitment
from scitq_bench.server.queue.models import Worker
from scitq_bench.server.recruit.models import Job
from scitq_bench.server.recruit.runtime import EXTENSION
from tests.support.gui import GuiClient, account_token


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def add_job(app: Any, status: str, progress: int = 0, kind: str = "deploy",
            worker: str | None = "hired-1", **fields: Any) -> int:
    with app.extensions["scitq_bench"].db.write() as session:
        worker_id = None
        if worker:
            found = session.scalar(select(Worker).where(Worker.name == worker))
            if found is None:
                found = Worker(name=worker, status="failed", provider="local", region="local",
                               flavor="local")
                session.add(found)
                session.flush()
            worker_id = found.id
        job = Job(kind=kind, worker_id=worker_id, status=status, progress=progress,
                  arguments={"name": worker or "gone-machine", "provider": "local",
                             "region": "local", "flavor": "local", "concurrency": 2},
                  **fields)
        session.add(job)
        session.flush()
        return job.id


def job_status(app: Any, job_id: int) -> str | None:
    with app.extensions["scitq_bench"].db.read() as session:
        job = session.get(Job, job_id)
        return job.status if job else None


@pytest.fixture
def submitted(app: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    start_recruitment(app, "http://127.0.0.1:1", start=False)
    started: list[int] = []
    monkeypatch.setattr(app.extensions[EXTENSION].runner, "submit", started.append)
    return started


def test_the_panel_lists_jobs_with_progress_worker_and_times(admin_gui: GuiClient, app) -> None:
    running = add_job(app, "running", 45, attempts=1)
    failed = add_job(app, "failed", 20, attempts=2, error="instance not running after 900 s")
    orphan = add_job(app, "succeeded", 100, kind="destroy", worker=None)
    page = text(admin_gui.get("/ui/jobs"))
    assert 'data-live="/ui/jobs?fragment=1"' in page
    rows = {job_id: page.split(f'data-job="{job_id}"')[1].split("</tr>")[0]
            for job_id in (running, failed, orphan)}
    assert '<progress max="100" value="45"' in rows[running]
    assert 'href="/ui/workers/1">hired-1<' in rows[running] and "local/local" in rows[running]
    assert "instance not running after 900 s" in rows[failed] and ">2<" in rows[failed]
    assert ">Retry<" in rows[failed] and ">Delete<" in rows[failed]
    assert ">Retry<" not in rows[running] and ">Delete<" not in rows[running]
    assert "gone-machine" in rows[orphan] and "/ui/workers/" not in rows[orphan]
    assert page.index(f'data-job="{orphan}"') < page.index(f'data-job="{running}"')  # newest first
    assert "<html" not in text(admin_gui.get("/ui/jobs?fragment=1"))


def test_the_panel_is_filtered_and_paged_by_the_database(admin_gui: GuiClient, app) -> None:
    for _ in range(52):
        add_job(app, "succeeded", 100)
    failed = add_job(app, "failed", 10)
    destroy = add_job(app, "running", 60, kind="destroy")
    first = text(admin_gui.get("/ui/jobs"))
    assert "1–50 of 54" in first and 'rel="next"' in first
    assert "51–54 of 54" in text(admin_gui.get("/ui/jobs?offset=50"))
    only_failed = text(admin_gui.get("/ui/jobs?status=failed"))
    assert "1–" not in only_failed and only_failed.count("data-job=") == 1
    assert f'data-job="{failed}"' in only_failed
    assert 'data-live="/ui/jobs?fragment=1&amp;status=failed"' in only_failed
    assert '<option value="failed" selected>' in only_failed  # the form keeps the filter
    destroys = text(admin_gui.get("/ui/jobs?kind=destroy"))
    assert destroys.count("data-job=") == 1 and f'data-job="{destroy}"' in destroys
    assert text(admin_gui.get("/ui/jobs?status=bogus")).count("data-job=") == 50  # ignored


def test_a_job_page_and_its_log_tail(admin_gui: GuiClient, app) -> None:
    job_id = add_job(app, "running", 40, log="10:00:00 creating local\n10:00:01 instance 7\n")
    page = text(admin_gui.get(f"/ui/jobs/{job_id}"))
    assert f'data-log-tail="/ui/jobs/{job_id}/log"' in page
    assert '<progress max="100" value="40"' in page and "hired-1" in page
    assert "concurrency" in page  # its arguments
    tail = admin_gui.get(f"/ui/jobs/{job_id}/log").get_json()
    assert tail == {"text": "10:00:00 creating local\n10:00:01 instance 7\n", "offset": 44,
                    "done": False}
    with app.extensions["scitq_bench"].db.write() as session:
        job = session.get(Job, job_id)
        job.log += "10:00:09 worker up\n"
        job.status, job.progress = "succeeded", 100
    tail = admin_gui.get(f"/ui/jobs/{job_id}/log?offset=44").get_json()
    assert tail == {"text": "10:00:09 worker up\n", "offset": 63, "done": True}
    assert admin_gui.get("/ui/jobs/999").status_code == 404
    assert admin_gui.get("/ui/jobs/999/log").status_code == 404


def test_retry_runs_a_failed_job_again(admin_gui: GuiClient, app, submitted) -> None:
    job_id = add_job(app, "failed", 30, error="boom")
    response = admin_gui.post(f"/ui/jobs/{job_id}/retry")
    assert response.status_code == 302 and response.headers["Location"] == f"/ui/jobs/{job_id}"
    assert job_status(app, job_id) == "pending" and submitted == [job_id]
    assert f"Job {job_id} runs again" in text(admin_gui.get(f"/ui/jobs/{job_id}"))
    admin_gui.post(f"/ui/jobs/{job_id}/retry")
    assert "only a failed job is retried" in text(admin_gui.get(f"/ui/jobs/{job_id}"))
    assert submitted == [job_id]


def test_retry_without_recruitment_says_why(admin_gui: GuiClient, app) -> None:
    job_id = add_job(app, "failed", 30)
    assert "retry needs recruitment" in text(admin_gui.get(f"/ui/jobs/{job_id}"))
    admin_gui.post(f"/ui/jobs/{job_id}/retry")
    assert "recruitment is not running" in text(admin_gui.get(f"/ui/jobs/{job_id}"))
    assert job_status(app, job_id) == "failed"


def test_delete_forgets_an_ended_job_only(admin_gui: GuiClient, app) -> None:
    ended = add_job(app, "succeeded", 100)
    running = add_job(app, "running", 50)
    page = text(admin_gui.get(f"/ui/jobs/{ended}"))
    assert f'data-confirm="Forget job {ended}?"' in page
    response = admin_gui.post(f"/ui/jobs/{ended}/delete", {"next": "/ui/jobs?kind=deploy"})
    assert response.status_code == 302 and response.headers["Location"] == "/ui/jobs?kind=deploy"
    assert job_status(app, ended) is None
    assert f"Job {ended} deleted" in text(admin_gui.get("/ui/jobs"))
    admin_gui.post(f"/ui/jobs/{running}/delete")
    assert f"cancel it first (job cancel {running})" in text(admin_gui.get(f"/ui/jobs/{running}"))
    assert job_status(app, running) == "running"


def test_cancel_stops_a_live_job_and_says_who(admin_gui: GuiClient, app, submitted) -> None:
    running = add_job(app, "running", 45)
    ended = add_job(app, "failed", 20)
    rows = text(admin_gui.get("/ui/jobs"))
    assert f'action="/ui/jobs/{running}/cancel"' in rows
    assert f'action="/ui/jobs/{ended}/cancel"' not in rows
    page = text(admin_gui.get(f"/ui/jobs/{running}"))
    assert f'data-confirm="Cancel job {running}? It stops where it is' in page
    response = admin_gui.post(f"/ui/jobs/{running}/cancel")
    assert response.status_code == 302 and response.headers["Location"] == f"/ui/jobs/{running}"
    assert job_status(app, running) == "cancelled"
    page = text(admin_gui.get(f"/ui/jobs/{running}"))
    assert f"Job {running} cancelled" in page
    assert '<dd data-fact="cancelled">by admin, ' in page and ">Delete<" in page
    assert f'action="/ui/jobs/{running}/cancel"' not in page
    assert "cancel requested by admin" in admin_gui.get(f"/ui/jobs/{running}/log").get_json()["text"]
    admin_gui.post(f"/ui/jobs/{ended}/cancel")
    assert "only a pending or running job is cancelled" in text(admin_gui.get(f"/ui/jobs/{ended}"))
    assert job_status(app, ended) == "failed"


def test_job_actions_need_the_csrf_token(admin_gui: GuiClient, app, submitted) -> None:
    job_id = add_job(app, "failed", 30)
    for action in ("retry", "delete", "cancel"):
        response = admin_gui.post(f"/ui/jobs/{job_id}/{action}", csrf=False)
        assert response.status_code == 400 and "security token" in text(response)
    assert job_status(app, job_id) == "failed" and submitted == []


@pytest.mark.parametrize("role", [auth.ORGANIZER, auth.PARTICIPANT])
def test_jobs_are_for_admins(gui_client: GuiClient, app, submitted, role) -> None:
    job_id = add_job(app, "failed", 30)
    gui_client.sign_in(account_token(app, f"someone-{role}", role))
    for path in ("/ui/jobs", f"/ui/jobs/{job_id}", f"/ui/jobs/{job_id}/log"):
        response = gui_client.get(path)
        assert response.status_code == 403 and "needs the admin role" in text(response), path
    for action in ("retry", "delete", "cancel"):
        assert gui_client.post(f"/ui/jobs/{job_id}/{action}").status_code == 403
    assert job_status(app, job_id) == "failed" and submitted == []
