"""The CLI against a live server (SQLite and PostgreSQL), through click's test runner."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from scitq_bench.cli import logs
from scitq_bench.client import Client
from scitq_bench.exceptions import NotFound
from tests.support.cli import Invoke, as_json, fails, ok


def running_execution(live_server: Any, name: str = "w1") -> tuple[Client, int, int, int]:
    """Register a worker, claim the next task and mark it running:
    (worker client, worker id, execution id, task id). This stand-in worker never
    heartbeats, so the reaper is stopped: a slow run must not lose its lease."""
    live_server.app.extensions["scitq_bench_reaper"].stop()
    answer = live_server.client().worker_register(name=name, concurrency=4)
    worker = Client(live_server.url, answer["token"])
    worker_id = answer["worker"]["id"]
    claimed = worker.claim(worker_id, 1)
    assert claimed, "nothing to claim"
    execution_id = claimed[0]["execution_id"]
    worker.report(worker_id, [{"execution_id": execution_id, "status": "accepted"},
                              {"execution_id": execution_id, "status": "running"}])
    return worker, worker_id, execution_id, claimed[0]["task_id"]


def finish(worker: Client, worker_id: int, execution_id: int, status: str = "succeeded") -> None:
    results = worker.report(worker_id, [{"execution_id": execution_id, "status": status,
                                         "return_code": 0 if status == "succeeded" else 1,
                                         "duration": 1.5}])
    assert results[0]["ok"], results


def test_launch_dry_run_and_bad_input(run: Invoke, live_server: Any) -> None:
    dry = as_json(run("launch", "-t", "-b", "b1", "-n", "t1", "-i", "file:///data/a",
                      "-i", "server://x/b server://x/c", "--retry", "2", "--requires", "1,2",
                      "--cpu", "2", "--mem", "1.5", "--shell", "--", "echo", "hello world"))
    assert dry == {"tasks": [{
        "command": "echo 'hello world'", "name": "t1", "batch": "b1", "retry": 2, "cpu": 2,
        "mem": 1.5, "inputs": ["file:///data/a", "server://x/b", "server://x/c"],
        "requires": [1, 2], "shell": True,
    }]}
    assert live_server.client().task_list() == []  # the dry run created nothing

    created = run("launch", "-i", "gs://nowhere/x", "--", "true")
    fails(created, "inputs", "gs")
    fails(run("launch", "-i", "ftp://me:secret@host/x", "--", "true"), "inputs", "credentials")
    fails(run("launch", "-t", "-o", "nope", "--", "true"), "output")
    fails(run("launch", "--requires", "x", "--", "true"), "--requires", code=2)
    assert live_server.client().task_list() == []


def test_launch_creates_tasks(run: Invoke, live_server: Any) -> None:
    first = int(ok(run("launch", "-b", "b1", "-n", "job", "-d", "alpine:3", "--priority", "5",
                       "--", "sh", "-c", "echo $HOME")).stdout)
    task = live_server.client().task_get(first)
    assert task["command"] == "sh -c 'echo $HOME'"
    assert (task["batch"], task["name"], task["container"], task["priority"]) == (
        "b1", "job", "alpine:3", 5)
    # a single argument is taken as is; options after the command belong to it
    single = as_json(run("launch", "--json", "--paused", "--", "ls -l | wc -l"))
    assert (single["command"], single["status"], single["batch"]) == (
        "ls -l | wc -l", "paused", "default")
    interspersed = int(ok(run("launch", "echo", "-n", "x")).stdout)
    assert live_server.client().task_get(interspersed)["command"] == "echo -n x"
    waiting = as_json(run("launch", "--json", "--requires", first, "--", "true"))
    assert waiting["requires"] == [first] and waiting["status"] == "waiting"


def test_task_list_filters_and_show(run: Invoke, live_server: Any) -> None:
    client = live_server.client()
    long_command = "echo " + "x" * 80 + " END"
    a = client.task_create(long_command, batch="b1", name="alpha")
    b = client.task_create("true", batch="b1", name="beta", paused=True)
    c = client.task_create("false", batch="b2", name="alpha")

    table = ok(run("task", "list")).stdout
    assert "alpha" in table and "beta" in table and "END" not in table  # truncated
    assert "END" in ok(run("task", "list", "-L")).stdout

    def ids(*args: Any) -> list[int]:
        return [t["id"] for t in as_json(run("task", "list", "--json", *args))]

    assert ids() == [c["id"], b["id"], a["id"]]  # newest first
    assert ids("-b", "b1") == [b["id"], a["id"]]
    assert ids("-S", "paused") == [b["id"]]
    assert ids("-S", "paused,pending", "-b", "b2") == [c["id"]]
    assert ids("-n", "alpha") == [c["id"], a["id"]]
    assert ids("-i", f"{a['id']},{c['id']}") == [c["id"], a["id"]]
    assert ids("-i", a["id"], "-i", b["id"]) == [b["id"], a["id"]]
    assert ids("--limit", 1) == [c["id"]]
    fails(run("task", "list", "-S", "bogus"), "bogus")
    fails(run("task", "list", "-i", "x1"), "x1", code=2)

    shown = ok(run("task", "show", "-i", a["id"])).stdout
    assert "END" in shown and "alpha" in shown and "no executions" in shown
    detail = as_json(run("task", "show", "-i", a["id"], "--json"))
    assert detail["task"]["command"] == long_command and detail["executions"] == []
    fails(run("task", "show", "-i", 987654), "987654")


def test_task_update_delete_relaunch(run: Invoke, live_server: Any) -> None:
    client = live_server.client()
    task = client.task_create("echo 1", batch="b1")

    ok(run("task", "update", "-i", task["id"], "-c", "echo 2", "-d", "ubuntu", "-O", "--shm-size=1g",
           "--retry", 3, "--priority", 7, "-S", "paused"))
    changed = client.task_get(task["id"])
    assert (changed["command"], changed["container"], changed["container_options"],
            changed["retry"], changed["priority"], changed["status"]) == (
        "echo 2", "ubuntu", "--shm-size=1g", 3, 7, "paused")
    assert as_json(run("task", "update", "-i", task["id"], "-S", "pending", "-d", "", "-O", "",
                       "--retry", 0, "--json"))["container"] is None
    fails(run("task", "update", "-i", task["id"]), "nothing to update", code=2)
    fails(run("task", "update", "-i", 424242, "-c", "x"), "424242")

    # relaunching a queued task is refused with its state named, not a traceback
    fails(run("task", "relaunch", "-i", task["id"]), str(task["id"]), "pending")

    worker, worker_id, execution_id, task_id = running_execution(live_server)
    assert task_id == task["id"]
    fails(run("task", "signal", "-i", task["id"], "bogus"), code=2)
    finish(worker, worker_id, execution_id, "failed")
    assert client.task_get(task["id"])["status"] == "failed"
    assert "relaunched" in ok(run("task", "relaunch", "-i", task["id"])).stdout
    assert client.task_get(task["id"])["status"] == "pending"

    # every failed task of a batch at once
    worker, worker_id, execution_id, _ = running_execution(live_server)
    finish(worker, worker_id, execution_id, "failed")
    other = client.task_create("true", batch="b1")
    ok(run("task", "relaunch", "-b", "b1"))
    assert client.task_get(task["id"])["status"] == "pending"
    assert "no task" in ok(run("task", "relaunch", "-b", "b1")).stdout

    ok(run("task", "delete", "-i", task["id"]))
    with pytest.raises(NotFound):
        client.task_get(task["id"])
    # several ids: the good one is deleted, the bad one reported, exit 1
    fails(run("task", "delete", "-i", f"{task['id']},{other['id']}"), str(task["id"]))
    assert client.task_list() == []


def test_task_output_execution_list_and_signal(run: Invoke, live_server: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    client = live_server.client()
    task = client.task_create("echo hi", batch="b1")
    worker, worker_id, execution_id, _ = running_execution(live_server, name="w-out")
    out = b"line 1\nline 2\n" + bytes(range(256))
    worker.log_append(execution_id, "stdout", 0, out)
    worker.log_append(execution_id, "stderr", 0, b"warning\n")

    both = ok(run("task", "output", "-i", task["id"]))
    assert both.stdout_bytes == out and both.stderr_bytes == b"warning\n"
    assert ok(run("task", "output", "-i", task["id"], "-o")).stdout_bytes == out
    only_err = ok(run("task", "output", "-i", task["id"], "-e"))
    assert only_err.stdout_bytes == b"warning\n" and only_err.stderr_bytes == b""
    assert ok(run("execution", "output", "-x", execution_id, "-o")).stdout_bytes == out
    fails(run("execution", "output", "-x", 777777), "777777")
    fails(run("task", "output", "-i", 777777), "777777")

    # pages: the log is read in pieces, never whole
    monkeypatch.setattr(logs, "PAGE", 100)
    assert ok(run("execution", "output", "-x", execution_id, "-o")).stdout_bytes == out

    executions = as_json(run("execution", "list", "--json"))
    assert [e["id"] for e in executions] == [execution_id]
    assert executions[0]["status"] == "running"
    assert as_json(run("execution", "list", "--json", "-t", task["id"]))[0]["id"] == execution_id
    assert as_json(run("execution", "list", "--json", "-w", "w-out"))[0]["id"] == execution_id
    assert as_json(run("execution", "list", "--json", "-w", worker_id, "-S", "running",
                       "-b", "b1", "--limit", 5))[0]["id"] == execution_id
    assert as_json(run("execution", "list", "--json", "-S", "failed")) == []
    assert "w-out" in ok(run("execution", "list")).stdout
    assert "w-out" in ok(run("task", "show", "-i", task["id"])).stdout
    assert as_json(run("task", "show", "-i", task["id"], "--json"))["executions"][0][
        "id"] == execution_id

    fails(run("task", "signal", "-i", client.task_create("true")["id"], "pause"),
          "no live execution")
    assert "sent pause" in ok(run("task", "signal", "-i", task["id"], "pause")).stdout

    # follow: prints what arrives until the execution ends
    def later() -> None:  # what arrives while the command follows (nothing to watch)
        time.sleep(0.5)
        worker.log_append(execution_id, "stdout", len(out), b"more\n")
        time.sleep(0.3)
        finish(worker, worker_id, execution_id)

    monkeypatch.setattr(logs, "FOLLOW_WAIT", 1.0)
    thread = threading.Thread(target=later)
    thread.start()
    followed = ok(run("task", "output", "-i", task["id"], "-f"))
    thread.join()
    assert followed.stdout_bytes == out + b"more\n"
    assert followed.stderr_bytes == b"warning\n"


def test_batch_commands(run: Invoke, live_server: Any) -> None:
    client = live_server.client()
    client.task_create("true", batch="b1")
    client.task_create("true", batch="b1", paused=True)
    client.task_create("true", batch="b2")

    table = ok(run("batch", "list")).stdout
    assert "b1" in table and "b2" in table and "done" in table
    batches = {b["name"]: b for b in as_json(run("batch", "list", "--json"))}
    assert batches["b1"]["counts"]["pending"] == 1 and batches["b1"]["counts"]["paused"] == 1

    stopped = as_json(run("batch", "stop", "-n", "b1", "--signal", "kill", "--workers",
                          "--json"))
    assert stopped == {"signalled": 0, "workers_paused": 0}
    assert client.batch_find("b1")["status"] == "paused"
    assert "running again" in ok(run("batch", "go", "-n", "b1")).stdout
    assert client.batch_find("b1")["status"] == "running"
    assert len(client.task_list(batch="b1", status="pending")) == 2
    fails(run("batch", "stop", "-n", "nope"), "nope")

    declined = run("batch", "delete", "-n", "b1", input="n\n")
    assert declined.exit_code == 1 and client.batch_find("b1")
    ok(run("batch", "delete", "-n", "b1", input="y\n"))
    ok(run("batch", "delete", "-n", "b2", "-y"))
    assert not {"b1", "b2"} & {b["name"] for b in client.batch_list()}
    fails(run("batch", "delete", "-n", "b1", "-y"), "b1")


def test_worker_commands(run: Invoke, live_server: Any) -> None:
    client = live_server.client()
    registered = client.worker_register(name="w", hostname="node-7", concurrency=2)["worker"]

    assert "node-7" not in ok(run("worker", "list")).stdout
    assert "node-7" in ok(run("worker", "list", "-L")).stdout
    listed = as_json(run("worker", "list", "--json", "-n", "w", "-S", "running,paused"))
    assert [w["id"] for w in listed] == [registered["id"]]
    assert as_json(run("worker", "list", "--json", "-n", "other")) == []

    ok(run("worker", "update", "-n", "w", "-c", 3, "-p", 2, "-b", "b1", "-S", "paused"))
    changed = client.worker_get(registered["id"])
    assert (changed["concurrency"], changed["prefetch"], changed["batch"], changed["status"]) == (
        3, 2, "b1", "paused")
    assert as_json(run("worker", "update", "-i", registered["id"], "-b", "", "-S", "running",
                       "--json"))["batch"] is None
    fails(run("worker", "update", "-n", "w"), "nothing to update", code=2)
    fails(run("worker", "update", "-c", 1), "-i", code=2)
    fails(run("worker", "update", "-i", 31337, "-c", 1), "31337")
    fails(run("worker", "update", "-n", "ghost", "-c", 1), "ghost")

    ok(run("worker", "delete", "-n", "w"))
    assert client.worker_list() == []
    fails(run("worker", "delete", "-n", "w"), "'w'")
