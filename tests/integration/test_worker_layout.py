"""The codabench layout and scores, for real: the worker against the real server over
HTTP, scoring programs run on the host in a bubblewrap sandbox or in a container (a
real engine), their scores read back and refused when they should be.

The database plays no part in what is tested here, so these run on SQLite only."""

from __future__ import annotations

import os
import shutil
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from scitq_bench.client.worker import sandbox
from tests.support.containers import containers_of, engine_for
from tests.support.engine import TEST_IMAGE
from tests.support.workers import (
    executions,
    finish,
    running_worker,
    stdout_of,
)

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap is not installed")

# A Codabench-style scoring program in plain sh/awk (the busybox image has no python):
# the share of predictions equal to the reference, line by line.
SCORE_SH = """\
set -e
echo "pwd=$(pwd) input=$INPUT output=$OUTPUT temp=$TEMP"
ls /app | sort | tr '\\n' ' '; echo
awk 'NR == FNR { truth[FNR] = $0; n++; next } $0 == truth[FNR] { ok++ }
     END { printf "{\\"accuracy\\": %s, \\"n\\": %d}\\n", ok / n, n }' \\
    /app/input/ref/truth.txt /app/input/res/pred.txt > /app/output/scores.json
echo "<html><body>detailed</body></html>" > /app/output/detailed_results.html
echo shared > /app/shared/note && cat /app/shared/note
echo scratch > /tmp/scratch && cat /tmp/scratch
"""


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def name() -> str:
    return f"w-{uuid.uuid4().hex[:10]}"


def make_zip(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


@pytest.fixture
def bundle(tmp_path: Path) -> dict[str, str]:
    """Input URIs as a benchmark would give them: zips unpacked into /app's folders."""
    source = tmp_path / "bundle"
    source.mkdir()
    program = make_zip(source / "scoring_program.zip", {"score.sh": SCORE_SH})
    ref = make_zip(source / "ref.zip", {"truth.txt": "a\nb\nc\nd\n"})
    res = make_zip(source / "res.zip", {"pred.txt": "a\nb\nx\nd\n"})
    return {
        "program": f"file://{program}|unzip|mv:program",
        "ref": f"file://{ref}|unzip|mv:input/ref",
        "res": f"file://{res}|unzip|mv:input/res",
        "ref_zip": str(ref),
    }


def last_execution(client: Any, task: dict[str, Any]) -> dict[str, Any]:
    return executions(client, task["id"])[-1]


def scoring_task(bundle: dict[str, str], out: Path, **options: Any) -> dict[str, Any]:
    return {"command": "sh /app/program/score.sh", "layout": "codabench",
            "inputs": [bundle["program"], bundle["ref"], bundle["res"]],
            "output": f"file://{out}", "score_keys": ["accuracy", "n"], **options}


def check_scored(client: Any, task: dict[str, Any], out: Path) -> None:
    execution = last_execution(client, task)
    assert execution["status"] == "succeeded", execution
    assert execution["scores"] == {"accuracy": 0.75, "n": 4.0}
    assert sorted(execution["output_files"]) == ["detailed_results.html", "scores.json"]
    assert (out / "detailed_results.html").read_text().startswith("<html>")
    lines = stdout_of(client, task).decode().splitlines()
    assert lines[0] == "pwd=/app/program input=/app/input output=/app/output temp=/tmp"
    assert lines[1] == "input output program shared "
    assert lines[2:] == ["shared", "scratch"]


# -- on the host, in the sandbox ------------------------------------------------------


@needs_bwrap
def test_scoring_program_in_the_sandbox(live_server, tmp_path, bundle):
    out = tmp_path / "out"
    client = live_server.client()
    with running_worker(live_server, tmp_path) as agent:
        task = client.tasks_create([scoring_task(bundle, out)])[0]
        assert finish(client, [task], timeout=30)[0]["status"] == "succeeded"
        executions_dir = agent.executions_dir
    check_scored(client, task, out)
    assert list(executions_dir.iterdir()) == []  # cleaned up after the upload


@needs_bwrap
def test_sandbox_isolation(live_server, tmp_path, bundle):
    """What was not downloaded is not there (no reference for an ingestion), nor is
    anything of the host outside the system folders; no network; the system folders
    are read-only; the variables are the task's only."""
    marker = f"scitq-bench-{uuid.uuid4().hex}"
    work = tmp_path / f"work-{marker}"
    script = (
        "test -e /app/input/ref && echo ref-visible; ls /app | sort | tr '\\n' ' '; echo;"
        f"test -e {bundle['ref_zip']} && echo host-visible; test -e {work} && echo work-visible;"
        "find /app /tmp /resource -name truth.txt; ls /home /root /work 2>/dev/null;"
        "cat /proc/net/dev;"
        f"touch /usr/{marker} 2>/dev/null || echo usr-read-only;"
        f"touch /etc/{marker} 2>/dev/null || echo etc-read-only;"
        "echo id=$(id -u); env | sort"
    )
    client = live_server.client()
    with running_worker(live_server, tmp_path, marker):
        task = client.task_create(script, shell=True, layout="codabench",
                                  inputs=[bundle["res"], bundle["program"].replace(
                                      "mv:program", "mv:ingested_program")])
        assert finish(client, [task], timeout=30)[0]["status"] == "succeeded"
    text = stdout_of(client, task).decode()
    lines = text.splitlines()
    assert lines[0] == "ingested_program input output shared "
    assert "visible" not in text and "truth.txt" not in text
    interfaces = [line.split(":")[0].strip() for line in lines if ":" in line
                  and "|" not in line and line.startswith(" ")]
    assert interfaces == ["lo"], text
    assert "usr-read-only" in lines and "etc-read-only" in lines
    assert not os.path.exists(f"/usr/{marker}") and not os.path.exists(f"/etc/{marker}")
    assert f"id={65534 if os.geteuid() == 0 else os.getuid()}" in lines
    env = {line.split("=", 1)[0] for line in lines[lines.index(next(
        line for line in lines if line.startswith("id="))) + 1:]}
    assert env - {"SHLVL", "PWD"} == {"CPU", "HOME", "INPUT", "OUTPUT", "PATH", "RESOURCE",
                                      "SCITQ_BENCH_EXECUTION_ID", "SCITQ_BENCH_TASK_ID",
                                      "TEMP"}
    assert live_server.token not in text


@needs_bwrap
def test_sandboxed_task_killed_on_timeout(live_server, tmp_path):
    duration = f"{100000 + uuid.uuid4().int % 100000}"
    client = live_server.client()
    with running_worker(live_server, tmp_path, kill_grace=1.0):
        task = client.task_create(f"sh -c 'trap \"\" TERM; sleep {duration}'",
                                  layout="codabench", run_timeout=1.0)
        began = time.monotonic()
        finish(client, [task], timeout=30)
        elapsed = time.monotonic() - began
    execution = last_execution(client, task)
    assert execution["status"] == "timeout"
    assert elapsed < 15 and execution["duration"] < 10, (elapsed, execution)
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _holds(p, duration)]


def _holds(pid: str, text: str) -> bool:
    try:
        return text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_without_bwrap_the_execution_fails_clearly(live_server, tmp_path, monkeypatch):
    def missing(as_root: bool) -> sandbox.Tools:
        raise sandbox.SandboxUnavailable("bubblewrap (bwrap) is not installed on this worker")

    monkeypatch.setattr(sandbox, "find_tools", missing)
    client = live_server.client()
    with running_worker(live_server, tmp_path):
        task = client.task_create("true", layout="codabench", score_keys=[])
        assert finish(client, [task])[0]["status"] == "failed"
    execution = last_execution(client, task)
    assert execution["reason"] == "sandbox_unavailable"
    assert "bubblewrap (bwrap) is not installed" in execution["error"]
    assert execution["scores"] is None


@needs_bwrap
def test_a_host_environment_comes_first_in_the_sandbox(live_server, tmp_path):
    """A benchmark's environment on the worker (here a virtualenv) is what the
    sandboxed command finds first; one that is not there fails the step, named."""
    import subprocess
    import sys

    env = tmp_path / "envs" / "bench1"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    client = live_server.client()
    with running_worker(live_server, tmp_path):
        found = client.task_create("sh -c 'command -v python3; echo $VIRTUAL_ENV'",
                                   layout="codabench", host_environment=str(env))
        missing = client.task_create("true", layout="codabench",
                                     host_environment="/nonexistent/env")
        finish(client, [found, missing], timeout=60)
    execution = last_execution(client, found)
    assert execution["status"] == "succeeded", execution
    out = client.execution_log(execution["id"], "stdout")[0].decode().split()
    assert out == [f"{env}/bin/python3", str(env)]
    refused = last_execution(client, missing)
    assert (refused["status"], refused["reason"]) == ("failed", "host_environment_missing")
    assert "/nonexistent/env" in refused["error"]


# -- scores ---------------------------------------------------------------------------


@needs_bwrap
def test_scores_refused_end_to_end(live_server, tmp_path):
    """Each reason once, with the output uploaded all the same; a failed run's scores
    are not read; standard-layout tasks have theirs read too."""
    cases = {
        "missing": "echo no scores here",
        "invalid": "echo '[1, 2]' > $OUTPUT/scores.json",
        "not_numeric": "printf 'accuracy: 0.5\\nn: many\\n' > $OUTPUT/scores.txt",
        "unknown": "echo '{\"accuracy\": 1, \"secret\": 2}' > $OUTPUT/scores.json",
        "link": "ln -s /etc/passwd $OUTPUT/scores.json",
        "failed": "echo '{\"accuracy\": 1}' > $OUTPUT/scores.json; exit 4",
    }
    outs = {case: tmp_path / f"out-{case}" for case in cases}
    client = live_server.client()
    with running_worker(live_server, tmp_path, concurrency=3):
        tasks = client.tasks_create(
            [{"command": command, "shell": True, "layout": "codabench",
              "score_keys": ["accuracy", "n"], "output": f"file://{outs[case]}", "name": case}
             for case, command in cases.items()]
            + [{"command": "printf '# mine\\nspeed: 12.5\\n' > $OUTPUT/scores.txt",
                "shell": True, "score_keys": [], "name": "standard"}])
        done = finish(client, tasks, timeout=30)
    found = {task["name"]: last_execution(client, task) for task in done}
    expected = {"missing": "scores_missing", "invalid": "scores_invalid",
                "not_numeric": "score_not_numeric",
                "link": "scores_invalid", "failed": None}
    # a key that is no column is ignored, as Codabench does
    assert found["unknown"]["status"] == "succeeded", found["unknown"]
    assert found["unknown"]["scores"] == {"accuracy": 1.0}
    for case, reason in expected.items():
        execution = found[case]
        assert execution["status"] == "failed", (case, execution)
        assert execution["reason"] == reason, (case, execution)
        assert execution["scores"] is None
    assert found["missing"]["error"] == \
        "scores_missing: no scores.json or scores.txt in the output"
    assert "scores.json" in found["invalid"]["error"]
    assert "line 2" in found["not_numeric"]["error"] and "'n'" in found["not_numeric"]["error"]
    assert "symbolic link" in found["link"]["error"]
    assert found["failed"]["return_code"] == 4
    assert found["invalid"]["output_files"] == ["scores.json"]
    assert (outs["invalid"] / "scores.json").read_text() == "[1, 2]\n"
    assert (outs["failed"] / "scores.json").exists()
    assert not (outs["link"] / "scores.json").exists()  # links are never uploaded either
    assert found["standard"]["status"] == "succeeded"
    assert found["standard"]["scores"] == {"speed": 12.5}


# -- in a container ------------------------------------------------------------------


@pytest.mark.engine
def test_scoring_program_in_a_container(live_server, tmp_path, bundle, docker_client, name):
    out = tmp_path / "out"
    client = live_server.client()
    with running_worker(live_server, tmp_path, name,
                        engine=engine_for(docker_client, tmp_path, name)):
        scoring = client.tasks_create([scoring_task(bundle, out, container=TEST_IMAGE)])[0]
        probe = client.task_create(
            "id -u; cat /proc/net/dev; test -e /input && echo standard-slots;"
            "test -e /app/input/ref || echo no-ref; echo x > /app/new && echo app-writable;"
            "grep -E 'CapEff|NoNewPrivs' /proc/self/status; echo \"$INPUT\"; pwd",
            shell=True, container=TEST_IMAGE, layout="codabench",
            inputs=[bundle["res"], f"file://{bundle['ref_zip']}|unzip|mv:input_data"])
        done = finish(client, [scoring, probe], timeout=60)
    assert [t["status"] for t in done] == ["succeeded", "succeeded"]
    check_scored(client, scoring, out)
    text = stdout_of(client, probe).decode()
    lines = text.splitlines()
    assert lines[0] == "65534"
    interfaces = [line.split(":")[0].strip() for line in lines if ":" in line
                  and "|" not in line and line.startswith(" ")]
    assert interfaces == ["lo"], text
    assert "standard-slots" not in lines
    assert "no-ref" in lines and "app-writable" in lines
    assert "CapEff:\t0000000000000000" in lines and "NoNewPrivs:\t1" in lines
    assert lines[-2:] == ["/app/input_data", "/app"]  # no program: the work dir is /app
    assert containers_of(docker_client, name) == []
