"""Changing what and where a task runs (batch, inputs, resources, output, requires)
through the API, on both databases: allowed while it does not run, checked as at
creation, and a queued task's status follows its new prerequisites."""

from __future__ import annotations

from typing import Any

from tests.support.api import FakeWorker, create


def _patch(api: Any, task_id: int, **fields: Any) -> Any:
    return api.patch(f"/tasks/{task_id}", json=fields)


def test_inputs_resources_output_and_batch_change(api) -> None:
    task = create(api, inputs=["s3://bucket/a"], output="s3://bucket/out/")
    answer = _patch(api, task["id"], inputs=["s3://bucket/b", "https://example.org/c"],
                    resources=["s3://bucket/r.tgz|untar"], batch="moved")
    assert answer.status_code == 200, answer.json
    assert answer.json["inputs"] == ["s3://bucket/b", "https://example.org/c"]
    assert answer.json["resources"] == ["s3://bucket/r.tgz|untar"]
    assert answer.json["batch"] == "moved" and answer.json["output"] == "s3://bucket/out/"
    assert "moved" in [b["name"] for b in api.get("/batches").json["batches"]]
    cleared = _patch(api, task["id"], output=None, inputs=[])
    assert cleared.status_code == 200, cleared.json
    assert cleared.json["output"] is None and cleared.json["inputs"] == []
    assert cleared.json["resources"] == ["s3://bucket/r.tgz|untar"]  # not given: kept
    shown = api.get(f"/tasks/{task['id']}").json
    assert shown["batch"] == "moved" and shown["output"] is None
    assert [t["id"] for t in api.get("/tasks?batch=moved").json["tasks"]] == [task["id"]]


def test_uris_are_checked_as_at_creation(api) -> None:
    task = create(api, inputs=["s3://bucket/a"])
    bad = _patch(api, task["id"], inputs=["s3://bucket/ok", "nope://x"])
    assert bad.status_code == 400 and bad.json["message"].startswith("inputs[1]: ")
    assert "nope://x" in bad.json["message"]
    bad = _patch(api, task["id"], output="s3://bucket/out|untar")
    assert bad.status_code == 400 and bad.json["message"].startswith("output: ")
    bad = _patch(api, task["id"], batch="not\na name")
    assert bad.status_code == 400 and bad.json["message"].startswith("batch: ")
    assert api.get(f"/tasks/{task['id']}").json["inputs"] == ["s3://bucket/a"]


def test_a_running_task_cannot_change_where_it_runs(api) -> None:
    task = create(api, inputs=["s3://bucket/a"])
    worker = FakeWorker(api)
    (execution,) = worker.claim()
    changes: list[dict[str, Any]] = [{"inputs": []}, {"batch": "other"}, {"output": None},
                                     {"requires": []}, {"resources": []}]
    for fields in changes:
        refused = _patch(api, task["id"], **fields)
        assert refused.status_code == 409, fields
        assert refused.json["message"].startswith(f"task {task['id']} is assigned with live "
                                                  f"execution {execution['execution_id']}")
    assert _patch(api, task["id"], priority=3).status_code == 200  # other fields may
    worker.finish(execution, "succeeded")
    done = _patch(api, task["id"], inputs=[], batch="other")
    assert done.status_code == 200, done.json
    assert done.json["status"] == "succeeded" and done.json["batch"] == "other"


def test_moving_onto_a_batch_holding_the_key_is_refused(api) -> None:
    here = create(api, key="k", batch="a")
    there = create(api, key="k", batch="b")
    refused = _patch(api, there["id"], batch="a")
    assert refused.status_code == 409
    assert "'k'" in refused.json["message"] and str(here["id"]) in refused.json["message"]
    moved = _patch(api, there["id"], batch="c")
    assert moved.status_code == 200 and moved.json["key"] == "k"
    assert api.post("/tasks", json={"command": "x", "key": "k", "batch": "c"}
                    ).json["tasks"][0]["id"] == there["id"]


def test_the_new_batch_must_grant_the_network_options_need(api) -> None:
    assert api.post("/batches", json={"name": "net", "network": True}).status_code == 201
    task = create(api, batch="net", container="alpine", container_options="--network bridge")
    refused = _patch(api, task["id"], batch="default")
    assert refused.status_code == 400
    assert refused.json["message"].startswith("container_options: ")
    assert api.get(f"/tasks/{task['id']}").json["batch"] == "net"
    assert _patch(api, task["id"], batch="default", network=True).status_code == 200


def test_requires_unknown_self_and_cycles_are_refused(api) -> None:
    a = create(api)
    b = create(api, requires=[a["id"]])
    c = create(api, requires=[b["id"]])
    unknown = _patch(api, a["id"], requires=[987654])
    assert unknown.status_code == 400 and "987654" in unknown.json["message"]
    itself = _patch(api, a["id"], requires=[a["id"]])
    assert itself.status_code == 400 and "itself" in itself.json["message"]
    for dependent in (b, c):  # directly, then through b
        cycle = _patch(api, a["id"], requires=[dependent["id"]])
        assert cycle.status_code == 400, dependent
        assert f"task {dependent['id']} depends on task {a['id']}" in cycle.json["message"]
    assert api.get(f"/tasks/{a['id']}").json["requires"] == []


def test_a_queued_task_status_follows_its_new_prerequisites(api) -> None:
    worker = FakeWorker(api)
    broken = create(api)
    (execution,) = worker.claim()
    worker.finish(execution, "failed", return_code=1)
    assert api.get(f"/tasks/{broken['id']}").json["status"] == "failed"
    unfinished = create(api, paused=True)  # held: the worker cannot take it
    task = create(api)
    dependent = create(api, requires=[task["id"]])
    waiting = _patch(api, task["id"], requires=[unfinished["id"]])
    assert waiting.status_code == 200, waiting.json
    assert waiting.json["status"] == "waiting" and waiting.json["requires"] == [unfinished["id"]]
    pending = _patch(api, task["id"], requires=[])
    assert pending.json["status"] == "pending" and pending.json["requires"] == []
    failed = _patch(api, task["id"], requires=[unfinished["id"], broken["id"]])
    assert failed.status_code == 200, failed.json
    assert failed.json["status"] == "failed"
    assert failed.json["status_reason"] == f"prerequisite task {broken['id']} failed"
    # its waiting dependent fails with it: nothing waits forever
    shown = api.get(f"/tasks/{dependent['id']}").json
    assert shown["status"] == "failed"
    assert shown["status_reason"] == f"prerequisite task {task['id']} failed"


def test_a_paused_task_stays_paused_until_resumed(api) -> None:
    unfinished = create(api, paused=True)
    task = create(api, paused=True)
    changed = _patch(api, task["id"], requires=[unfinished["id"]])
    assert changed.status_code == 200 and changed.json["status"] == "paused"
    resumed = _patch(api, task["id"], status="pending")
    assert resumed.json["status"] == "waiting"  # queued as its prerequisites say
    _patch(api, unfinished["id"], status="pending")
    again = _patch(api, task["id"], requires=[unfinished["id"]])
    assert again.json["status"] == "waiting"
