"""The HTTP API: auth, error answers, logs, files, batches, OpenAPI (both databases)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from tests.support.api import create, register
from tests.support.waiting import wait_until

# -- auth ----------------------------------------------------------------------------

def test_requests_without_valid_token_get_401(api) -> None:
    assert api.get("/tasks", token=None).status_code == 401
    answer = api.get("/tasks", token="sqb_not-a-token")
    assert answer.status_code == 401 and answer.json["error"] == "unauthorized"
    assert api.get("/health", token=None).status_code == 200


def test_worker_token_is_least_privilege(api) -> None:
    worker_a, token_a = register(api, "a")
    worker_b, _token_b = register(api, "b")
    assert api.get("/tasks", token=token_a).status_code == 403
    assert api.post("/tasks", json={"command": "x"}, token=token_a).status_code == 403
    assert api.post("/workers", json={"name": "c"}, token=token_a).status_code == 403
    assert api.post(f"/workers/{worker_b}/claim", token=token_a).status_code == 403
    create(api)
    claimed = api.post(f"/workers/{worker_a}/claim?max=1", token=token_a).json["executions"]
    execution = claimed[0]["execution_id"]
    # b may not write a's execution log nor report on it
    _, token_b2 = register(api, "b")
    assert api.put(f"/executions/{execution}/logs/stdout?offset=0", data=b"x",
                   token=token_b2).status_code == 403
    answer = api.post(f"/workers/{worker_b}/report", token=token_b2,
                      json={"events": [{"execution_id": execution, "status": "running"}]})
    assert answer.json["results"][0]["ok"] is False


def test_reregistration_revokes_the_old_worker_token(api) -> None:
    worker, old = register(api, "same")
    _, new = register(api, "same")
    assert api.post(f"/workers/{worker}/heartbeat", json={}, token=new).status_code == 200
    assert api.post(f"/workers/{worker}/heartbeat", json={}, token=old).status_code == 401


def test_enroll_token_may_only_register(api, settings) -> None:
    from scitq_bench.server.setup import create_token

    enroll = create_token(settings, "enroll")
    assert api.get("/tasks", token=enroll).status_code == 403
    assert api.post("/workers", json={"name": "e1"}, token=enroll).status_code == 201


def test_tokens_never_appear_in_listings(api) -> None:
    _, token = register(api, "secretive")
    assert token not in api.get("/workers").get_data(as_text=True)


# -- bad input -------------------------------------------------------------------------

def test_unknown_ids_are_404_naming_the_id(api) -> None:
    for path in ("/tasks/4242", "/executions/4242", "/workers/4242", "/batches/4242"):
        answer = api.get(path)
        assert answer.status_code == 404 and "4242" in answer.json["message"], path


def test_missing_and_invalid_fields_are_400_naming_the_field(api) -> None:
    answer = api.post("/tasks", json={"name": "no command"})
    assert answer.status_code == 400 and "command" in answer.json["message"]
    answer = api.post("/tasks", json={"command": "x", "retry": -1})
    assert answer.status_code == 400 and "retry" in answer.json["message"]
    answer = api.post("/tasks", json={"command": "x", "inputs": ["gs://a/b"]})
    assert answer.status_code == 400 and "inputs" in answer.json["message"]
    assert "gs" in answer.json["message"]
    answer = api.post("/tasks", json={"command": "x", "inputs": ["ftp://me:pw@host/x"]})
    assert answer.status_code == 400 and "credentials" in answer.json["message"]
    assert ":pw@" not in answer.json["message"]
    answer = api.post("/tasks", json={"command": "x", "output": "s3://bkt/o/?X-Amz-Signature=1"})
    assert answer.status_code == 400 and "output" in answer.json["message"]
    assert "X-Amz-Signature" not in answer.json["message"]
    answer = api.post("/tasks", json={"command": "x", "resources": ["file:///r|frobnicate"]})
    assert answer.status_code == 400 and "frobnicate" in answer.json["message"]
    answer = api.post("/tasks", json={"command": "x", "colour": "red"})
    assert answer.status_code == 400 and "colour" in answer.json["message"]


def test_malformed_json_is_400(api) -> None:
    answer = api.post("/tasks", data=b"{not json", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "JSON" in answer.json["message"]
    answer = api.post("/tasks", json=[1, 2])
    assert answer.status_code == 400


def test_bulk_with_one_bad_task_creates_nothing(api) -> None:
    answer = api.post("/tasks", json={"tasks": [
        {"command": "ok"}, {"command": "ok2"}, {"command": "bad", "inputs": ["nope"]}]})
    assert answer.status_code == 400 and "tasks.2.inputs" in answer.json["message"]
    assert api.get("/tasks").json["tasks"] == []


def test_illegal_transitions_are_409_with_state(api) -> None:
    task = create(api)
    answer = api.post(f"/tasks/{task['id']}/relaunch")
    assert answer.status_code == 409 and "pending" in answer.json["message"]
    answer = api.post(f"/tasks/{task['id']}/signal", json={"signal": "kill"})
    assert answer.status_code == 409 and "no live execution" in answer.json["message"]
    answer = api.post(f"/tasks/{task['id']}/signal", json={"signal": "explode"})
    assert answer.status_code == 400


def test_bad_query_parameters_are_400(api) -> None:
    assert api.get("/tasks?status=bogus").status_code == 400
    assert "limit" in api.get("/tasks?limit=abc").json["message"]


# -- the worker protocol over HTTP ----------------------------------------------------------

def claim_woken_by(api: Any, app: Any, worker: int, token: str,
                   make_work: Callable[[], Any]) -> tuple[list[Any], float]:
    """A claim long poll (5 s) started first, then ``make_work`` once it waits: what the
    claim answered, and after how long."""
    result: dict[str, Any] = {}

    def poll() -> None:
        start = time.monotonic()
        answer = api.post(f"/workers/{worker}/claim?max=1&wait=5", token=token)
        result["elapsed"] = time.monotonic() - start
        result["executions"] = answer.json["executions"]

    thread = threading.Thread(target=poll)
    thread.start()
    notifier = app.extensions["scitq_bench"].notifier
    wait_until(lambda: notifier.waiting >= 1, what="the claim waiting")  # a long poll now
    make_work()
    thread.join(10)
    return result["executions"], result["elapsed"]


def test_claim_long_poll_wakes_on_new_task(api, app) -> None:
    worker, token = register(api, "poller")
    executions, elapsed = claim_woken_by(api, app, worker, token, lambda: create(api))
    assert len(executions) == 1
    assert elapsed < 2.0


def test_claim_long_poll_follows_its_worker_out_of_its_batch(api, app) -> None:
    """A claim waits on the key of the batch its worker's last claim saw (no query to
    look it up again). A worker freed from its batch meanwhile is found free by the
    claim itself, which then waits under the free workers' key and wakes on new work
    in any batch."""
    worker, token = register(api, "mover", batch="first")
    assert api.post(f"/workers/{worker}/claim?max=1&wait=0.1", token=token).json == {
        "executions": []}  # seen bound to "first": the process remembers it
    assert api.patch(f"/workers/{worker}", json={"batch": ""}).json["batch"] is None
    executions, elapsed = claim_woken_by(api, app, worker, token,
                                         lambda: create(api, batch="other"))
    assert len(executions) == 1
    assert elapsed < 2.0


def test_ids_past_the_columns_range_name_nothing_on_the_hot_path(api) -> None:
    """The worker protocol's statements are prepared on PostgreSQL, their parameters
    typed as the id columns: an id beyond those (still a valid 64-bit id) is named as
    missing, every time, never a 500."""
    worker, token = register(api, "ranged")
    create(api)
    execution = api.post(f"/workers/{worker}/claim", token=token).json["executions"][0]
    huge = 2**40
    for _ in range(4):  # past the count at which a connection prepares a statement
        events = [{"execution_id": huge, "status": "running"},
                  {"execution_id": execution["execution_id"], "status": "running"}]
        answer = api.post(f"/workers/{worker}/report", json={"events": events}, token=token)
        assert answer.status_code == 200, answer.json
        assert answer.json["results"][0] == {
            "execution_id": huge, "ok": False, "error": f"execution {huge} not found"}
        beat = api.post(f"/workers/{huge}/heartbeat", json={"executions": []})
        assert beat.status_code == 403 and "not registered" in beat.json["message"]
        assert api.post(f"/tasks/{huge}/relaunch").status_code == 404


def test_logs_append_idempotently_and_read_by_offset(api) -> None:
    worker, token = register(api)
    create(api)
    execution = api.post(f"/workers/{worker}/claim", token=token).json["executions"][0]
    path = f"/executions/{execution['execution_id']}/logs/stdout"
    assert api.put(path + "?offset=0", data=b"hello ", token=token).json["size"] == 6
    assert api.put(path + "?offset=0", data=b"hello ", token=token).json["size"] == 6
    assert api.put(path + "?offset=3", data=b"lo world", token=token).json["size"] == 11
    gap = api.put(path + "?offset=50", data=b"x", token=token)
    assert gap.status_code == 409 and gap.json["details"]["expected_offset"] == 11
    whole = api.get(path)
    assert whole.data == b"hello world" and whole.headers["X-Next-Offset"] == "11"
    part = api.get(path + "?offset=6&limit=3")
    assert part.data == b"wor" and part.headers["X-Next-Offset"] == "9"
    output = api.get(f"/tasks/{execution['task_id']}/output?offset=6")
    assert output.data == b"world"
    assert api.get(f"/executions/{execution['execution_id']}/logs/other").status_code == 400


def test_file_store_roundtrip_and_path_escape(api) -> None:
    assert api.put("/files/bench/ref/data.txt", data=b"abc").status_code == 201
    assert api.get("/files/bench/ref/data.txt").data == b"abc"
    listed = api.get("/files?prefix=bench").json["files"]
    assert [(f["path"], f["size"]) for f in listed] == [("bench/ref/data.txt", 3)]
    assert api.get("/files/bench/missing").status_code == 404
    assert api.put("/files/a/../../etc/passwd", data=b"x").status_code in (400, 404)


def test_batch_counts_and_stop_go_delete(api) -> None:
    for _ in range(3):
        create(api, batch="counted")
    batch = api.get("/batches?name=counted").json["batches"][0]
    assert batch["counts"]["pending"] == 3 and batch["status"] == "running"
    assert api.post(f"/batches/{batch['id']}/stop", json={}).status_code == 200
    assert api.get(f"/batches/{batch['id']}").json["status"] == "paused"
    api.post(f"/batches/{batch['id']}/go")
    assert api.get(f"/batches/{batch['id']}").json["status"] == "running"
    assert api.delete(f"/batches/{batch['id']}").status_code == 200
    assert api.get("/tasks?batch=counted").json["tasks"] == []


def test_task_update_pause_and_requeue(api) -> None:
    task = create(api)
    answer = api.patch(f"/tasks/{task['id']}", json={"status": "paused", "priority": 3})
    assert answer.json["status"] == "paused" and answer.json["priority"] == 3
    assert api.patch(f"/tasks/{task['id']}", json={"status": "pending"}).json["status"] == "pending"
    assert api.patch(f"/tasks/{task['id']}", json={"status": "running"}).status_code == 400


def test_openapi_describes_every_route(api, app) -> None:
    document = api.get("/openapi.json", token=None).json
    assert document["openapi"].startswith("3.")
    root = ("/healthz", "/readyz", "/metrics")  # the probes and metrics, at the root
    routes = {
        (str(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1") or rule.rule in root
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    import re

    documented = {
        (re.sub(r"{([a-z_]+)}", r"<\1>", path), method)
        for path, methods in document["paths"].items() for method in methods
    }
    normalized = {(re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"<\1>", r), m) for r, m in routes}
    assert normalized == documented
    assert "TaskCreate" in document["components"]["schemas"]


def test_report_can_claim_the_slots_it_frees(api) -> None:
    worker, token = register(api, "busy", concurrency=1)
    first, second = create(api), create(api)
    execution = api.post(f"/workers/{worker}/claim?max=5", token=token).json["executions"]
    assert [e["task_id"] for e in execution] == [first["id"]]  # one slot only
    answer = api.post(f"/workers/{worker}/report?claim=5", token=token, json={"events": [
        {"execution_id": execution[0]["execution_id"], "status": "running"},
        {"execution_id": execution[0]["execution_id"], "status": "succeeded",
         "return_code": 0}]}).json
    assert [r["ok"] for r in answer["results"]] == [True, True]
    assert [e["task_id"] for e in answer["executions"]] == [second["id"]]
