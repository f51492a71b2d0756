"""Container tasks, network permission, GPUs and failure reasons over the HTTP API
(both databases)."""

from __future__ import annotations

from typing import Any

import pytest


def register(api: Any, name: str = "w1", **fields: Any) -> tuple[int, str]:
    fields.setdefault("concurrency", 10)
    answer = api.post("/workers", json={"name": name, **fields})
    assert answer.status_code == 201, answer.json
    return answer.json["worker"]["id"], answer.json["token"]


def create(api: Any, **fields: Any) -> dict[str, Any]:
    answer = api.post("/tasks", json={"command": "true", **fields})
    assert answer.status_code == 201, answer.json
    return answer.json["tasks"][0]


def refused(answer: Any, *fragments: str) -> str:
    assert answer.status_code == 400, answer.json
    assert answer.json["error"] == "invalid_input"
    message = answer.json["message"]
    for fragment in fragments:
        assert fragment in message, message
    return message


def claim(api: Any, worker: int, token: str, count: int = 10) -> list[dict[str, Any]]:
    answer = api.post(f"/workers/{worker}/claim?max={count}", token=token)
    assert answer.status_code == 200, answer.json
    return answer.json["executions"]


# -- creation ------------------------------------------------------------------------------

def test_container_task_roundtrip(api) -> None:
    task = create(api, container="alpine:3.20",
                  container_options="--shm-size 1g -e A=1 --pids-limit 64")
    assert (task["container"], task["container_options"], task["network"], task["gpu"]) == (
        "alpine:3.20", "--shm-size 1g -e A=1 --pids-limit 64", False, 0)
    shown = api.get(f"/tasks/{task['id']}").json
    assert shown.pop("waiting") == "no worker is up"  # why it is still pending
    assert shown == task


@pytest.mark.parametrize(("options", "named"), [
    ("--privileged", "--privileged"),
    ("-v /:/host", "-v (--volume)"),
    ("--mount type=bind,src=/,dst=/h", "--mount"),
    ("--device /dev/sda", "--device"),
    ("--cap-add SYS_ADMIN", "--cap-add"),
    ("--user root", "--user"),
    ("--pid=host", "--pid"),
    ("--network host", "--network host"),
])
def test_forbidden_options_are_400_naming_field_and_option(api, options: str, named: str) -> None:
    message = refused(api.post("/tasks", json={"command": "x", "container": "alpine",
                                               "container_options": options, "network": True}),
                      "container_options: ", f"container option {named} is not allowed")
    assert message.startswith("container_options: container option ")
    assert api.get("/tasks").json["tasks"] == []


def test_unsupported_and_malformed_options_are_400(api) -> None:
    refused(api.post("/tasks", json={"command": "x", "container": "alpine",
                                     "container_options": "--rm"}),
            "container_options: unsupported container option --rm; allowed: ")
    refused(api.post("/tasks", json={"command": "x", "container": "alpine",
                                     "container_options": "-e 'A=1"}),
            "container_options: cannot split")
    refused(api.post("/tasks", json={"command": "x", "container": "alpine",
                                     "container_options": "-e SCITQ_BENCH_TOKEN=x"}),
            "container_options: ", "SCITQ_BENCH_TOKEN")


def test_bad_images_and_options_without_container_are_400(api) -> None:
    refused(api.post("/tasks", json={"command": "x", "container": "al pine"}),
            "container: ", "whitespace")
    refused(api.post("/tasks", json={"command": "x", "container": "-it"}), "container: ")
    refused(api.post("/tasks", json={"command": "x", "container": ""}), "container: ")
    refused(api.post("/tasks", json={"command": "x", "container_options": "--gpus 1"}),
            "container_options: ", "container image")
    assert api.get("/tasks").json["tasks"] == []


def test_bulk_with_one_forbidden_option_creates_nothing(api) -> None:
    answer = api.post("/tasks", json={"tasks": [
        {"command": "ok", "container": "alpine", "batch": "fresh"},
        {"command": "bad", "container": "alpine", "container_options": "--privileged"}]})
    refused(answer, "tasks.1.container_options: container option --privileged")
    assert api.get("/tasks").json["tasks"] == []
    # the network check (which needs the batch) fails the bulk the same way
    answer = api.post("/tasks", json={"tasks": [
        {"command": "ok", "container": "alpine", "batch": "fresh"},
        {"command": "ok", "container": "alpine", "batch": "fresh", "network": True,
         "container_options": "--network mynet"},
        {"command": "bad", "container": "alpine", "batch": "fresh",
         "container_options": "--network mynet"}]})
    refused(answer, "tasks.2.container_options: container option --network", "network: true")
    assert api.get("/tasks").json["tasks"] == []
    assert api.get("/batches?name=fresh").json["batches"] == []


# -- network ---------------------------------------------------------------------------

def test_network_allowed_by_the_task(api) -> None:
    refused(api.post("/tasks", json={"command": "x", "container": "alpine",
                                     "container_options": "--network mynet"}),
            "container_options: container option --network", "network: true")
    task = create(api, container="alpine", container_options="--network mynet", network=True)
    assert task["network"] is True
    # asking for no network needs no permission
    assert create(api, container="alpine", container_options="--network none")["network"] is False


def test_network_allowed_by_the_batch(api) -> None:
    answer = api.post("/batches", json={"name": "online", "network": True})
    assert answer.status_code == 201 and answer.json["network"] is True
    task = create(api, batch="online", container="alpine", container_options="--network=mynet")
    assert task["network"] is False  # the task's own flag; the batch grants it
    # a batch created by a task does not grant the network
    refused(api.post("/tasks", json={"command": "x", "batch": "implicit", "container": "alpine",
                                     "container_options": "--network mynet"}), "network: true")
    create(api, batch="implicit")
    assert api.get("/batches?name=implicit").json["batches"][0]["network"] is False


def test_batch_network_update(api) -> None:
    create(api, batch="b")
    batch = api.get("/batches?name=b").json["batches"][0]
    assert batch["network"] is False
    answer = api.patch(f"/batches/{batch['id']}", json={"network": True})
    assert answer.status_code == 200 and answer.json["network"] is True
    assert answer.json["priority"] == 0  # unchanged
    answer = api.patch(f"/batches/{batch['id']}", json={"priority": 4})
    assert (answer.json["priority"], answer.json["network"]) == (4, True)
    refused(api.patch(f"/batches/{batch['id']}", json={}), "priority", "network")
    # taking the network away is refused while a task relies on it
    needing = create(api, batch="b", container="alpine", container_options="--network mynet")
    answer = api.patch(f"/batches/{batch['id']}", json={"network": False})
    assert answer.status_code == 409 and str(needing["id"]) in answer.json["message"]
    assert api.patch(f"/tasks/{needing['id']}", json={"network": True}).status_code == 200
    answer = api.patch(f"/batches/{batch['id']}", json={"network": False})
    assert answer.status_code == 200 and answer.json["network"] is False


def test_update_checks_container_fields_together(api) -> None:
    task = create(api)
    path = f"/tasks/{task['id']}"
    refused(api.patch(path, json={"container_options": "--gpus 1"}),
            "container_options: ", "container image")
    refused(api.patch(path, json={"container": "alpine", "container_options": "--privileged"}),
            "container_options: container option --privileged is not allowed")
    refused(api.patch(path, json={"container": "bad image"}), "container: ")
    refused(api.patch(path, json={"container": "alpine",
                                  "container_options": "--network mynet"}), "network: true")
    updated = api.patch(path, json={"container": "alpine", "network": True,
                                    "container_options": "--network mynet"}).json
    assert (updated["container"], updated["network"]) == ("alpine", True)
    refused(api.patch(path, json={"network": False}), "container_options: ", "network: true")
    refused(api.patch(path, json={"container": None}), "container_options: ", "container image")
    cleared = api.patch(path, json={"container": None, "container_options": None}).json
    assert (cleared["container"], cleared["container_options"]) == (None, None)
    assert api.patch(path, json={"network": None}).json["network"] is True  # null: unchanged


# -- GPUs -------------------------------------------------------------------------------

def test_gpu_all_roundtrip_and_gpus_option(api) -> None:
    everything = create(api, gpu="all")
    assert everything["gpu"] == "all"
    assert api.get(f"/tasks/{everything['id']}").json["gpu"] == "all"
    assert create(api, gpu=2)["gpu"] == 2
    # --gpus sets the task's need when the task gave none
    assert create(api, container="cuda", container_options="--gpus 2")["gpu"] == 2
    assert create(api, container="cuda", container_options="--gpus=all")["gpu"] == "all"
    assert create(api, container="cuda", container_options="--gpus all", gpu="all")["gpu"] == "all"
    refused(api.post("/tasks", json={"command": "x", "container": "cuda", "gpu": 1,
                                     "container_options": "--gpus 2"}),
            "container_options: ", "--gpus 2", "gpu 1")
    refused(api.post("/tasks", json={"command": "x", "container": "cuda",
                                     "container_options": "--gpus device=0"}),
            "container_options: ", "--gpus")
    for bad in (-1, "some", 1.5, True):
        refused(api.post("/tasks", json={"command": "x", "gpu": bad}), "gpu")
    # and by update
    updated = api.patch(f"/tasks/{everything['id']}", json={"gpu": 1}).json
    assert updated["gpu"] == 1
    assert api.patch(f"/tasks/{everything['id']}", json={"gpu": "all"}).json["gpu"] == "all"


def test_claims_honour_gpu_counts(api) -> None:
    none, one, two, three, every = (create(api, gpu=g) for g in (0, 1, 2, 3, "all"))
    cpu_only, cpu_token = register(api, "cpu-only")
    assert [e["task_id"] for e in claim(api, cpu_only, cpu_token)] == [none["id"]]
    assert claim(api, cpu_only, cpu_token) == []  # never a GPU task
    gpu_worker, gpu_token = register(api, "two-gpus", gpus=2)
    executions = claim(api, gpu_worker, gpu_token)
    assert {e["task_id"]: e["gpu"] for e in executions} == {
        one["id"]: 1, two["id"]: 2, every["id"]: -1}
    assert api.get(f"/tasks/{three['id']}").json["status"] == "pending"


def test_claim_payload_carries_network_and_gpu(api) -> None:
    api.post("/batches", json={"name": "online", "network": True})
    plain = create(api, batch="offline")
    own = create(api, batch="offline", network=True)
    granted = create(api, batch="online")
    gpu_task = create(api, batch="offline", gpu="all", container="cuda:12",
                      container_options="-e A=1")
    worker, token = register(api, gpus=4, containers=True)
    payloads = {e["task_id"]: e for e in claim(api, worker, token)}
    assert {task_id: p["network"] for task_id, p in payloads.items()} == {
        plain["id"]: False, own["id"]: True, granted["id"]: True, gpu_task["id"]: False}
    payload = payloads[gpu_task["id"]]
    assert (payload["gpu"], payload["container"], payload["container_options"]) == (
        -1, "cuda:12", "-e A=1")
    # the execution keeps what was sent
    execution = api.get(f"/executions/{payload['execution_id']}").json
    assert execution["snapshot"]["network"] is False and execution["snapshot"]["gpu"] == -1


def test_container_tasks_only_go_to_workers_with_an_engine(api) -> None:
    boxed, plain = create(api, container="alpine"), create(api)
    bare, bare_token = register(api, "bare")
    assert [e["task_id"] for e in claim(api, bare, bare_token)] == [plain["id"]]
    assert api.get(f"/workers/{bare}").json["containers"] is False
    engine, engine_token = register(api, "engine", containers=True)
    assert [e["task_id"] for e in claim(api, engine, engine_token)] == [boxed["id"]]


# -- workers and reports ------------------------------------------------------------------

def test_worker_registration_with_gpu_model_and_memory(api) -> None:
    worker, _ = register(api, "gpu-box", gpus=2, gpu_model="NVIDIA H100 80GB HBM3",
                         gpu_mem_gb=79.6, containers=True)
    record = api.get(f"/workers/{worker}").json
    assert (record["gpus"], record["gpu_model"], record["gpu_mem_gb"], record["containers"]) == (
        2, "NVIDIA H100 80GB HBM3", 79.6, True)
    listed = api.get("/workers?name=gpu-box").json["workers"][0]
    assert listed["gpu_model"] == "NVIDIA H100 80GB HBM3"
    plain, _ = register(api, "plain")
    record = api.get(f"/workers/{plain}").json
    assert (record["gpus"], record["gpu_model"], record["gpu_mem_gb"]) == (0, None, None)
    refused(api.post("/workers", json={"name": "x", "gpu_mem_gb": 0}), "gpu_mem_gb")
    refused(api.post("/workers", json={"name": "x", "gpu_model": "m" * 201}), "gpu_model")


def test_report_reason_is_stored_and_listed(api) -> None:
    task = create(api, container="localhost/none:never", retry=0)
    worker, token = register(api, containers=True)
    execution_id = claim(api, worker, token)[0]["execution_id"]
    answer = api.post(f"/workers/{worker}/report", token=token, json={"events": [
        {"execution_id": execution_id, "status": "failed", "reason": "image_pull_failed",
         "error": "image_pull_failed: manifest unknown"}]})
    assert answer.json["results"][0]["ok"] is True
    execution = api.get(f"/executions/{execution_id}").json
    assert (execution["status"], execution["reason"]) == ("failed", "image_pull_failed")
    listed = api.get(f"/executions?task={task['id']}").json["executions"]
    assert [e["reason"] for e in listed] == ["image_pull_failed"]
    assert api.get(f"/tasks/{task['id']}/executions").json["executions"][0]["reason"] == (
        "image_pull_failed")
    failed = api.get(f"/tasks/{task['id']}").json
    # it never ran: the worker's words, not an "exit code None"
    assert (failed["status"], failed["status_reason"]) == (
        "failed", "image_pull_failed: manifest unknown")


def test_report_reason_must_be_a_short_word(api) -> None:
    create(api)
    worker, token = register(api)
    execution_id = claim(api, worker, token)[0]["execution_id"]
    for bad in ("Out Of Memory", "x" * 65, "1st", "out-of-memory"):
        refused(api.post(f"/workers/{worker}/report", token=token, json={"events": [
            {"execution_id": execution_id, "status": "failed", "reason": bad}]}), "reason")
    ok = api.post(f"/workers/{worker}/report", token=token, json={"events": [
        {"execution_id": execution_id, "status": "timeout", "reason": "timeout"}]})
    assert ok.json["results"][0]["ok"] is True
    assert api.get(f"/executions/{execution_id}").json["reason"] == "timeout"


def test_openapi_documents_the_new_fields(api) -> None:
    schemas = api.get("/openapi.json", token=None).json["components"]["schemas"]
    assert {"network", "gpu", "container", "container_options"} <= set(
        schemas["TaskCreate"]["properties"])
    assert {"gpu_model", "gpu_mem_gb", "containers"} <= set(
        schemas["WorkerRegister"]["properties"])
    assert "network" in schemas["BatchCreate"]["properties"]
    assert "network" in schemas["BatchUpdate"]["properties"]
