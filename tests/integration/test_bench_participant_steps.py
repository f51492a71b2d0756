"""What a participant sees of their submission's steps, through a real worker on the
host: queued until a step starts, each step's state and the reason it failed (exit
code, time limit), their own program's logs for the prediction step as for scoring,
and nothing of other participants' submissions; through the API, the CLI and the GUI."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from scitq_bench.client import Client
from scitq_bench.exceptions import NotFound
from tests.support.bundles import make_bundle, make_submission
from tests.support.cli import fails, ok
from tests.support.gui import GuiClient
from tests.support.workers import running_worker

# run.sh, as the bundle's ingestion program runs it: says why on stderr, exits 3
BROKEN = "echo 'my code is broken' >&2; exit 3\n"
SLOW = "echo 'thinking' >&2; sleep 30\n"


def participant(live_server: Any, name: str) -> tuple[Client, str]:
    token = live_server.client().account_create(name, role="participant")["token"]
    return Client(live_server.url, token), token


def wait_over(client: Client, submission_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = client.submission_get(submission_id)
        if found["status"] in ("finished", "failed", "cancelled"):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.2)


def test_failed_prediction_step_says_why_and_shows_its_logs(live_server, tmp_path: Path,
                                                            run) -> None:
    admin = live_server.client()
    bench = admin.bench_import(make_bundle(tmp_path / "b", kind="code"), run_on_host=True)
    phase = bench["phases"][0]["id"]
    alice, alice_token = participant(live_server, "alice")
    bob, _ = participant(live_server, "bob")
    sub = alice.submission_submit(phase, make_submission(tmp_path / "a", "code", BROKEN),
                                  kind="code")
    # no worker yet: nothing has started
    waiting = alice.submission_get(sub["id"])
    assert waiting["status"] == "queued"
    assert [(s["step"], s["state"]) for s in waiting["steps"]] == [
        ("prediction", "queued"), ("scoring", "queued")]
    assert "queued" in ok(run("submission", "show", sub["id"], token=alice_token)).stdout

    with running_worker(live_server, tmp_path, concurrency=1):
        done = wait_over(alice, sub["id"])
    assert done["status"] == "failed"
    prediction = done["steps"][0]
    assert (prediction["step"], prediction["state"], prediction["exit_code"]) == (
        "prediction", "failed", 3)
    assert prediction["reason"].startswith("exit code 3")
    error = done["attempts_detail"][0]["runs"][0]["error"]
    assert error.startswith("the prediction step (task ") and "exit code 3" in error
    assert done["steps"][1]["state"] != "succeeded"

    # the participant's own program's log, the prediction step's
    log, _, _ = alice.submission_log_page(sub["id"], step="prediction", stream="stderr")
    assert b"my code is broken" in log
    shown = ok(run("submission", "show", sub["id"], token=alice_token)).stdout
    assert "exit code 3" in shown and "prediction" in shown
    # with no --step, the logs are the failed step's
    logs = ok(run("submission", "logs", sub["id"], "-e", token=alice_token))
    assert "my code is broken" in logs.stdout
    # the GUI page: the step, its state and reason, the participant's log tail
    gui = GuiClient(live_server.app.test_client())
    gui.sign_in(alice_token)
    html = gui.get(f"/ui/submissions/{sub['id']}").get_data(as_text=True)
    assert 'id="steps-table"' in html and "exit code 3" in html
    tail = gui.get(f"/ui/submissions/{sub['id']}/log?step=prediction&stream=stderr").json
    assert "my code is broken" in tail["text"]
    # another participant sees nothing of it
    try:
        bob.submission_get(sub["id"])
        raise AssertionError("bob read alice's submission")
    except NotFound:
        pass
    try:
        bob.submission_log_page(sub["id"], step="prediction", stream="stderr")
        raise AssertionError("bob read alice's logs")
    except NotFound:
        pass


def test_step_over_the_time_limit_says_it_timed_out(live_server, tmp_path: Path, run) -> None:
    admin = live_server.client()
    bench = admin.bench_import(make_bundle(tmp_path / "b", kind="code",
                                           phase_extra={"execution_time_limit": 2}),
                               run_on_host=True)
    phase = bench["phases"][0]["id"]
    _, carol_token = participant(live_server, "carol")
    with running_worker(live_server, tmp_path, concurrency=1):
        result = run("submission", "submit", phase, make_submission(tmp_path / "c", "code",
                                                                    SLOW),
                     "--kind", "code", "--wait", token=carol_token)
    fails(result, "failed", "timed out")
    progress = [line for line in result.stderr.splitlines() if line.startswith("submission ")]
    assert any(line.endswith(": prediction running") for line in progress), progress
    assert progress[-1].endswith(": failed; prediction failed: timed out"), progress
    sub_id = int(progress[-1].split()[1].rstrip(":"))
    logs = ok(run("submission", "logs", sub_id, "--step", "prediction", "-e",
                  token=carol_token))
    assert "thinking" in logs.stdout


def test_scoring_runs_on_an_empty_prediction(live_server, tmp_path: Path) -> None:
    """A prediction step that writes nothing: the scoring program still runs, on an
    empty res/ folder, and decides (here: it scores the number of files it found)."""
    scoring = ("test -d /app/input/res || exit 9; f=$(ls -A /app/input/res | wc -l); "
               "printf '{\"score\": 1, \"error\": %s, \"prediction\": 0}' $f "
               "> /app/output/scores.json")
    bundle = make_bundle(tmp_path / "b", kind="code", ingestion_command="echo no output",
                         scoring_command=scoring)
    bench = live_server.client().bench_import(bundle, run_on_host=True)
    dora, _ = participant(live_server, "dora")
    sub = dora.submission_submit(bench["phases"][0]["id"],
                                 make_submission(tmp_path / "d", "code"), kind="code")
    with running_worker(live_server, tmp_path, concurrency=1):
        done = wait_over(dora, sub["id"])
    assert done["status"] == "finished", done
    assert done["scores"]["main"]["0"]["error"] == 0  # res/ was there, and empty
    assert [s["state"] for s in done["steps"]] == ["succeeded", "succeeded"]
