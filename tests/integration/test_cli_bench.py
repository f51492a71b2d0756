"""The benchmark commands (account, bench, phase, submission, leaderboard) against a
live server (both databases), through click's test runner. No worker runs here: scores
come from ``FakeWorker``, which plays one through the worker API."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from scitq_bench.client import Client
from scitq_bench.exceptions import Unauthorized
from tests.support.api import FakeWorker
from tests.support.bundles import make_bundle, make_submission, submission_files, write_tree
from tests.support.cli import as_json, fails, ok
from tests.support.waiting import wait_until

Invoke = Callable[..., Result]


def token_of(live_server: Any, name: str, role: str = "participant") -> str:
    return live_server.client().account_create(name, role=role)["token"]


def imported(live_server: Any, root: Path, **options: Any) -> dict[str, Any]:
    return live_server.client().bench_import(make_bundle(root, **options))


def scoring_executions(worker: FakeWorker, expected: int) -> list[dict[str, Any]]:
    claimed = worker.claim()
    assert len(claimed) == expected, claimed
    return claimed


def test_accounts(run: Invoke, live_server: Any) -> None:
    created = ok(run("account", "create", "alice"))
    token = created.stdout.strip()
    assert created.stdout == token + "\n"  # the token alone: TOKEN=$(...) works
    assert "not shown again" in created.stderr and "'alice'" in created.stderr
    assert Client(live_server.url, token).me()["account"]["name"] == "alice"
    carol = as_json(run("account", "create", "carol", "--role", "organizer",
                        "--email", "carol@example.org", "--json"))
    assert carol["account"]["role"] == "organizer" and carol["token"]
    listed = as_json(run("account", "list", "--json"))
    assert [(a["name"], a["role"], a["email"]) for a in listed] == [
        ("alice", "participant", None), ("carol", "organizer", "carol@example.org")]
    table = ok(run("account", "list")).stdout
    assert "alice" in table and "carol@example.org" in table
    fails(run("account", "create", "alice"), "exists already")
    fails(run("account", "list", token=token), "Error:")

    renewed = ok(run("account", "token", "alice", "--revoke-others"))
    assert "revoked" in renewed.stderr and "not shown again" in renewed.stderr
    with pytest.raises(Unauthorized):
        Client(live_server.url, token, retry_for=0).me()
    again = as_json(run("account", "token", str(carol["account"]["id"]), "--json"))
    assert again["account"]["name"] == "carol"
    assert Client(live_server.url, again["token"]).me()["role"] == "organizer"
    fails(run("account", "token", "bob"), "no account 'bob'")
    fails(run("account", "delete", "bob"), "no account 'bob'")
    assert "account alice deleted" in ok(run("account", "delete", "alice")).stdout
    assert as_json(run("account", "delete", "carol", "--json")) == {
        "deleted": carol["account"]["id"]}
    assert as_json(run("account", "list", "--json")) == []


def test_bench_import_list_show_delete(run: Invoke, live_server: Any, tmp_path: Path) -> None:
    said = ok(run("bench", "import", make_bundle(tmp_path / "z"), "--key", "zipped")).stdout
    assert said.startswith("benchmark 1 imported: zipped")
    folder = as_json(run("bench", "import", make_bundle(tmp_path / "f", zipped=False, tasks=2,
                                                        phases=2, title="Two tasks"),
                         "--private", "--json"))
    assert (folder["title"], folder["visibility"]) == ("Two tasks", "private")
    shown = as_json(run("bench", "show", folder["id"], "--json"))
    readiness = shown.pop("readiness")  # what the import's answer does not hold
    assert shown == folder
    assert readiness["ready"] is False
    assert {w["reason"] for w in readiness["warnings"]} == {"no worker is up"}
    listed = as_json(run("bench", "list", "--json"))
    assert [b["key"] for b in listed] == ["zipped", folder["key"]]
    assert "Two tasks" in ok(run("bench", "list")).stdout

    shown = ok(run("bench", "show", folder["id"])).stdout
    for fragment in ("phases", "Phase 0", "Phase 1", "2020-01-01 00:00:00", "never",
                     "Task 1", "leaderboard main: Results (Force_Last)", "Score", "Error",
                     "desc", "asc", "private"):
        assert fragment in shown, fragment

    bad = make_bundle(tmp_path / "bad", raw_yaml="version: 2\ntitle: [unclosed\n")
    error = fails(run("bench", "import", bad), "competition.yaml", "line")
    assert len(error.strip().splitlines()) == 1
    fails(run("bench", "import", tmp_path / "absent.zip"), "does not exist", code=2)
    organizer = token_of(live_server, "olga", "organizer")
    fails(run("bench", "import", make_bundle(tmp_path / "o"), "--run-on-host", token=organizer),
          "only an admin")
    participant = token_of(live_server, "paul")
    fails(run("bench", "import", make_bundle(tmp_path / "p"), token=participant), "Error:")
    fails(run("bench", "show", folder["id"], token=participant), "not", "found")
    assert len(as_json(run("bench", "list", "--json"))) == 2  # nothing half-made

    said = ok(run("bench", "task", 1, 0, "--gpu", "all", "--image", "localhost/s:1")).stdout
    assert said.strip() == "benchmark 1 task 0: gpu all, image localhost/s:1"
    task = as_json(run("bench", "task", 1, 0, "--gpu", "1", "--image", "", "--json"))
    assert (task["gpu"], task["image"]) == (1, None)
    fails(run("bench", "task", 1, 0, "--gpu", "two"), "two", code=2)
    fails(run("bench", "task", 1, 9, "--gpu", "1"), "no task 9")

    refused = run("bench", "delete", 1, input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
    assert "benchmark 1 deleted" in ok(run("bench", "delete", 1, "--yes")).stdout
    assert ok(run("bench", "delete", folder["id"], input="y\n"))
    fails(run("bench", "delete", 1, "--yes"), "not found")
    assert as_json(run("bench", "list", "--json")) == []


def test_phase_update(run: Invoke, live_server: Any, tmp_path: Path) -> None:
    phase = imported(live_server, tmp_path)["phases"][0]["id"]
    updated = as_json(run("phase", "update", phase, "--max-per-day", "1", "--max-mb", "2.5",
                          "--max-submissions", "3", "--time-limit", "60", "--hide-output",
                          "--any-kind", "--name", "Final", "--json"))
    assert (updated["max_submissions_per_day"], updated["max_submission_mb"],
            updated["max_submissions"], updated["execution_time_limit"], updated["hide_output"],
            updated["accepts_only_result_submissions"], updated["name"]) == (
        1, 2.5, 3, 60, True, False, "Final")
    said = ok(run("phase", "update", phase, "--start", "2020-01-01",
                  "--end", "2021-01-01T02:00:00+02:00")).stdout
    assert "open from 2020-01-01 00:00:00 to 2021-01-01 00:00:00" in said
    cleared = as_json(run("phase", "update", phase, "--no-end", "--max-per-day", "none",
                          "--show-output", "--result-only", "--json"))
    assert (cleared["end"], cleared["max_submissions_per_day"], cleared["hide_output"],
            cleared["accepts_only_result_submissions"]) == (None, None, False, True)
    assert cleared["max_submissions"] == 3  # untouched

    fails(run("phase", "update", phase), "nothing to update", code=2)
    fails(run("phase", "update", phase, "--end", "2030-01-01", "--no-end"), "not both", code=2)
    fails(run("phase", "update", phase, "--end", "yesterday"), "ISO date", code=2)
    fails(run("phase", "update", phase, "--max-per-day", "0"), "above 0", code=2)
    fails(run("phase", "update", phase, "--end", "2019-06-01"), "not after start")
    fails(run("phase", "update", 999, "--hide-output"), "999")
    participant = token_of(live_server, "paul")
    fails(run("phase", "update", phase, "--hide-output", token=participant), "Error:")


def test_submit_inspect_and_rank(run: Invoke, live_server: Any, api: Any,
                                 tmp_path: Path) -> None:
    bench = imported(live_server, tmp_path / "bundle")
    phase, key = bench["phases"][0]["id"], bench["leaderboards"][0]["key"]
    alice, bob = token_of(live_server, "alice"), token_of(live_server, "bob")
    said = ok(run("submission", "submit", phase, make_submission(tmp_path / "a", "result", 40),
                  "--name", "forty", token=alice)).stdout
    assert said == f"submission 1 submitted to phase {phase} (queued)\n"  # no step started
    folder = write_tree(tmp_path / "bob-files", submission_files("result", 45))
    second = as_json(run("submission", "submit", phase, folder, "--json", token=bob))
    assert (second["id"], second["owner"], second["kind"]) == (2, "bob", "result")

    mine = as_json(run("submission", "list", "--json", token=alice))
    assert [(s["id"], s["name"]) for s in mine] == [(1, "forty")]
    everything = as_json(run("submission", "list", "--phase", phase, "--status", "running",
                             "--json"))
    assert [s["id"] for s in everything] == [2, 1]
    assert as_json(run("submission", "list", "--benchmark", bench["id"], "--limit", 1,
                       "--json"))[0]["id"] == 2
    table = ok(run("submission", "list")).stdout
    assert "forty" in table and "bob" in table and "queued" in table
    shown = ok(run("submission", "show", 1, token=alice)).stdout
    for fragment in ("submission 1", "attempts", "runs", "running", "task 1 (pending)"):
        assert fragment in shown, fragment
    fails(run("submission", "show", 2, token=alice), "not found")
    # no execution yet: no log, and a result submission has no prediction step
    assert ok(run("submission", "logs", 1, token=alice)).stdout == ""
    fails(run("submission", "logs", 1, "--step", "prediction", token=alice), "did not run")

    worker = FakeWorker(api)
    by_task = {e["task_id"]: e for e in scoring_executions(worker, 2)}
    worker.finish(by_task[1], scores={"score": 98, "error": 2})
    worker.finish(by_task[2], scores={"score": 97, "error": 3})

    detail = as_json(run("submission", "show", 1, "--json", token=alice))
    assert detail == live_server.client().submission_get(1)
    assert detail["status"] == "finished"
    assert "main: score=98 error=2" in ok(run("submission", "show", 1)).stdout

    as_bob = Client(live_server.url, bob)
    board = ok(run("leaderboard", "show", phase, key, token=bob)).stdout.splitlines()
    header = board[1].split()
    assert header == ["rank", "owner", "submitted", "Score", "Error"]
    first, second_row = board[2].split(), board[3].split()
    assert (first[0], first[1], first[-2:]) == ("1", "alice", ["98.00", "2.000"])
    assert (second_row[0], second_row[1], second_row[-2:]) == ("2", "bob", ["97.00", "3.000"])
    page = as_json(run("leaderboard", "show", phase, key, "--offset", 1, "--limit", 1,
                       "--json", token=bob))
    assert page == as_bob.leaderboard(phase, key, offset=1, limit=1)
    assert [r["owner"] for r in page["rows"]] == ["bob"]
    paged = ok(run("leaderboard", "show", phase, key, "--limit", 1))
    assert "rows 1-1 of 2" in paged.stderr

    exported = ok(run("leaderboard", "export", phase, key, token=bob)).stdout_bytes.decode()
    assert exported == as_bob.leaderboard_csv(phase, key)  # bytes as served
    rows = list(csv.reader(io.StringIO(exported)))
    assert rows[0][0] == "rank" and rows[0][-2:] == ["Score", "Error"]
    owner = rows[0].index("owner")
    assert [r[owner] for r in rows[1:]] == ["alice", "bob"]
    target = tmp_path / "board.csv"
    written = ok(run("leaderboard", "export", phase, key, "-o", target, token=bob))
    assert "2 row(s) written" in written.stderr
    assert target.read_bytes().decode() == as_bob.leaderboard_csv(phase, key)
    fails(run("leaderboard", "show", phase, "nope"), "no leaderboard 'nope'")
    fails(run("leaderboard", "export", 999, key), "999")


def test_leaderboard_groups_columns_by_task(run: Invoke, live_server: Any, api: Any,
                                            tmp_path: Path) -> None:
    bench = imported(live_server, tmp_path, tasks=2)
    phase = bench["phases"][0]["id"]
    alice = token_of(live_server, "alice")
    ok(run("submission", "submit", phase, make_submission(tmp_path, "result", 47), token=alice))
    worker = FakeWorker(api)
    executions = sorted(scoring_executions(worker, 2), key=lambda e: e["task_id"])
    worker.finish(executions[0], scores={"score": 95, "error": 5})
    worker.finish(executions[1], scores={"score": 95, "error": 5})
    lines = ok(run("leaderboard", "show", phase, "main")).stdout.splitlines()
    for fragment in ("Task 0/Score", "Task 0/Error", "Task 1/Score", "Task 1/Error",
                     "Task 1/Prediction (hidden)"):  # organizers see hidden columns
        assert fragment in lines[1], lines
    assert lines[2].split()[-4:] == ["95.00", "5.000", "95.00", "5.000"]
    shown = ok(run("submission", "show", 1)).stdout
    assert "main[0]:" in shown and "main[1]:" in shown


def test_choose_rerun_cancel_and_delete(run: Invoke, live_server: Any, api: Any,
                                        tmp_path: Path) -> None:
    bench = imported(live_server, tmp_path / "bundle",
                     leaderboard_extra={"submission_rule": "Add_And_Delete"})
    phase = bench["phases"][0]["id"]
    alice = token_of(live_server, "alice")
    ok(run("submission", "submit", phase, make_submission(tmp_path, "result", 42), token=alice))
    fails(run("submission", "add", 1, token=alice), "no scores yet")
    worker = FakeWorker(api)
    worker.finish(scoring_executions(worker, 1)[0], scores={"score": 100, "error": 0})
    assert "is on the leaderboard" in ok(run("submission", "add", 1, token=alice)).stdout
    assert as_json(run("submission", "remove", 1, "--json", token=alice))["on_leaderboard"] \
        is False

    fails(run("submission", "rerun"), "one of them", code=2)
    fails(run("submission", "rerun", 1, "--phase", phase), "one of them", code=2)
    fails(run("submission", "rerun", 1, token=alice), "Error:")
    said = ok(run("submission", "rerun", 1)).stdout
    assert said == "submission 1 re-run: attempt 2 queued\n"  # no step started yet
    fails(run("submission", "rerun", 1), "still running")
    assert "0 submission(s) re-run" in ok(run("submission", "rerun", "--phase", phase)).stdout
    cancelled = as_json(run("submission", "cancel", 1, "--json", token=alice))
    assert cancelled["attempts_detail"][-1]["status"] == "cancelled"
    fails(run("submission", "cancel", 1), "not running")
    assert as_json(run("submission", "rerun", "--phase", phase, "--json")) == {"rerun": [1]}
    ok(run("submission", "cancel", 1))
    fails(run("submission", "delete", 1, "--attempt", 1), "original attempt")
    kept = as_json(run("submission", "delete", 1, "--attempt", 3, "--json"))
    assert [a["number"] for a in kept["attempts_detail"]] == [1, 2]
    fails(run("submission", "delete", 1, token=alice), "Error:")
    assert ok(run("submission", "delete", 1)).stdout == "submission 1 deleted\n"
    assert as_json(run("submission", "list", "--json")) == []


def test_refused_submissions(run: Invoke, live_server: Any, tmp_path: Path) -> None:
    phase = imported(live_server, tmp_path / "bundle")["phases"][0]["id"]
    alice = token_of(live_server, "alice")
    path = make_submission(tmp_path, "result", 42)
    fails(run("submission", "submit", phase, token=alice), "needs its PATH", code=2)
    fails(run("submission", "submit", phase, path, "--image", "busybox", token=alice),
          "no PATH", code=2)
    fails(run("submission", "submit", phase, "--image", "busybox", token=alice),
          "accepts only result submissions")
    fails(run("submission", "submit", phase, path, "--kind", "code", token=alice),
          "accepts only result submissions")
    ok(run("phase", "update", phase, "--max-per-day", 1))
    ok(run("submission", "submit", phase, path, token=alice))
    fails(run("submission", "submit", phase, path, token=alice), "daily quota reached",
          "resets at")
    ok(run("phase", "update", phase, "--max-per-day", "none", "--start", "2020-01-01",
           "--end", "2021-01-01"))
    error = fails(run("submission", "submit", phase, path, token=alice), "is closed")
    assert len(error.strip().splitlines()) == 1
    fails(run("submission", "submit", 999, path, token=alice), "999")
    assert len(as_json(run("submission", "list", "--json"))) == 1


def test_submit_and_wait(run: Invoke, live_server: Any, api: Any, tmp_path: Path) -> None:
    phase = imported(live_server, tmp_path / "bundle")["phases"][0]["id"]
    alice = token_of(live_server, "alice")
    worker = FakeWorker(api)

    def play(status: str, **fields: Any) -> threading.Thread:
        """Finish the next execution as soon as one can be claimed."""
        def finish() -> None:
            claimed = wait_until(worker.claim, timeout=20, interval=0.05,
                                 what="an execution to claim")
            worker.finish(claimed[0], status=status, **fields)
        thread = threading.Thread(target=finish, daemon=True)
        thread.start()
        return thread

    helper = play("succeeded", scores={"score": 98, "error": 2})
    done = ok(run("submission", "submit", phase, make_submission(tmp_path / "a", "result", 40),
                  "--wait", token=alice))
    helper.join(5)
    assert "waiting" in done.stderr
    assert done.stdout.startswith("submission 1 finished: main: ")
    assert "score=98" in done.stdout and "error=2" in done.stdout

    helper = play("failed", return_code=0, reason="scores_missing",
                  error="no scores.json or scores.txt in the output")
    failed = run("submission", "submit", phase, make_submission(tmp_path / "b", "result", 1),
                 "--wait", "--json", token=alice)
    helper.join(5)
    assert failed.exit_code == 1, failed.output
    assert json.loads(failed.stdout)["status"] == "failed"
    assert "submission 2 failed" in failed.stderr and "scores_missing" in failed.stderr


def test_logs_and_outputs(run: Invoke, live_server: Any, api: Any, tmp_path: Path) -> None:
    phase = imported(live_server, tmp_path / "bundle")["phases"][0]["id"]
    alice = token_of(live_server, "alice")
    ok(run("submission", "submit", phase, make_submission(tmp_path, "result", 42), token=alice))
    worker = FakeWorker(api)
    (execution,) = scoring_executions(worker, 1)
    for stream, text in (("stdout", b"scored 42\n"), ("stderr", b"a warning\n")):
        answer = api.put(f"/executions/{execution['execution_id']}/logs/{stream}?offset=0",
                         data=text, token=worker.token)
        assert answer.status_code == 200, answer.json
    store = execution["output"].removeprefix("server://")
    admin = live_server.client()
    admin.file_put(store + "scores.json", b'{"score": 100, "error": 0}')
    admin.file_put(store + "details/notes.txt", b"fine\n")
    worker.finish(execution, scores={"score": 100, "error": 0})

    logs = ok(run("submission", "logs", 1, token=alice))
    assert (logs.stdout, logs.stderr) == ("scored 42\n", "a warning\n")
    assert ok(run("submission", "logs", 1, "-e", "--attempt", 1, "--run", 0,
                  token=alice)).stdout == "a warning\n"
    assert ok(run("submission", "logs", 1, "-o", "-f", token=alice)).stdout == "scored 42\n"
    listed = as_json(run("submission", "outputs", 1, "--json", token=alice))
    assert sorted(f["path"] for f in listed) == ["details/notes.txt", "scores.json"]
    assert "scores.json" in ok(run("submission", "outputs", 1, token=alice)).stdout
    target = tmp_path / "downloaded"
    said = ok(run("submission", "outputs", 1, "--download", target, token=alice)).stdout
    assert "2 file(s) downloaded" in said
    assert (target / "details" / "notes.txt").read_bytes() == b"fine\n"
    assert (target / "scores.json").read_bytes() == b'{"score": 100, "error": 0}'
