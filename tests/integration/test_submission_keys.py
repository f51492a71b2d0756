"""Submission keys on both databases: a key names an entry of its owner on a phase, so
submitting it again answers the existing submission (200, ``existing``) and stores,
creates and counts nothing; concurrent submits of one key make one submission and
leave one stored zip; the list filters by key; the bulk client resumes by key and
writes its scores file."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from scitq_bench.client import Client
from scitq_bench.exceptions import InvalidInput, NotFound
from tests.support.api import FakeWorker, account, import_bundle, submit
from tests.support.bundles import make_bundle, make_submission
from tests.support.cli import fails, ok


@pytest.fixture
def phase(api: Any, tmp_path: Path) -> int:
    answer = import_bundle(api, make_bundle(tmp_path / "bundle"))
    assert answer.status_code == 201, answer.json
    return answer.json["phases"][0]["id"]


def stored_zips(data_dir: Path) -> list[Path]:
    return sorted(data_dir.rglob("submissions/*/submission.zip"))


def test_a_key_submitted_again_answers_the_existing_submission(api, settings, phase,
                                                               tmp_path) -> None:
    alice, bob = account(api, "alice"), account(api, "bob")
    first = submit(api, phase, alice, make_submission(tmp_path / "a", "result", 40),
                   "?key=model-a")
    assert first.status_code == 201, first.json
    assert (first.json["key"], first.json["existing"]) == ("model-a", False)
    data_dir = settings.data_dir
    assert len(stored_zips(data_dir)) == 1
    # the same key with another zip: the key names the entry, nothing new is stored
    again = submit(api, phase, alice, make_submission(tmp_path / "b", "result", 99),
                   "?key=model-a")
    assert again.status_code == 200, again.json
    assert again.json["id"] == first.json["id"] and again.json["existing"] is True
    assert again.json["size_bytes"] == first.json["size_bytes"]
    assert len(stored_zips(data_dir)) == 1
    # another owner's key space is its own; another key is another submission
    bobs = submit(api, phase, bob, make_submission(tmp_path / "c", "result", 41),
                  "?key=model-a")
    other = submit(api, phase, alice, make_submission(tmp_path / "d", "result", 41),
                   "?key=model-b")
    assert (bobs.status_code, other.status_code) == (201, 201)
    assert len({first.json["id"], bobs.json["id"], other.json["id"]}) == 3
    listed = api.get("/submissions?key=model-a", token=alice).json
    assert [s["id"] for s in listed] == [first.json["id"]]
    assert [s["key"] for s in api.get("/submissions", token=alice).json] == [
        "model-b", "model-a"]
    assert {s["id"] for s in api.get(f"/submissions?phase={phase}&key=model-a").json} == {
        first.json["id"], bobs.json["id"]}
    assert api.get("/submissions?key=nothing", token=alice).json == []
    assert api.get("/submissions?key=a%00b", token=alice).status_code == 400


def test_an_existing_key_counts_nothing_against_the_quota(api, phase, tmp_path) -> None:
    alice = account(api, "alice")
    assert api.patch(f"/phases/{phase}", json={"max_submissions": 1}).status_code == 200
    first = submit(api, phase, alice, make_submission(tmp_path / "a"), "?key=k1")
    assert first.status_code == 201, first.json
    for _ in range(3):  # the quota is reached, yet the key answers its submission
        again = submit(api, phase, alice, make_submission(tmp_path / "a"), "?key=k1")
        assert (again.status_code, again.json["id"]) == (200, first.json["id"])
    refused = submit(api, phase, alice, make_submission(tmp_path / "a"), "?key=k2")
    assert refused.status_code == 409 and "quota reached" in refused.json["message"]
    assert len(api.get(f"/submissions?phase={phase}").json) == 1


@pytest.mark.parametrize("key, message", [
    ("", "1 to 255"), ("x" * 256, "1 to 255"), ("a\nb", "control character"),
    ("tab\there", "control character"),
])
def test_bad_keys_are_refused_and_store_nothing(api, settings, phase, tmp_path, key,
                                                message) -> None:
    alice = account(api, "alice")
    answer = api.post(f"/phases/{phase}/submissions", query_string={"key": key},
                      data=make_submission(tmp_path / "a").read_bytes(), token=alice,
                      headers={"Content-Type": "application/zip"})
    assert answer.status_code == 400 and message in answer.json["message"], answer.json
    assert stored_zips(settings.data_dir) == []
    assert api.get("/submissions").json == []


def test_an_existing_key_on_an_unknown_phase_is_not_found(api, phase, tmp_path) -> None:
    alice = account(api, "alice")
    assert submit(api, phase, alice, make_submission(tmp_path / "a"), "?key=k").status_code \
        == 201
    assert submit(api, phase + 1000, alice, make_submission(tmp_path / "a"),
                  "?key=k").status_code == 404


def test_concurrent_submits_of_one_key_make_one_submission(live_server, tmp_path) -> None:
    """Eight uploads of one key at once, over real HTTP: one submission, created once,
    the others answered with it; one zip in the store (the losers' discarded)."""
    admin = live_server.client()
    phase = admin.bench_import(make_bundle(tmp_path / "bundle"))["phases"][0]["id"]
    token = admin.account_create("alice")["token"]
    body = make_submission(tmp_path / "a").read_bytes()
    start = threading.Barrier(8)
    answers: list[requests.Response] = []

    def post() -> None:
        start.wait()
        answers.append(requests.post(
            f"{live_server.url}/api/v1/phases/{phase}/submissions", params={"key": "same"},
            data=body, headers={"Authorization": f"Bearer {token}"}, timeout=60))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201], \
        [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(not a.json()["existing"] for a in answers) == 1
    assert len(admin.submission_list(phase=phase)) == 1
    assert len(stored_zips(live_server.settings.data_dir)) == 1


def test_bulk_evaluation_resumes_by_key_and_writes_scores(live_server, api, tmp_path) -> None:
    """The bulk client: a folder of entries (zips and a sub-folder), some already
    submitted; nothing submitted twice; scores in CSV and JSON as they land."""
    admin = live_server.client()
    bench = admin.bench_import(make_bundle(tmp_path / "bundle"))
    phase = bench["phases"][0]["id"]
    alice = Client(live_server.url, admin.account_create("alice")["token"], retry_for=0)
    entries = tmp_path / "entries"
    for key, prediction in (("m1", 40), ("m2", 41), ("m3", 45)):
        make_submission(entries, "result", prediction, name=f"{key}.zip")
    (entries / "m4").mkdir()
    (entries / "m4" / "prediction.txt").write_text("30\n")
    (entries / "notes.txt").write_text("not an entry\n")
    early = alice.submission_submit(phase, entries / "m2.zip", key="m2")
    scores_csv = tmp_path / "out" / "scores.csv"
    rows = alice.submission_bulk(phase, entries, scores_path=scores_csv, wait=False)
    assert [(r["key"], r["status"]) for r in rows] == [
        ("m1", "queued"), ("m2", "queued"), ("m3", "queued"), ("m4", "queued")]
    assert rows[1]["submission_id"] == early["id"]
    listed = alice.submission_list(phase=phase)
    assert sorted(s["key"] for s in listed) == ["m1", "m2", "m3", "m4"]
    with scores_csv.open() as handle:
        assert [r["key"] for r in csv.DictReader(handle)] == ["m1", "m2", "m3", "m4"]
    # a worker scores them: 100 - |prediction - 42|
    worker = FakeWorker(api)
    by_task = {e["task_id"]: e for e in worker.claim()}
    for submission in listed:
        full = alice.submission_get(submission["id"])
        task = full["attempts_detail"][0]["runs"][0]["scoring_task"]["id"]
        prediction = {"m1": 40, "m2": 41, "m3": 45, "m4": 30}[submission["key"]]
        error = abs(prediction - 42)
        if submission["key"] == "m3":
            worker.finish(by_task[task], status="failed", return_code=1)
        else:
            worker.finish(by_task[task], scores={"score": 100 - error, "error": error,
                                                 "prediction": prediction})
    scores_json = tmp_path / "out" / "scores.json"
    again = alice.submission_bulk(phase, entries, scores_path=scores_json, interval=0.1,
                                  timeout=30)
    assert len(alice.submission_list(phase=phase)) == 4  # nothing submitted twice
    assert [(r["key"], r["status"], r.get("main.score")) for r in again] == [
        ("m1", "finished", 98), ("m2", "finished", 99), ("m3", "failed", None),
        ("m4", "finished", 88)]
    assert json.loads(scores_json.read_text()) == again
    assert not list(scores_json.parent.glob(".*.tmp"))


def test_bulk_refuses_bad_entries_before_sending_anything(live_server, tmp_path) -> None:
    admin = live_server.client()
    phase = admin.bench_import(make_bundle(tmp_path / "bundle"))["phases"][0]["id"]
    empty = tmp_path / "empty"
    empty.mkdir()
    scores = tmp_path / "scores.csv"
    with pytest.raises(InvalidInput, match="no entries"):
        admin.submission_bulk(phase, empty, scores_path=scores)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        admin.submission_bulk(phase, tmp_path / "missing", scores_path=scores)
    with pytest.raises(InvalidInput, match="appears twice"):
        admin.submission_bulk(phase, [("k", make_submission(tmp_path / "a")),
                                      ("k", make_submission(tmp_path / "b"))],
                              scores_path=scores)
    with pytest.raises(InvalidInput, match=r"\.csv or \.json"):
        admin.submission_bulk(phase, [make_submission(tmp_path / "a")],
                              scores_path=tmp_path / "scores.txt")
    with pytest.raises(NotFound):
        admin.submission_bulk(phase + 1000, [make_submission(tmp_path / "a")],
                              scores_path=scores)
    assert not scores.exists()
    assert admin.submission_list() == []



def test_bulk_command_from_a_list(run, live_server, tmp_path) -> None:
    """``submission bulk --list``: paths relative to the list, keys, an image entry;
    --no-wait writes the statuses and says what it did in one line; a second run
    submits nothing."""
    admin = live_server.client()
    bundle = make_bundle(tmp_path / "bundle",
                         phase_extra={"accepts_only_result_submissions": False})
    phase = admin.bench_import(bundle)["phases"][0]["id"]
    token = admin.account_create("alice")["token"]
    make_submission(tmp_path / "lists" / "zips", "result", 40, name="a.zip")
    make_submission(tmp_path / "lists" / "zips", "result", 41, name="b.zip")
    listing = tmp_path / "lists" / "entries.tsv"
    listing.write_text("# one entry a line\nzips/a.zip\n\nsecond\tzips/b.zip\n"
                       "img\tbusybox:latest\techo 42\n")
    scores = tmp_path / "scores.json"
    first = ok(run("submission", "bulk", phase, "--list", listing, "--scores", scores,
                   "--no-wait", token=token))
    assert "3 submitted, 0 already there, 0 scored, 0 failed" in first.stdout
    rows = json.loads(scores.read_text())
    assert [(r["key"], r["status"]) for r in rows] == [
        ("a", "queued"), ("second", "queued"), ("img", "queued")]
    kinds = {s["key"]: s["kind"] for s in Client(live_server.url, token).submission_list()}
    assert kinds == {"a": "result", "second": "result", "img": "image"}
    again = ok(run("submission", "bulk", phase, "--list", listing, "--scores", scores,
                   "--no-wait", token=token))
    assert "0 submitted, 3 already there" in again.stdout
    assert len(admin.submission_list(phase=phase)) == 3


def test_bulk_command_errors_name_the_problem(run, live_server, tmp_path) -> None:
    admin = live_server.client()
    phase = admin.bench_import(make_bundle(tmp_path / "bundle"))["phases"][0]["id"]
    scores = tmp_path / "out.csv"
    empty = tmp_path / "empty"
    empty.mkdir()
    fails(run("submission", "bulk", phase, tmp_path / "nowhere", "--scores", scores),
          "nowhere: no such folder")
    fails(run("submission", "bulk", phase, empty, "--scores", scores),
          "empty: no entries")
    bad = tmp_path / "bad.tsv"
    bad.write_text("k\ta.zip\textra\tfields\n")
    fails(run("submission", "bulk", phase, "--list", bad, "--scores", scores),
          "bad.tsv:1:", "KEY<TAB>PATH")
    missing = tmp_path / "missing.tsv"
    missing.write_text("k\tnot-there.zip\n")
    fails(run("submission", "bulk", phase, "--list", missing, "--scores", scores),
          "not-there.zip: no such file")
    entries = tmp_path / "entries"
    make_submission(entries, name="one.zip")
    fails(run("submission", "bulk", phase, entries, "--scores", tmp_path / "out.txt"),
          ".csv or .json")
    fails(run("submission", "bulk", phase + 1000, entries, "--scores", scores),
          f"phase {phase + 1000}")
    fails(run("submission", "bulk", phase, "--scores", scores), "FOLDER", code=2)
    assert not scores.exists() and admin.submission_list() == []
