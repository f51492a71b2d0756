"""The dashboard through the Flask test client, on SQLite and PostgreSQL (its figures
are the database's counts): the queue by status, failures and their reasons, the
workers up by provider with what they run, spend, jobs in flight, its two charts, and
who lands on it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from scitq_bench.server import auth
from scitq_bench.server.queue.models import Execution, Task, Worker, utcnow
from scitq_bench.server.serialize import epoch
from tests.conftest import BACKENDS, fresh_database
from tests.support.api import create, register
from tests.support.gui import GuiClient, account_token


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path, request) as url:
        yield url


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def seed(app: Any, api: Any) -> int:
    """Three tasks of batch ``dash``: one running and one failed (out of memory) on a
    recruited worker priced 0.5 an hour, one queued."""
    worker_id, token = register(api, "dash-w1", concurrency=3)
    with app.extensions["scitq_bench"].db.write() as session:
        session.execute(update(Worker).where(Worker.id == worker_id)
                        .values(provider="azure", cost_per_hour=0.5))
    for _ in range(3):
        create(api, batch="dash")
    claimed = api.post(f"/workers/{worker_id}/claim?max=2", token=token).json["executions"]
    assert len(claimed) == 2
    report = api.post(f"/workers/{worker_id}/report", token=token, json={"events": [
        {"execution_id": claimed[0]["execution_id"], "status": "running"},
        {"execution_id": claimed[1]["execution_id"], "status": "running"},
        {"execution_id": claimed[1]["execution_id"], "status": "failed", "return_code": 137,
         "reason": "out_of_memory", "error": "killed: <out of memory>"}]})
    assert report.status_code == 200, report.json
    return worker_id


def test_dashboard_counts_what_the_database_holds(admin_gui: GuiClient, app, api) -> None:
    worker_id = seed(app, api)
    page = text(admin_gui.get("/ui/dashboard"))
    counts = dict(re.findall(r'<li data-status="(\w+)">.*?<strong data-count>(\d+)</strong>', page))
    assert counts["pending"] == "1" and counts["running"] == "1" and counts["failed"] == "1"
    assert counts["succeeded"] == "0"
    assert '<span data-queued>1</span> waiting for a worker' in page
    # failures of the last hour, with their reason and error (escaped)
    failures = page[page.index('id="dash-failures"'):page.index('id="dash-spend"')]
    assert '<small class="muted" data-total>1</small>' in failures
    assert "out_of_memory" in failures and "killed: &lt;out of memory&gt;" in failures
    # the worker under its provider, running one task of its batch
    workers = page[page.index('id="dash-workers"'):page.index('id="dash-jobs"')]
    assert 'data-provider="azure"' in workers and "dash-w1" in workers
    row = re.search(rf'<tr data-worker="{worker_id}">.*?</tr>', workers, re.S)
    assert row and re.search(r'data-cell="running">1 <small class="muted">of dash', row.group(0))
    assert 'data-spend="per-hour">0.500<' in page
    assert "No deploy or destroy job pending or running." in page
    # the live region re-renders the same figures alone
    fragment = text(admin_gui.get("/ui/dashboard?fragment=1"))
    assert "<html" not in fragment and 'id="dash-queue"' in fragment
    assert 'data-chart="/ui/dashboard/charts/queue"' in page


def test_dashboard_charts_rebuild_the_queue_and_the_pace(admin_gui: GuiClient, app,
                                                         api) -> None:
    seed(app, api)
    queue = admin_gui.get("/ui/dashboard/charts/queue").get_json()
    assert queue["kind"] == "line" and queue["x"] == "time"
    series = {s["name"]: s["points"] for s in queue["series"]}
    # now: one task never claimed, one execution running; six hours ago: nothing
    assert series["queued"][-1][1] == 1 and series["running"][-1][1] == 1
    assert series["queued"][0][1] == 0 and series["running"][0][1] == 0
    assert 70 <= len(series["queued"]) <= 75  # a point every 5 minutes over 6 hours
    ended = admin_gui.get("/ui/dashboard/charts/ended").get_json()
    rates = {s["name"]: s["points"] for s in ended["series"]}
    assert sum(y for _, y in rates["failed per minute"]) == pytest.approx(0.2)  # 1 in 5 min
    assert sum(y for _, y in rates["succeeded per minute"]) == 0


def test_admins_land_on_the_dashboard_participants_where_they_did(app, admin_gui: GuiClient,
                                                                  gui_client: GuiClient) -> None:
    assert admin_gui.get("/ui/").headers["Location"].endswith("/ui/dashboard")
    token = account_token(app, "carol", auth.PARTICIPANT)
    gui_client.sign_in(token)
    assert gui_client.get("/ui/").headers["Location"].endswith("/ui/benchmarks")
    refused = gui_client.get("/ui/dashboard")
    assert refused.status_code == 403 and "admin role" in text(refused)
    assert gui_client.get("/ui/dashboard/charts/queue").status_code == 403


def test_favicon_answers(gui_client: GuiClient) -> None:
    icon = gui_client.get("/favicon.ico", follow_redirects=True)
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert b"<svg" in icon.get_data()


def test_the_queue_chart_follows_the_times_the_database_keeps(admin_gui: GuiClient, app,
                                                               api) -> None:
    """Four tasks created over the last five hours: the first ran from -4 h to -2 h,
    the second runs since -2 h, the last two, created in the same 5-minute step an hour
    ago, were never claimed."""
    worker_id, token = register(api, "dash-times", concurrency=2)
    ids = [create(api, batch="times")["id"] for _ in range(4)]
    claimed = api.post(f"/workers/{worker_id}/claim?max=2", token=token).json["executions"]
    runs = {c["task_id"]: c["execution_id"] for c in claimed}
    api.post(f"/workers/{worker_id}/report", token=token, json={"events": [
        {"execution_id": runs[ids[0]], "status": "running"},
        {"execution_id": runs[ids[1]], "status": "running"},
        {"execution_id": runs[ids[0]], "status": "succeeded", "return_code": 0}]})
    now = utcnow()
    at = {hours: now - timedelta(hours=hours) for hours in (5, 4, 3, 2)}
    step = (now - timedelta(hours=1)).replace(second=0, microsecond=0)
    step -= timedelta(minutes=step.minute % 5)  # where a 5-minute step starts
    with app.extensions["scitq_bench"].db.write() as session:
        for task_id, created in zip(ids, (at[5], at[3], step + timedelta(seconds=10),
                                          step + timedelta(seconds=50)), strict=True):
            session.execute(update(Task).where(Task.id == task_id).values(created_at=created))
        session.execute(update(Execution).where(Execution.id == runs[ids[0]]).values(
            created_at=at[4], started_at=at[4], finished_at=at[2]))
        session.execute(update(Execution).where(Execution.id == runs[ids[1]]).values(
            created_at=at[2], started_at=at[2]))
    chart = admin_gui.get("/ui/dashboard/charts/queue").get_json()
    series = {s["name"]: s["points"] for s in chart["series"]}

    def value(name: str, hours_ago: float) -> float:
        moment = epoch(now) - hours_ago * 3600
        return next(y for x, y in series[name] if x >= moment)

    assert (value("queued", 5.5), value("running", 5.5)) == (0, 0)
    assert (value("queued", 4.5), value("running", 4.5)) == (1, 0)  # the first, waiting
    assert (value("queued", 3.5), value("running", 3.5)) == (0, 1)  # the first, running
    assert (value("queued", 2.5), value("running", 2.5)) == (1, 1)  # + the second, waiting
    assert (value("queued", 1.5), value("running", 1.5)) == (0, 1)  # the second runs
    assert (value("queued", 0.5), value("running", 0.5)) == (2, 1)
    assert (value("queued", 0), value("running", 0)) == (2, 1)
    ended = admin_gui.get("/ui/dashboard/charts/ended").get_json()
    succeeded = {s["name"]: s["points"] for s in ended["series"]}["succeeded per minute"]
    assert [y for _, y in succeeded if y] == [0.2]  # one in its 5-minute bucket, 2 h ago
