"""The tasks pages through the Flask test client: one page of thousands of tasks,
filters, the new-task and edit forms, every action on a task (valid, refused, CSRF,
roles), the live tail's JSON and the output download."""

from __future__ import annotations

import re
from contextlib import contextmanager

from sqlalchemy import event

from scitq_bench.server import auth
from scitq_bench.server.gui.tails import whole_characters
from scitq_bench.server.queue.tasks import create_tasks
from scitq_bench.server.schemas import TaskCreate
from tests.support.gui import GuiClient, account_token, create, register

ROW = re.compile(r'<tr data-task="(\d+)">')


def context(app):
    return app.extensions["scitq_bench"]


@contextmanager
def counting_statements(app):
    statements: list[str] = []
    engines = {context(app).db.reader, context(app).db.writer}

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)


def bulk(app, count: int, batch: str, name: str) -> None:
    db = context(app).db
    with db.write() as session:
        specs = [TaskCreate(command=f"echo {i}", batch=batch, name=f"{name}-{i:05d}")
                 for i in range(count)]
        create_tasks(db, session, specs)


def test_thousands_of_tasks_cost_one_page_and_filters_apply(admin_gui: GuiClient, app, api):
    bulk(app, 2500, "big", "sample")
    bulk(app, 500, "small", "other")
    worker_id, token = register(api)
    claimed = api.post(f"/workers/{worker_id}/claim?max=2", token=token).json["executions"]
    ran = {c["task_id"] for c in claimed}

    with counting_statements(app) as statements:
        page = admin_gui.get("/ui/tasks").get_data(as_text=True)
    rows = [int(i) for i in ROW.findall(page)]
    assert len(rows) == 50 and rows == sorted(rows, reverse=True) and rows[0] == 3000
    assert "1–50 of 3000" in page
    assert len(statements) <= 12, statements  # a few queries, none per row
    with counting_statements(app) as polled:
        admin_gui.get("/ui/tasks?fragment=1")
    assert len(polled) == len(statements) - 2  # the poll skips the filters' choices

    page = admin_gui.get("/ui/tasks?offset=2950").get_data(as_text=True)
    assert [int(i) for i in ROW.findall(page)] == list(range(50, 0, -1))
    assert "2951–3000 of 3000" in page and 'rel="next"' not in page

    big_id = api.get("/batches?name=big").json["batches"][0]["id"]
    page = admin_gui.get(f"/ui/tasks?batch={big_id}&q=ample-0249").get_data(as_text=True)
    assert "1–10 of 10" in page  # sample-02490 ... sample-02499
    assert all(2491 <= int(i) <= 2500 for i in ROW.findall(page))
    page = admin_gui.get("/ui/tasks?q=OTHER-001").get_data(as_text=True)
    assert "1–50 of 100" in page  # other-00100 ... other-00199: case does not matter
    page = admin_gui.get("/ui/tasks?q=100%25").get_data(as_text=True)
    assert "0–0 of 0" in page and "No task matches" in page  # % is a character, not a wildcard

    page = admin_gui.get(f"/ui/tasks?worker={worker_id}").get_data(as_text=True)
    assert {int(i) for i in ROW.findall(page)} == ran and ">w1</a>" in page
    page = admin_gui.get("/ui/tasks?status=assigned").get_data(as_text=True)
    assert {int(i) for i in ROW.findall(page)} == ran
    # the live region polls the same filters and page
    page = admin_gui.get(f"/ui/tasks?batch={big_id}&offset=50").get_data(as_text=True)
    assert f'data-live="/ui/tasks?fragment=1&amp;offset=50&amp;batch={big_id}"' in page
    fragment = admin_gui.get(f"/ui/tasks?fragment=1&offset=50&batch={big_id}")
    assert "<html" not in fragment.get_data(as_text=True)
    assert len(ROW.findall(fragment.get_data(as_text=True))) == 50


def test_new_task_form_creates_or_says_what_is_wrong(admin_gui: GuiClient, api):
    answer = admin_gui.post("/ui/tasks/new", {"command": "echo $HOME", "batch": "formed",
                                              "name": "from-form", "shell": "1"})
    assert answer.status_code == 302
    [task] = api.get("/tasks?batch=formed").json["tasks"]
    assert answer.headers["Location"] == f"/ui/tasks/{task['id']}"
    assert (task["command"], task["name"], task["shell"]) == ("echo $HOME", "from-form", True)

    answer = admin_gui.post("/ui/tasks/new", {"command": "  ", "batch": "x"})
    assert answer.status_code == 400
    assert 'data-error-for="command"' in answer.get_data(as_text=True)
    answer = admin_gui.post("/ui/tasks/new", {"command": "true", "batch": "bad/name"})
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    assert 'data-error-for="batch"' in page and 'value="bad/name"' in page
    assert "<details" in page and 'id="new-task" open' in page
    assert admin_gui.post("/ui/tasks/new", {"command": "true"}, csrf=False).status_code == 400
    assert len(api.get("/tasks").json["tasks"]) == 1


def test_task_page_shows_the_task_and_offers_what_its_status_allows(admin_gui: GuiClient, api):
    first = create(api, "b1", name="first")
    second = create(api, "b1", command="echo <b>x</b>", requires=[first["id"]], cpu=2,
                    container="alpine:3", retry=2)
    page = admin_gui.get(f"/ui/tasks/{second['id']}").get_data(as_text=True)
    assert "echo &lt;b&gt;x&lt;/b&gt;" in page and "alpine:3" in page
    assert f'href="/ui/tasks/{first["id"]}">{first["id"]}</a>' in page
    assert "Hold back" in page and "Relaunch" not in page and ">Kill<" not in page
    assert f'data-log-tail="/ui/tasks/{second["id"]}/log/stdout"' in page
    assert 'data-confirm="Delete task' in page

    admin_gui.post(f"/ui/tasks/{second['id']}/queue", {"status": "paused"})
    assert api.get(f"/tasks/{second['id']}").json["status"] == "paused"
    assert "Back to the queue" in admin_gui.get(f"/ui/tasks/{second['id']}").get_data(as_text=True)
    admin_gui.post(f"/ui/tasks/{second['id']}/queue", {"status": "pending"})
    assert api.get(f"/tasks/{second['id']}").json["status"] == "waiting"  # its prerequisite

    answer = admin_gui.post(f"/ui/tasks/{second['id']}/relaunch")
    assert answer.status_code == 302
    assert "only failed, succeeded or cancelled" in admin_gui.get(answer.headers["Location"]).get_data(as_text=True)
    answer = admin_gui.post(f"/ui/tasks/{second['id']}/signal", {"signal": "kill"})
    assert "no live execution to signal" in admin_gui.get(answer.headers["Location"]).get_data(as_text=True)
    assert admin_gui.get("/ui/tasks/999999").status_code == 404


def test_signals_reach_the_worker_and_relaunch_runs_again(admin_gui: GuiClient, api):
    task = create(api, "b1")
    worker_id, token = register(api)
    [claim] = api.post(f"/workers/{worker_id}/claim?max=1", token=token).json["executions"]
    api.post(f"/workers/{worker_id}/report", token=token,
             json={"events": [{"execution_id": claim["execution_id"], "status": "running"}]})
    page = admin_gui.get(f"/ui/tasks/{task['id']}").get_data(as_text=True)
    assert ">Pause<" in page and ">Kill<" in page and 'data-confirm="Kill task' in page
    admin_gui.post(f"/ui/tasks/{task['id']}/signal", {"signal": "pause"})
    assert api.get(f"/tasks/{task['id']}").json["status"] == "paused"
    admin_gui.post(f"/ui/tasks/{task['id']}/signal", {"signal": "resume"})
    admin_gui.post(f"/ui/tasks/{task['id']}/signal", {"signal": "kill"})
    assert api.get(f"/tasks/{task['id']}").json["status"] == "cancelled"
    beat = api.post(f"/workers/{worker_id}/heartbeat", json={}, token=token).json
    assert [s["signal"] for s in beat["signals"]] == ["pause", "resume", "kill"]
    api.post(f"/workers/{worker_id}/report", token=token,
             json={"events": [{"execution_id": claim["execution_id"], "status": "cancelled"}]})
    assert admin_gui.post(f"/ui/tasks/{task['id']}/signal", {"signal": "boom"}).status_code == 302
    answer = admin_gui.post(f"/ui/tasks/{task['id']}/relaunch")
    assert answer.status_code == 302 and answer.headers["Location"] == f"/ui/tasks/{task['id']}"
    assert api.get(f"/tasks/{task['id']}").json["status"] == "pending"


def test_edit_command_valid_invalid_and_delete(admin_gui: GuiClient, api):
    task = create(api, "b1", command="echo old")
    edit = f"/ui/tasks/{task['id']}/edit"
    assert ">echo old</textarea>" in admin_gui.get(edit).get_data(as_text=True)
    answer = admin_gui.post(edit, {"command": "", "name": "n"})
    assert answer.status_code == 400
    assert 'data-error-for="command"' in answer.get_data(as_text=True)
    assert admin_gui.post(edit, {"command": "echo new"}, csrf=False).status_code == 400
    assert api.get(f"/tasks/{task['id']}").json["command"] == "echo old"
    answer = admin_gui.post(edit, {"command": "echo new && true", "shell": "1", "name": "renamed"})
    assert answer.status_code == 302
    changed = api.get(f"/tasks/{task['id']}").json
    assert (changed["command"], changed["shell"], changed["name"]) == ("echo new && true", True, "renamed")
    answer = admin_gui.post(f"/ui/tasks/{task['id']}/delete")
    assert answer.status_code == 302 and answer.headers["Location"] == "/ui/tasks"
    assert api.get(f"/tasks/{task['id']}").status_code == 404


def test_task_pages_need_the_admin_role(gui_client, app, api):
    task = create(api, "b1")
    gui_client.sign_in(account_token(app, "olga", auth.ORGANIZER))
    for path in ("/ui/tasks", f"/ui/tasks/{task['id']}", f"/ui/tasks/{task['id']}/log/stdout",
                 f"/ui/tasks/{task['id']}/output/stdout", f"/ui/tasks/{task['id']}/edit"):
        assert gui_client.get(path).status_code == 403, path
    for path in ("delete", "relaunch", "edit"):
        assert gui_client.post(f"/ui/tasks/{task['id']}/{path}", {"command": "x"}).status_code == 403
    assert gui_client.post("/ui/tasks/new", {"command": "x"}).status_code == 403
    assert api.get(f"/tasks/{task['id']}").json["command"] == "true"


def _tail(answer) -> tuple[str, int, bool]:
    return answer.json["text"], answer.json["offset"], answer.json["done"]


def test_log_tail_sends_whole_characters_and_ends_when_the_run_has(admin_gui: GuiClient, api, app):
    task = create(api, "b1")
    url = f"/ui/tasks/{task['id']}/log/stdout"
    assert _tail(admin_gui.get(url)) == ("", 0, False)
    worker_id, token = register(api)
    [claim] = api.post(f"/workers/{worker_id}/claim?max=1", token=token).json["executions"]
    execution = claim["execution_id"]
    line = "été <script>\n".encode()
    api.put(f"/executions/{execution}/logs/stdout?offset=0", data=line[:1], token=token)
    first = admin_gui.get(f"{url}?offset=0")  # half an "é": nothing whole yet
    assert _tail(first) == ("", 0, False) and first.json["execution"] == execution
    api.put(f"/executions/{execution}/logs/stdout?offset=1", data=line[1:], token=token)
    assert _tail(admin_gui.get(f"{url}?offset=0")) == ("été <script>\n", len(line), False)
    answer = api.post(f"/workers/{worker_id}/report", token=token, json={"events": [
        {"execution_id": execution, "status": "succeeded", "return_code": 0, "duration": 1}]})
    assert answer.json["results"][0]["ok"], answer.json
    assert _tail(admin_gui.get(f"{url}?offset={len(line)}&seen={execution}")) == (
        "", len(line), True)
    assert admin_gui.get(f"/ui/tasks/{task['id']}/log/other").status_code == 404

    download = admin_gui.get(f"/ui/tasks/{task['id']}/output/stdout")
    assert download.status_code == 200 and download.data == line
    assert download.data == api.get(f"/tasks/{task['id']}/output?stream=stdout").data
    assert "attachment" in download.headers["Content-Disposition"]
    pinned = admin_gui.get(f"/ui/tasks/{task['id']}/output/stderr?execution={execution}")
    assert pinned.status_code == 200 and pinned.data == b""
    other = create(api, "b1")
    assert admin_gui.get(f"/ui/tasks/{other['id']}/output/stdout").status_code == 404
    assert admin_gui.get(f"/ui/tasks/{other['id']}/log/stdout?execution={execution}").status_code == 404


def test_whole_characters_keeps_only_complete_utf8():
    assert whole_characters(b"abc") == b"abc"
    euro = "€".encode()
    assert whole_characters(b"a" + euro[:1]) == b"a"
    assert whole_characters(b"a" + euro[:2]) == b"a"
    assert whole_characters(b"a" + euro) == b"a" + euro
    emoji = "🙂".encode()
    assert whole_characters(emoji[:3]) == b""
    assert whole_characters(emoji) == emoji


def test_a_tail_following_the_task_moves_on_to_its_relaunch(admin_gui: GuiClient, api):
    task = create(api, "b1")
    url = f"/ui/tasks/{task['id']}/log/stdout"
    worker_id, token = register(api)

    def run(text: bytes, status: str) -> int:
        [claim] = api.post(f"/workers/{worker_id}/claim?max=1", token=token).json["executions"]
        api.put(f"/executions/{claim['execution_id']}/logs/stdout?offset=0", data=text,
                token=token)
        api.post(f"/workers/{worker_id}/report", token=token, json={"events": [
            {"execution_id": claim["execution_id"], "status": status, "return_code": 0,
             "duration": 1}]})
        return claim["execution_id"]

    first = run(b"first attempt\n", "succeeded")
    assert _tail(admin_gui.get(url)) == ("first attempt\n", 14, True)
    assert admin_gui.post(f"/ui/tasks/{task['id']}/relaunch").status_code == 302
    # relaunched and queued: the page reading the first attempt is not done any more
    assert _tail(admin_gui.get(f"{url}?offset=14&seen={first}"))[2] is False
    second = run(b"2nd\n", "succeeded")
    moved = admin_gui.get(f"{url}?offset=14&seen={first}").json
    assert (moved["text"], moved["offset"], moved["reset"], moved["execution"]) == (
        "2nd\n", 4, True, second)
    # a tail pinned to the first attempt stays on it, and is done
    pinned = admin_gui.get(f"{url}?execution={first}&offset=0").json
    assert (pinned["text"], pinned["done"], pinned["execution"]) == ("first attempt\n", True, first)


def test_names_commands_and_batches_are_text_in_the_list(admin_gui: GuiClient, api):
    create(api, "b1", name='<img src=x onerror="window.__xss=1">',
           command="<script>window.__xss=1</script>")
    page = admin_gui.get("/ui/tasks").get_data(as_text=True)
    assert "<script>window.__xss" not in page and "<img src=x" not in page
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&#34;window.__xss=1&#34;&gt;" in page


def test_output_files_stored_on_the_server_download_and_others_do_not(admin_gui: GuiClient, api):
    task = create(api, "b1", output="server://results/run1")
    elsewhere = create(api, "b1", output="file:///tmp/results")
    worker_id, token = register(api)
    claims = api.post(f"/workers/{worker_id}/claim?max=2", token=token).json["executions"]
    by_task = {c["task_id"]: c["execution_id"] for c in claims}
    execution, other = by_task[task["id"]], by_task[elsewhere["id"]]
    api.put("/files/results/run1/sub/score.txt", data=b"0.93\n", token=token)
    api.put("/files/results/secret.txt", data=b"not an output\n", token=token)
    events = [{"execution_id": e, "status": "succeeded", "return_code": 0, "duration": 1,
               "output_files": ["sub/score.txt"]} for e in (execution, other)]
    assert all(r["ok"] for r in api.post(f"/workers/{worker_id}/report", token=token,
                                         json={"events": events}).json["results"])
    page = admin_gui.get(f"/ui/tasks/{task['id']}").get_data(as_text=True)
    link = f"/ui/tasks/{task['id']}/files/{execution}/sub/score.txt"
    assert link in page
    download = admin_gui.get(link)
    assert download.status_code == 200 and download.data == b"0.93\n"
    assert "attachment" in download.headers["Content-Disposition"]
    # only names the attempt reported, never other files of the store
    assert admin_gui.get(f"/ui/tasks/{task['id']}/files/{execution}/../secret.txt").status_code == 404
    assert admin_gui.get(f"/ui/tasks/{task['id']}/files/{execution}/secret.txt").status_code == 404
    # an output kept on a worker's disk is named, not linked
    page = admin_gui.get(f"/ui/tasks/{elsewhere['id']}").get_data(as_text=True)
    assert f"/files/{other}/" not in page and "outside this server" in page
    assert admin_gui.get(f"/ui/tasks/{elsewhere['id']}/files/{other}/sub/score.txt").status_code == 404
