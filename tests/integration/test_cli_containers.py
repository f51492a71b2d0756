"""The CLI for container tasks, network permission, GPUs and failure reasons, against a
live server (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from scitq_bench.client import Client
from tests.support.cli import Invoke, as_json, fails, ok


def test_launch_container_network_and_gpu(run: Invoke, live_server: Any) -> None:
    task = as_json(run("launch", "--json", "-d", "alpine:3.20", "-O", "--network mynet -e A=1",
                       "--network", "--gpu", "all", "--", "true"))
    assert (task["container"], task["container_options"], task["network"], task["gpu"]) == (
        "alpine:3.20", "--network mynet -e A=1", True, "all")
    two = as_json(run("launch", "--json", "--gpu", "2", "--", "true"))
    assert (two["gpu"], two["network"]) == (2, False)
    # --gpus in the options gives the task its GPUs
    assert as_json(run("launch", "--json", "-d", "cuda", "-O", "--gpus=1", "--", "true"))[
        "gpu"] == 1
    dry = as_json(run("launch", "-t", "--network", "--gpu", "ALL", "--", "true"))
    assert dry == {"tasks": [{"command": "true", "batch": "default", "gpu": "all",
                              "network": True}]}


def test_launch_refuses_bad_options_naming_them(run: Invoke, live_server: Any) -> None:
    fails(run("launch", "-d", "alpine", "-O", "--privileged", "--", "true"),
          "container_options", "--privileged", "not allowed")
    fails(run("launch", "-d", "alpine", "-O", "-v /:/host", "--", "true"),
          "container_options", "--volume")
    fails(run("launch", "-d", "alpine", "-O", "--network mynet", "--", "true"),
          "container_options", "--network", "network: true")
    fails(run("launch", "-d", "bad image", "--", "true"), "container")
    # the dry run checks the options too (all but the batch's network permission)
    fails(run("launch", "-t", "-d", "alpine", "-O", "--cap-add ALL", "--", "true"),
          "container_options", "--cap-add")
    fails(run("launch", "--gpu", "some", "--", "true"), "--gpu", code=2)
    fails(run("launch", "--gpu", "-1", "--", "true"), code=2)
    assert live_server.client().task_list() == []


def test_task_update_network_and_gpu(run: Invoke, live_server: Any) -> None:
    client = live_server.client()
    task = client.task_create("true", container="alpine")
    updated = as_json(run("task", "update", "-i", task["id"], "--network", "--gpu", "all",
                          "-O", "--network mynet", "--json"))
    assert (updated["network"], updated["gpu"], updated["container_options"]) == (
        True, "all", "--network mynet")
    assert "network" in ok(run("task", "list", "-L")).stdout
    fails(run("task", "update", "-i", task["id"], "--no-network"),
          "container_options", "network: true")
    cleared = as_json(run("task", "update", "-i", task["id"], "-O", "", "--no-network",
                          "--gpu", 0, "--json"))
    assert (cleared["network"], cleared["gpu"], cleared["container_options"]) == (False, 0, None)


def test_batch_network_on_and_off(run: Invoke, live_server: Any) -> None:
    client = live_server.client()
    # `on` creates a batch that does not exist yet, so its tasks can then be launched
    assert "created with network on" in ok(run("batch", "network", "-n", "online", "on")).stdout
    assert client.batch_find("online")["network"] is True
    task = int(ok(run("launch", "-b", "online", "-d", "alpine", "-O", "--network mynet",
                      "--", "true")).stdout)
    assert client.task_get(task)["network"] is False  # granted by the batch
    assert "yes" in ok(run("batch", "list")).stdout
    listed = as_json(run("batch", "list", "--json", "-n", "online"))
    assert listed[0]["network"] is True
    # turning it off is refused while the task relies on it
    fails(run("batch", "network", "-n", "online", "off"), str(task), "--network")
    client.task_update(task, network=True)
    assert as_json(run("batch", "network", "-n", "online", "off", "--json"))["network"] is False
    fails(run("batch", "network", "-n", "nowhere", "off"), "nowhere")
    fails(run("batch", "network", "-n", "online", "maybe"), code=2)
    # the priority command still works alone
    assert "priority set to 3" in ok(run("batch", "priority", "-n", "online", 3)).stdout
    assert client.batch_find("online")["priority"] == 3


def test_execution_list_shows_the_reason(run: Invoke, live_server: Any) -> None:
    client = live_server.client()
    task = client.task_create("true", container="localhost/none:never")
    answer = client.worker_register(name="w-gpu", concurrency=2, gpus=1, gpu_model="Tesla T4",
                                    gpu_mem_gb=15.0, containers=True)
    worker = Client(live_server.url, answer["token"])
    worker_id = answer["worker"]["id"]
    execution_id = worker.claim(worker_id, 1)[0]["execution_id"]
    results = worker.report(worker_id, [{"execution_id": execution_id, "status": "failed",
                                         "reason": "image_pull_failed",
                                         "error": "image_pull_failed: not found"}])
    assert results[0]["ok"], results
    table = ok(run("execution", "list")).stdout
    assert "reason" in table and "image_pull_failed" in table
    listed = as_json(run("execution", "list", "--json", "-t", task["id"]))
    assert listed[0]["reason"] == "image_pull_failed"
    workers = ok(run("worker", "list", "-L")).stdout
    assert "Tesla T4" in workers and "15" in workers


@pytest.mark.parametrize(("user", "message"), [
    ("0", "never run as root"), ("1000:0", "never run as root"),
    ("root", "is not UID or UID:GID"),
])
def test_worker_run_refuses_root_or_named_container_users(run: Invoke, user: str,
                                                          message: str) -> None:
    fails(run("worker", "run", "--container-user", user, "--no-containers"), message)
