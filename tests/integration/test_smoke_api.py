from __future__ import annotations


def test_create_and_list_task(api):
    created = api.post("/tasks", json={"command": "echo hi", "batch": "b1"})
    assert created.status_code == 201, created.json
    task = created.json["tasks"][0]
    assert task["status"] == "pending" and task["batch"] == "b1"
    listed = api.get("/tasks?batch=b1").json["tasks"]
    assert [t["id"] for t in listed] == [task["id"]]
