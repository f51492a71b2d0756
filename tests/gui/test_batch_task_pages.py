"""The batches and tasks lists through the Flask test client, on SQLite and PostgreSQL
(the database sorts, searches and pages them): batches sorted and searched, their
ETA, the workers running their tasks; tasks sorted by a column, page numbers and the
jump to a page, and filter values that name nothing said on the page."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import update

from scitq_bench.server.queue.models import Batch, Execution, Task, utcnow
from scitq_bench.server.queue.tasks import create_tasks, get_or_create_batch
from scitq_bench.server.schemas import TaskCreate
from tests import conftest as shared
from tests.support.gui import GuiClient, batch_of, create, register

database_url = shared.database_url  # both backends, not the GUI tests' SQLite only

BATCH_ROW = re.compile(r'<tr data-batch="\d+" data-batch-name="([^"]+)">')
TASK_ROW = re.compile(r'<tr data-task="(\d+)">')
PROBLEM = re.compile(r'class="flash flash-error filter-problem" role="status">([^<]+)<')


def db(app):
    return app.extensions["scitq_bench"].db


def names(page: str) -> list[str]:
    return BATCH_ROW.findall(page)


def problems(page: str) -> list[str]:
    return [p.replace("&#39;", "'") for p in PROBLEM.findall(page)]


def claim(api, worker: tuple[int, str], count: int) -> list[dict]:
    worker_id, token = worker
    return api.post(f"/workers/{worker_id}/claim?max={count}", token=token).json["executions"]


def report(api, worker: tuple[int, str], claimed: list[dict], status: str) -> None:
    worker_id, token = worker
    events = [{"execution_id": c["execution_id"], "status": status, "return_code": 0,
               "duration": 1} for c in claimed]
    assert api.post(f"/workers/{worker_id}/report", token=token,
                    json={"events": events}).status_code == 200


def test_batches_sort_search_and_pages_in_the_database(admin_gui: GuiClient, api, app):
    with db(app).write() as session:
        for i in range(53):
            get_or_create_batch(session, f"filler-{i:02d}")
    for name, priority in (("Alpha_1", 5), ("beta", 9), ("gamma", 1)):
        create(api, name)
        api.patch(f"/batches/{batch_of(api, name)['id']}", json={"priority": priority})
    create(api, "gamma")
    worker = register(api, concurrency=4)
    done = [c for c in claim(api, worker, 4) if c["task_id"] in
            {t["id"] for t in api.get("/tasks?batch=gamma").json["tasks"]}]
    report(api, worker, done, "succeeded")  # gamma: both tasks done, the others not

    page = admin_gui.get("/ui/batches").get_data(as_text=True)
    assert names(page)[:3] == ["filler-00", "filler-01", "filler-02"] and len(names(page)) == 50
    assert "1–50 of 56" in page and 'href="/ui/batches?offset=50"' in page
    assert names(admin_gui.get("/ui/batches?offset=50").get_data(as_text=True)) == [
        "filler-50", "filler-51", "filler-52", "Alpha_1", "beta", "gamma"]

    by = {}
    for sort in ("name", "priority", "progress", "created"):
        for order in ("asc", "desc"):
            found = admin_gui.get(f"/ui/batches?q=a&sort={sort}&order={order}")
            by[sort, order] = names(found.get_data(as_text=True))
    assert by["name", "asc"] == ["Alpha_1", "beta", "gamma"]  # filler has no 'a'
    assert by["name", "desc"] == ["gamma", "beta", "Alpha_1"]
    assert by["priority", "desc"] == ["beta", "Alpha_1", "gamma"]
    assert by["priority", "asc"] == ["gamma", "Alpha_1", "beta"]
    assert by["progress", "desc"][0] == "gamma" and by["progress", "asc"][-1] == "gamma"
    assert by["created", "asc"] == ["Alpha_1", "beta", "gamma"]
    assert by["created", "desc"] == ["gamma", "beta", "Alpha_1"]
    sorted_page = admin_gui.get("/ui/batches?q=a&sort=priority&order=desc").get_data(as_text=True)
    assert 'aria-sort="descending"' in sorted_page
    assert 'data-live="/ui/batches?fragment=1&amp;sort=priority&amp;order=desc&amp;q=a"' \
        in sorted_page  # the live region keeps the order and the search

    with db(app).write() as session:
        session.execute(update(Batch).where(Batch.name == "beta").values(status="paused"))
    assert names(admin_gui.get("/ui/batches?q=a&sort=status").get_data(as_text=True))[0] == "beta"

    # a part of the name, any case; % and _ are plain characters
    assert names(admin_gui.get("/ui/batches?q=ALPHA").get_data(as_text=True)) == ["Alpha_1"]
    assert names(admin_gui.get("/ui/batches?q=a_1").get_data(as_text=True)) == ["Alpha_1"]
    none = admin_gui.get("/ui/batches?q=%25").get_data(as_text=True)
    assert names(none) == [] and "No batch name contains “%”." in none
    bad = admin_gui.get("/ui/batches?sort=cost&order=up").get_data(as_text=True)
    assert problems(bad) == [
        "cannot sort by 'cost': choose name, status, priority, progress, created",
        "order 'up' is neither asc nor desc"]
    assert names(bad)[0] == "filler-00"  # the default order


def test_batch_eta_from_its_recent_pace(admin_gui: GuiClient, api, app):
    for _ in range(10):
        create(api, "paced")
    for _ in range(2):
        create(api, "stale")
    worker = register(api, concurrency=20)
    claimed = claim(api, worker, 20)
    tasks = {t["id"]: t["batch"] for t in api.get("/tasks").json["tasks"]}
    paced = [c for c in claimed if tasks[c["task_id"]] == "paced"]
    stale = [c for c in claimed if tasks[c["task_id"]] == "stale"]
    report(api, worker, paced[:4] + stale[:1], "succeeded")
    now = utcnow()
    with db(app).write() as session:  # paced began ten minutes ago; stale ended long ago
        for c in paced:
            session.execute(update(Execution).where(Execution.id == c["execution_id"])
                            .values(started_at=now - timedelta(minutes=10)))
        session.execute(update(Execution).where(Execution.id == stale[0]["execution_id"])
                        .values(started_at=now - timedelta(hours=3),
                                finished_at=now - timedelta(hours=2)))
    page = admin_gui.get("/ui/batches").get_data(as_text=True)
    etas = dict(re.findall(r'data-batch-name="([^"]+)">.*?data-eta="(\d*)"', page, re.S))
    # 4 tasks ended in 600 s; 6 remain: 6 / (4 / 600) = 900 s
    assert 880 <= int(etas["paced"]) <= 910, etas
    assert etas["stale"] == ""  # nothing ended in the last 30 minutes: unknown
    paced_id = batch_of(api, "paced")["id"]
    detail = admin_gui.get(f"/ui/batches/{paced_id}?fragment=1").get_data(as_text=True)
    assert re.search(r"1[45]m\d\ds <small class=\"muted\">at 0\.4\d task\(s\) per minute", detail)
    admin_gui.post(f"/ui/batches/{paced_id}/stop", {"signal": "none"})
    page = admin_gui.get("/ui/batches").get_data(as_text=True)
    assert dict(re.findall(r'data-batch-name="([^"]+)">.*?data-eta="(\d*)"', page, re.S))[
        "paced"] == ""  # paused: its pace says nothing of when it ends
    detail = admin_gui.get(f"/ui/batches/{paced_id}?fragment=1").get_data(as_text=True)
    assert "unknown: the batch is paused" in detail


def test_workers_column_shows_who_runs_the_batch_tasks(admin_gui: GuiClient, api):
    create(api, "alpha")
    create(api, "beta")
    runner = register(api, "runner", concurrency=1)
    claimed = claim(api, runner, 1)
    api.patch(f"/workers/{runner[0]}", json={"batch": "beta"})  # bound elsewhere now
    ran = api.get(f"/tasks/{claimed[0]['task_id']}").json["batch"]
    other = "beta" if ran == "alpha" else "alpha"
    idle, _ = register(api, "idler", concurrency=1)
    api.patch(f"/workers/{idle}", json={"batch": ran})
    page = admin_gui.get("/ui/batches").get_data(as_text=True)
    cells = dict(re.findall(r'data-batch-name="([^"]+)">.*?<td class="batch-workers">(.*?)</td>',
                            page, re.S))
    assert re.search(r'class="worker-running"[^>]*>runner</a>', cells[ran])
    assert re.search(r'class="muted worker-idle"[^>]*>idler</small>', cells[ran])
    assert "runner" not in cells[other] or "worker-running" not in cells[other]
    detail = admin_gui.get(f"/ui/batches/{batch_of(api, ran)['id']}").get_data(as_text=True)
    assert "No worker" not in detail
    rows = dict(re.findall(r'>(runner|idler)</a>.*?<td class="num worker-live">(\d+)</td>',
                           detail, re.S))
    assert rows == {"runner": "1", "idler": "0"}
    detail = admin_gui.get(f"/ui/batches/{batch_of(api, other)['id']}").get_data(as_text=True)
    if other == "beta":  # runner is bound to beta though it runs alpha's task
        assert ">runner</a>" in detail
    else:
        assert "No worker is bound to this batch or running its tasks." in detail


def test_tasks_sort_by_a_column_with_page_numbers_and_a_jump(admin_gui: GuiClient, api, app):
    with db(app).write() as session:
        specs = [TaskCreate(command="true", batch="zeta" if i % 2 else "eta",
                            name=None if i == 7 else f"t-{(i * 37) % 120:03d}") for i in range(120)]
        create_tasks(db(app), session, specs)
        ids = list(session.scalars(Task.__table__.select().with_only_columns(Task.id)
                                   .order_by(Task.id)))
    with db(app).write() as session:  # modified: the oldest task changed last
        session.execute(update(Task).where(Task.id == ids[0])
                        .values(modified_at=utcnow() + timedelta(minutes=5), status="paused"))

    def rows(query: str) -> list[int]:
        return [int(i) for i in TASK_ROW.findall(admin_gui.get(f"/ui/tasks?{query}")
                                                 .get_data(as_text=True))]

    assert rows("")[:3] == ids[::-1][:3]  # newest first by default
    assert rows("sort=id&order=asc")[:3] == ids[:3]
    by_name = rows("sort=name&order=asc")
    assert by_name[0] == ids[0]  # t-000
    unnamed = ids[7]
    last_page = rows("sort=name&order=asc&page=3")
    assert last_page[-1] == unnamed and unnamed not in rows("sort=name&order=desc")[:50]
    assert rows("sort=name&order=desc&page=3")[-1] == unnamed  # no name: last both ways
    assert rows("sort=status")[0] == ids[0]  # a to z: paused before pending
    assert rows("sort=batch&order=asc")[:1] == [ids[0]]  # eta before zeta, then by id
    assert all(i % 2 == 0 for i in [ids.index(t) for t in rows("sort=batch&order=asc")])
    assert rows("sort=modified")[0] == ids[0]
    assert rows("sort=created&order=asc")[:2] == ids[:2]

    page = admin_gui.get("/ui/tasks?sort=name&order=asc&page=2").get_data(as_text=True)
    assert "51–100 of 120" in page
    assert '<span class="here" aria-current="page">2</span>' in page
    assert 'href="/ui/tasks?offset=100&amp;sort=name&amp;order=asc" data-page="3"' in page
    assert 'name="page" min="1" max="3" value="2"' in page
    assert '<input type="hidden" name="sort" value="name">' in page  # the jump keeps the order
    many = admin_gui.get("/ui/tasks?page=2").get_data(as_text=True)
    assert "<span class=\"gap\">" not in many  # three pages: all shown


def test_filter_values_that_name_nothing_are_said(admin_gui: GuiClient, api):
    task = create(api, "known", name="only")
    cases = {
        "status=nosuch": "no status 'nosuch': a task is ",
        "batch=nosuch": "no batch 'nosuch': no batch has this id or name",
        "batch=98765": "no batch '98765': no batch has this id or name",
        "worker=someone": "no worker 'someone': a worker is chosen by its id",
        "worker=98765": "no worker '98765': no worker has this id",
        "page=abc": "page 'abc' is not a page number: pages go from 1 to 1",
        "page=7": "there is no page 7: pages go from 1 to 1",
        "sort=command": "cannot sort by 'command': choose id, name, status, batch, created, "
                        "modified",
        "offset=x": "offset 'x' is not a whole number",
    }
    for query, message in cases.items():
        page = admin_gui.get(f"/ui/tasks?{query}").get_data(as_text=True)
        said = problems(page)
        assert len(said) == 1 and said[0].startswith(message), (query, said)
        shown = TASK_ROW.findall(page)
        if query.split("=")[0] in ("status", "batch", "worker"):
            assert shown == [] and "No task matches these filters" in page
        else:
            assert shown == [str(task["id"])]
    fragment = admin_gui.get("/ui/tasks?fragment=1&status=nosuch").get_data(as_text=True)
    assert "no status &#39;nosuch&#39;" in fragment  # the live region says it too
    assert TASK_ROW.findall(admin_gui.get("/ui/tasks?batch=known").get_data(as_text=True)) == [
        str(task["id"])]  # a batch by its name
    assert problems(admin_gui.get("/ui/tasks?status=waiting").get_data(as_text=True)) == []


def test_page_numbers_skip_the_far_pages():
    from scitq_bench.server.gui.tasks import page_numbers
    from scitq_bench.server.gui.web import Pager

    shown = page_numbers(Pager(offset=500, limit=50, total=3000))  # page 11 of 60
    assert shown == [(1, 0), None, (9, 400), (10, 450), (11, 500), (12, 550), (13, 600),
                     None, (60, 2950)]
    assert page_numbers(Pager(offset=0, limit=50, total=0)) == [(1, 0)]
    assert [p and p[0] for p in page_numbers(Pager(offset=100, limit=50, total=200))] == [
        1, 2, 3, 4]
