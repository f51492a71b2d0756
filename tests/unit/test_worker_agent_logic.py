"""The worker agent's logic against the in-memory server (``tests.support.fake_server``):
claiming, running, failing, timing out, signals, prefetch and concurrency, refused
reports, logs and transfers, stopping. No HTTP, no database; each test takes a
fraction of a second and waits on conditions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest

from scitq_bench.client import Client
from scitq_bench.client.worker.agent import WorkerAgent
from scitq_bench.client.worker.container import ContainerDefaults
from scitq_bench.client.worker.gpus import GpuPool
from scitq_bench.client.worker.held import Held, RunGate
from scitq_bench.client.worker.reporter import Event
from scitq_bench.client.worker.runner import ExecutionRunner, RunnerSettings
from scitq_bench.client.worker.workdir import ExecutionDirs
from scitq_bench.exceptions import Unauthorized
from tests.support.fake_server import TRANSITIONS, ExecutionRecord, FakeServer
from tests.support.waiting import wait_until

QUICK: dict[str, Any] = {"kill_grace": 0.5, "claim_wait": 1.0, "log_interval": 0.02,
                         "stop_timeout": 5.0, "claim_stop_wait": 0.05, "gpus": [],
                         "engine": None}


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.close()


@contextmanager
def working(fake: FakeServer, tmp_path: Path, **options: Any) -> Iterator[WorkerAgent]:
    """An agent working for ``fake`` while the block runs; stopped (and checked to
    stop) at its end."""
    agent = WorkerAgent(cast(Client, fake.client()), name=options.pop("name", "w1"),
                        work_dir=tmp_path / "work", **{**QUICK, **options})
    thread = threading.Thread(target=agent.run, name="agent", daemon=True)
    thread.start()
    try:
        yield agent
    finally:
        agent.stop()
        thread.join(10)
        assert not thread.is_alive(), "run() did not return after stop()"


def ended(fake: FakeServer, task_id: int, status: str | None = None) -> ExecutionRecord:
    """The task's last execution, once it reached a final status (``status`` if given)."""
    def done() -> ExecutionRecord | None:
        runs = [e for e in fake.executions.values() if e.task_id == task_id]
        if runs and runs[-1].status not in ("pending", "accepted", "running"):
            return runs[-1]
        return None
    execution = fake.wait_for(done, what=f"task {task_id} ended")
    if status is not None:
        assert execution.status == status, execution
    return execution


def running(fake: FakeServer, task_id: int) -> ExecutionRecord:
    return fake.wait_for(lambda: next((e for e in fake.executions.values()
                                       if e.task_id == task_id and e.status == "running"),
                                      None), what=f"task {task_id} running")


def gated(tmp_path: Path, before: str = "", after: str = "") -> str:
    """A shell command that runs until the test creates ``tmp_path/go``."""
    gate = tmp_path / "go"
    return f"{before} while [ ! -e {gate} ]; do sleep 0.01; done; {after}"


def test_fake_transitions_are_the_servers() -> None:
    from scitq_bench.server.queue.transitions import EXECUTION_TRANSITIONS
    assert {k.value: frozenset(t.value for t in v) for k, v in
            EXECUTION_TRANSITIONS.items()} == TRANSITIONS


def test_claims_runs_and_succeeds(fake: FakeServer, tmp_path: Path) -> None:
    task = fake.add_task("echo hello; echo oops >&2", shell=True)
    with working(fake, tmp_path) as agent:
        execution = ended(fake, task, "succeeded")
        registered = fake.workers[agent.worker_id].registered  # type: ignore[index]
    assert (registered["name"], registered["containers"], registered["gpus"]) == ("w1", False, 0)
    assert execution.values["return_code"] == 0 and execution.values["error"] is None
    assert execution.values["duration"] >= 0
    assert fake.log(execution.id) == b"hello\n" and fake.log(execution.id, "stderr") == b"oops\n"
    assert fake.tasks[task].status == "succeeded"
    assert not fake.refusals


def test_failure_keeps_the_return_code_and_spends_retries(fake: FakeServer,
                                                          tmp_path: Path) -> None:
    task = fake.add_task("exit 3", shell=True, retry=1)
    missing = fake.add_task("no-such-command-here --flag")
    with working(fake, tmp_path, concurrency=2):
        fake.wait_for(lambda: fake.tasks[task].status == "failed")
        gone = ended(fake, missing, "failed")
    runs = fake.executions_of(task)
    assert [(e.status, e.values["return_code"]) for e in runs] == [("failed", 3)] * 2
    assert gone.values["return_code"] == 127
    assert gone.values["error"] == "command not found: no-such-command-here"


def test_run_timeout(fake: FakeServer, tmp_path: Path) -> None:
    task = fake.add_task("sleep 30", run_timeout=0.2)
    with working(fake, tmp_path):
        execution = ended(fake, task, "timeout")
    assert execution.values["error"] == "run timed out after 0.2 s"
    assert execution.values["duration"] < 5


@pytest.mark.parametrize("kind", ["kill", "stop"])
def test_signal_from_a_heartbeat_cancels_the_running_task(fake: FakeServer, tmp_path: Path,
                                                          kind: str) -> None:
    task = fake.add_task("sleep 30")
    with working(fake, tmp_path):
        running(fake, task)
        signal = fake.signal(task, kind)
        execution = ended(fake, task, "cancelled")
        fake.wait_for(lambda: fake.signals[signal].acknowledged, what="acknowledgement")
    assert execution.values["error"] == "cancelled on request"
    assert fake.tasks[task].status == "cancelled"


def test_stop_signal_before_start_cancels_the_prefetched_one(fake: FakeServer,
                                                             tmp_path: Path) -> None:
    first = fake.add_task("sleep 30")
    second = fake.add_task("echo never")
    with working(fake, tmp_path, concurrency=1, prefetch=1):
        running(fake, first)
        fake.wait_for(lambda: fake.live_execution(second))
        fake.signal(second, "stop")
        waited = ended(fake, second, "cancelled")
        fake.signal(first, "kill")
        ended(fake, first, "cancelled")
    assert waited.values["error"] == "cancelled before it started"
    assert fake.log(waited.id) == b""


def test_prefetch_and_concurrency_are_respected(fake: FakeServer, tmp_path: Path) -> None:
    """Two run at once, one more waits on the worker, the rest stays on the server;
    once the gate opens they all run, never more than two at a time."""
    marks = tmp_path / "marks"
    command = gated(tmp_path, f"echo + >> {marks};", f"echo - >> {marks}")
    tasks = [fake.add_task(command, shell=True) for _ in range(5)]
    with working(fake, tmp_path, concurrency=2, prefetch=1) as agent:
        fake.wait_for(lambda: fake.held_by(agent.worker_id) == 3)  # type: ignore[arg-type]
        wait_until(lambda: marks.exists() and marks.read_text().count("+") == 2,
                   interval=0.005)
        assert sum(t.status == "pending" for t in fake.tasks.values()) == 2
        assert agent._gate.running == 2 and len(agent._held) == 3
        (tmp_path / "go").touch()
        for task in tasks:
            ended(fake, task, "succeeded")
    at_once, most = 0, 0
    for mark in marks.read_text().split():
        at_once += 1 if mark == "+" else -1
        most = max(most, at_once)
    assert most == 2 and at_once == 0


def test_a_busy_worker_refills_from_its_reports(fake: FakeServer, tmp_path: Path) -> None:
    """Each final report claims the slot it frees: no claim request after the first."""
    tasks = [fake.add_task("true") for _ in range(4)]
    with working(fake, tmp_path, concurrency=1):
        runs = [ended(fake, task, "succeeded") for task in tasks]
    assert [run.via for run in runs] == ["claim", "report", "report", "report"]


def test_finals_wait_for_a_round_or_half_the_tasks_fetched_ahead(fake: FakeServer,
                                                                 tmp_path: Path) -> None:
    """A report goes once a round of running tasks has ended, or half the tasks fetched
    ahead when there are more of those: the other half keeps the slots busy meanwhile.
    The round follows the settings the server hands out."""
    with working(fake, tmp_path, concurrency=4, prefetch=2) as agent:
        wait_until(lambda: hasattr(agent, "_reporter"))
        assert agent._reporter.enough_finals == 4
        fake.update_worker(agent.worker_id, prefetch=30)  # type: ignore[arg-type]
        wait_until(lambda: agent._reporter.enough_finals == 15)
        fake.update_worker(agent.worker_id, concurrency=20)  # type: ignore[arg-type]
        wait_until(lambda: agent._reporter.enough_finals == 20)
        fake.update_worker(agent.worker_id, prefetch=0, concurrency=1)  # type: ignore[arg-type]
        wait_until(lambda: agent._reporter.enough_finals == 1)


def test_a_refused_report_drops_the_execution(fake: FakeServer, tmp_path: Path) -> None:
    """The execution was lost while its 'running' report was on the way: the server
    refuses it, and the worker kills the command and reports nothing more of it."""
    task = fake.add_task("sleep 30")
    fake.hold_reports()
    with working(fake, tmp_path, concurrency=1) as agent:
        execution = fake.wait_for(
            lambda: fake.live_execution(task) if fake.reports_waiting else None)
        fake.lose(execution.id)
        with fake.cond:  # paused without telling the worker: the task is not taken again
            fake.workers[execution.worker_id].status = "paused"  # type: ignore[index]
        fake.release_reports()
        fake.wait_for(lambda: fake.refusals, what="the refusal")
        wait_until(lambda: not agent._held, interval=0.005, what="drop")
        # the command was killed: its run slot is free long before ``sleep 30`` ends
        wait_until(lambda: agent._gate.running == 0, interval=0.005, what="kill")
    assert execution.statuses == ["pending", "lost"]
    assert "it cannot become running" in fake.refusals[0]["error"]
    reported = [e for report in fake.reports for e in report
                if e["execution_id"] == execution.id]
    assert [e["status"] for e in reported] == ["running"]


def test_a_refused_final_report_frees_the_slot(fake: FakeServer, tmp_path: Path) -> None:
    """A late final report (the execution was lost meanwhile) is refused; the slot is
    free all the same and the task, queued again, runs once more on this worker."""
    task = fake.add_task(gated(tmp_path, after="echo done"), shell=True)
    with working(fake, tmp_path, concurrency=1):
        first = running(fake, task)
        fake.lose(first.id)
        (tmp_path / "go").touch()
        fake.wait_for(lambda: len(fake.executions_of(task)) == 2, what="a second execution")
        second = ended(fake, task, "succeeded")
    assert first.status == "lost" and first.statuses == ["pending", "running", "lost"]
    assert fake.refusals[0]["execution_id"] == first.id
    assert fake.log(second.id) == b"done\n"


def test_logs_are_shipped_while_running_and_whole_before_the_end(fake: FakeServer,
                                                                  tmp_path: Path) -> None:
    task = fake.add_task(gated(tmp_path, "echo started;", "echo done; echo late >&2"),
                         shell=True)
    with working(fake, tmp_path):
        execution = running(fake, task)
        fake.wait_for(lambda: fake.logs.get((execution.id, "stdout")) == b"started\n")
        assert execution.status == "running"
        (tmp_path / "go").touch()
        at_the_end = fake.wait_for(
            lambda: execution.status == "succeeded"
            and (bytes(fake.logs[(execution.id, "stdout")]),
                 bytes(fake.logs.get((execution.id, "stderr"), b""))))
    assert at_the_end == (b"started\ndone\n", b"late\n")


def test_an_outage_loses_nothing(fake: FakeServer, tmp_path: Path) -> None:
    """The command ends while the server is out of reach: its last log bytes and its
    final event wait, and arrive once the server answers again."""
    task = fake.add_task(gated(tmp_path, "echo before;", "echo after; exit 2"), shell=True)
    with working(fake, tmp_path) as agent:
        execution = running(fake, task)
        fake.wait_for(lambda: fake.logs.get((execution.id, "stdout")) == b"before\n")
        with fake.cond:
            fake.unreachable = True
        (tmp_path / "go").touch()
        wait_until(lambda: agent._gate.running == 0, interval=0.005, what="the end")
        tries = fake.calls.get("log_append", 0)
        fake.wait_for(lambda: fake.calls.get("log_append", 0) > tries, what="a failed flush")
        assert execution.status == "running"
        with fake.cond:
            fake.unreachable = False
        ended(fake, task, "failed")
    assert execution.values["return_code"] == 2
    assert fake.log(execution.id) == b"before\nafter\n"


def test_inputs_come_from_the_store_and_outputs_go_back(fake: FakeServer,
                                                        tmp_path: Path) -> None:
    fake.files["data/in.txt"] = b"payload"
    task = fake.add_task('cp "$INPUT/in.txt" "$OUTPUT/out.txt"', shell=True,
                         inputs=["server://data/in.txt"], output="server://results")
    with working(fake, tmp_path):
        execution = ended(fake, task, "succeeded")
    assert execution.statuses in (["pending", "accepted", "running", "succeeded"],
                                  ["pending", "accepted", "succeeded"])  # running implied
    assert execution.values["output_files"] == ["out.txt"]
    assert fake.files["results/out.txt"] == b"payload"


def test_missing_input_fails_the_download(fake: FakeServer, tmp_path: Path) -> None:
    task = fake.add_task("true", inputs=["server://nowhere/in.txt"])
    with working(fake, tmp_path):
        execution = ended(fake, task, "failed")
    assert execution.values["error"].startswith("download failed: ")


def test_stop_cancels_the_running_and_refuses_the_waiting(fake: FakeServer,
                                                          tmp_path: Path) -> None:
    first = fake.add_task("sleep 30")
    second = fake.add_task("sleep 30")
    with working(fake, tmp_path, concurrency=1, prefetch=1):
        running(fake, first)
        fake.wait_for(lambda: fake.live_execution(second))
    assert fake.last_execution(first).status == "cancelled"
    assert fake.last_execution(first).values["error"] == "the worker stopped"
    assert fake.last_execution(second).status == "refused"
    assert not any((tmp_path / "work" / "executions").iterdir())


def test_a_paused_worker_claims_nothing_until_running_again(fake: FakeServer,
                                                            tmp_path: Path) -> None:
    with working(fake, tmp_path) as agent:
        fake.wait_for(lambda: fake.calls.get("heartbeat"))
        fake.update_worker(agent.worker_id, status="paused")  # type: ignore[arg-type]
        wait_until(lambda: agent.status == "paused", interval=0.005)
        task = fake.add_task("true")
        beats = fake.calls["heartbeat"]
        fake.update_worker(agent.worker_id, status="paused")  # type: ignore[arg-type]
        fake.wait_for(lambda: fake.calls["heartbeat"] > beats, what="another heartbeat")
        assert fake.tasks[task].status == "pending" and not agent._held
        fake.update_worker(agent.worker_id, status="running",  # type: ignore[arg-type]
                           concurrency=3)
        ended(fake, task, "succeeded")
        wait_until(lambda: agent.concurrency == 3, interval=0.005)


def test_name_taken_over_stops_the_worker(fake: FakeServer, tmp_path: Path) -> None:
    agent = WorkerAgent(cast(Client, fake.client()), name="dup", work_dir=tmp_path / "w",
                        **{**QUICK, "claim_wait": 0.05})
    errors: list[BaseException] = []

    def target() -> None:
        try:
            agent.run()
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    fake.wait_for(lambda: fake.calls.get("claim"))
    fake.client().worker_register(name="dup")
    thread.join(5)
    assert not thread.is_alive()
    assert errors and isinstance(errors[0], Unauthorized)


class _Puts:
    """The reporter as the runner sees it: events put, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def put(self, event: Event) -> None:
        self.events.append(event)


def _runner(tmp_path: Path, fake: FakeServer) -> tuple[ExecutionRunner, _Puts]:
    settings = RunnerSettings(name="w", cache_dir=tmp_path / "cache", log_cap=1 << 20,
                              kill_grace=0.5, container_defaults=ContainerDefaults(),
                              has_gpus=False, environment={"PATH": "/usr/bin:/bin"})
    puts = _Puts()
    runner = ExecutionRunner(
        settings, io=fake.client(), reporter=puts, gate=RunGate(1, GpuPool([])),  # type: ignore[arg-type]
        dirs=ExecutionDirs(tmp_path / "executions"), engine=None, keeper=None,
        concurrency=lambda: 1, out_of_time=lambda: False, finished=threading.Event(),
    )
    (tmp_path / "executions").mkdir()
    return runner, puts


@pytest.mark.parametrize(("payload", "reason"), [
    ({"container": "busybox"}, "no_container_engine"),
    ({"layout": "elsewhere"}, "unknown_layout"),
    ({"gpu": 2}, "not_enough_gpus"),
])
def test_the_runner_refuses_what_this_worker_cannot_run(tmp_path: Path, fake: FakeServer,
                                                       payload: dict[str, Any],
                                                       reason: str) -> None:
    runner, puts = _runner(tmp_path, fake)
    held = Held({"execution_id": 7, "task_id": 1, "command": "true", **payload},
                tmp_path / "executions" / "7")
    final = runner.execute(held)
    assert final is not None and final.status == "failed"
    assert final.fields["reason"] == reason
    assert [e.status for e in puts.events] == []  # nothing started, nothing accepted
