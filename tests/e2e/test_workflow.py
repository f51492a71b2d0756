"""Workflows end to end: a real server, its recruitment hiring real worker processes
(the ``local`` provider), and workflow scripts run in this process or as scripts that
are interrupted, killed and started again."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import select

from scitq_bench.client import Client
from scitq_bench.server.db import Database
from scitq_bench.server.queue.models import Worker
from scitq_bench.server.recruit import catalog
from scitq_bench.server.recruit.runtime import build
from scitq_bench.workflow import Workflow, WorkflowHeld
from tests.support.stack import wait_until

pytestmark = pytest.mark.e2e
SAMPLES = ["s1", "s2", "s3", "s4"]
ROOT = Path(__file__).resolve().parents[2]

# The workflow the tests run: per sample, count its lines, then double the count;
# then one task sums the doubled counts of all samples.
SCRIPT = '''
from scitq_bench.client import Client
from scitq_bench.workflow import Workflow


def declare(client, base, samples, slow=0):
    wf = Workflow("wfqc", client=client, base=base, shell=True, retry=1,
                  flavor="local", provider="local", region="local", concurrency=1,
                  max_step_workers=3, max_workflow_workers=2)
    for sample in samples:
        count = wf.step("count", name=sample, inputs=f"raw/{sample}.txt",
                        command=f"sleep {slow}; wc -l < $INPUT/{sample}.txt > $OUTPUT/{sample}")
        wf.step("double", name=sample, inputs=count.output,
                command=f"echo $(( $(cat $INPUT/{sample}) * 2 )) > $OUTPUT/{sample}")
    wf.step("total", name="all", inputs=wf.gather("double", "output"),
            command="awk '{s += $1} END {print s}' $INPUT/* > $OUTPUT/total; ls $INPUT > $OUTPUT/seen")
    return wf
'''


def declare(client: Client, base: Path, slow: float = 0) -> Workflow:
    space: dict[str, Any] = {}
    exec(SCRIPT, space)  # noqa: S102 - the very text the scripts below run
    return space["declare"](client, f"file://{base}", SAMPLES, slow)


def make_inputs(base: Path) -> int:
    """One file per sample, with 1..4 lines; returns the expected total (2 x lines)."""
    (base / "raw").mkdir(parents=True)
    for lines, sample in enumerate(SAMPLES, 1):
        (base / "raw" / f"{sample}.txt").write_text("x\n" * lines)
    return 2 * sum(range(1, len(SAMPLES) + 1))


@pytest.fixture
def recruiting(live_server: Any) -> Iterator[Database]:
    """The live server with its recruitment running: local workers hired on demand,
    kept 30 s once idle (so that steps reuse them), all killed at the end."""
    settings = dataclasses.replace(live_server.settings, public_url=live_server.url, recruitment={
        "interval": 0.3, "idle_timeout": 30, "idle_after_work": 30, "deploy_timeout": 60,
        "providers": {"local": {"grace_seconds": 3, "containers": False}},
    })
    db = Database(settings.database_url)
    runtime = build(settings, db, live_server.url)
    with db.write() as session:
        catalog.ensure_local_flavor(session, settings.data_dir)
    runtime.engine.start()
    yield db
    runtime.engine.stop()
    with db.read() as session:
        names = list(session.scalars(select(Worker.name).where(Worker.permanent.is_(False))))
    for process in psutil.process_iter(["cmdline"]):
        if any(name in " ".join(process.info["cmdline"] or []) for name in names):
            process.kill()
    db.dispose()


def hired(db: Database) -> int:
    with db.read() as session:
        return len(list(session.scalars(select(Worker.id).where(Worker.permanent.is_(False)))))


def executions_per_task(client: Client, batch: str) -> dict[int, int]:
    """Executions per task of the batch, leaving out those lost with a worker that
    stopped answering in time (the server runs the task again: not the workflow's doing,
    and a loaded test machine can make a worker late)."""
    runs: dict[int, int] = {task["id"]: 0 for task in client.task_list(batch=batch)}
    for execution in client.execution_list(batch=batch, limit=1000):
        if execution["status"] != "lost":
            runs[execution["task_id"]] = runs.get(execution["task_id"], 0) + 1
    return runs


def check_ran_once(client: Client) -> None:
    for step, count in (("count", 4), ("double", 4), ("total", 1)):
        runs = executions_per_task(client, f"wfqc.{step}")
        assert len(runs) == count, (step, runs)  # no task created twice
        assert set(runs.values()) == {1}, (step, runs)  # each ran once


def test_a_fan_out_and_gather_workflow_runs_each_task_once_within_its_cap(
        live_server: Any, recruiting: Database, tmp_path: Path) -> None:
    client = live_server.client()
    base = tmp_path / "base"
    expected = make_inputs(base)
    wf = declare(client, base)
    result = wf.run(refresh=0.3, progress=False)
    assert result.ok and result.failed == []
    assert {name: step.succeeded for name, step in result.steps.items()} == \
        {"count": 4, "double": 4, "total": 1}
    assert (base / "total" / "all" / "total").read_text().strip() == str(expected)
    assert (base / "total" / "all" / "seen").read_text().split() == SAMPLES
    check_ran_once(client)
    # a worker per waiting task, up to 2 per step, yet 2 in all: the workflow's cap
    assert 1 <= hired(recruiting) <= 2
    recruiters = [r for step in ("count", "double", "total")
                  for r in client.recruiter_list(batch=f"wfqc.{step}")]
    assert len(recruiters) == 3
    assert {(r["workflow"], r["workflow_maximum_workers"], r["tasks_per_worker"])
            for r in recruiters} == {("wfqc", 2, 1)}

    # run again: everything is found, nothing is created or run again, recruiters kept
    again = declare(client, base).run(refresh=0.3, progress=False)
    assert again.ok
    check_ran_once(client)
    assert sorted(r["id"] for step in ("count", "double", "total")
                  for r in client.recruiter_list(batch=f"wfqc.{step}")) == \
        sorted(r["id"] for r in recruiters)

    # helpers: outputs, logs, then clean
    assert len(wf.outputs("double")) == 4
    fetched = wf.fetch_outputs(tmp_path / "fetched", step="double")
    assert sorted((p / p.name).read_text().strip() for p in fetched) == ["2", "4", "6", "8"]
    logs = wf.fetch_logs(tmp_path / "logs")
    assert len(logs) == 18 and all(p.exists() for p in logs)
    cleaned = Workflow("wfqc", client=client).clean(delete_outputs=True)
    assert sorted(cleaned.batches) == ["wfqc.count", "wfqc.double", "wfqc.total"]
    assert client.batch_list(name="wfqc.count") == []
    left = [p.relative_to(base).parts[0] for p in base.rglob("*") if p.is_file()]
    assert set(left) == {"raw"}  # the outputs deleted, the inputs under the base kept


def run_script(tmp_path: Path, live_server: Any, name: str) -> subprocess.Popen:
    script = tmp_path / "qc.py"
    script.write_text(SCRIPT + textwrap.dedent(f'''
        import sys
        wf = declare(Client(), "file://{tmp_path / 'base'}", {SAMPLES!r}, slow=0.5)
        result = wf.run(refresh=0.3)
        sys.exit(0 if result.ok else 1)
        '''))
    env = {**os.environ, "SCITQ_BENCH_SERVER": live_server.url,
           "SCITQ_BENCH_TOKEN": live_server.token, "PYTHONPATH": str(ROOT),
           "SCITQ_BENCH_CONFIG": str(tmp_path / "absent.json"), "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, str(script)], env=env, cwd=tmp_path,
                            stdout=open(tmp_path / f"{name}.out", "wb"),
                            stderr=subprocess.STDOUT, preexec_fn=_ctrl_c_as_a_terminal_does)


def _ctrl_c_as_a_terminal_does() -> None:
    """In the script's process, before it starts: SIGINT at its default and not blocked,
    whatever the test process around it inherited or set (a process started with SIGINT
    ignored or blocked never sees its Ctrl-C, and Python keeps it so)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_a_script_interrupted_and_killed_then_run_again_creates_nothing_twice(
        live_server: Any, recruiting: Database, tmp_path: Path) -> None:
    client = live_server.client()
    expected = make_inputs(tmp_path / "base")
    batch_counts = lambda step: (client.batch_list(name=f"wfqc.{step}") or [{}])[0]  # noqa: E731

    first = run_script(tmp_path, live_server, "first")
    wait_until(lambda: batch_counts("count").get("counts", {}).get("running"), timeout=60,
               what="a task of the first step running")
    first.send_signal(signal.SIGINT)  # Ctrl-C: the work goes on, the script says how to resume
    assert first.wait(timeout=20) != 0, (tmp_path / "first.out").read_text()
    said = (tmp_path / "first.out").read_text()
    assert "goes on on the server" in said and "Run the same script again" in said, said

    second = run_script(tmp_path, live_server, "second")
    time.sleep(1.0)
    second.kill()  # SIGKILL, wherever it was
    second.wait(timeout=10)

    third = run_script(tmp_path, live_server, "third")
    assert third.wait(timeout=120) == 0, (tmp_path / "third.out").read_text()
    assert (tmp_path / "base" / "total" / "all" / "total").read_text().strip() == str(expected)
    check_ran_once(client)
    assert "all succeeded" in (tmp_path / "third.out").read_text()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # not a database matter
def test_debug_holds_the_workflow_on_the_first_failure_then_goes_on(
        live_server: Any, recruiting: Database, tmp_path: Path) -> None:
    client = live_server.client()
    flag = tmp_path / "fixed"

    def declare_debug() -> Workflow:
        wf = Workflow("wfdbg", client=client, base=f"file://{tmp_path / 'base'}", shell=True,
                      retry=3, flavor="local", provider="local", region="local", debug=True)
        for index in (1, 2, 3):
            fail = f"test -f {flag} || (echo broken >&2; echo partial; exit 3)"
            wf.step("first", name=f"t{index}",
                    command=f"echo t{index}; " + (fail if index == 2 else "true"))
        wf.step("second", name="after", command="echo after", depends=wf.gather("first"))
        return wf

    with pytest.raises(WorkflowHeld) as held:
        declare_debug().run(refresh=0.3, progress=False)
    task = held.value.task
    assert (task.step, task.key) == ("first", "t2") and "t2" in str(held.value)
    assert "broken" in task.stderr_tail and "partial" in task.stdout_tail
    assert f"task relaunch -i {task.id}`" in str(held.value)
    first, second = client.batch_find("wfdbg.first"), client.batch_find("wfdbg.second")
    assert first["status"] == second["status"] == "paused"  # the whole workflow held
    assert client.task_get(task.id)["status"] == "failed"  # kept as it failed: retry 0
    assert [t["key"] for t in client.task_list(batch="wfdbg.first")] == ["t1", "t2"]
    assert client.task_list(batch="wfdbg.second") == []  # the later step never started
    assert sorted(executions_per_task(client, "wfdbg.first").values()) == [1, 1]
    assert client.execution_list(batch="wfdbg.second") == []
    recruiter = client.recruiter_list(batch="wfdbg.first")[0]
    assert (recruiter["concurrency"], recruiter["maximum_workers"]) == (1, 1)

    # run again as it is: still held on the same task, nothing more ran
    with pytest.raises(WorkflowHeld, match=f"task {task.id} "):
        declare_debug().run(refresh=0.3, progress=False)
    assert sorted(executions_per_task(client, "wfdbg.first").values()) == [1, 1]

    # fixed, and run again retrying what failed: the workflow goes on to its end
    flag.touch()
    result = declare_debug().run(refresh=0.3, progress=False, retry_failed=True)
    assert result.ok
    assert {name: step.succeeded for name, step in result.steps.items()} == \
        {"first": 3, "second": 1}
    runs = executions_per_task(client, "wfdbg.first")
    assert runs[task.id] == 2 and sum(runs.values()) == 4


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # not a database matter
def test_retry_failed_relaunches_the_failed_and_what_failed_with_them(
        live_server: Any, recruiting: Database, tmp_path: Path) -> None:
    client = live_server.client()
    flag = tmp_path / "fixed"

    def declare_flaky() -> Workflow:
        wf = Workflow("wfretry", client=client, base=f"file://{tmp_path / 'base'}",
                      shell=True, flavor="local", provider="local", region="local",
                      max_step_workers=1)
        wf.step("a", name="ok", command="true")
        flaky = wf.step("a", name="flaky", command=f"test -f {flag}")
        wf.step("b", name="after", command="true", depends=flaky)
        return wf

    first = declare_flaky().run(refresh=0.3, progress=False)
    assert not first.ok
    assert sorted((f.step, f.key) for f in first.failed) == [("a", "flaky"), ("b", "after")]
    assert declare_flaky().run(refresh=0.3, progress=False).failed == first.failed  # as it was
    flag.touch()
    again = declare_flaky().run(refresh=0.3, progress=False, retry_failed=True)
    assert again.ok and again.failed == []
    runs = {t["key"]: executions_per_task(client, "wfretry.a")[t["id"]]
            for t in client.task_list(batch="wfretry.a")}
    assert runs == {"ok": 1, "flaky": 2}
    assert list(executions_per_task(client, "wfretry.b").values()) == [1]
