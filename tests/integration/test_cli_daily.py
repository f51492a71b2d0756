"""The admin's daily commands against a live server (SQLite and PostgreSQL): short
lists newest first, a compact batch table, names that do not exist refused, a missing
token explained, error messages with one field path, long task fields summed up."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from click.testing import CliRunner

from scitq_bench.cli import task as task_cli
from scitq_bench.cli.main import cli
from scitq_bench.client import Client
from scitq_bench.exceptions import InvalidInput
from tests.support.cli import Invoke, as_json, fails, ok


def table_rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


def test_task_list_shows_the_newest_fifty_and_says_how_many_more(
        run: Invoke, live_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client = live_server.client()
    created = [t["id"] for t in client.tasks_create(
        [{"command": "true", "batch": "many", "name": f"t{i}"} for i in range(60)])]
    newest = created[::-1]

    listed = ok(run("task", "list", "-H"))
    assert [int(row[0]) for row in table_rows(listed.stdout)] == newest[:50]
    assert listed.stderr.strip() == ("50 of 60 tasks shown (newest first); "
                                     "--all or --limit N for more")
    limited = ok(run("task", "list", "--json", "--limit", 3))
    assert [t["id"] for t in as_json(limited)] == newest[:3]
    assert "3 of 60 tasks shown" in limited.stderr
    whole = ok(run("task", "list", "--json", "--limit", 60))
    assert len(as_json(whole)) == 60 and whole.stderr == ""  # nothing left out: no footer

    monkeypatch.setattr(task_cli, "PAGE", 7)  # --all pages through the server
    every = ok(run("task", "list", "--all", "--json"))
    assert [t["id"] for t in as_json(every)] == newest and every.stderr == ""
    fails(run("task", "list", "--all", "--limit", 5), "--all", code=2)
    fewer = as_json(run("task", "list", "--json", "-S", "pending", "-n", "t1%"))
    assert [t["name"] for t in fewer] == [f"t{i}" for i in (19, 18, 17, 16, 15, 14, 13, 12,
                                                             11, 10, 1)]

    # the server's answer: an order, and the total of a page
    headers = {"Authorization": f"Bearer {live_server.token}"}
    page = requests.get(f"{live_server.url}/api/v1/tasks",
                        params={"order": "newest", "limit": "2", "offset": "1"},
                        headers=headers, timeout=10).json()
    assert [t["id"] for t in page["tasks"]] == newest[1:3] and page["total"] == 60
    oldest = requests.get(f"{live_server.url}/api/v1/tasks", params={"limit": "2"},
                          headers=headers, timeout=10).json()
    assert [t["id"] for t in oldest["tasks"]] == created[:2]
    bad = requests.get(f"{live_server.url}/api/v1/tasks", params={"order": "sideways"},
                       headers=headers, timeout=10)
    assert bad.status_code == 400 and "sideways" in bad.json()["message"]


def test_batch_list_is_compact_with_a_share_done(run: Invoke, live_server: Any) -> None:
    client = live_server.client()
    client.tasks_create([{"command": "true", "batch": "b1"} for _ in range(4)])
    client.batch_create("empty")
    ids = [t["id"] for t in client.task_list(batch="b1")]
    client.task_update(ids[0], status="paused")
    answer = client.worker_register(name="w1", concurrency=4, batch="b1")  # attached to b1
    agent = Client(live_server.url, answer["token"])
    worker_id = answer["worker"]["id"]
    claimed = agent.claim(worker_id, 2)
    done_id, running_id = claimed[0]["execution_id"], claimed[1]["execution_id"]
    agent.report(worker_id, [{"execution_id": e, "status": s} for e in (done_id, running_id)
                             for s in ("accepted", "running")])
    agent.report(worker_id, [{"execution_id": done_id, "status": "succeeded",
                              "return_code": 0, "duration": 1.0}])

    rows = {row[0]: row for row in table_rows(ok(run("batch", "list")).stdout)}
    assert rows["batch"] == ["batch", "status", "prio", "tasks", "done", "running", "workers"]
    assert rows["b1"] == ["b1", "running", "0", "4", "25%", "1", "1"]
    assert rows["empty"] == ["empty", "running", "0", "0", "-", "0", "0"]
    assert max(len(line) for line in ok(run("batch", "list")).stdout.splitlines()) < 80

    agent.report(worker_id, [{"execution_id": running_id, "status": "failed",
                              "return_code": 1, "duration": 1.0}])
    rows = {row[0]: row for row in table_rows(ok(run("batch", "list")).stdout)}
    assert rows["batch"] == ["batch", "status", "prio", "tasks", "done", "running", "failed",
                             "workers"]
    assert rows["b1"] == ["b1", "running", "0", "4", "50%", "0", "1", "1"]
    full = table_rows(ok(run("batch", "list", "-L")).stdout)
    assert full[0][:6] == ["batch", "status", "prio", "net", "tasks", "done"]
    assert {"waiting", "pending", "assigned", "succeeded", "paused", "cancelled"} <= set(full[0])
    b1 = next(row for row in full if row[0] == "b1")
    assert "w1" in b1 and b1.count("0") >= 4  # zeros are 0, never blank


def test_names_that_do_not_exist_are_refused(run: Invoke, live_server: Any) -> None:
    client = live_server.client()
    client.task_create("true", batch="real")
    for command in (("task", "list", "-b", "nosuch"), ("task", "relaunch", "-b", "nosuch"),
                    ("recruiter", "list", "-b", "nosuch"),
                    ("batch", "show", "-n", "nosuch"), ("batch", "stop", "-n", "nosuch"),
                    ("batch", "go", "-n", "nosuch"), ("batch", "delete", "-n", "nosuch", "-y")):
        fails(run(*command), "no batch named 'nosuch'")
    assert [b["name"] for b in client.batch_list()] == ["real"]
    shown = ok(run("batch", "show", "-n", "real")).stdout
    assert "pending" in shown and "tasks" in shown

    refused = fails(run("recruiter", "create", "-b", "nosuch", "-f", "auto:cpu>=1",
                        "-P", "local"), "no batch named 'nosuch'", "--create-batch")
    assert "batch create -n nosuch" in refused
    assert [b["name"] for b in client.batch_list()] == ["real"]
    assert client.recruiter_list() == []

    created = ok(run("recruiter", "create", "-b", "nosuch", "-f", "auto:cpu>=1", "-P", "local",
                     "--create-batch"))
    assert created.stderr.strip() == "batch nosuch created (it did not exist)"
    assert "recruits auto:cpu>=1 for batch nosuch" in created.stdout
    assert sorted(b["name"] for b in client.batch_list()) == ["nosuch", "real"]
    again = ok(run("recruiter", "create", "-b", "real", "-f", "auto:cpu>=1", "-P", "local",
                   "--create-batch", "--rank", "2"))
    assert again.stderr == ""  # it existed: nothing created, nothing announced
    assert ok(run("batch", "create", "-n", "made")).stdout.strip() == "batch made created"
    fails(run("batch", "create", "-n", "made"), "made")


def test_a_missing_token_says_how_to_give_one(live_server: Any, tmp_path: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "nowhere" / "client.json"
    monkeypatch.setenv("SCITQ_BENCH_CONFIG", str(config))
    monkeypatch.delenv("SCITQ_BENCH_TOKEN", raising=False)
    monkeypatch.delenv("SCITQ_BENCH_SERVER", raising=False)
    result = CliRunner().invoke(cli, ["--server", live_server.url, "task", "list"])
    stderr = fails(result)
    for hint in ("SCITQ_BENCH_TOKEN", "--token", str(config), "server init"):
        assert hint in stderr, stderr
    wrong = CliRunner().invoke(cli, ["--server", live_server.url, "--token", "wrong",
                                     "batch", "list"])
    assert "invalid token" in fails(wrong)  # a token was given: the server's own words


def test_error_messages_name_each_field_once(run: Invoke, live_server: Any) -> None:
    client = live_server.client()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"inputs": ["bogus://a"]}, "tasks.0.inputs[0]: unsupported URI scheme 'bogus'"),
        ({"resources": ["file:///ok", "s3://b/k"]}, "tasks.0.resources[1]: 'b' is not a valid"),
        ({"output": "http://a/|untar"}, "tasks.0.output: actions ('|...') are not allowed"),
        ({"container": "alpine", "container_options": "--privileged"},
         "tasks.0.container_options: container option --privileged is not allowed"),
    ]
    for fields, expected in cases:
        with pytest.raises(InvalidInput) as raised:
            client.tasks_create([{"command": "true", **fields}])
        assert str(raised.value).startswith(expected), str(raised.value)
    with pytest.raises(InvalidInput) as raised:
        client.tasks_create([{"command": "true"}, {"command": "true", "inputs": ["", "x"]}])
    assert str(raised.value) == "tasks.1.inputs[0]: empty URI"

    headers = {"Authorization": f"Bearer {live_server.token}"}
    single = requests.post(f"{live_server.url}/api/v1/tasks", headers=headers, timeout=10,
                           json={"command": "true", "inputs": ["ftp://u:p@h/x"]}).json()
    assert single["message"].startswith("inputs[0]: ") and single["message"].count("inputs") == 1
    task = client.task_create("true")
    patched = requests.patch(f"{live_server.url}/api/v1/tasks/{task['id']}", headers=headers,
                             json={"output": ""}, timeout=10).json()
    assert patched["message"] == "output: empty URI"

    said = fails(run("launch", "-i", "gs://nowhere/x", "--", "true"), "inputs[0]: ")
    assert said.count("inputs") == 1, said


def test_task_show_sums_up_long_lists(run: Invoke, live_server: Any) -> None:
    client = live_server.client()
    prerequisites = [t["id"] for t in client.tasks_create(
        [{"command": "true", "batch": "wide"} for _ in range(1000)])]
    inputs = [f"server://data/{i}.csv" for i in range(250)]
    task = client.task_create("true", batch="wide", requires=prerequisites, inputs=inputs)

    shown = ok(run("task", "show", "-i", task["id"])).stdout
    lines = {line.split()[0]: line for line in shown.splitlines() if line.strip()}
    first = ", ".join(str(i) for i in prerequisites[:3])
    assert f"1,000 tasks ({first}, ... {prerequisites[-1]}; -L for all)" in lines["requires"]
    assert ("250 URIs (server://data/0.csv, server://data/1.csv, server://data/2.csv, ... "
            "server://data/249.csv; -L for all)") in lines["inputs"]
    assert max(len(line) for line in shown.splitlines()) < 200

    full = ok(run("task", "show", "-i", task["id"], "-L")).stdout
    assert str(prerequisites[500]) in full and "server://data/123.csv" in full
    detail = as_json(run("task", "show", "-i", task["id"], "--json"))["task"]
    assert detail["requires"] == prerequisites and detail["inputs"] == inputs
    few = client.task_create("true", batch="wide", requires=prerequisites[:2])
    assert f"{prerequisites[0]} {prerequisites[1]}" in ok(run("task", "show", "-i",
                                                              few["id"])).stdout


def test_the_main_help_says_what_the_tool_does() -> None:
    said = CliRunner().invoke(cli, ["--help"]).output
    assert "batch scheduler for evaluation work" in said
    assert "scitq-bench up" in said and "as in scitq-manage" not in said
