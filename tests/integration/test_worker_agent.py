"""The worker agent against the real server over HTTP (SQLite and PostgreSQL): running,
failing, timing out, logs, signals, stopping and restarting."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from scitq_bench.client import Client
from scitq_bench.client.worker.agent import WorkerAgent
from tests.support.postgres import free_port
from tests.support.processes import group_stopped
from tests.support.waiting import wait_until
from tests.support.workers import (
    FAST,
    executions,
    finish,
    run_worker_in_thread,
    running_worker,
    stdout_of,
    stop_worker,
)


def test_tasks_run_and_succeed(live_server, tmp_path):
    client = live_server.client()
    with running_worker(live_server, tmp_path, concurrency=3):
        tasks = client.tasks_create([{"command": f"echo hello {i}"} for i in range(6)]
                                    + [{"command": "echo $((6*7)) >&2", "shell": True}])
        done = finish(client, tasks)
    assert [t["status"] for t in done] == ["succeeded"] * 7
    assert stdout_of(client, tasks[0]) == b"hello 0\n"
    last = executions(client, tasks[-1]["id"])[-1]
    assert client.execution_log(last["id"], "stderr")[0] == b"42\n"
    assert last["return_code"] == 0 and last["duration"] is not None


def test_idle_worker_starts_new_task_quickly(live_server, tmp_path):
    client = live_server.client()
    # a long poll of 5 s: only a claim woken by the new task can beat the bound below
    notifier = live_server.app.extensions["scitq_bench"].notifier
    with running_worker(live_server, tmp_path, concurrency=1, claim_wait=5.0):
        # the claim is now a long poll (the heartbeat is the other one waiting)
        wait_until(lambda: notifier.waiting >= 2, what="the claim waiting")
        began = time.monotonic()
        task = client.task_create("true")
        finish(client, [task])
        elapsed = time.monotonic() - began
    assert elapsed < 2.0, elapsed


def test_many_short_tasks_each_run_once(live_server, tmp_path):
    """Batched claims and reports under load: every task runs exactly once, none is
    left for the reaper (which would show as a lost first execution)."""
    client = live_server.client()
    with running_worker(live_server, tmp_path, concurrency=4, prefetch=3) as agent:
        tasks = client.tasks_create([{"command": "true"} for _ in range(60)])
        done = finish(client, tasks, timeout=30)
        stats = client.worker_get(agent.worker_id)["stats"]
    assert {t["status"] for t in done} == {"succeeded"}
    runs = client.execution_list(batch="default", limit=1000)
    assert len(runs) == 60 and {r["status"] for r in runs} == {"succeeded"}
    assert "mem_percent" in stats and "disk_free_gb" in stats


def test_environment_and_token_hidden(live_server, tmp_path, monkeypatch):
    monkeypatch.setenv("SCITQ_BENCH_TOKEN", "secret-token-value")
    client = live_server.client()
    with running_worker(live_server, tmp_path, concurrency=2):
        task = client.task_create("env", name="env")
        assert finish(client, [task])[0]["status"] == "succeeded"
    env = dict(line.split("=", 1) for line in stdout_of(client, task).decode().splitlines()
               if "=" in line)
    execution = executions(client, task["id"])[-1]
    root = tmp_path / "work-w1"
    base = root / "executions" / str(execution["id"])
    assert env["INPUT"] == str(base / "input")
    assert env["OUTPUT"] == str(base / "output")
    assert env["TEMP"] == str(base / "tmp")
    assert env["RESOURCE"] == str(base / "resource")
    import os
    assert env["CPU"] == str(max(1, (os.cpu_count() or 1) // 2))
    assert env["SCITQ_BENCH_EXECUTION_ID"] == str(execution["id"])
    assert env["SCITQ_BENCH_TASK_ID"] == str(task["id"])
    assert "SCITQ_BENCH_TOKEN" not in env
    assert b"secret-token-value" not in stdout_of(client, task)
    assert live_server.token not in stdout_of(client, task).decode()


def test_failing_task_spends_retries(live_server, tmp_path):
    client = live_server.client()
    with running_worker(live_server, tmp_path):
        task = client.task_create("sh -c 'exit 3'", retry=2)
        done = finish(client, [task])[0]
        missing = client.task_create("no-such-command-here --flag")
        gone = finish(client, [missing])[0]
    assert done["status"] == "failed"
    runs = executions(client, task["id"])
    assert [e["status"] for e in runs] == ["failed"] * 3
    assert all(e["return_code"] == 3 for e in runs)
    assert gone["status"] == "failed"
    last = executions(client, missing["id"])[-1]
    assert last["return_code"] == 127
    assert last["error"] == "command not found: no-such-command-here"


def test_run_timeout(live_server, tmp_path):
    client = live_server.client()
    with running_worker(live_server, tmp_path):
        task = client.task_create("sleep 30", run_timeout=0.5)
        done = finish(client, [task])[0]
    assert done["status"] == "failed"
    execution = executions(client, task["id"])[-1]
    assert execution["status"] == "timeout"
    assert execution["duration"] < 5


def settled_log(agent: WorkerAgent, client: Client, execution_id: int) -> bytes:
    """The execution's stdout once its command is stopped (paused) and the worker has
    shipped all it wrote: nothing more can come."""
    process = agent._held[execution_id].process
    assert process is not None
    wait_until(lambda: group_stopped(process.pid), what="the command stopped")
    local = agent.executions_dir / str(execution_id) / "stdout.log"

    def shipped() -> bytes | None:
        data = client.execution_log(execution_id)[0]
        return data if data == local.read_bytes() else None
    return wait_until(shipped, what="the whole log shipped")


def test_log_readable_while_running(live_server, tmp_path):
    client = live_server.client()
    with running_worker(live_server, tmp_path):
        task = client.task_create("echo started; sleep 5; echo done", shell=True)
        execution = wait_until(lambda: (executions(client, task["id"]) or [None])[-1])
        printed = time.monotonic()
        data = wait_until(lambda: client.execution_log(execution["id"])[0], timeout=5)
        seen_after = time.monotonic() - printed
        assert data == b"started\n"
        # the log may arrive before the report that says it runs
        wait_until(lambda: client.task_get(task["id"])["status"] == "running")
        client.task_signal(task["id"], "kill")
    assert seen_after < 1.5, seen_after


def test_large_output_is_shipped_whole(live_server, tmp_path):
    client = live_server.client()
    with running_worker(live_server, tmp_path):
        task = client.task_create("head -c 3000000 /dev/zero", shell=True)
        assert finish(client, [task])[0]["status"] == "succeeded"
    execution = executions(client, task["id"])[-1]
    assert client.execution_get(execution["id"])["log_sizes"]["stdout"] == 3_000_000


def test_log_cap_truncates(live_server, tmp_path):
    client = live_server.client()
    with running_worker(live_server, tmp_path, log_cap=1000):
        task = client.task_create("head -c 200000 /dev/zero | tr '\\0' x", shell=True)
        assert finish(client, [task])[0]["status"] == "succeeded"
    data = stdout_of(client, task)
    assert data == b"x" * 1000 + b"\n[log truncated]\n"


def test_pause_resume_and_kill(live_server, tmp_path):
    client = live_server.client()
    with running_worker(live_server, tmp_path) as agent:
        task = client.task_create("i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done",
                                  shell=True)
        wait_until(lambda: client.task_get(task["id"])["status"] == "running")
        execution = executions(client, task["id"])[-1]
        wait_until(lambda: client.execution_log(execution["id"])[0])
        client.task_signal(task["id"], "pause")
        wait_until(lambda: client.task_get(task["id"])["status"] == "paused")
        frozen = settled_log(agent, client, execution["id"])
        time.sleep(0.8)  # paused: nothing more for this long
        assert client.execution_log(execution["id"])[0] == frozen
        assert client.task_get(task["id"])["status"] == "paused"
        client.task_signal(task["id"], "resume")
        wait_until(lambda: len(client.execution_log(execution["id"])[0]) > len(frozen),
                   timeout=30)  # log shipping backs off while a loaded server is slow
        client.task_signal(task["id"], "kill")
        wait_until(lambda: executions(client, task["id"])[-1]["status"] == "cancelled")
    assert client.task_get(task["id"])["status"] == "cancelled"


def test_deleted_task_is_dropped_and_killed(live_server, tmp_path):
    client = live_server.client()
    marker = tmp_path / "ticks"
    with running_worker(live_server, tmp_path) as agent:
        task = client.task_create(f"while true; do echo x >> {marker}; sleep 0.05; done",
                                  shell=True)
        wait_until(lambda: marker.exists())
        process = wait_until(lambda: next(iter(agent._held.values())).process)
        client.task_delete(task["id"])
        wait_until(lambda: not agent._held, what="drop")
        wait_until(lambda: process.exited, what="the command killed")
        size = marker.stat().st_size
        time.sleep(0.3)  # nothing of the group is left to write
        assert marker.stat().st_size == size  # the process group is gone


def test_stop_signal_before_start_cancels(live_server, tmp_path):
    client = live_server.client()
    with running_worker(live_server, tmp_path, concurrency=1, prefetch=1):
        first = client.task_create("sleep 30")
        wait_until(lambda: client.task_get(first["id"])["status"] == "running")
        second = client.task_create("echo never")
        wait_until(lambda: executions(client, second["id"]))
        client.task_signal(second["id"], "stop")
        wait_until(lambda: executions(client, second["id"])[-1]["status"] == "cancelled")
        client.task_signal(first["id"], "stop")
        wait_until(lambda: executions(client, first["id"])[-1]["status"] == "cancelled")
    assert stdout_of(client, second) == b""


def test_worker_stop_requeues(live_server, tmp_path):
    client = live_server.client()
    agent, thread = run_worker_in_thread(live_server, tmp_path / "work", concurrency=1,
                                         prefetch=1)
    running = client.task_create("sleep 30")
    waiting = client.task_create("sleep 30")
    wait_until(lambda: client.task_get(running["id"])["status"] == "running")
    wait_until(lambda: executions(client, waiting["id"]))
    took = stop_worker(agent, thread)
    assert took < 5, took
    assert executions(client, running["id"])[-1]["status"] == "cancelled"
    assert executions(client, waiting["id"])[-1]["status"] == "refused"
    for task in (running, waiting):
        state = client.task_get(task["id"])
        assert state["status"] == "pending"
    assert not any((tmp_path / "work" / "executions").iterdir())


def test_restart_with_same_name(live_server, tmp_path):
    """A worker process that died holding an execution: its successor of the same name
    takes over the record, the execution is lost and re-queued, leftovers are removed."""
    client = live_server.client()
    crashed = live_server.client()
    registered = crashed.worker_register(name="same", concurrency=1)
    crashed.set_token(registered["token"])
    task = client.task_create("echo second life")
    claimed = crashed.claim(registered["worker"]["id"], 1)
    assert [c["task_id"] for c in claimed] == [task["id"]]
    leftover = tmp_path / "work" / "executions" / str(claimed[0]["execution_id"])
    (leftover / "output").mkdir(parents=True)
    agent, thread = run_worker_in_thread(live_server, tmp_path / "work", name="same")
    try:
        assert agent.worker_id == registered["worker"]["id"]
        assert not leftover.exists()
        assert finish(client, [task])[0]["status"] == "succeeded"
    finally:
        stop_worker(agent, thread)
    runs = executions(client, task["id"])
    assert [r["status"] for r in runs] == ["lost", "succeeded"]
    assert stdout_of(client, task) == b"second life\n"


def test_name_taken_over_stops_the_worker(live_server, tmp_path):
    """Another process registering the same name revokes our token: run() stops and
    raises instead of working for a record it no longer owns."""
    client = live_server.client()
    agent = WorkerAgent(live_server.client(), name="dup", work_dir=tmp_path / "w", **FAST)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            agent.run()
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    wait_until(lambda: agent.worker_id is not None)
    client.worker_register(name="dup")
    thread.join(10)
    assert not thread.is_alive()
    assert errors and errors[0].__class__.__name__ in ("Unauthorized", "Forbidden")


@pytest.mark.parametrize("kind", ["paused"])
def test_paused_worker_claims_nothing(live_server, tmp_path, kind):
    client = live_server.client()
    with running_worker(live_server, tmp_path) as agent:
        client.worker_update(agent.worker_id, status=kind)
        wait_until(lambda: agent.status == kind)
        task = client.task_create("true")
        time.sleep(0.5)  # time to claim it, if the worker wrongly did
        assert client.task_get(task["id"])["status"] == "pending"
        client.worker_update(agent.worker_id, status="running", concurrency=3)
        assert finish(client, [task])[0]["status"] == "succeeded"
        # the claim loop may take the task before the heartbeat that carries the new
        # concurrency has answered: the setting arrives with that heartbeat, promptly
        wait_until(lambda: agent.concurrency == 3, timeout=5.0)


class Outage:
    """A TCP relay in front of the server that a test can cut (connections reset,
    new ones refused) and restore on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            doomed = [self._listener, *self._sockets]
            self._sockets.clear()
        for sock in doomed:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                downstream, _ = listener.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            with self._lock:
                self._sockets.update((downstream, upstream))
            for a, b in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def test_server_outage_loses_nothing(live_server, tmp_path):
    """While the server is unreachable the task keeps running and finishes; its logs
    and events wait on disk and in memory, and arrive once the server is back."""
    live_server.app.extensions["scitq_bench_reaper"].stop()  # leases are not the point
    admin = live_server.client()
    outage = Outage(int(live_server.url.rsplit(":", 1)[1]))
    worker_client = Client(outage.url, live_server.token)
    agent, thread = run_worker_in_thread(live_server, tmp_path / "work", client=worker_client)
    gate = tmp_path / "go-on"  # the task ends only once the server is out of reach
    try:
        began = time.monotonic()
        task = admin.task_create(
            f"echo before; while [ ! -e {gate} ]; do sleep 0.05; done; echo after; exit 2",
            shell=True)
        wait_until(lambda: admin.task_get(task["id"])["status"] == "running")
        execution = executions(admin, task["id"])[-1]
        wait_until(lambda: admin.execution_log(execution["id"])[0] == b"before\n")
        outage.cut()
        gate.touch()
        opened = time.monotonic() - began
        time.sleep(2)  # the outage: the task ends while the server is out of reach
        assert admin.task_get(task["id"])["status"] == "running"
        outage.restore()
        done = finish(admin, [task])[0]
    finally:
        stop_worker(agent, thread)
    assert done["status"] == "failed"
    final = executions(admin, task["id"])[-1]
    # the duration is the task's own, measured by the worker: not the outage's 2 s
    assert final["return_code"] == 2 and 0 < final["duration"] < opened + 1.0
    assert admin.execution_log(execution["id"])[0] == b"before\nafter\n"
