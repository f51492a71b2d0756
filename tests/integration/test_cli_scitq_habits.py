"""scitq-manage's habits against a live server: every command example of its manual
(``scitq-bench`` for ``scitq-manage``), and the options its users type, either does what
scitq means or is refused with a message saying what to do; none silently does
something else. Then the commands that name tasks and batches by name, -H, -s and -t."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from scitq_bench.cli.main import cli
from scitq_bench.client import Client
from scitq_bench.exceptions import InvalidInput, NotFound, TasksFailed
from scitq_bench.recruiters.protofilter import Offer
from scitq_bench.server.app import start_recruitment
from scitq_bench.server.recruit import catalog
from scitq_bench.settings import server_url
from tests.support.cli import Invoke, as_json, fails, ok

Check = Callable[[Client, Result], None]


@dataclass(frozen=True)
class Habit:
    """One command line: it works (``check`` looks at what it did) or is refused with
    a message holding every word of ``refused``."""

    argv: tuple[str, ...]
    check: Check | None = None
    refused: tuple[str, ...] = ()
    before: Callable[[Client], Any] | None = None
    input: str | None = None


@dataclass
class Scene:
    """What the manual's examples name: task 1 (no name) of batch ``test``, run by
    worker ``node1`` (stdout ``hello``, stderr ``oops``), batch ``mybatch``, a few
    offers in the flavor catalog (none with 100 GB of memory; no provider configured
    but ``local``)."""

    client: Client
    invoke: Callable[..., Result]


@pytest.fixture
def scene(live_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Scene:
    live_server.app.extensions["scitq_bench_reaper"].stop()  # node1 never heartbeats
    start_recruitment(live_server.app, live_server.url, start=False)  # its loop idle
    client = live_server.client()
    task = client.task_create("sleep 1000", batch="test")
    assert task["id"] == 1
    answer = client.worker_register(name="node1", concurrency=1)
    worker, worker_id = Client(live_server.url, answer["token"]), answer["worker"]["id"]
    execution_id = worker.claim(worker_id, 1)[0]["execution_id"]
    worker.report(worker_id, [{"execution_id": execution_id, "status": "accepted"},
                              {"execution_id": execution_id, "status": "running"}])
    worker.log_append(execution_id, "stdout", 0, b"hello\n")
    worker.log_append(execution_id, "stderr", 0, b"oops\n")
    worker.report(worker_id, [{"execution_id": execution_id, "status": "succeeded",
                               "return_code": 0, "duration": 1.0}])
    assert client.task_get(1)["status"] == "succeeded"
    client.batch_create("mybatch")
    with live_server.app.extensions["scitq_bench"].db.write() as session:
        catalog.upsert_offers(session, "azure", [
            Offer("azure", "northeurope", "D2", cpu=2, ram_gb=8, disk_gb=50, cost=0.1),
            Offer("azure", "northeurope", "D8", cpu=8, ram_gb=32, disk_gb=100, cost=0.4),
            Offer("azure", "northeurope", "D32", cpu=32, ram_gb=64, disk_gb=400, cost=1.6),
        ])

    # the server as scitq users give it: HOST:PORT in the environment, no scheme
    port = live_server.url.rsplit(":", 1)[1]
    monkeypatch.setenv("SCITQ_BENCH_CONFIG", str(tmp_path / "absent-client.json"))
    monkeypatch.setenv("SCITQ_BENCH_SERVER", f"127.0.0.1:{port}")
    monkeypatch.setenv("SCITQ_BENCH_TOKEN", live_server.token)
    runner = CliRunner()

    def invoke(*argv: str, input: str | None = None) -> Result:
        return runner.invoke(cli, [a.replace("{port}", port) for a in argv], input=input)

    return Scene(client, invoke)


def _task(client: Client) -> dict[str, Any]:
    return client.task_get(1)


def _worker(client: Client) -> dict[str, Any]:
    (found,) = [w for w in client.worker_list() if w["name"] == "node1"]
    return found


def _says(*words: str, stream: str = "stdout") -> Check:
    def check(_client: Client, result: Result) -> None:
        text = getattr(result, stream)
        for word in words:
            assert word in text, (word, text)
    return check


def _all(*checks: Check) -> Check:
    def check(client: Client, result: Result) -> None:
        for each in checks:
            each(client, result)
    return check


def _field(get: Callable[[Client], dict[str, Any]], key: str, value: Any) -> Check:
    def check(client: Client, _result: Result) -> None:
        assert get(client)[key] == value
    return check


def _gone(find: Callable[[Client], Any]) -> Check:
    def check(client: Client, _result: Result) -> None:
        with pytest.raises((NotFound, ValueError)):
            find(client)
    return check


def _flavors_listed(_client: Client, result: Result) -> None:
    # --min-cpu 4 and the protofilter cpu<=16: D8 only
    assert "D8" in result.stdout and "D2" not in result.stdout
    assert "D32" not in result.stdout


HABITS = {
    # global options: -s HOST[:PORT] (no URL) and -t timeout
    "-s HOST:PORT -t": Habit(("-s", "127.0.0.1:{port}", "-t", "300", "batch", "list"),
                             _says("test", "mybatch")),
    "-h": Habit(("-h",), _says("Usage", "worker", "task")),
    "worker -h": Habit(("worker", "-h"), _says("deploy", "update")),
    "worker list -h": Habit(("worker", "list", "-h"), _says("--long", "--no-header")),
    # worker
    "worker list": Habit(("worker", "list"), _says("node1", "concurrency")),
    "worker list -L": Habit(("worker", "list", "-L"), _says("node1", "created")),
    "worker deploy ovh": Habit(
        ("worker", "deploy", "-f", "d2-2", "-r", "GRA11", "-P", "ovh", "-b", "mybatch"),
        refused=("provider 'ovh' is not configured", "provider list")),
    "worker deploy protofilters": Habit(
        ("worker", "deploy", "-f", "auto:cpu>=10:ram>=100:disk>=200", "-P", "auto",
         "-r", "auto"), refused=("no offer fits auto:cpu>=10:ram>=100:disk>=200",)),
    "worker delete -n": Habit(("worker", "delete", "-n", "node1"), _gone(_worker)),
    "worker update -b -n": Habit(("worker", "update", "-b", "test", "-n", "node1"),
                                 _field(_worker, "batch", "test")),
    "worker update -C": Habit(("worker", "update", "-C", "3", "-n", "node1"),
                              _field(_worker, "concurrency", 3)),
    "worker update -f": Habit(("worker", "update", "-f", "d2-2", "-n", "node1"),
                              refused=("flavor cannot be changed", "worker deploy -f d2-2")),
    # task
    "task list -L": Habit(("task", "list", "-L"), _says("sleep 1000", "modified", "test")),
    "task relaunch -i": Habit(("task", "relaunch", "-i", "1"), _field(_task, "status", "pending")),
    "task output -i": Habit(("task", "output", "-i", "1"),
                            _all(_says("hello"), _says("oops", stream="stderr"))),
    "task output -i -o": Habit(("task", "output", "-i", "1", "-o"),
                               _all(_says("hello"), _field(_task, "status", "succeeded"))),
    "task output -i -e": Habit(("task", "output", "-i", "1", "-e"), _says("oops")),
    "task update -d": Habit(("task", "update", "-i", "1", "-d", "ubuntu:latest"),
                            _field(_task, "container", "ubuntu:latest")),
    "task update -c": Habit(("task", "update", "-i", "1", "-c", "sleep 10"),
                            _field(_task, "command", "sleep 10")),
    "task update -S pending": Habit(("task", "update", "-i", "1", "-S", "pending"),
                                    _all(_says("relaunched"), _field(_task, "status", "pending"))),
    "task delete -i": Habit(("task", "delete", "-i", "1"), _gone(_task)),
    # batch
    "batch list": Habit(("batch", "list"), _says("test", "100%", "mybatch")),
    "batch stop -n": Habit(("batch", "stop", "-n", "test"),
                           _field(lambda c: c.batch_get("test"), "status", "paused")),
    "batch go -n": Habit(("batch", "go", "-n", "test"),
                         _field(lambda c: c.batch_get("test"), "status", "running"),
                         before=lambda c: c.batch_stop("test")),
    "batch delete -n": Habit(("batch", "delete", "-n", "test"),
                             _all(_gone(lambda c: c.batch_get("test")), _gone(_task)),
                             input="y\n"),
    # flavor
    "flavor list": Habit(("flavor", "list", "--min-cpu", "4", "--min-ram", "8", "--min-disk",
                          "50", "--max-eviction", "5", "--limit", "10",
                          "--protofilters", "cpu<=16"), _flavors_listed),
    # scitq's execution output -i is a task id; here it would be an execution id
    "execution output -i": Habit(("execution", "output", "-i", "1"),
                                 refused=("-x 1", "task output -i 1")),
}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("name", list(HABITS))
def test_scitq_manage_habit(scene: Scene, name: str) -> None:
    habit = HABITS[name]
    if habit.before is not None:
        habit.before(scene.client)
    result = scene.invoke(*habit.argv, input=habit.input)
    assert "Traceback" not in result.output
    if habit.refused:
        assert result.exit_code != 0, result.output
        for word in habit.refused:
            assert word in result.output, (word, result.output)
        return
    assert result.exit_code == 0, (result.output, result.exception)
    assert habit.check is not None
    habit.check(scene.client, result)


# -- tasks and batches by name ---------------------------------------------------------


def _finish(live_server: Any, name: str, status: str) -> dict[str, Any]:
    """Run the next task (the one of highest priority) to ``status`` as a worker
    would, with ``status_reason`` from the server."""
    client = live_server.client()
    answer = client.worker_register(name=name, concurrency=1)
    worker, worker_id = Client(live_server.url, answer["token"]), answer["worker"]["id"]
    claimed = worker.claim(worker_id, 1)[0]
    worker.report(worker_id, [{"execution_id": claimed["execution_id"], "status": "accepted"},
                              {"execution_id": claimed["execution_id"], "status": "running"}])
    worker.report(worker_id, [{"execution_id": claimed["execution_id"], "status": status,
                               "return_code": 0 if status == "succeeded" else 3,
                               "duration": 0.5}])
    return client.task_get(claimed["task_id"])


def test_tasks_by_name(run: Invoke, live_server: Any) -> None:
    client = live_server.client()
    solo = client.task_create("true", batch="b1", name="solo", priority=9)
    a = client.task_create("echo a", batch="b1", name="align")
    b = client.task_create("echo b", batch="b2", name="align")
    percent = client.task_create("echo c", batch="b1", name="50%done")
    lookalike = client.task_create("echo d", batch="b1", name="50Xdone")
    upper = client.task_create("echo e", batch="b1", name="ALIGN")

    # % is matched as itself, not as the server's wildcard; case counts
    ok(run("task", "update", "-n", "50%done", "-c", "echo changed"))
    assert client.task_get(percent["id"])["command"] == "echo changed"
    assert client.task_get(lookalike["id"])["command"] == "echo d"
    said = fails(run("task", "update", "-n", "align", "-c", "x"), "2 tasks are named 'align'",
                 f"{a['id']}, {b['id']}", "-i ID")
    assert "-b" not in said  # update's -b moves the task: it cannot narrow
    assert client.task_get(upper["id"])["command"] == "echo e"
    fails(run("task", "output", "-n", "align"), f"{a['id']}, {b['id']}", "-b BATCH")
    fails(run("task", "delete", "-n", "nosuch"), "no task named 'nosuch'")
    fails(run("task", "delete", "-n", "align", "-i", a["id"]), "not both", code=2)
    fails(run("task", "output"), "-i", "-n", code=2)
    fails(run("task", "output", "-b", "b1"), "-b narrows -n", code=2)
    fails(run("task", "delete", "-b", "b1"), "-b narrows -n", code=2)

    # -b narrows a name to one batch
    ok(run("task", "delete", "-n", "align", "-b", "b2"))
    with pytest.raises(NotFound):
        client.task_get(b["id"])
    assert ok(run("task", "output", "-n", "align")).stdout == ""  # no execution yet
    ok(run("task", "update", "-n", "align", "-S", "paused"))
    assert client.task_get(a["id"])["status"] == "paused"

    assert _finish(live_server, "w1", "failed")["id"] == solo["id"]
    fails(run("task", "relaunch", "-n", "solo", "-S", "failed"), "not with -n", code=2)
    assert "relaunched" in ok(run("task", "relaunch", "-n", "solo", "-b", "b1")).stdout
    assert client.task_get(solo["id"])["status"] == "pending"


def test_task_update_moves_and_rewires(run: Invoke, live_server: Any) -> None:
    client = live_server.client()
    first = client.task_create("true", batch="b1")
    task = client.task_create("cat /input/*", batch="b1", name="t", inputs=["file:///data/a"],
                              resources=["file:///ref/x"], output="file:///out/t",
                              requires=[first["id"]])
    updated = as_json(run("task", "update", "-i", task["id"], "-b", "b2", "-N", "renamed",
                          "-j", "file:///data/b file:///data/c", "--input", "file:///data/d",
                          "-R", "", "-o", "", "--json"))
    assert (updated["batch"], updated["name"], updated["inputs"], updated["requires"],
            updated["output"]) == ("b2", "renamed",
                                   ["file:///data/b", "file:///data/c", "file:///data/d"], [],
                                   None)
    assert updated["resources"] == ["file:///ref/x"]  # not given: kept
    ok(run("task", "update", "-n", "renamed", "--no-resource", "--input", "",
           "-R", str(first["id"]), "-o", "file:///out/u"))
    again = client.task_get(task["id"])
    assert (again["inputs"], again["resources"], again["requires"], again["output"]) == (
        [], [], [first["id"]], "file:///out/u")
    fails(run("task", "update", "-i", task["id"], "--no-input", "-j", "file:///x"),
          "--no-input", code=2)
    fails(run("task", "update", "-i", task["id"], "-R", "one"), "'one'", code=2)

    # what and where a task runs cannot change while it runs
    client.task_update(task["id"], status="paused")
    _finish_running = _running(live_server, first["id"])
    fails(run("task", "update", "-i", first["id"], "-b", "b3"), str(first["id"]))
    assert client.task_get(first["id"])["batch"] == "b1"
    assert _finish_running["status"] == "running"


def _running(live_server: Any, task_id: int) -> dict[str, Any]:
    """Claim the next task and leave it running."""
    client = live_server.client()
    answer = client.worker_register(name="busy", concurrency=1)
    worker, worker_id = Client(live_server.url, answer["token"]), answer["worker"]["id"]
    claimed = worker.claim(worker_id, 1)[0]
    assert claimed["task_id"] == task_id
    worker.report(worker_id, [{"execution_id": claimed["execution_id"], "status": "accepted"},
                              {"execution_id": claimed["execution_id"], "status": "running"}])
    return client.task_get(task_id)


def test_client_names_batches_and_checks_joins(live_server: Any) -> None:
    client = live_server.client()
    ok_task = client.task_create("true", batch="b1", name="fine", priority=5)
    bad = client.task_create("false", batch="b1", name="broken", priority=9)
    client.task_create("true", batch="b2", name="x%y", key="k-1")
    client.task_create("true", batch="b2", name="xzy")

    assert client.batch_get("b1")["name"] == "b1"
    assert client.batch_update("b1", 4)["priority"] == 4
    assert client.batch_stop("b1")
    assert client.batch_get("b1")["status"] == "paused"
    client.batch_go("b1")
    assert client.batch_get(client.batch_get("b1")["id"])["status"] == "running"
    with pytest.raises(NotFound, match="'b%'"):
        client.batch_get("b%")  # a name, matched exactly

    assert client.task_find("x%y")["name"] == "x%y"
    assert [t["key"] for t in client.task_list(key="k-1")] == ["k-1"]
    client.task_create("true", batch="b1", name="xzy")
    with pytest.raises(InvalidInput) as several:
        client.task_find("xzy")
    assert several.value.details["task_ids"] == sorted(
        t["id"] for t in client.task_list(name="xzy"))
    assert client.task_find("xzy", batch="b2")["batch"] == "b2"
    with pytest.raises(NotFound, match="'nope'"):
        client.task_find("nope")

    assert _finish(live_server, "w1", "failed")["id"] == bad["id"]
    assert _finish(live_server, "w2", "succeeded")["id"] == ok_task["id"]
    finals = client.join([ok_task, bad], interval=0.05, timeout=10)  # check=False: as before
    assert [t["status"] for t in finals] == ["succeeded", "failed"]
    with pytest.raises(TasksFailed) as failed:
        client.join([ok_task, bad], interval=0.05, timeout=10, check=True)
    assert failed.value.details == {"task_ids": [bad["id"]]}
    assert f"task {bad['id']} 'broken' failed" in str(failed.value)
    reason = client.task_get(bad["id"])["status_reason"]
    assert reason and reason in str(failed.value)
    assert client.join([ok_task], check=True)[0]["status"] == "succeeded"

    assert client.batch_delete("b2")
    with pytest.raises(NotFound):
        client.batch_get("b2")


# -- -H, -t, -s, -C --------------------------------------------------------------------


def test_tables_without_header_and_short_options(run: Invoke, live_server: Any) -> None:
    client = live_server.client()
    client.task_create("echo listed", batch="b1")
    answer = client.worker_register(name="node1", concurrency=1)
    for argv, row in ((("task", "list"), "echo listed"), (("worker", "list"), "node1"),
                      (("batch", "list"), "b1"), (("quota", "list"), None)):
        full = ok(run(*argv)).stdout
        bare = ok(run(*argv, "-H")).stdout
        assert full.splitlines()[0] not in bare
        if row:
            assert row in bare
            assert [line.split() for line in bare.splitlines()] == [
                line.split() for line in full.splitlines()[1:]]
    assert ok(run("worker", "list", "-b", "b1")).stdout.count("node1") == 0
    ok(run("worker", "update", "-i", answer["worker"]["id"], "-b", "b1", "-C", "2"))
    assert ok(run("worker", "list", "-b", "b1", "-H")).stdout.count("node1") == 1
    ok(run("worker", "update", "-n", "node1", "-c", "4"))  # the old short option stays
    assert client.worker_get(answer["worker"]["id"])["concurrency"] == 4
    for command in (("worker", "deploy"), ("worker", "update")):
        helped = ok(run(*command, "-h")).stdout
        assert "-C, " in helped and "--concurrency" in helped

    with socket.socket() as silent:  # connects, never answers: -t alone ends the wait
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        slow = CliRunner().invoke(cli, ["-s", f"127.0.0.1:{port}", "--token", "t", "-t", "0.3",
                                        "--retry-seconds", "0", "task", "list"])
    assert slow.exit_code == 1 and "within 0.3 s" in slow.output, slow.output


@pytest.mark.parametrize(("given", "url"), [
    ("server.example.org", "http://server.example.org:5000"),
    ("10.1.2.3:8080", "http://10.1.2.3:8080"),
    ("[::1]", "http://[::1]:5000"),
    ("https://scitq.example.org/", "https://scitq.example.org"),
    ("http://10.1.2.3:5000", "http://10.1.2.3:5000"),
])
def test_server_given_as_scitq_users_do(given: str, url: str) -> None:
    assert server_url(given) == url


@pytest.mark.parametrize("given", ["host:port", "host:1:2", ":5000"])
def test_server_that_is_no_address_is_refused(given: str) -> None:
    with pytest.raises(InvalidInput, match="HOST:PORT"):
        server_url(given)
