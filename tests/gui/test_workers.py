"""Workers pages through the Flask test client: the list and its figures, a worker's
page, every form (valid, refused next to the field, without CSRF, for other roles) and
action, with the same effects as the worker API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from scitq_bench.server import auth
from scitq_bench.server.notify import WORK, worker_key
from scitq_bench.server.queue.models import Execution, Task, Worker, utcnow
from scitq_bench.server.serialize import epoch
from tests.support.api import create, register
from tests.support.gui import GuiClient, account_token


def db_of(app: Any) -> Any:
    return app.extensions["scitq_bench"].db


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def busy_worker(api: Any, name: str = "w-busy") -> tuple[int, str]:
    """A worker with one running and one failed execution, and machine figures."""
    worker_id, token = register(api, name, concurrency=3, cpus=8, mem_gb=31.4, gpus=2,
                                gpu_model="A100")
    for _ in range(2):
        create(api, batch="b1")
    claimed = api.post(f"/workers/{worker_id}/claim?max=2", token=token).json["executions"]
    api.post(f"/workers/{worker_id}/report", token=token, json={"events": [
        {"execution_id": claimed[0]["execution_id"], "status": "running"},
        {"execution_id": claimed[1]["execution_id"], "status": "running"},
        {"execution_id": claimed[1]["execution_id"], "status": "failed", "return_code": 1}]})
    api.post(f"/workers/{worker_id}/heartbeat", token=token, json={
        "stats": {"load1": 2.5, "mem_percent": 40.0, "disk_percent": 71.0,
                  "disk_free_gb": 12.5, "cpu_percent": 30.0},
        "executions": [claimed[0]["execution_id"]]})
    return worker_id, token


def test_the_list_shows_each_worker_with_its_machine_and_work(admin_gui: GuiClient, api) -> None:
    worker_id, _ = busy_worker(api)
    register(api, "w-idle")
    page = text(admin_gui.get("/ui/workers"))
    assert 'data-live="/ui/workers?fragment=1"' in page
    fragment = admin_gui.get("/ui/workers?fragment=1")
    row = text(fragment).split(f'data-worker="{worker_id}"')[1].split("</tr>")[0]
    assert "w-busy" in row and "running" in row
    assert "2.5" in row and "/ 8" in row  # load over cpus
    assert "40 %" in row and "71 %" in row and "12.5 GB free" in row
    assert "2 × A100" in row
    assert 'data-cell="running">1<' in row and 'data-cell="failed">1<' in row
    assert "s ago" in row
    assert "<html" not in text(fragment)  # the live region gets only the table


def test_the_list_is_filtered_and_paged_by_the_database(admin_gui: GuiClient, api) -> None:
    for index in range(53):
        register(api, f"w{index:02d}")
    api.patch("/workers/1", json={"status": "paused"})
    first = text(admin_gui.get("/ui/workers"))
    assert "1–50 of 53" in first and "w49" in first and "w50" not in first
    second = text(admin_gui.get("/ui/workers?offset=50"))
    assert "51–53 of 53" in second and "w52" in second and "w00" not in second
    assert 'data-live="/ui/workers?fragment=1&amp;offset=50"' in second
    paused = text(admin_gui.get("/ui/workers?status=paused"))
    assert "w00" in paused and "w01" not in paused
    named = text(admin_gui.get("/ui/workers?name=w4"))
    assert "w40" in named and "w49" in named and "w39" not in named
    assert "No worker matches" in text(admin_gui.get("/ui/workers?name=nobody"))


def test_the_name_search_takes_wildcards_literally(admin_gui: GuiClient, api) -> None:
    for name in ("gpu_1", "gpux1"):
        register(api, name)
    underscore = text(admin_gui.get("/ui/workers?name=U_1"))  # case-insensitive too
    assert "gpu_1" in underscore and "gpux1" not in underscore
    assert "No worker matches" in text(admin_gui.get("/ui/workers?name=%25"))


def test_a_worker_page_shows_its_facts_executions_and_forms(admin_gui: GuiClient, api) -> None:
    worker_id, _ = busy_worker(api)
    page = text(admin_gui.get(f"/ui/workers/{worker_id}"))
    assert "Worker w-busy" in page
    assert "1 running" in page and "1 failed" in page
    assert 'id="settings-form"' in page and 'value="3"' in page  # concurrency
    assert 'data-confirm="Delete worker w-busy?"' in page
    assert ">Pause<" in page and "Undeploy" not in page  # not a recruited machine
    assert "No deploy or destroy job on record" in page
    # its live execution links to the attempt on its task's page
    assert 'href="/ui/tasks/1?execution=1"' in page and 'href="/ui/tasks/1"' in page
    assert admin_gui.get("/ui/workers/999").status_code == 404


def test_settings_are_changed_and_the_worker_is_woken(admin_gui: GuiClient, api, app) -> None:
    worker_id, _ = register(api, "w1")
    notifier = app.extensions["scitq_bench"].notifier
    before = notifier.version(worker_key(worker_id)), notifier.version(WORK)
    response = admin_gui.post(f"/ui/workers/{worker_id}/settings",
                              {"concurrency": "5", "prefetch": "2", "batch": "night"})
    assert response.status_code == 302
    assert response.headers["Location"] == f"/ui/workers/{worker_id}"
    shown = api.get(f"/workers/{worker_id}").json
    assert (shown["concurrency"], shown["prefetch"], shown["batch"]) == (5, 2, "night")
    assert notifier.version(worker_key(worker_id)) > before[0] and notifier.version(WORK) > before[1]
    assert "concurrency 5, prefetch 2, batch night" in text(admin_gui.get(f"/ui/workers/{worker_id}"))
    admin_gui.post(f"/ui/workers/{worker_id}/settings",
                   {"concurrency": "5", "prefetch": "2", "batch": ""})
    assert api.get(f"/workers/{worker_id}").json["batch"] is None  # blank: any batch


@pytest.mark.parametrize(("form", "field", "message"), [
    ({"concurrency": "many", "prefetch": "0"}, "concurrency", "whole number"),
    ({"concurrency": "-1", "prefetch": "0"}, "concurrency", "at least 0"),
    ({"concurrency": "2000", "prefetch": "0"}, "concurrency", "less than or equal to 1024"),
    ({"concurrency": "1", "prefetch": ""}, "prefetch", "prefetch is required"),
    ({"concurrency": "1", "prefetch": "0", "batch": "x" * 201}, "batch", "at most 200"),
])
def test_bad_settings_are_refused_next_to_the_field(admin_gui: GuiClient, api, form, field,
                                                    message) -> None:
    worker_id, _ = register(api, "w1")
    response = admin_gui.post(f"/ui/workers/{worker_id}/settings", form)
    assert response.status_code == 400
    page = text(response)
    error = page.split(f'data-error-for="{field}"')[1].split("</p>")[0]
    assert message in error
    assert f'value="{form[field]}"' in page  # what was typed is kept
    assert api.get(f"/workers/{worker_id}").json["concurrency"] == 2  # unchanged


def test_pause_and_resume(admin_gui: GuiClient, api) -> None:
    worker_id, _ = register(api, "w1")
    response = admin_gui.post(f"/ui/workers/{worker_id}/status", {"status": "paused"})
    assert response.status_code == 302
    assert api.get(f"/workers/{worker_id}").json["status"] == "paused"
    page = text(admin_gui.get(f"/ui/workers/{worker_id}"))
    assert "paused: it takes no new task" in page and ">Resume<" in page
    admin_gui.post(f"/ui/workers/{worker_id}/status", {"status": "running"})
    assert api.get(f"/workers/{worker_id}").json["status"] == "running"
    refused = admin_gui.post(f"/ui/workers/{worker_id}/status", {"status": "evicted"})
    assert refused.status_code == 400 and "status" in text(refused)


def test_delete_is_refused_while_it_holds_work_unless_forced(admin_gui: GuiClient, api,
                                                            app) -> None:
    worker_id, _ = busy_worker(api)
    response = admin_gui.post(f"/ui/workers/{worker_id}/delete", {})
    assert response.status_code == 302 and response.headers["Location"] == f"/ui/workers/{worker_id}"
    assert "still holds 1 live execution" in text(admin_gui.get(f"/ui/workers/{worker_id}"))
    assert api.get(f"/workers/{worker_id}").status_code == 200
    response = admin_gui.post(f"/ui/workers/{worker_id}/delete", {"force": "1"})
    assert response.status_code == 302 and response.headers["Location"] == "/ui/workers"
    assert "Worker w-busy deleted" in text(admin_gui.get("/ui/workers"))
    assert api.get(f"/workers/{worker_id}").status_code == 404
    with db_of(app).read() as session:  # its running task went back to the queue
        assert "pending" in set(session.scalars(select(Task.status)))
        assert "lost" in set(session.scalars(select(Execution.status)))


@pytest.mark.parametrize("path", ["settings", "status", "delete", "undeploy"])
def test_worker_actions_need_the_csrf_token(admin_gui: GuiClient, api, path) -> None:
    worker_id, _ = register(api, "w1")
    response = admin_gui.post(f"/ui/workers/{worker_id}/{path}",
                              {"concurrency": "9", "prefetch": "0", "status": "paused",
                               "force": "1"}, csrf=False)
    assert response.status_code == 400 and "security token" in text(response)
    shown = api.get(f"/workers/{worker_id}").json
    assert (shown["concurrency"], shown["status"]) == (2, "running")


@pytest.mark.parametrize("role", [auth.ORGANIZER, auth.PARTICIPANT])
def test_workers_pages_and_actions_are_for_admins(gui_client: GuiClient, app, api,
                                                  role) -> None:
    worker_id, _ = register(api, "w1")
    gui_client.sign_in(account_token(app, f"someone-{role}", role))
    for path in ("/ui/workers", f"/ui/workers/{worker_id}", "/ui/workers/deploy",
                 "/ui/workers/charts/up", "/ui/workers/charts/cost",
                 "/ui/workers/deploy/flavors?q=a"):
        response = gui_client.get(path)
        assert response.status_code == 403 and "needs the admin role" in text(response), path
    for path in ("settings", "status", "delete", "undeploy"):
        response = gui_client.post(f"/ui/workers/{worker_id}/{path}",
                                   {"concurrency": "9", "prefetch": "0", "status": "paused",
                                    "force": "1"})
        assert response.status_code == 403
    response = gui_client.post("/ui/workers/deploy", {"flavor": "local", "number": "1",
                                                      "prefetch": "0"})
    assert response.status_code == 403
    shown = api.get(f"/workers/{worker_id}").json
    assert (shown["concurrency"], shown["status"]) == (2, "running")


def test_charts_count_workers_up_and_what_machines_cost(admin_gui: GuiClient, api, app) -> None:
    worker_id, _ = register(api, "by-hand")
    now = utcnow()
    with db_of(app).write() as session:
        session.get(Worker, worker_id).created_at = now - timedelta(hours=3)
        session.add(Worker(name="hired", status="offline", provider="fake", region="r",
                           flavor="f", cost_per_hour=2.0, created_at=now - timedelta(hours=2),
                           released_at=now - timedelta(hours=1)))
        session.add(Worker(name="long-gone", status="offline",
                           created_at=now - timedelta(days=3),
                           last_contact_at=now - timedelta(days=2)))
    up = admin_gui.get("/ui/workers/charts/up").get_json()
    assert up["kind"] == "step" and up["x"] == "time"
    series = {s["name"]: s["points"] for s in up["series"]}
    assert max(p[1] for p in series["workers up"]) == 2  # by-hand and hired (not long-gone)
    assert series["workers up"][-1][1] == 1  # hired was given back
    assert max(p[1] for p in series["recruited"]) == 1 and series["recruited"][-1][1] == 0
    cost = admin_gui.get("/ui/workers/charts/cost").get_json()
    points = cost["series"][0]["points"]
    assert points[-1][1] == pytest.approx(2.0, abs=0.01)  # one hour at 2.0
    assert [p[1] for p in points] == sorted(p[1] for p in points)  # never goes down
    assert admin_gui.get("/ui/workers/charts/cost?hours=6").get_json()["series"][0]["points"]
    week = admin_gui.get("/ui/workers/charts/up?hours=168").get_json()
    steps = week["series"][0]["points"]
    rises = [x for (x, before), (_, after) in zip(steps, steps[1:], strict=False)
             if after > before]
    assert len(rises) == 3  # long-gone was up within these 7 days
    assert rises[0] == pytest.approx(epoch(now - timedelta(days=3)), abs=1)
    page = text(admin_gui.get("/ui/workers?hours=168"))
    assert 'data-chart="/ui/workers/charts/up?hours=168"' in page


def test_charts_say_when_there_is_nothing_to_draw(admin_gui: GuiClient) -> None:
    up = admin_gui.get("/ui/workers/charts/up").get_json()
    assert all(not s["points"] for s in up["series"]) and up["empty"]
    cost = admin_gui.get("/ui/workers/charts/cost").get_json()
    assert cost["series"][0]["points"] == [] and "No recruited machine" in cost["empty"]


def test_long_windows_refresh_their_charts_less_often(admin_gui: GuiClient) -> None:
    day = text(admin_gui.get("/ui/workers"))
    month = text(admin_gui.get("/ui/workers?hours=720"))
    assert day.count('data-refresh="5000"') == 2 and 'data-refresh="60000"' not in day
    assert month.count('data-refresh="60000"') == 2 and 'data-refresh="5000"' not in month
