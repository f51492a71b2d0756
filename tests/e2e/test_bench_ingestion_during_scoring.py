"""Tasks whose ingestion program runs only during scoring, end to end through a real
worker: the scoring step runs the scoring program and the ingestion program at once,
and they talk through /app/shared (the scorer waits for the answer the ingestion
writes there), so a score proves both ran in one step. On the host (the bubblewrap
sandbox) and in the busybox image on a real engine, on both databases."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.bundles import make_bundle, make_submission
from tests.support.containers import engine_for
from tests.support.engine import TEST_IMAGE
from tests.support.gui import GuiClient
from tests.support.workers import running_worker

pytestmark = pytest.mark.e2e

# The ingestion: the first number in the submission's files, plus one, to the scorer
# through /app/shared; a submission holding a file named "fail" makes it fail after.
INGESTION = (
    "n=$(cat $submission_program/* 2>/dev/null | awk '/^[0-9]+$/ { print; exit }'); "
    "echo \"ingestion read ${n:-nothing} in $(pwd)\"; echo 'ingestion stderr line' >&2; "
    "echo $(( ${n:-0} + 1 )) > $shared/answer.tmp && mv $shared/answer.tmp $shared/answer; "
    "if [ -e $submission_program/fail ]; then echo 'ingestion gives up' >&2; exit 5; fi"
)
# The scorer: waits for the ingestion's answer; score = the answer, error = how many
# entries res/ holds (0 proves an empty prediction reached it empty).
SCORING = (
    "i=0; while [ ! -f /app/shared/answer ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; "
    "a=$(cat /app/shared/answer) || exit 7; f=$(ls -A /app/input/res | wc -l); "
    "printf '{\"score\": %s, \"error\": %s, \"prediction\": %s}' $a $f $a "
    "> /app/output/scores.json; echo \"scorer got $a\""
)


@pytest.fixture
def api(live_server: Any) -> Any:
    return Api(live_server.url, live_server.token)


class Api:
    """Just enough HTTP (the client's own methods are tested apart)."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url + "/api/v1", token

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        answer = requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)
        if answer.status_code >= 400:
            raise AssertionError(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer.json() if "json" in answer.headers.get("Content-Type", "") else answer

    def wait(self, ids: list[int], timeout: float = 120) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [self.call("GET", f"/submissions/{i}") for i in ids]
            if all(s["status"] in ("finished", "failed", "cancelled") for s in found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"not over: {[(s['id'], s['status']) for s in found]}")
            time.sleep(0.2)


def _bundle(root: Path, **options: Any) -> Path:
    return make_bundle(root, kind="code", scoring_command=SCORING, ingestion_command=INGESTION,
                       task_extra={"ingestion_only_during_scoring": True}, **options)


def _submit(api: Api, phase: int, token: str, path: Path, kind: str) -> dict[str, Any]:
    return api.call("POST", f"/phases/{phase}/submissions?kind={kind}", token=token,
                    data=path.read_bytes())


def _check_together(api: Api, phase: int, tmp_path: Path, app: Any) -> None:
    """Three submissions: results (no prediction step), code that predicts nothing (an
    empty res/), code without metadata whose ingestion fails (the step fails, saying
    it was the ingestion)."""
    erin = api.call("POST", "/accounts", json={"name": "erin"})["token"]
    results = _submit(api, phase, erin, make_submission(tmp_path / "r", "result", 41), "result")
    silent = _submit(api, phase, erin, make_submission(
        tmp_path / "s", "code", {"metadata.yaml": "command: echo predicting nothing\n"}), "code")
    failing = _submit(api, phase, erin, make_submission(
        tmp_path / "f", "code", {"prediction.txt": "9\n", "fail": ""}), "code")
    done, empty, failed = api.wait([results["id"], silent["id"], failing["id"]])

    assert done["status"] == "finished", done
    assert done["scores"]["main"]["0"]["score"] == 42  # 41 read by the ingestion, plus one
    assert done["scores"]["main"]["0"]["error"] == 1  # res/ held the prediction file
    (step,) = done["steps"]
    assert (step["step"], step["state"], step["with_ingestion"]) == ("scoring", "succeeded",
                                                                      True)
    sid = done["id"]
    scoring_log = api.call("GET", f"/submissions/{sid}/logs", token=erin).content
    assert b"scorer got 42" in scoring_log and b"ingestion read" not in scoring_log
    out = api.call("GET", f"/submissions/{sid}/logs?part=ingestion", token=erin).content
    assert b"ingestion read 41 in /app/ingestion_program" in out
    err = api.call("GET", f"/submissions/{sid}/logs?part=ingestion&stream=stderr",
                   token=erin).content
    assert err == b"ingestion stderr line\n"
    files = api.call("GET", f"/submissions/{sid}/outputs", token=erin)["files"]
    assert [f["path"] for f in files] == ["scores.json"]  # the logs are no output file
    gui = GuiClient(app.test_client())
    gui.sign_in(erin)
    html = gui.get(f"/ui/submissions/{sid}").get_data(as_text=True)
    assert "scoring step, ingestion program" in html
    tail = gui.get(f"/ui/submissions/{sid}/ingestion-log?step=scoring&stream=stdout").json
    assert "ingestion read 41" in tail["text"] and tail["done"] is True

    assert empty["status"] == "finished", empty
    assert empty["scores"]["main"]["0"]["score"] == 1  # the ingestion read nothing
    assert empty["scores"]["main"]["0"]["error"] == 0  # res/ was there, empty
    assert [s["state"] for s in empty["steps"]] == ["succeeded", "succeeded"]

    assert failed["status"] == "failed", failed
    scoring = next(s for s in failed["steps"] if s["step"] == "scoring")
    assert (scoring["state"], scoring["exit_code"]) == ("failed", 5)
    assert "exit code 5" in scoring["reason"]
    assert "the scoring step" in failed["attempts_detail"][0]["error"]
    fid = failed["id"]
    why = api.call("GET", f"/submissions/{fid}/logs?stream=stderr", token=erin).content
    assert b"ingestion program failed (exit code 5)" in why
    assert b"scoring program failed" not in why
    assert b"ingestion gives up" in api.call(
        "GET", f"/submissions/{fid}/logs?part=ingestion&stream=stderr", token=erin).content


def test_ingestion_beside_the_scorer_on_the_host(live_server, api, tmp_path) -> None:
    bench = api.call("POST", "/benchmarks?run_on_host=true",
                     data=_bundle(tmp_path / "b").read_bytes())
    with running_worker(live_server, tmp_path, concurrency=3):
        _check_together(api, bench["phases"][0]["id"], tmp_path, live_server.app)


def test_ingestion_beside_the_scorer_in_a_container(live_server, api, tmp_path,
                                                    docker_client) -> None:
    bench = api.call("POST", "/benchmarks",
                     data=_bundle(tmp_path / "b", docker_image=TEST_IMAGE).read_bytes())
    name = f"w-{uuid.uuid4().hex[:10]}"
    with running_worker(live_server, tmp_path, name, concurrency=3,
                        engine=engine_for(docker_client, tmp_path, name)):
        _check_together(api, bench["phases"][0]["id"], tmp_path, live_server.app)


def test_the_time_limit_covers_both_programs(live_server, api, tmp_path) -> None:
    """The scorer is done at once but the ingestion never ends: the step times out."""
    bundle = make_bundle(tmp_path / "b", kind="code", ingestion_command="echo begun; sleep 60",
                         scoring_command="echo '{\"score\": 1}' > /app/output/scores.json",
                         task_extra={"ingestion_only_during_scoring": True},
                         phase_extra={"execution_time_limit": 3})
    bench = api.call("POST", "/benchmarks?run_on_host=true", data=bundle.read_bytes())
    fay = api.call("POST", "/accounts", json={"name": "fay"})["token"]
    started = time.monotonic()
    with running_worker(live_server, tmp_path, concurrency=1):
        sub = _submit(api, bench["phases"][0]["id"], fay,
                      make_submission(tmp_path / "s", "result", 1), "result")
        (done,) = api.wait([sub["id"]], timeout=40)
    assert time.monotonic() - started < 40
    assert done["status"] == "failed", done
    (step,) = done["steps"]
    assert (step["state"], step["reason"]) == ("failed", "timed out")
    assert "timed out" in (done["attempts_detail"][0]["error"] or ""), done["attempts_detail"]
