"""The batches pages through the Flask test client: the list and its actions, a
batch's settings and recruiters (valid, invalid next to the field, CSRF, roles)."""

from __future__ import annotations

from scitq_bench.server import auth
from tests.support.gui import GuiClient, account_token, batch_of, create, register


def test_list_shows_counts_cost_budget_and_live_fragment(admin_gui: GuiClient, api):
    for _ in range(3):
        create(api, "alpha")
    create(api, "beta", paused=True)
    alpha = batch_of(api, "alpha")
    api.patch(f"/batches/{alpha['id']}", json={"budget": 12.5})
    page = admin_gui.get("/ui/batches").get_data(as_text=True)
    assert 'data-live="/ui/batches?fragment=1"' in page
    assert f'data-batch="{alpha["id"]}"' in page and "12.50" in page
    fragment = admin_gui.get("/ui/batches?fragment=1").get_data(as_text=True)
    assert "<html" not in fragment and 'id="batches-table"' in fragment
    row = fragment.split(f'data-batch="{alpha["id"]}"')[1].split("</tr>")[0]
    assert '<td class="num">3</td>' in row  # three tasks, all queued
    assert 'data-confirm="Delete batch alpha with its 3 task(s) and their logs?"' in row
    assert 'data-confirm="Stop batch alpha?' in row


def test_stop_go_and_delete(admin_gui: GuiClient, api):
    create(api, "alpha")
    batch_id = batch_of(api, "alpha")["id"]
    worker_id, _ = register(api)
    api.patch(f"/workers/{worker_id}", json={"batch": "alpha"})
    answer = admin_gui.post(f"/ui/batches/{batch_id}/stop", {"signal": "none", "workers": "1"})
    assert answer.status_code == 302 and answer.headers["Location"] == "/ui/batches"
    assert batch_of(api, "alpha")["status"] == "paused"
    assert api.get(f"/workers/{worker_id}").json["status"] == "paused"
    assert "1 worker(s) paused" in admin_gui.get("/ui/batches").get_data(as_text=True)
    answer = admin_gui.post(f"/ui/batches/{batch_id}/go", {"next": f"/ui/batches/{batch_id}"})
    assert answer.headers["Location"] == f"/ui/batches/{batch_id}"
    assert batch_of(api, "alpha")["status"] == "running"
    assert api.get(f"/workers/{worker_id}").json["status"] == "running"
    assert admin_gui.post(f"/ui/batches/{batch_id}/delete").status_code == 302
    assert api.get("/batches?name=alpha").json["batches"] == []
    assert admin_gui.get(f"/ui/batches/{batch_id}").status_code == 404


def test_stop_kills_running_tasks_and_refuses_unknown_signals(admin_gui: GuiClient, api):
    task = create(api, "alpha")
    worker_id, token = register(api)
    claimed = api.post(f"/workers/{worker_id}/claim?max=1", token=token).json["executions"]
    api.post(f"/workers/{worker_id}/report", token=token,
             json={"events": [{"execution_id": claimed[0]["execution_id"], "status": "running"}]})
    batch_id = batch_of(api, "alpha")["id"]
    answer = admin_gui.post(f"/ui/batches/{batch_id}/stop", {"signal": "explode"})
    assert answer.status_code == 302
    assert batch_of(api, "alpha")["status"] == "running"  # nothing done
    assert "choose what to do" in admin_gui.get("/ui/batches").get_data(as_text=True)
    admin_gui.post(f"/ui/batches/{batch_id}/stop", {"signal": "kill"})
    assert api.get(f"/tasks/{task['id']}").json["status"] == "paused"
    beat = api.post(f"/workers/{worker_id}/heartbeat", json={}, token=token).json
    assert [s["signal"] for s in beat["signals"]] == ["kill"]


def test_batch_actions_need_csrf_and_the_admin_role(admin_gui: GuiClient, gui_client, api, app):
    create(api, "alpha")
    batch_id = batch_of(api, "alpha")["id"]
    for path in ("stop", "delete"):
        assert admin_gui.post(f"/ui/batches/{batch_id}/{path}", csrf=False).status_code == 400
    assert batch_of(api, "alpha")["status"] == "running"
    other = GuiClient(app.test_client())
    other.sign_in(account_token(app, "olga", auth.ORGANIZER))
    assert other.get("/ui/batches").status_code == 403
    assert other.get(f"/ui/batches/{batch_id}").status_code == 403
    assert other.post(f"/ui/batches/{batch_id}/delete").status_code == 403
    assert other.post(f"/ui/batches/{batch_id}/recruiters", {"flavor": "f1"}).status_code == 403
    assert batch_of(api, "alpha")["status"] == "running"


def test_settings_change_priority_and_budget_or_say_why_not(admin_gui: GuiClient, api):
    create(api, "alpha")
    batch_id = batch_of(api, "alpha")["id"]
    answer = admin_gui.post(f"/ui/batches/{batch_id}/settings", {"priority": "5", "budget": "3.5"})
    assert answer.status_code == 302
    assert (batch_of(api, "alpha")["priority"], batch_of(api, "alpha")["budget"]) == (5, 3.5)
    answer = admin_gui.post(f"/ui/batches/{batch_id}/settings", {"priority": "x", "budget": "-1"})
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    assert 'data-error-for="priority"' in page and 'data-error-for="budget"' in page
    assert "greater than or equal to 0" in page
    admin_gui.post(f"/ui/batches/{batch_id}/settings", {"priority": "5", "budget": ""})
    assert batch_of(api, "alpha")["budget"] is None


def test_recruiters_are_added_edited_and_deleted_with_the_api_checks(admin_gui: GuiClient, api):
    create(api, "alpha")
    create(api, "other")
    batch_id = batch_of(api, "alpha")["id"]
    base = f"/ui/batches/{batch_id}/recruiters"
    answer = admin_gui.post(base, {"flavor": "auto:cpu>=4", "maximum_workers": "3"})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    [recruiter] = api.get("/recruiters?batch=alpha").json
    assert (recruiter["rank"], recruiter["flavor"], recruiter["maximum_workers"],
            recruiter["provider"], recruiter["concurrency"]) == (1, "auto:cpu>=4", 3, "auto", None)
    page = admin_gui.get(f"/ui/batches/{batch_id}").get_data(as_text=True)
    assert f'data-recruiter="{recruiter["id"]}"' in page and "auto:cpu&gt;=4" in page

    bad = admin_gui.post(base, {"flavor": "auto:nonsense~~", "maximum_workers": "-1",
                                "concurrency": "many"})
    assert bad.status_code == 400
    page = bad.get_data(as_text=True)
    for name in ("flavor", "maximum_workers", "concurrency"):
        assert f'data-error-for="{name}"' in page
    assert 'value="auto:nonsense~~"' in page  # what was typed is kept
    same_rank = admin_gui.post(base, {"flavor": "f2", "rank": "1"})
    assert same_rank.status_code == 400
    assert 'data-error-for="rank"' in same_rank.get_data(as_text=True)
    assert "already has a recruiter of rank 1" in same_rank.get_data(as_text=True)
    assert len(api.get("/recruiters?batch=alpha").json) == 1

    edit = f"{base}/{recruiter['id']}/edit"
    form = admin_gui.get(edit).get_data(as_text=True)
    assert 'value="auto:cpu&gt;=4"' in form
    bad = admin_gui.post(edit, {"flavor": "", "provider": "auto", "region": "auto",
                                "prefetch": "0", "minimum_tasks": "0", "maximum_workers": "2"})
    assert bad.status_code == 400 and 'data-error-for="flavor"' in bad.get_data(as_text=True)
    answer = admin_gui.post(edit, {"flavor": "f9", "provider": "auto", "region": "auto",
                                   "concurrency": "4", "prefetch": "1", "minimum_tasks": "2",
                                   "maximum_workers": "5"})
    assert answer.status_code == 302
    changed = api.get("/recruiters?batch=alpha").json[0]
    assert (changed["flavor"], changed["concurrency"], changed["prefetch"],
            changed["minimum_tasks"], changed["maximum_workers"]) == ("f9", 4, 1, 2, 5)
    admin_gui.post(edit, {"flavor": "f9", "provider": "auto", "region": "auto",
                          "concurrency": "", "prefetch": "1", "minimum_tasks": "2",
                          "maximum_workers": "5"})
    assert api.get("/recruiters?batch=alpha").json[0]["concurrency"] is None  # cleared

    other_id = batch_of(api, "other")["id"]
    assert admin_gui.get(f"/ui/batches/{other_id}/recruiters/{recruiter['id']}/edit").status_code == 404
    assert admin_gui.post(f"{base}/{recruiter['id']}/delete", csrf=False).status_code == 400
    assert admin_gui.post(f"{base}/{recruiter['id']}/delete").status_code == 302
    assert api.get("/recruiters?batch=alpha").json == []


def test_api_deletes_recruiters_through_the_same_service(api):
    create(api, "alpha")
    recruiter = api.post("/recruiters", json={"batch": "alpha", "flavor": "f1"}).json
    assert api.delete(f"/recruiters/{recruiter['id']}").status_code == 200
    assert api.delete(f"/recruiters/{recruiter['id']}").status_code == 404


def test_durations_read_at_a_glance():
    from scitq_bench.server.gui.formats import hms

    assert [hms(None), hms(4.3), hms(125), hms(3725)] == ["", "4.3s", "2m05s", "1h02m05s"]
