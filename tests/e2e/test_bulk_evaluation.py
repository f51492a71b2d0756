"""A bulk evaluation end to end: ``submission bulk`` run as a command against a real
server process, killed (SIGKILL) part way through its submissions, run again to the
end while a real worker scores them on its host (the run-on-host sandbox, no image).
The server is the only record of what was submitted: nothing is submitted twice.

The database plays no part here beyond what tests/integration/test_submission_keys.py
covers on both backends, so this runs on SQLite."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from scitq_bench.client import Client
from tests.support.bundles import make_bundle, make_submission, reference, submission_files
from tests.support.stack import CLI, Stack, wait_until

pytestmark = pytest.mark.e2e

ENTRIES = 20
HELD = 10  # this entry is a folder whose zipping waits on a pipe: the first run stops there


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


def bulk_command(stack: Stack, token: str, phase: int, entries: Path, scores: Path) -> list[str]:
    return [*CLI, "--server", stack.url, "--token", token, "submission", "bulk", str(phase),
            str(entries), "--scores", str(scores), "--concurrency", "1", "--interval", "0.3",
            "--timeout", "120"]


def test_an_interrupted_bulk_evaluation_resumes_without_duplicates(stack: Stack,
                                                                   tmp_path: Path) -> None:
    admin = stack.client()
    bench = admin.bench_import(make_bundle(tmp_path / "bundle"), run_on_host=True)
    phase = bench["phases"][0]["id"]
    token = admin.account_create("alice")["token"]
    alice = Client(stack.url, token)
    entries = tmp_path / "entries"
    # entry-NN predicts reference + NN: its score is 100 - NN, one of its own
    for index in range(ENTRIES):
        if index != HELD:
            make_submission(entries, "result", reference(0) + index,
                            name=f"entry-{index:02}.zip")
    held = entries / f"entry-{HELD:02}"  # a folder entry: zipped by the command itself
    held.mkdir(parents=True)
    for name, data in submission_files("result", reference(0) + HELD).items():
        (held / name).write_bytes(data)
    os.mkfifo(held / "zz-hold")  # opening it to zip it blocks until it has a writer
    scores = tmp_path / "scores.csv"
    command = bulk_command(stack, token, phase, entries, scores)

    first = subprocess.Popen(command, env=stack.env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    try:
        # one upload at a time, in name order: the ten before the held entry, then it
        # waits on the pipe; killed there, mid-run
        wait_until(lambda: len(alice.submission_list(phase=phase)) >= HELD, timeout=60,
                   interval=0.05, what=f"{HELD} submissions")
        time.sleep(0.5)
        assert first.poll() is None, "the first run was to wait on the held entry"
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    before = alice.submission_list(phase=phase)
    assert len(before) == HELD, f"killed after {len(before)} submissions"
    (held / "zz-hold").unlink()  # the entry as it should be: the second run zips it

    stack.start_worker("bulk", concurrency=4)
    second = subprocess.run(command, env=stack.env(), capture_output=True, text=True,
                            timeout=180)
    assert second.returncode == 0, second.stdout + second.stderr
    summary = second.stdout.strip().splitlines()[-1]
    assert (f"{ENTRIES - len(before)} submitted, {len(before)} already there, "
            f"{ENTRIES} scored, 0 failed") in summary, summary

    found = alice.submission_list(phase=phase)
    keys = sorted(s["key"] for s in found)
    assert keys == [f"entry-{i:02}" for i in range(ENTRIES)]  # twenty, no key twice
    assert {s["status"] for s in found} == {"finished"}
    by_key = {s["key"]: s for s in found}
    with scores.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["key"] for r in rows] == [f"entry-{i:02}" for i in range(ENTRIES)]
    for index, row in enumerate(rows):
        assert row["status"] == "finished"
        assert int(row["submission_id"]) == by_key[row["key"]]["id"]
        assert float(row["main.score"]) == 100 - index, row
        assert float(row["main.error"]) == index, row
        assert by_key[row["key"]]["scores"]["main"]["0"]["score"] == 100 - index
    assert not list(tmp_path.glob(".scores.csv.*"))  # no temporary file left behind
