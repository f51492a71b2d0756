"""Benchmarks end to end through real workers: bundles imported over HTTP, submissions
run as prediction and scoring tasks by a real worker agent (in the busybox image on a
real engine, or on the host in the bubblewrap sandbox), scores on the leaderboards.

The database plays no part here beyond what the API tests cover on both backends, so
these run on SQLite."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.bundles import SCORING_COMMAND, make_bundle, make_submission
from tests.support.containers import engine_for
from tests.support.engine import TEST_IMAGE
from tests.support.workers import running_worker

pytestmark = pytest.mark.e2e


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


class Api:
    """Just enough HTTP for these tests (the client's own methods are tested apart)."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url + "/api/v1", token

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        answer = requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)
        if answer.status_code >= 400:
            raise AssertionError(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer.json() if "json" in answer.headers.get("Content-Type", "") else answer

    def account(self, name: str) -> str:
        return self.call("POST", "/accounts", json={"name": name})["token"]

    def import_bundle(self, path: Path, query: str = "") -> dict[str, Any]:
        return self.call("POST", f"/benchmarks{query}", data=path.read_bytes())

    def submit(self, phase: int, token: str, path: Path, kind: str = "result") -> dict:
        return self.call("POST", f"/phases/{phase}/submissions?kind={kind}", token=token,
                         data=path.read_bytes())

    def wait(self, ids: list[int], timeout: float = 120) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [self.call("GET", f"/submissions/{i}") for i in ids]
            if all(s["status"] not in ("running", "queued") for s in found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"still running: {[s['id'] for s in found]}")
            time.sleep(0.2)


@pytest.fixture
def api(live_server) -> Api:
    return Api(live_server.url, live_server.token)


@pytest.fixture
def name() -> str:
    return f"w-{uuid.uuid4().hex[:10]}"


def scores_of(submission: dict[str, Any], task: str = "0") -> dict[str, float]:
    return submission["scores"]["main"][task]


def test_result_submissions_scored_in_containers(live_server, api, tmp_path, docker_client,
                                                 name) -> None:
    """Result submissions scored in the benchmark's image; a detailed results page;
    two participants on a Force_Best board; outputs and logs as the phase allows."""
    bundle = make_bundle(tmp_path / "b", docker_image=TEST_IMAGE,
                         scoring_command=SCORING_COMMAND + " && echo '<b>fine</b>' > "
                         "/app/output/detailed_results.html",
                         leaderboard_extra={"submission_rule": "Force_Best"})
    bench = api.import_bundle(bundle)
    phase = bench["phases"][0]["id"]
    alice, bob = api.account("alice"), api.account("bob")
    with running_worker(live_server, tmp_path, name, concurrency=3,
                        engine=engine_for(docker_client, tmp_path, name)):
        subs = [api.submit(phase, alice, make_submission(tmp_path / "a1", "result", 40)),
                api.submit(phase, alice, make_submission(tmp_path / "a2", "result", 43)),
                api.submit(phase, bob, make_submission(tmp_path / "b1", "result", 30))]
        done = api.wait([s["id"] for s in subs])
    assert [s["status"] for s in done] == ["finished"] * 3, done
    assert [scores_of(s)["error"] for s in done] == [2, 1, 12]
    board = api.call("GET", f"/phases/{phase}/leaderboards/main", token=bob)
    # Force_Best: alice's better submission only, then bob's
    assert [(r["owner"], r["submission_id"]) for r in board["rows"]] == [
        ("alice", subs[1]["id"]), ("bob", subs[2]["id"])]
    assert "prediction" not in board["rows"][0]["display"]["0"]  # a hidden column
    page = api.call("GET", f"/submissions/{subs[0]['id']}/detailed_results", token=alice)
    assert page.text.strip() == "<b>fine</b>"
    assert "sandbox" in page.headers["Content-Security-Policy"]
    outputs = api.call("GET", f"/submissions/{subs[0]['id']}/outputs", token=alice)["files"]
    assert {f["path"] for f in outputs} >= {"scores.json", "detailed_results.html"}
    log = api.call("GET", f"/submissions/{subs[0]['id']}/logs", token=alice)
    assert b"scored prediction 40 against reference 42" in log.content
    with pytest.raises(AssertionError, match="404"):
        api.call("GET", f"/submissions/{subs[2]['id']}", token=alice)


def test_code_submission_with_ingestion_on_the_host(live_server, api, tmp_path) -> None:
    """A code submission: the ingestion program runs the participant's code in the
    sandbox (never seeing the reference data), the scoring program scores what it
    predicted; two tasks in the phase, one column group each, a computed column."""
    columns = [
        {"title": "Score", "key": "score", "index": 0, "sorting": "desc"},
        {"title": "Error", "key": "error", "index": 1, "sorting": "asc", "precision": 3},
        {"title": "Prediction", "key": "prediction", "index": 2, "sorting": "desc",
         "hidden": True},
        {"title": "Best", "key": "best", "index": 3, "sorting": "desc",
         "computation": "max", "computation_indexes": [0, 1]},
    ]
    bundle = make_bundle(tmp_path / "b", kind="code", tasks=2, columns=columns)
    bench = api.import_bundle(bundle, "?run_on_host=true")
    assert bench["run_on_host"] and bench["docker_image"] is None
    phase = bench["phases"][0]["id"]
    carol = api.account("carol")
    # prints 0 (a bad guess) if the reference data is visible to the prediction step
    code = ('if [ -e /app/input/ref ] || ls /app/input 2>/dev/null | grep -q ref; then '
            'echo 0; else awk \'NF { print $1; exit }\' "$1/input.txt"; fi\n')
    with running_worker(live_server, tmp_path, concurrency=2):
        sub = api.submit(phase, carol, make_submission(tmp_path / "c", "code", code), "code")
        (done,) = api.wait([sub["id"]])
    assert done["status"] == "finished", done
    for task in ("0", "1"):
        assert scores_of(done, task)["error"] == 0
        assert scores_of(done, task)["best"] == 100  # max(score, error), computed
    run = done["attempts_detail"][0]["runs"][0]
    assert run["prediction_task"]["status"] == "succeeded"
    board = api.call("GET", f"/phases/{phase}/leaderboards/main")
    assert [t["key"] for t in board["tasks"]] == ["0", "1"]
    assert board["rows"][0]["display"]["1"]["best"] == "100.00"
    csv_text = api.call("GET", f"/phases/{phase}/leaderboards/main/csv").text
    assert csv_text.splitlines()[0].startswith("rank,owner,submission,submitted_at,0/Score")


def test_failures_reruns_and_attempt_history(live_server, api, tmp_path) -> None:
    """A submission whose scoring fails says why; a re-run is a new attempt with its own
    tasks; the leaderboard keeps the newest finished attempt's scores."""
    bundle = make_bundle(tmp_path / "b")
    bench = api.import_bundle(bundle, "?run_on_host=true")
    phase = bench["phases"][0]["id"]
    dave = api.account("dave")
    with running_worker(live_server, tmp_path, concurrency=2):
        bad = api.submit(phase, dave, make_submission(tmp_path / "x", "result", "no number"))
        good = api.submit(phase, dave, make_submission(tmp_path / "y", "result", 41))
        failed, finished = api.wait([bad["id"], good["id"]])
        assert failed["status"] == "failed"
        assert "no prediction" in api.call(
            "GET", f"/submissions/{bad['id']}/logs?stream=stderr", token=dave).text
        assert finished["status"] == "finished"
        again = api.call("POST", f"/submissions/{good['id']}/rerun")
        assert again["attempts"] == 2
        (rerun,) = api.wait([good["id"]])
    assert rerun["scored_attempt"] == 2
    first, second = rerun["attempts_detail"]
    assert (first["status"], second["status"]) == ("finished", "finished")
    assert first["runs"][0]["scoring_task"]["id"] != second["runs"][0]["scoring_task"]["id"]
    board = api.call("GET", f"/phases/{phase}/leaderboards/main")
    assert [r["submission_id"] for r in board["rows"]] == [good["id"]]  # Force_Last


def test_participants_choose_what_the_add_rules_show(live_server, api, tmp_path) -> None:
    bundle = make_bundle(tmp_path / "b", leaderboard_extra={"submission_rule": "Add_And_Delete"})
    bench = api.import_bundle(bundle, "?run_on_host=true")
    phase = bench["phases"][0]["id"]
    erin = api.account("erin")
    with running_worker(live_server, tmp_path, concurrency=2):
        first = api.submit(phase, erin, make_submission(tmp_path / "1", "result", 41))
        second = api.submit(phase, erin, make_submission(tmp_path / "2", "result", 42))
        api.wait([first["id"], second["id"]])
    board = f"/phases/{phase}/leaderboards/main"
    assert api.call("GET", board)["rows"] == []  # nothing until erin chooses
    api.call("PUT", f"/submissions/{first['id']}/leaderboard", token=erin, json={"on": True})
    assert [r["submission_id"] for r in api.call("GET", board)["rows"]] == [first["id"]]
    with pytest.raises(AssertionError, match="remove submission"):
        api.call("PUT", f"/submissions/{second['id']}/leaderboard", token=erin,
                 json={"on": True})
    api.call("PUT", f"/submissions/{first['id']}/leaderboard", token=erin, json={"on": False})
    api.call("PUT", f"/submissions/{second['id']}/leaderboard", token=erin, json={"on": True})
    assert [r["submission_id"] for r in api.call("GET", board)["rows"]] == [second["id"]]


def test_image_submission_predicts_in_its_own_image(live_server, api, tmp_path,
                                                    docker_client, name) -> None:
    """The participant's image runs the prediction step (its own command, the Codabench
    layout mounted), the benchmark's image scores it."""
    bundle = make_bundle(tmp_path / "b", docker_image=TEST_IMAGE,
                         phase_extra={"accepts_only_result_submissions": False})
    bench = api.import_bundle(bundle)
    phase = bench["phases"][0]["id"]
    frank = api.account("frank")
    command = "sh -c 'echo 42 > /app/output/prediction.txt'"
    with running_worker(live_server, tmp_path, name, concurrency=2,
                        engine=engine_for(docker_client, tmp_path, name)):
        sub = api.call("POST", f"/phases/{phase}/submissions", token=frank, params={
            "kind": "image", "image": TEST_IMAGE, "command": command})
        (done,) = api.wait([sub["id"]])
    assert done["status"] == "finished", done
    assert scores_of(done)["error"] == 0
    assert done["attempts_detail"][0]["runs"][0]["prediction_task"]["status"] == "succeeded"


@pytest.mark.parametrize(("rule", "chosen", "expected"), [
    ("Force_Last", {}, ["a2", "b1"]),
    ("Force_Best", {}, ["a2", "b1"]),
    ("Force_Latest_Multiple", {}, ["a2", "a1", "b1"]),
    ("Add", {"a1", "b1"}, ["a1", "b1"]),
    ("Add_And_Delete", {"a1", "b1"}, ["a1", "b1"]),
    ("Add_And_Delete_Multiple", {"a1", "a2", "b1"}, ["a2", "a1", "b1"]),
])
def test_every_submission_rule_through_real_workers(live_server, api, tmp_path, rule, chosen,
                                                    expected) -> None:
    """Two participants, scored by a real worker: each rule shows what it should (the
    Add rules: what the participants chose), in the ranking's order."""
    bundle = make_bundle(tmp_path / "b", leaderboard_extra={"submission_rule": rule})
    phase = api.import_bundle(bundle, "?run_on_host=true")["phases"][0]["id"]
    tokens = {"a": api.account("ann"), "b": api.account("ben")}
    with running_worker(live_server, tmp_path, concurrency=3):
        subs = {label: api.submit(phase, tokens[label[0]],
                                  make_submission(tmp_path / label, "result", value))
                for label, value in (("a1", 40), ("a2", 43), ("b1", 30))}
        api.wait([s["id"] for s in subs.values()])
    for label in sorted(chosen):
        api.call("PUT", f"/submissions/{subs[label]['id']}/leaderboard",
                 token=tokens[label[0]], json={"on": True})
    board = api.call("GET", f"/phases/{phase}/leaderboards/main")
    names = {s["id"]: label for label, s in subs.items()}
    assert [names[r["submission_id"]] for r in board["rows"]] == expected
