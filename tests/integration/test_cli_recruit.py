"""The recruitment CLI against a live server whose recruitment runs (its loop idle):
recruiters, a real one-off deploy with the local provider followed through its job,
undeploy, job inspection and retries, providers and costs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import pytest

from scitq_bench.server.app import start_recruitment
from scitq_bench.server.recruit import catalog
from tests.support.cli import Invoke, as_json, fails, ok
from tests.support.stack import wait_until


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def recruiting(live_server: Any) -> Any:
    start_recruitment(live_server.app, live_server.url, start=False)
    context = live_server.app.extensions["scitq_bench"]
    with context.db.write() as session:
        catalog.ensure_local_flavor(session, live_server.settings.data_dir)
    yield live_server
    for process in psutil.process_iter(["cmdline"]):  # never leave a worker behind
        cmdline = " ".join(process.info["cmdline"] or [])
        if "worker run" in cmdline and live_server.url in cmdline:
            process.kill()


def test_recruiters(run: Invoke, recruiting: Any) -> None:
    said = ok(run("recruiter", "create", "-b", "b1", "-f", "auto:cpu>=1", "-P", "local",
                  "--maximum-workers", "2", "--tasks-per-worker", "10", "--create-batch")).stdout
    assert "recruits auto:cpu>=1 for batch b1" in said
    listed = as_json(run("recruiter", "list", "--json"))
    assert [(r["batch"], r["maximum_workers"], r["tasks_per_worker"]) for r in listed] == [
        ("b1", 2, 10)]
    assert "auto" in ok(run("recruiter", "list")).stdout  # concurrency from the tasks' needs
    ok(run("recruiter", "update", listed[0]["id"], "--maximum-workers", "4"))
    assert as_json(run("recruiter", "list", "-b", "b1", "--json"))[0]["maximum_workers"] == 4
    fails(run("recruiter", "create", "-b", "b1", "-f", "auto:cpu>=ten", "--rank", "2"),
          "cpu>=ten")
    fails(run("recruiter", "update", listed[0]["id"]), "nothing to change", code=2)
    ok(run("recruiter", "delete", listed[0]["id"]))
    assert as_json(run("recruiter", "list", "--json")) == []


def test_deploy_follow_and_undeploy_a_local_worker(run: Invoke, recruiting: Any) -> None:
    (job,) = as_json(run("worker", "deploy", "-f", "local", "-P", "local", "-b", "pool",
                         "--concurrency", "1", "--json"))
    client = recruiting.client()
    wait_until(lambda: client.job_get(job["id"])["status"] in ("succeeded", "failed"),
               timeout=60, what="the deploy")
    shown = as_json(run("job", "show", job["id"], "--json"))
    assert shown["status"] == "succeeded", shown["log"]
    assert shown["progress"] == 100 and "the worker registered" in shown["log"]
    assert "instance" in ok(run("job", "log", job["id"])).stdout
    assert "deploy" in ok(run("job", "list")).stdout
    fails(run("job", "retry", job["id"]), "only a failed job")
    worker_id = shown["worker_id"]
    assert client.worker_get(worker_id)["provider"] == "local"
    task = client.task_create("echo recruited", batch="pool")
    assert client.join([task], timeout=30)[0]["status"] == "succeeded"

    said = ok(run("worker", "undeploy", worker_id)).stdout
    destroy_id = int(said.split()[1].rstrip(":"))
    wait_until(lambda: client.job_get(destroy_id)["status"] == "succeeded", timeout=60,
               what="the destroy")
    fails(run("worker", "undeploy", worker_id), "given back already")
    names = [p["name"] for p in as_json(run("provider", "list", "--json"))]
    assert names == ["local"]
    assert "local" in ok(run("provider", "check", "local")).stdout
    costs = as_json(run("cost", "--json"))
    assert [c["worker_id"] for c in costs] == [worker_id] and costs[0]["cost"] == 0
    fails(run("worker", "deploy", "-f", "no-such-flavor", "-P", "local"),
          "unknown flavor 'no-such-flavor'")
    fails(run("worker", "deploy", "-f", "auto:cpu>=9999", "-P", "local"), "no offer fits")
    assert "0 orphan instance(s) deleted" in ok(run("provider", "reconcile")).stdout
    ok(run("batch", "budget", "-n", "pool", "2.5"))
    assert "2.5" in ok(run("batch", "list", "-L")).stdout
    fails(run("batch", "budget", "-n", "pool", "lots"), "not a number", code=2)
