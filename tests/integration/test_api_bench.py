"""The benchmark API on both databases: accounts and their least privilege, bundle
import, submissions becoming queue tasks, scores landing on the leaderboard, quotas,
re-runs and attempt history. A worker is played through the worker API here (claims
and reports); real workers run the same flow in tests/e2e/test_benchmarks.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.api import FakeWorker, account, import_bundle, register, submit
from tests.support.bundles import make_bundle, make_submission


@pytest.fixture
def bench(api: Any, tmp_path: Path) -> dict[str, Any]:
    answer = import_bundle(api, make_bundle(tmp_path))
    assert answer.status_code == 201, answer.json
    return answer.json


def test_import_describes_the_benchmark(api, bench) -> None:
    assert bench["title"] == "Test competition"
    assert [p["name"] for p in bench["phases"]] and bench["phases"][0]["tasks"] == [0]
    board = bench["leaderboards"][0]
    assert [c["key"] for c in board["columns"]] == ["score", "error", "prediction"]
    assert bench["docker_image"]  # the bundle's or Codabench's default image
    listed = api.get("/benchmarks").json
    assert [b["id"] for b in listed] == [bench["id"]]


def test_participant_tokens_reach_only_the_benchmark_api(api, bench) -> None:
    token = account(api, "alice")
    assert api.get("/tasks", token=token).status_code == 403
    assert api.get("/files", token=token).status_code == 403
    assert api.get("/workers", token=token).status_code == 403
    assert api.get(f"/benchmarks/{bench['id']}", token=token).status_code == 200
    assert api.delete(f"/benchmarks/{bench['id']}", token=token).status_code == 403
    assert api.post("/accounts", json={"name": "x"}, token=token).status_code == 403
    me = api.get("/me", token=token).json
    assert me["role"] == "participant" and me["account"]["name"] == "alice"
    # a worker token does not reach benchmarks either
    _, worker_token = register(api, "w-any")
    assert api.get("/benchmarks", token=worker_token).status_code == 403


def test_result_submission_is_scored_and_ranked(api, bench, tmp_path) -> None:
    alice, bob = account(api, "alice"), account(api, "bob")
    phase = bench["phases"][0]["id"]
    first = submit(api, phase, alice, make_submission(tmp_path / "a", "result", 40))
    assert first.status_code == 201, first.json
    second = submit(api, phase, bob, make_submission(tmp_path / "b", "result", 44))
    assert second.status_code == 201
    worker = FakeWorker(api)
    claimed = worker.claim()
    assert len(claimed) == 2
    payload = claimed[0]
    assert payload["layout"] == "codabench"
    assert payload["score_keys"] == ["error", "prediction", "score"]
    assert any(uri.endswith("|unzip|mv:input/ref") for uri in payload["inputs"])
    assert any(uri.endswith("|unzip|mv:input/res") for uri in payload["inputs"])
    assert payload["command"] == "sh /app/program/score.sh /app/input /app/output"
    assert payload["run_timeout"] == 600
    by_task = {p["task_id"]: p for p in claimed}
    subs = {s["id"]: s for s in (first.json, second.json)}
    scores = {first.json["id"]: {"score": 98.0, "error": 2.0},
              second.json["id"]: {"score": 98.0, "error": 2.0}}
    for sub_id, values in scores.items():
        task_id = subs[sub_id]["attempts_detail"][0]["runs"][0]["scoring_task"]["id"]
        worker.finish(by_task[task_id], scores=values)
    done = api.get(f"/submissions/{first.json['id']}", token=alice).json
    assert done["status"] == "finished"
    assert done["scores"] == {"main": {"0": {"score": 98.0, "error": 2.0}}} or \
        list(done["scores"].values())[0] == {"0": {"score": 98.0, "error": 2.0}}
    key = bench["leaderboards"][0]["key"]
    board = api.get(f"/phases/{phase}/leaderboards/{key}", token=bob).json
    assert board["total"] == 2
    # equal scores: the earlier submission ranks first
    assert [r["submission_id"] for r in board["rows"]] == [first.json["id"], second.json["id"]]
    assert [r["owner"] for r in board["rows"]] == ["alice", "bob"]
    assert board["rows"][0]["display"]["0"]["error"] == "2.000"
    csv_text = api.get(f"/phases/{phase}/leaderboards/{key}/csv", token=bob).get_data(
        as_text=True)
    assert csv_text.splitlines()[0].startswith("rank,")
    assert "alice" in csv_text and "bob" in csv_text
    # participants see only their own submissions
    mine = api.get("/submissions", token=alice).json
    assert [s["id"] for s in mine] == [first.json["id"]]
    assert api.get(f"/submissions/{second.json['id']}", token=alice).status_code == 404


def test_failed_scoring_fails_the_submission_with_the_reason(api, bench, tmp_path) -> None:
    alice = account(api, "alice")
    phase = bench["phases"][0]["id"]
    sub = submit(api, phase, alice, make_submission(tmp_path, "result", 1)).json
    worker = FakeWorker(api)
    (execution,) = worker.claim()
    worker.finish(execution, status="failed", return_code=0, reason="scores_missing",
                  error="no scores.json or scores.txt in the output")
    done = api.get(f"/submissions/{sub['id']}", token=alice).json
    assert done["status"] == "failed" and done["scores"] is None
    error = done["attempts_detail"][0]["error"]
    assert "scores_missing" in error


def test_quotas_and_phase_dates_are_enforced_with_clear_messages(api, bench, tmp_path) -> None:
    alice = account(api, "alice")
    phase = bench["phases"][0]["id"]
    assert api.patch(f"/phases/{phase}", json={"max_submissions_per_day": 1}).status_code == 200
    path = make_submission(tmp_path, "result", 42)
    assert submit(api, phase, alice, path).status_code == 201
    refused = submit(api, phase, alice, path)
    assert refused.status_code == 409
    assert "daily quota reached" in refused.json["message"]
    assert "resets at" in refused.json["message"]
    assert api.patch(f"/phases/{phase}", json={
        "max_submissions_per_day": None, "end": "2021-01-01T00:00:00Z",
        "start": "2020-01-01T00:00:00Z"}).status_code == 200
    closed = submit(api, phase, alice, path)
    assert closed.status_code == 409 and "is closed" in closed.json["message"]
    assert api.patch(f"/phases/{phase}", json={"end": None, "max_submission_mb": 0.0001}
                     ).status_code == 200
    big = submit(api, phase, alice, make_submission(tmp_path / "big", "result", "9" * 500))
    assert big.status_code == 413
    assert len(api.get("/submissions", token=alice).json) == 1  # nothing half-made


def test_code_submission_refused_by_result_only_phase(api, bench, tmp_path) -> None:
    alice = account(api, "alice")
    phase = bench["phases"][0]["id"]
    answer = submit(api, phase, alice, make_submission(tmp_path, "code"), "?kind=code")
    assert answer.status_code == 400
    assert "accepts only result submissions" in answer.json["message"]


def test_code_submission_runs_ingestion_then_scoring(api, tmp_path) -> None:
    bench = import_bundle(api, make_bundle(tmp_path, kind="code")).json
    alice = account(api, "alice")
    phase = bench["phases"][0]["id"]
    sub = submit(api, phase, alice, make_submission(tmp_path, "code"), "?kind=code").json
    worker = FakeWorker(api)
    (prediction,) = worker.claim()  # scoring waits for the prediction
    assert prediction["command"].startswith("sh /app/program/ingest.sh")
    targets = {uri.rsplit("mv:", 1)[-1] for uri in prediction["inputs"]}
    assert targets == {"input_data", "ingested_program", "program", "ingestion_program"}
    assert prediction["score_keys"] is None
    worker.finish(prediction)
    (scoring,) = worker.claim()
    assert any("/prediction/|mv:input/res" in uri for uri in scoring["inputs"])
    worker.finish(scoring, scores={"score": 100, "error": 0})
    assert api.get(f"/submissions/{sub['id']}", token=alice).json["status"] == "finished"


def test_rerun_keeps_history_and_original(api, bench, tmp_path) -> None:
    alice = account(api, "alice")
    phase = bench["phases"][0]["id"]
    sub = submit(api, phase, alice, make_submission(tmp_path, "result", 40)).json
    worker = FakeWorker(api)
    worker.finish(worker.claim()[0], scores={"score": 98, "error": 2})
    assert api.post(f"/submissions/{sub['id']}/rerun", token=alice).status_code == 403
    again = api.post(f"/submissions/{sub['id']}/rerun").json
    assert again["attempts"] == 2 and again["status"] == "queued"  # no step started yet
    assert again["scores"] is not None  # the first attempt's scores stay meanwhile
    worker.finish(worker.claim()[0], scores={"score": 90, "error": 10})
    done = api.get(f"/submissions/{sub['id']}").json
    assert done["scored_attempt"] == 2
    assert list(done["scores"].values())[0]["0"]["score"] == 90
    assert api.delete(f"/submissions/{sub['id']}/attempts/1").status_code == 409
    assert api.delete(f"/submissions/{sub['id']}/attempts/2").status_code == 200
    back = api.get(f"/submissions/{sub['id']}").json
    assert back["scored_attempt"] == 1 and [a["number"] for a in back["attempts_detail"]] == [1]


def test_bad_bundle_leaves_nothing_behind(api, tmp_path, settings) -> None:
    bad = make_bundle(tmp_path, raw_yaml="version: 2\ntitle: [unclosed\n")
    answer = import_bundle(api, bad)
    assert answer.status_code == 400
    assert "competition.yaml" in answer.json["message"] and "line" in answer.json["message"]
    assert api.get("/benchmarks").json == []
    stored = settings.store_dir / "benchmarks"
    assert not stored.exists() or not any(stored.rglob("*"))


def test_organizer_manages_only_its_own_benchmarks(api, tmp_path) -> None:
    carol = account(api, "carol", "organizer")
    dave = account(api, "dave", "organizer")
    mine = import_bundle(api, make_bundle(tmp_path), token=carol, query="?visibility=private")
    assert mine.status_code == 201, mine.json
    assert import_bundle(api, make_bundle(tmp_path / "x"), token=carol,
                         query="?run_on_host=true").status_code == 403
    bench_id = mine.json["id"]
    assert api.get(f"/benchmarks/{bench_id}", token=dave).status_code == 404
    assert api.delete(f"/benchmarks/{bench_id}", token=dave).status_code == 404
    assert api.delete(f"/benchmarks/{bench_id}", token=carol).status_code == 200


def test_a_task_can_ask_for_gpus_and_an_image_of_its_own(api, bench, tmp_path) -> None:
    answer = api.patch(f"/benchmarks/{bench['id']}/tasks/0",
                       json={"gpu": 2, "image": "localhost/scorer:2"})
    assert answer.status_code == 200, answer.json
    assert answer.json["tasks"][0]["gpu"] == 2
    assert api.patch(f"/benchmarks/{bench['id']}/tasks/0", json={"image": "-x"}
                     ).status_code == 400
    assert api.patch(f"/benchmarks/{bench['id']}/tasks/7", json={"gpu": 1}).status_code == 404
    alice = account(api, "alice")
    submit(api, bench["phases"][0]["id"], alice, make_submission(tmp_path, "result", 1))
    worker = FakeWorker(api)
    assert worker.claim() == []  # a worker without GPUs never gets it
    gpu_id, gpu_token = register(api, "gpu-worker", concurrency=2, containers=True, gpus=2)
    (payload,) = api.post(f"/workers/{gpu_id}/claim?max=5", token=gpu_token).json["executions"]
    assert (payload["gpu"], payload["container"]) == (2, "localhost/scorer:2")


def test_phase_update_refuses_null_for_what_a_phase_always_has(api, bench) -> None:
    phase = bench["phases"][0]["id"]
    for field in ("name", "start", "execution_time_limit", "hide_output"):
        answer = api.patch(f"/phases/{phase}", json={field: None})
        assert answer.status_code == 400, (field, answer.json)
        assert field in answer.json["message"]
    assert api.patch(f"/phases/{phase}", json={"end": None}).status_code == 200
