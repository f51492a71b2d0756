"""Hostile input never gets a 500: ids past 64 bits in paths, queries and bodies,
integers past what their column holds, NUL characters (PostgreSQL refuses them in
text), NaN and infinity. Each answer is 400 or 404 and names the field at fault; every
row runs on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from scitq_bench.server.limits import ID_MAX, INT_MAX

HUGE = "99999999999999999999"  # past 2**64
PAST = str(ID_MAX + 1)

# (method, path, JSON body or raw text body, status, what the message must name)
ROWS: list[tuple[str, str, Any, int, str]] = [
    # ids in the path: out of range is not found, naming the argument
    ("GET", f"/tasks/{HUGE}", None, 404, "task_id"),
    ("GET", f"/tasks/{PAST}", None, 404, "task_id"),
    ("GET", f"/tasks/{'9' * 5000}", None, 404, "task_id"),
    ("PATCH", f"/tasks/{HUGE}", {"priority": 1}, 404, "task_id"),
    ("GET", f"/batches/{HUGE}", None, 404, "batch_id"),
    ("GET", f"/workers/{HUGE}", None, 404, "worker_id"),
    ("GET", f"/executions/{HUGE}", None, 404, "execution_id"),
    ("GET", f"/benchmarks/{HUGE}", None, 404, "benchmark_id"),
    ("GET", f"/submissions/{HUGE}", None, 404, "submission_id"),
    ("GET", f"/jobs/{HUGE}", None, 404, "job_id"),
    ("DELETE", f"/submissions/{HUGE}/attempts/{HUGE}", None, 404, "submission_id"),
    # the largest id is in range: the domain's own answer
    ("GET", f"/tasks/{ID_MAX}", None, 404, f"task {ID_MAX} not found"),
    # query parameters
    ("GET", f"/tasks?limit={HUGE}", None, 400, "limit"),
    ("GET", "/tasks?offset=-1", None, 400, "offset"),
    ("GET", f"/tasks?id=1,{HUGE}", None, 400, "id"),
    ("GET", f"/tasks?worker={'9' * 5000}", None, 400, "worker"),
    ("GET", f"/executions?task={HUGE}", None, 400, "task"),
    ("GET", f"/submissions?limit={HUGE}", None, 400, "limit"),
    ("GET", "/flavors?min_cpu=nan", None, 400, "min_cpu"),
    ("GET", "/flavors?min_ram=inf", None, 400, "min_ram"),
    ("GET", "/files?prefix=a%00b", None, 400, "prefix"),
    ("GET", "/tasks?name=x%00", None, 400, "name"),
    ("GET", "/batches?name=%00", None, 400, "name"),
    ("GET", "/tasks?batch%00=x", None, 400, "query parameter name"),
    # text in the path
    ("GET", "/files/a%00b", None, 400, "path"),
    ("GET", "/phases/1/leaderboards/k%00", None, 400, "key"),
    # bodies
    ("POST", "/tasks", {"command": "true", "requires": [int(HUGE)]}, 400, "requires.0"),
    ("POST", "/tasks", {"command": "true", "requires": [0]}, 400, "requires.0"),
    ("POST", "/tasks", {"command": "a\x00b"}, 400, "command"),
    ("POST", "/tasks", {"command": "true", "name": "x\x00"}, 400, "name"),
    ("POST", "/tasks", {"command": "true", "priority": INT_MAX + 1}, 400, "priority"),
    ("POST", "/tasks", {"command": "true", "cpu": 2**40}, 400, "cpu"),
    ("POST", "/tasks", {"command": "true", "gpu": "99999999999"}, 400, "gpu"),
    ("POST", "/tasks", {"command": "true", "mem": "inf"}, 400, "mem"),
    ("POST", "/tasks", '{"command": "true", "run_timeout": NaN}', 400, "run_timeout"),
    ("POST", "/tasks", '{"command": "true", "download_timeout": Infinity}', 400,
     "download_timeout"),
    ("POST", "/tasks", {"tasks": [{"command": "true"}, {"command": "x", "priority": -2**40}]},
     400, "tasks.1.priority"),
    ("POST", "/batches", {"name": "b", "priority": -6876605415300135424884736}, 400, "priority"),
    ("POST", "/workers", {"name": "w", "gpus": 2**31}, 400, "gpus"),
    ("POST", "/workers", {"name": "w", "hostname": "h\x00"}, 400, "hostname"),
    ("POST", "/accounts", {"name": "a", "email": "\x00"}, 400, "email"),
    ("PUT", "/quotas/p/r", {"max_cpus": 2**31}, 400, "max_cpus"),
]


def _call(api: Any, method: str, path: str, body: Any) -> Any:
    if isinstance(body, str):
        return api.call(method, path, data=body, content_type="application/json")
    return api.call(method, path, json=body)


def _mismatches(api: Any, rows: list[tuple[str, str, Any, int, str]]) -> list[str]:
    """Every row whose answer is not the status expected naming the field: all of
    them, not only the first, so one run shows the whole picture."""
    wrong = []
    for method, path, body, status, named in rows:
        answer = _call(api, method, path, body)
        message = (answer.json or {}).get("message", "") if answer.is_json else ""
        if answer.status_code != status or named not in message:
            wrong.append(f"{method} {path[:60]} {str(body)[:60]}: {answer.status_code} "
                         f"{answer.get_data(as_text=True)[:200]}")
    return wrong


def test_hostile_input_is_answered_naming_the_field(api):
    assert _mismatches(api, ROWS) == []


def test_bounds_of_a_task_s_own_calls(api):
    """Ids and numbers that reach a real task, its worker, its execution and its log."""
    task = api.post("/tasks", json={"command": "true"}).json["tasks"][0]["id"]
    worker = api.post("/workers", json={"name": "w1"}).json["worker"]["id"]
    execution = api.post(f"/workers/{worker}/claim").json["executions"][0]["execution_id"]
    rows = [
        ("PATCH", f"/tasks/{task}", {"name": "x\x00"}, 400, "name"),
        ("PATCH", f"/tasks/{task}", {"priority": 2**31}, 400, "priority"),
        ("GET", f"/tasks/{task}/output?wait=nan", None, 400, "wait"),
        ("GET", f"/tasks/{task}/output?offset={HUGE}", None, 400, "offset"),
        ("GET", f"/executions/{execution}/logs/stdout?limit={HUGE}", None, 400, "limit"),
        ("PUT", f"/executions/{execution}/logs/stdout?offset={HUGE}", "x", 400, "offset"),
        ("GET", f"/executions/{execution}/logs/std%00out", None, 400, "stream"),
        ("POST", f"/workers/{worker}/claim?wait=inf", None, 400, "wait"),
        ("POST", f"/workers/{worker}/claim?max={HUGE}", None, 400, "max"),
        ("POST", f"/workers/{worker}/heartbeat", {"executions": [int(HUGE)]}, 400,
         "executions.0"),
        ("POST", f"/workers/{worker}/heartbeat", '{"stats": {"load": NaN}}', 400, "stats.load"),
        ("POST", f"/workers/{worker}/heartbeat", {"stats": {"k\x00": 1}}, 400, "NUL"),
        ("POST", f"/workers/{worker}/report", {"events": [
            {"execution_id": execution, "status": "failed", "return_code": 2**40}]}, 400,
         "events.0.return_code"),
    ]
    assert _mismatches(api, rows) == []
    # nothing refused reached the database
    assert api.get(f"/tasks/{task}").json["priority"] == 0
    assert api.get(f"/executions/{execution}").json["status"] != "failed"


def test_path_ids_only_take_ascii_digits(api):
    """Other scripts' digits are no id: the route does not match at all."""
    assert api.get("/tasks/\u0661").status_code == 404
    assert api.get("/tasks/-1").status_code == 404


def test_null_for_a_field_that_cannot_be_empty_is_named(api):
    """A PATCH with null where the column holds no null: 400 naming the field, and
    nothing changed (the database used to refuse it as an internal error)."""
    recruiter = api.post("/recruiters", json={"batch": "b", "flavor": "small"}).json["id"]
    worker = api.post("/workers", json={"name": "w1", "concurrency": 3}).json["worker"]["id"]
    rows = [
        ("PATCH", f"/recruiters/{recruiter}", {"minimum_tasks": None}, 400, "minimum_tasks"),
        ("PATCH", f"/recruiters/{recruiter}", {"flavor": "x", "prefetch": None}, 400,
         "prefetch"),
        ("PATCH", f"/workers/{worker}", {"concurrency": None}, 400, "concurrency"),
    ]
    assert _mismatches(api, rows) == []
    assert [r["flavor"] for r in api.get("/recruiters?batch=b").json] == ["small"]
    assert api.get(f"/workers/{worker}").json["concurrency"] == 3
    cleared = api.patch(f"/recruiters/{recruiter}", json={"tasks_per_worker": None})
    assert cleared.status_code == 200 and cleared.json["tasks_per_worker"] is None


def test_a_json_body_past_its_bound_is_413_declared_or_streamed(live_server, monkeypatch):
    """A JSON body is read whole, so its size is bounded whether the client declares it
    (Content-Length) or streams it (chunked): 413 naming the bound, nothing created."""
    import requests

    from scitq_bench.server.api import registry

    monkeypatch.setattr(registry, "MAX_JSON_BODY", 4096)
    headers = {"Authorization": f"Bearer {live_server.token}",
               "Content-Type": "application/json"}
    body = b'{"command": "' + b"x" * 8000 + b'"}'

    def chunks() -> Any:
        for start in range(0, len(body), 1000):
            yield body[start:start + 1000]

    for data in (body, chunks()):
        answer = requests.post(f"{live_server.url}/api/v1/tasks", data=data,
                               headers=headers, timeout=10)
        assert answer.status_code == 413, answer.text
        assert answer.json()["message"].startswith(
            "request body is larger than 4,096 bytes, the most a JSON body may hold")
    small = requests.post(f"{live_server.url}/api/v1/tasks", json={"command": "true"},
                          headers={"Authorization": f"Bearer {live_server.token}"}, timeout=10)
    assert small.status_code == 201
    assert [t["command"] for t in live_server.client().task_list()] == ["true"]
