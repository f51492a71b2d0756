"""A backup taken from a real server while a real worker runs its tasks, restored into
a fresh data directory and a fresh database, served again: everything the API showed
at backup time is there, the same, on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scitq_bench.client import Client
from tests.conftest import fresh_database
from tests.support.bundles import make_bundle, make_submission
from tests.support.stack import CLI, Stack, wait_until

pytestmark = pytest.mark.e2e

DONE, RUNNING = 6, 2  # tasks that finish before the backup, tasks still running after it


@pytest.fixture
def fresh_url(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A second, empty database of the same dialect: where the backup is restored."""
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    with fresh_database(backend, tmp_path, request, "restored.db") as url:
        yield url


def cli(stack: Stack, *args: str) -> str:
    """A server command against ``stack``'s data directory and database."""
    result = subprocess.run([*CLI, "server", *args], env=stack.env(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def state(client: Client, participant: Client, ids: dict[str, int]) -> dict[str, Any]:
    """What the API shows of everything the test made: batches, tasks, executions and
    their logs, stored files, the benchmark, the submission, the leaderboard. Not the
    running executions' lease deadlines, which every heartbeat moves."""
    tasks = client.task_list()
    executions = [{key: value for key, value in e.items() if key != "lease_deadline"}
                  for t in tasks for e in client.task_executions(t["id"])]
    return {
        "batches": client.batch_list(),
        "tasks": tasks,
        "executions": executions,
        "logs": {(e["id"], stream): client.execution_log(e["id"], stream)[0]
                 for e in executions for stream in ("stdout", "stderr")},
        "files": {f["path"]: client.request("GET", f"/files/{f['path']}").content
                  for f in client.file_list()},
        "accounts": client.account_list(),
        "benchmark": client.bench_get(ids["benchmark"]),
        "submission": participant.submission_get(ids["submission"]),
        "submission_log": participant.submission_logs(ids["submission"]),
        "leaderboard": participant.leaderboard(ids["phase"], "main"),
    }


def differences(old: Any, new: Any, where: str = "") -> list[str]:
    """Where two states differ, as paths into them (for a readable failure)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in sorted({*old, *new}, key=str)
                for d in differences(old.get(key), new.get(key), f"{where}/{key}")]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True))
                for d in differences(a, b, f"{where}/{i}")]
    return [] if old == new else [f"{where}: {old!r} -> {new!r}"]


def started(client: Client, tasks: list[dict[str, Any]]) -> bool:
    return all(client.task_output(t["id"])[0] == f"started {t['name']}\n".encode()
               for t in tasks)


def test_a_backup_taken_while_tasks_run_restores_everything(stack: Stack, tmp_path: Path,
                                                            fresh_url: str) -> None:
    client = stack.client()
    bench = client.bench_import(make_bundle(tmp_path / "bundle"), run_on_host=True)
    phase = bench["phases"][0]["id"]
    participant = Client(stack.url, client.account_create("alice")["token"])
    stack.start_worker("w", concurrency=DONE)
    submission = participant.submission_submit(
        phase, make_submission(tmp_path / "submission", "result", 40))
    done = client.tasks_create([
        {"command": f'echo "log {i}"; echo "warn {i}" >&2; printf "out-{i}" > '
                    '"$OUTPUT/result.txt"', "shell": True, "batch": "done",
         "output": f"server://done/{i}/"} for i in range(DONE)])
    running = client.tasks_create([
        {"command": f'echo "started {i}"; sleep 300', "shell": True, "batch": "running",
         "name": str(i)} for i in range(RUNNING)])
    client.join(done, interval=0.2, timeout=60)
    (scored,) = participant.submission_wait(submission["id"], timeout=60, interval=0.2)
    assert scored["status"] == "finished", scored
    wait_until(lambda: started(client, running), timeout=30, what="running tasks' first lines")

    ids = {"benchmark": bench["id"], "phase": phase, "submission": submission["id"]}
    before = state(client, participant, ids)
    archive = tmp_path / "backups" / "server.tar.gz"
    archive.parent.mkdir()
    summary = cli(stack, "backup", "--output", str(archive))
    after = state(client, participant, ids)
    assert differences(before, after) == []  # nothing moved: the comparison below is fair
    assert {t["status"] for t in after["tasks"] if t["batch"] == "running"} == {"running"}
    found = re.fullmatch(r"Backed up the (sqlite|postgresql) database at revision \d+ "
                         r"\((\d+) rows\) and (\d+) files \((\d+) bytes\) to (.+) in "
                         r"[\d.]+ s\n", summary)
    assert found, summary
    assert found[1] == ("sqlite" if fresh_url.startswith("sqlite") else "postgresql")
    assert int(found[3]) > len(before["files"]) and found[5] == str(archive)
    stack.stop()

    restored = Stack(root=tmp_path / "restored", database_url=fresh_url, lease_seconds=300,
                     token=stack.token)
    assert cli(restored, "restore", str(archive)).startswith("Restored the ")
    restored.start_server()
    try:
        again = state(restored.client(), Client(restored.url, participant.token), ids)
    finally:
        restored.stop()
    assert differences(before, again) == []
    assert again["files"][f"done/{DONE - 1}/result.txt"] == f"out-{DONE - 1}".encode()
    assert again["leaderboard"]["rows"][0]["submission_id"] == submission["id"]
