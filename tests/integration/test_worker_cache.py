"""The worker's side of data, against the real server: resources cached across
worker restarts and linked into each execution's own folder, failure reasons for
inputs and outputs, transfer progress in the task's log, and storage credentials
kept from tasks.

The database plays no part in what is tested here, so these run on SQLite only."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from scitq_bench.client.worker.agent import WorkerAgent
from scitq_bench.exceptions import InvalidInput
from tests.support.containers import engine_for
from tests.support.engine import TEST_IMAGE
from tests.support.stack import Stack
from tests.support.workers import executions, finish, running_worker, stdout_of

MB = 1 << 20
SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "aws-secret-value-0123",
    "AZURE_STORAGE_CONNECTION_STRING": "AccountKey=azure-secret-value-4567",
    "GOOGLE_APPLICATION_CREDENTIALS": "/secret/google-credentials.json",
}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


def last_execution(client: Any, task: dict[str, Any]) -> dict[str, Any]:
    return executions(client, task["id"])[-1]


def stderr_of(client: Any, task: dict[str, Any]) -> str:
    return client.execution_log(last_execution(client, task)["id"], "stderr")[0].decode()


@pytest.mark.e2e
def test_a_resource_is_fetched_once_across_worker_restarts(tmp_path: Path) -> None:
    """Two worker processes in turn on one work folder: the second finds the
    resource in the cache the first left, checks its version and downloads nothing."""
    stack = Stack(root=tmp_path / "stack", database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
                  access_log=True)
    stack.init()
    try:
        stack.start_server()
        client = stack.client()
        client.file_put("ref/genome.fa", b">chr1\nACGT\n")
        outputs = []
        for _ in range(2):
            worker = stack.start_worker("w1", concurrency=1)
            task = client.task_create("cat $RESOURCE/genome.fa", shell=True,
                                      resources=["server://ref/genome.fa"])
            done = client.join([task], interval=0.1, timeout=60)[0]
            assert done["status"] == "succeeded", last_execution(client, task)
            outputs.append(stdout_of(client, task))
            worker.terminate()
            assert worker.wait(30) == 0, stack.tail("worker-w1.log")
        access = (stack.root / "access.log").read_text()
    finally:
        stack.stop()
    assert outputs == [b">chr1\nACGT\n"] * 2
    assert access.count('"GET /api/v1/files/ref/genome.fa"') == 1, access
    assert access.count('"GET /api/v1/files"') >= 2  # the version, checked by each
    entries = list((stack.root / "work-w1" / "cache" / "entries").iterdir())
    assert len(entries) == 1


def test_an_execution_sees_only_its_own_resources(live_server, tmp_path):
    client = live_server.client()
    for name, files in {"a": {"shared.txt": "from a", "only-a.txt": "a"},
                        "b": {"shared.txt": "from b", "sub/only-b.txt": "b"}}.items():
        for path, text in files.items():
            (tmp_path / name / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name / path).write_text(text)
    a, b = f"file://{tmp_path / 'a'}/", f"file://{tmp_path / 'b'}/"
    command = ('cd "$RESOURCE" && echo "$RESOURCE" && find . -type f | sort && '
               'cat shared.txt && echo && stat -c %a shared.txt')
    with running_worker(live_server, tmp_path, concurrency=3):
        tasks = client.tasks_create([{"command": command, "shell": True, "resources": r}
                                     for r in ([a], [b], [a, b])])
        done = finish(client, tasks, timeout=30)
    assert [t["status"] for t in done] == ["succeeded"] * 3, \
        [last_execution(client, t) for t in tasks]
    seen = [stdout_of(client, t).decode().splitlines() for t in tasks]
    for task, lines in zip(tasks, seen, strict=True):
        execution = last_execution(client, task)
        assert lines[0] == str(tmp_path / "work-w1" / "executions" / str(execution["id"])
                               / "resource")
    assert seen[0][1:] == ["./only-a.txt", "./shared.txt", "from a", "444"]
    assert seen[1][1:] == ["./shared.txt", "./sub/only-b.txt", "from b", "444"]
    assert seen[2][1:] == ["./only-a.txt", "./shared.txt", "./sub/only-b.txt", "from b", "444"]
    assert len(list((tmp_path / "work-w1" / "cache" / "entries").iterdir())) == 2


def test_failed_transfers_say_why_and_which_uri(live_server, tmp_path):
    client = live_server.client()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    missing_input = f"file://{tmp_path / 'no-such-input.txt'}"
    missing_resource = f"file://{tmp_path / 'no-such-resource'}/"
    output = f"file://{blocker}/results"
    with running_worker(live_server, tmp_path):
        tasks = [client.task_create("true", inputs=[missing_input]),
                 client.task_create("true", resources=[missing_resource]),
                 client.task_create("echo r > $OUTPUT/r.txt", shell=True, output=output)]
        done = finish(client, tasks)
    assert [t["status"] for t in done] == ["failed"] * 3
    runs = [last_execution(client, t) for t in tasks]
    assert [r["reason"] for r in runs] == ["input_fetch_failed", "input_fetch_failed",
                                           "output_upload_failed"]
    assert str(tmp_path / "no-such-input.txt") in runs[0]["error"]
    assert str(tmp_path / "no-such-resource") in runs[1]["error"]
    assert str(blocker) in runs[2]["error"] and "output upload failed" in runs[2]["error"]
    assert runs[2]["return_code"] == 0


def test_transfer_progress_goes_to_the_task_log(live_server, tmp_path):
    client = live_server.client()
    data = tmp_path / "source"
    data.mkdir()
    for number in range(4):
        (data / f"part{number}.bin").write_bytes(b"x" * MB)
    with running_worker(live_server, tmp_path, progress_interval=0):
        task = client.task_create("head -c 3145728 /dev/zero > $OUTPUT/out.bin", shell=True,
                                  inputs=[f"file://{data}/"], output=f"file://{tmp_path / 'out'}")
        quiet = client.task_create("true", inputs=[f"file://{data}/"])
        done = finish(client, [task, quiet])
    assert [t["status"] for t in done] == ["succeeded"] * 2
    lines = stderr_of(client, task).splitlines()
    assert all(line.startswith("[scitq-bench] ") for line in lines), lines
    fetching = [line for line in lines if line.startswith(f"[scitq-bench] fetching file://{data}/:")]
    assert len(fetching) == 4, lines  # one per file copied, with interval 0
    assert re.fullmatch(rf"\[scitq-bench\] fetching file://{data}/: 4\.0 MiB"
                        r"( of 4\.0 MiB)?, \d+ MB/s", fetching[-1]), fetching
    assert any(line.startswith(f"[scitq-bench] fetched file://{data}/: 4.0 MiB in ")
               for line in lines), lines
    assert any(line.startswith(f"[scitq-bench] uploaded file://{tmp_path / 'out'}: 3.0 MiB in ")
               for line in lines), lines


def test_a_quick_transfer_writes_nothing(live_server, tmp_path):
    client = live_server.client()
    (tmp_path / "small.txt").write_text("small")
    with running_worker(live_server, tmp_path):  # one line every 2 s at most
        task = client.task_create("true", inputs=[f"file://{tmp_path / 'small.txt'}"])
        assert finish(client, [task])[0]["status"] == "succeeded"
    assert stderr_of(client, task) == ""


def _storage_settings(tmp_path: Path, mode: int) -> Path:
    path = tmp_path / "storage.yaml"
    path.write_text("transfer: {attempts: 2}\n")
    path.chmod(mode)
    return path


def _leaks(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() if name in text or value in text] + \
        [name for name in ("SCITQ_BENCH_STORAGE_CONFIG",) if name in text]


def test_storage_credentials_never_reach_a_process_task(live_server, tmp_path, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SCITQ_BENCH_STORAGE_CONFIG", str(_storage_settings(tmp_path, 0o600)))
    client = live_server.client()
    with running_worker(live_server, tmp_path):
        task = client.task_create("env", name="env")
        assert finish(client, [task])[0]["status"] == "succeeded"
    seen = stdout_of(client, task).decode()
    assert _leaks(seen) == [] and "SCITQ_BENCH_TASK_ID=" in seen


@pytest.mark.engine
def test_storage_credentials_never_reach_a_container_task(live_server, tmp_path, monkeypatch,
                                                          docker_client):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    name = f"w-{uuid.uuid4().hex[:10]}"
    client = live_server.client()
    with running_worker(live_server, tmp_path, name,
                        engine=engine_for(docker_client, tmp_path, name)):
        task = client.task_create("env", container=TEST_IMAGE)
        assert finish(client, [task], timeout=30)[0]["status"] == "succeeded", \
            last_execution(client, task)
    seen = stdout_of(client, task).decode()
    assert _leaks(seen) == [] and "SCITQ_BENCH_TASK_ID=" in seen


def test_a_bad_storage_settings_file_stops_the_worker(live_server, tmp_path, monkeypatch):
    settings = _storage_settings(tmp_path, 0o644)  # may hold secrets, readable by all
    monkeypatch.setenv("SCITQ_BENCH_STORAGE_CONFIG", str(settings))
    agent = WorkerAgent(live_server.client(), name="w1", work_dir=tmp_path / "work")
    with pytest.raises(InvalidInput, match="readable by others"):
        agent.run()
    assert agent.worker_id is None  # never registered
    cli = subprocess.run(
        [sys.executable, "-m", "scitq_bench.cli.main", "--token", live_server.token,
         "worker", "run", live_server.url, "--name", "w2", "--work-dir",
         str(tmp_path / "work2"), "--no-containers"],
        env={**os.environ, "SCITQ_BENCH_STORAGE_CONFIG": str(settings),
             "SCITQ_BENCH_CONFIG": str(tmp_path / "absent.json")},
        capture_output=True, text=True, timeout=60, check=False)
    assert cli.returncode == 1 and "readable by others" in cli.stderr, cli.stderr
    assert live_server.client().worker_list() == []
