"""The Python client's benchmark methods against a live server (both databases).

No worker runs here: scores come from ``FakeWorker``, which plays one through the
worker API (claims and reports)."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from scitq_bench.client import Client
from scitq_bench.exceptions import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
)
from tests.support.api import FakeWorker
from tests.support.bundles import make_bundle, make_submission, submission_files, write_tree


def participant(live_server: Any, name: str) -> Client:
    answer = live_server.client().account_create(name)
    return Client(live_server.url, answer["token"], retry_for=0)


def scoring_task(submission: dict[str, Any], attempt: int = -1) -> int:
    return submission["attempts_detail"][attempt]["runs"][0]["scoring_task"]["id"]


def score(worker: FakeWorker, submissions: dict[int, dict[str, Any]],
          values: dict[int, dict[str, float]]) -> None:
    """Claim every queued execution and report the scores given per submission id."""
    by_task = {e["task_id"]: e for e in worker.claim()}
    for submission_id, scores in values.items():
        worker.finish(by_task[scoring_task(submissions[submission_id])], scores=scores)


def zip_names(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return sorted(archive.namelist())


def test_bundles_import_from_a_zip_and_from_a_folder(live_server, tmp_path: Path) -> None:
    client = live_server.client()
    zipped = client.bench_import(make_bundle(tmp_path / "z"), key="zipped")
    folder = client.bench_import(make_bundle(tmp_path / "f", zipped=False, tasks=2,
                                             title="Folder bundle"),
                                 key="folder", visibility="private")
    assert (zipped["key"], zipped["title"], zipped["visibility"]) == (
        "zipped", "Test competition", "public")
    assert (folder["key"], folder["title"], folder["visibility"]) == (
        "folder", "Folder bundle", "private")
    assert [t["name"] for t in folder["tasks"]] == ["Task 0", "Task 1"]
    assert [c["key"] for c in folder["leaderboards"][0]["columns"]] == [
        "score", "error", "prediction"]
    assert [b["key"] for b in client.bench_list()] == ["zipped", "folder"]
    assert client.bench_get(folder["id"])["phases"] == folder["phases"]
    assert client.bench_delete(zipped["id"]) == {"deleted": zipped["id"]}
    with pytest.raises(NotFound, match=f"{zipped['id']}"):
        client.bench_get(zipped["id"])
    assert [b["key"] for b in client.bench_list()] == ["folder"]
    with pytest.raises(FileNotFoundError):
        client.bench_import(tmp_path / "absent.zip")


def test_accounts_tokens_and_me(live_server) -> None:
    admin = live_server.client()
    created = admin.account_create("carol", role="organizer", email="carol@example.org")
    assert created["account"]["role"] == "organizer" and created["token"]
    carol = Client(live_server.url, created["token"], retry_for=0)
    assert carol.me()["account"]["name"] == "carol"
    assert admin.me()["role"] == "admin"
    assert [(a["name"], a["email"]) for a in admin.account_list()] == [
        ("carol", "carol@example.org")]
    with pytest.raises(Conflict, match="exists already"):
        admin.account_create("carol")
    with pytest.raises(InvalidInput):
        admin.account_create("carol", role="root")
    with pytest.raises(Forbidden):
        carol.account_list()
    renewed = admin.account_token(created["account"]["id"], revoke_others=True)
    with pytest.raises(Unauthorized):
        carol.me()
    carol.set_token(renewed["token"])
    assert carol.me()["account"]["id"] == created["account"]["id"]
    assert admin.account_delete(created["account"]["id"]) == {
        "deleted": created["account"]["id"]}
    assert admin.account_list() == []
    with pytest.raises(NotFound, match="no account"):
        admin.account_delete(created["account"]["id"])


def test_submissions_from_a_zip_and_a_folder_are_scored_and_ranked(
        live_server, api, tmp_path: Path) -> None:
    admin = live_server.client()
    bench = admin.bench_import(make_bundle(tmp_path / "bundle"))
    phase, key = bench["phases"][0]["id"], bench["leaderboards"][0]["key"]
    alice, bob = participant(live_server, "alice"), participant(live_server, "bob")
    first = alice.submission_submit(phase, make_submission(tmp_path / "a", "result", 40),
                                    name="forty")
    folder = write_tree(tmp_path / "bob-files", submission_files("result", 45))
    second = bob.submission_submit(phase, folder)
    assert (first["status"], first["name"], first["owner"]) == ("queued", "forty", "alice")
    assert second["kind"] == "result" and second["size_bytes"] > 0
    # the folder arrived as a zip of its files
    stored = [f["path"] for f in admin.file_list("submissions")]
    uploads = {p: zip_names(admin.request("GET", f"/files/{p}").content) for p in stored}
    assert sorted(uploads.values()) == [["prediction.txt"], ["prediction.txt"]]

    with pytest.raises(TimeoutError, match=f"{first['id']}, {second['id']}"):
        admin.submission_wait([first, second], timeout=0.2, interval=0.05)
    score(FakeWorker(api), {first["id"]: first, second["id"]: second},
          {first["id"]: {"score": 98, "error": 2}, second["id"]: {"score": 97, "error": 3}})
    done = admin.submission_wait([first["id"], second["id"]], timeout=10, interval=0.05)
    assert [s["status"] for s in done] == ["finished", "finished"]
    assert done[0]["scores"][key]["0"] == {"score": 98.0, "error": 2.0}

    board = bob.leaderboard(phase, key)
    assert board["total"] == 2 and board["title"] == "Results"
    assert [(r["rank"], r["owner"]) for r in board["rows"]] == [(1, "alice"), (2, "bob")]
    assert board["rows"][1]["display"]["0"] == {"score": "97.00", "error": "3.000"}
    assert bob.leaderboard(phase, key, offset=1, limit=1)["rows"][0]["owner"] == "bob"
    rows = list(csv.reader(io.StringIO(bob.leaderboard_csv(phase, key))))
    assert rows[0][0] == "rank" and rows[0][-2:] == ["Score", "Error"]
    owner = rows[0].index("owner")
    assert [(r[0], r[owner], r[-2], r[-1]) for r in rows[1:]] == [
        ("1", "alice", "98", "2"), ("2", "bob", "97", "3")]  # exact values, not display

    assert [s["id"] for s in alice.submission_list()] == [first["id"]]
    assert [s["id"] for s in admin.submission_list(phase=phase)] == [second["id"], first["id"]]
    assert admin.submission_list(benchmark=bench["id"], status="running") == []
    assert len(admin.submission_list(limit=1)) == 1
    detail = alice.submission_get(first["id"])
    assert detail["attempts_detail"][0]["runs"][0]["scoring_task"]["status"] == "succeeded"
    with pytest.raises(NotFound):
        alice.submission_get(second["id"])


def test_logs_and_outputs_of_a_step(live_server, api, tmp_path: Path) -> None:
    admin = live_server.client()
    bench = admin.bench_import(make_bundle(tmp_path / "bundle"))
    alice = participant(live_server, "alice")
    sub = alice.submission_submit(bench["phases"][0]["id"],
                                  make_submission(tmp_path, "result", 42))
    worker = FakeWorker(api)
    (execution,) = worker.claim()
    for stream, text in (("stdout", b"scored prediction 42\n"), ("stderr", b"a warning\n")):
        answer = api.put(f"/executions/{execution['execution_id']}/logs/{stream}?offset=0",
                         data=text, token=worker.token)
        assert answer.status_code == 200, answer.json
    admin.file_put(execution["output"].removeprefix("server://") + "scores.json",
                   b'{"score": 100, "error": 0}')
    worker.finish(execution, scores={"score": 100, "error": 0})

    assert alice.submission_logs(sub["id"]) == b"scored prediction 42\n"
    assert alice.submission_logs(sub["id"], stream="stderr", offset=2) == b"warning\n"
    assert alice.submission_log_page(sub["id"], attempt=1, run=0)[1:] == (21, "succeeded")
    assert alice.submission_outputs(sub["id"]) == [{"path": "scores.json", "size": 26}]
    target = tmp_path / "out" / "scores.json"
    assert alice.submission_output_download(sub["id"], "scores.json", target) == 26
    assert target.read_bytes() == b'{"score": 100, "error": 0}'


def test_leaderboard_choice_reruns_cancel_and_deletes(live_server, api,
                                                     tmp_path: Path) -> None:
    admin = live_server.client()
    bench = admin.bench_import(make_bundle(tmp_path / "bundle", leaderboard_extra={
        "submission_rule": "Add_And_Delete"}))
    phase = bench["phases"][0]["id"]
    alice = participant(live_server, "alice")
    sub = alice.submission_submit(phase, make_submission(tmp_path, "result", 42))
    assert alice.submission_logs(sub["id"]) == b""  # no execution yet
    with pytest.raises(NotFound, match="did not run"):
        alice.submission_logs(sub["id"], step="prediction")
    with pytest.raises(NotFound, match="no attempt 5"):
        alice.submission_logs(sub["id"], attempt=5)
    with pytest.raises(Conflict, match="no scores yet"):
        alice.submission_leaderboard(sub["id"], True)
    worker = FakeWorker(api)
    (execution,) = worker.claim()
    worker.finish(execution, scores={"score": 100, "error": 0})

    assert alice.submission_leaderboard(sub["id"], True)["on_leaderboard"] is True
    assert alice.submission_leaderboard(sub["id"], False)["on_leaderboard"] is False

    with pytest.raises(Forbidden):
        alice.submission_rerun(sub["id"])
    again = admin.submission_rerun(sub["id"])
    assert (again["attempts"], again["status"]) == (2, "queued")
    with pytest.raises(Conflict, match="still running"):
        admin.submission_rerun(sub["id"])
    assert admin.phase_rerun(phase) == {"rerun": []}  # the only one is running
    cancelled = alice.submission_cancel(sub["id"])
    assert cancelled["attempts_detail"][-1]["status"] == "cancelled"
    with pytest.raises(Conflict, match="not running"):
        alice.submission_cancel(sub["id"])
    assert admin.phase_rerun(phase) == {"rerun": [sub["id"]]}
    with pytest.raises(Conflict, match="original attempt"):
        admin.attempt_delete(sub["id"], 1)
    admin.submission_cancel(sub["id"])
    kept = admin.attempt_delete(sub["id"], 3)
    assert [a["number"] for a in kept["attempts_detail"]] == [1, 2]
    assert admin.submission_delete(sub["id"]) == {"deleted": sub["id"]}
    assert admin.submission_list() == []


def test_refusals_raise_the_projects_exceptions_with_the_servers_message(
        live_server, tmp_path: Path) -> None:
    admin = live_server.client()
    with pytest.raises(InvalidInput, match=r"competition\.yaml.*line"):
        admin.bench_import(make_bundle(tmp_path / "bad", raw_yaml="version: 2\ntitle: [x\n"))
    assert admin.bench_list() == []
    bench = admin.bench_import(make_bundle(tmp_path / "bundle"))
    phase, key = bench["phases"][0]["id"], bench["leaderboards"][0]["key"]
    alice = participant(live_server, "alice")
    with pytest.raises(Forbidden):
        alice.bench_import(make_bundle(tmp_path / "other"))
    with pytest.raises(InvalidInput, match="accepts only result submissions"):
        alice.submission_submit(phase, make_submission(tmp_path / "c", "code"), kind="code")
    with pytest.raises(InvalidInput, match="needs its zip"):
        alice.submission_submit(phase)

    admin.phase_update(phase, max_submissions_per_day=1)
    path = make_submission(tmp_path / "s", "result", 42)
    alice.submission_submit(phase, path)
    with pytest.raises(Conflict, match="daily quota reached") as refused:
        alice.submission_submit(phase, path)
    assert refused.value.details and "resets_at" in refused.value.details

    updated = admin.phase_update(phase, max_submissions_per_day=None,
                                 start=datetime(2020, 1, 1), end="2021-01-01T00:00:00Z")
    assert (updated["start"], updated["end"]) == ("2020-01-01T00:00:00Z",
                                                  "2021-01-01T00:00:00Z")
    with pytest.raises(Conflict, match="is closed"):
        alice.submission_submit(phase, path)
    with pytest.raises(InvalidInput, match="not after start"):
        admin.phase_update(phase, end=datetime(2019, 1, 1))
    with pytest.raises(NotFound, match="no leaderboard 'nope'"):
        alice.leaderboard(phase, "nope")
    with pytest.raises(NotFound):
        alice.leaderboard_csv(phase + 100, key)
    with pytest.raises(NotFound):
        alice.submission_get(999)
