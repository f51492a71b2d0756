"""The GUI never answers 500 to what a URL or a form carries: ids past 64 bits, NUL
characters, other scripts' digits; and a stored file with any name downloads under
that name (RFC 6266 ``filename*``), whatever characters it holds."""

from __future__ import annotations

import io
from urllib.parse import quote

from tests.support.gui import GuiClient, create, register

HUGE = "99999999999999999999"


def test_huge_ids_in_page_urls_are_pages_that_name_them(admin_gui: GuiClient):
    for path, named in [(f"/ui/tasks/{HUGE}", "task_id"), (f"/ui/batches/{HUGE}", "batch_id"),
                        (f"/ui/workers/{HUGE}", "worker_id"), (f"/ui/jobs/{HUGE}", "job_id"),
                        (f"/ui/submissions/{HUGE}", "submission_id"),
                        (f"/ui/benchmarks/{HUGE}", "benchmark_id"),
                        (f"/ui/phases/{HUGE}/leaderboards/main", "phase_id"),
                        (f"/ui/tasks/{'9' * 5000}/log/stdout", "task_id")]:
        answer = admin_gui.get(path)
        assert answer.status_code == 404, path
        assert named in answer.get_data(as_text=True), path


def test_odd_query_values_are_ignored_or_refused_never_a_500(admin_gui: GuiClient, api):
    task = create(api, "b1")["id"]
    for path in (f"/ui/tasks?batch={HUGE}", "/ui/tasks?worker=\u00b2",
                 f"/ui/tasks/{task}?execution={HUGE}", f"/ui/submissions?phase={HUGE}",
                 f"/ui/tasks/{task}/log/stdout?offset={HUGE}&seen={HUGE}"):
        assert admin_gui.get(path).status_code == 200, path
    refused = admin_gui.get("/ui/tasks?q=a%00b")
    assert refused.status_code == 400 and "q: NUL" in refused.get_data(as_text=True)
    form = admin_gui.post("/ui/tasks/new", {"command": "echo\x00", "batch": "b1"})
    assert form.status_code == 400 and "command: NUL" in form.get_data(as_text=True)


def test_a_stored_name_with_control_characters_downloads_under_its_name(
        admin_gui: GuiClient, api, app):
    name = 'we"ird\tname\x01\u00e9.txt'  # as a worker or an archive may name a file
    task = create(api, "b1", output="server://results/run1")["id"]
    worker_id, token = register(api)
    execution = api.post(f"/workers/{worker_id}/claim", token=token).json["executions"][0]
    app.extensions["scitq_bench"].files.write(f"results/run1/{name}", io.BytesIO(b"ok\n"))
    events = [{"execution_id": execution["execution_id"], "status": status}
              for status in ("accepted", "running")]
    events.append({"execution_id": execution["execution_id"], "status": "succeeded",
                   "return_code": 0, "output_files": [name]})
    results = api.post(f"/workers/{worker_id}/report", token=token,
                       json={"events": events}).json["results"]
    assert all(r["ok"] for r in results), results
    download = admin_gui.get(
        f"/ui/tasks/{task}/files/{execution['execution_id']}/{quote(name)}")
    assert download.status_code == 200 and download.data == b"ok\n"
    assert download.headers["Content-Disposition"] == (
        "attachment; filename=\"we_ird_name__.txt\"; "
        "filename*=UTF-8''we%22ird%09name%01%C3%A9.txt")
