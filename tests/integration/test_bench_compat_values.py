"""Bundles and scores as Codabench takes them, through the API, the CLI, the GUI and a
real worker (both databases): month-first dates, exact leaderboard values (precision
for display only), a phase's only leaderboard found without its key, phase updates
refused when phases would overlap, and scores files with extra keys of any kind."""

from __future__ import annotations

import copy
import csv
import io
import shutil
from pathlib import Path
from typing import Any

import pytest

from scitq_bench.server.bench.boards import display_text, exact_text
from tests.support.api import FakeWorker, account, import_bundle, submit
from tests.support.bundles import make_bundle, make_submission
from tests.support.cli import as_json, fails, ok
from tests.support.gui import GuiClient
from tests.support.workers import executions, finish, running_worker

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap is not installed")
THIRD = 1 / 3


def _second_board(doc: dict[str, Any]) -> None:
    boards = doc["leaderboards"]
    other = copy.deepcopy(boards[0])
    other.update({"key": "other", "title": "Other"})
    boards.append(other)


# -- dates ---------------------------------------------------------------------------------


def test_a_month_day_year_bundle_imports_through_the_cli(run: Any, tmp_path: Path) -> None:
    source = make_bundle(tmp_path / "src", phases=2, phase_extra=[
        {"start": "1/2/2026", "end": "3-4-2026 12:30"}, {"start": "Mar 4 2026 12:30"}])
    bench = as_json(run("bench", "import", source, "--json"))
    assert [(p["start"], p["end"]) for p in bench["phases"]] == [
        ("2026-01-02T00:00:00Z", "2026-03-04T12:30:00Z"), ("2026-03-04T12:30:00Z", None)]


def test_an_unparseable_date_is_refused_naming_the_field(api: Any, tmp_path: Path) -> None:
    answer = import_bundle(api, make_bundle(tmp_path, phase_extra={"start": "31/31/2026"}))
    assert answer.status_code == 400, answer.json
    assert "phases[0].start: '31/31/2026' is not a date" in str(answer.json)


# -- exact values ----------------------------------------------------------------------------


def test_leaderboards_carry_exact_values(api: Any, run: Any, app: Any, admin_token: str,
                                         tmp_path: Path) -> None:
    bench = import_bundle(api, make_bundle(tmp_path)).json
    phase, key = bench["phases"][0]["id"], bench["leaderboards"][0]["key"]
    alice, bob = account(api, "alice"), account(api, "bob")
    for token, folder in ((alice, "a"), (bob, "b")):
        assert submit(api, phase, token, make_submission(tmp_path / folder, "result",
                                                          40)).status_code == 201
    worker = FakeWorker(api)
    claimed = sorted(worker.claim(), key=lambda e: e["task_id"])
    worker.finish(claimed[0], scores={"score": THIRD, "error": 2, "prediction": 40})
    worker.finish(claimed[1], scores={"score": 0.25, "error": 1e-7, "prediction": 7})

    board = api.get(f"/phases/{phase}/leaderboards/{key}").json
    first, second = board["rows"]
    assert first["scores"]["0"] == {"score": THIRD, "error": 2.0, "prediction": 40.0}
    assert first["display"]["0"] == {"score": "0.33", "error": "2.000", "prediction": "40.00"}
    assert second["scores"]["0"] == {"score": 0.25, "error": 1e-7, "prediction": 7.0}
    assert second["display"]["0"]["error"] == "0.000"

    text = api.get(f"/phases/{phase}/leaderboards/{key}/csv").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][-3:] == ["Score", "Error", "Prediction"]
    assert rows[1][-3:] == [repr(THIRD), "2", "40"]
    assert rows[2][-3:] == ["0.25", "1e-07", "7"]
    assert [float(v) for v in rows[1][-3:]] == [THIRD, 2.0, 40.0]

    table = ok(run("leaderboard", "show", phase, key)).stdout.splitlines()
    assert table[2].split()[-3:] == ["0.33", "2.000", "40.00"]
    assert ok(run("leaderboard", "export", phase, key)).stdout_bytes.decode() == text

    gui = GuiClient(app.test_client())
    gui.sign_in(admin_token)
    html = gui.get(f"/ui/phases/{phase}/leaderboards/{key}").get_data(as_text=True)
    # whole numbers without decimals where the bundle gave no precision; error keeps 3
    assert ">0.33<" in html and ">2.000<" in html and ">40<" in html
    assert ">40.00<" not in html


@pytest.mark.parametrize("value, exact, shown_default, shown_three", [
    (THIRD, "0.3333333333333333", "0.33", "0.333"),
    (2.0, "2", "2", "2.000"),
    (-0.0, "0", "0", "0.000"),
    (1e20, "1e+20", "100000000000000000000.00", "100000000000000000000.000"),
    (-2.5e-9, "-2.5e-09", "0.00", "0.000"),
    (None, "", "", ""),
    (float("nan"), "", "", ""),
])
def test_exact_and_displayed_text(value: float | None, exact: str, shown_default: str,
                                  shown_three: str) -> None:
    assert exact_text(value) == exact
    if exact:
        assert float(exact) == value
    assert display_text(value, 2) == shown_default
    assert display_text(value, 3) == shown_three


# -- leaderboard show without a key ----------------------------------------------------------


def test_leaderboard_show_needs_no_key_for_a_phase_with_one_board(
        run: Any, api: Any, live_server: Any, tmp_path: Path) -> None:
    one = live_server.client().bench_import(make_bundle(tmp_path / "one"))
    phase = one["phases"][0]["id"]
    alice = account(api, "alice")
    ok(run("submission", "submit", phase, make_submission(tmp_path / "s", "result", 40),
           token=alice))
    worker = FakeWorker(api)
    claimed = worker.claim()
    assert len(claimed) == 1, claimed
    worker.finish(claimed[0], scores={"score": 5, "error": 1})
    shown = ok(run("leaderboard", "show", phase, token=alice)).stdout
    assert "alice" in shown and "(main, phase" in shown
    assert as_json(run("leaderboard", "show", phase, "--json")) == \
        live_server.client().leaderboard(phase, "main")

    two = live_server.client().bench_import(make_bundle(tmp_path / "two", edit=_second_board))
    fails(run("leaderboard", "show", two["phases"][0]["id"]),
          "has 2 leaderboards; give KEY, one of: main, other")
    assert "Other" in ok(run("leaderboard", "show", two["phases"][0]["id"], "other")).stdout
    fails(run("leaderboard", "show", 999), "no phase 999")


# -- phase updates and overlaps --------------------------------------------------------------


OVERLAP = ("phases overlap: 'Phase 1' (phases[1]) starts 2021-01-01 00:00:00, before "
           "'Phase 0' (phases[0]) ends 2021-06-01 00:00:00")


def test_a_phase_update_that_makes_phases_overlap_is_refused(api: Any, run: Any,
                                                             tmp_path: Path) -> None:
    bench = import_bundle(api, make_bundle(tmp_path, phases=2)).json
    first, second = (p["id"] for p in bench["phases"])
    answer = api.patch(f"/phases/{first}", json={"end": "2021-06-01T00:00:00Z"})
    assert answer.status_code == 400, answer.json
    assert OVERLAP in str(answer.json)
    fails(run("phase", "update", first, "--end", "6/1/2021"), OVERLAP)
    fails(run("phase", "update", first, "--no-end"), "'Phase 0' (phases[0]) has no end")
    fails(run("phase", "update", second, "--start", "2020-12-31T23:00:00+02:00"),
          "phases overlap: 'Phase 1' (phases[1]) starts 2020-12-31 21:00:00, before "
          "'Phase 0' (phases[0]) ends 2021-01-01 00:00:00")
    current = api.get(f"/benchmarks/{bench['id']}").json["phases"]
    assert [(p["start"], p["end"]) for p in current] == [
        (p["start"], p["end"]) for p in bench["phases"]]  # nothing was changed

    moved = as_json(run("phase", "update", first, "--end", "12/1/2020", "--json"))
    assert moved["end"] == "2020-12-01T00:00:00Z"
    later = api.patch(f"/phases/{second}", json={"start": "2020-12-01T00:00:00Z"})
    assert later.status_code == 200, later.json


# -- scores files through a real worker ------------------------------------------------------


@needs_bwrap
def test_scores_with_extra_keys_through_a_worker(live_server: Any, tmp_path: Path) -> None:
    """A Codabench-layout scoring run whose scores.json holds nested objects, lists,
    text and booleans beside the columns: the columns are taken, the rest ignored; a
    column that is not a number fails the run naming the key."""
    cases = {
        "nested": ("echo '{\"accuracy\": \"0.5\", \"n\": true, \"details\": {\"a\": [1]}, "
                   "\"note\": \"ok\", \"flags\": [true, null]}' > $OUTPUT/scores.json"),
        "text": "printf 'accuracy: 0.25\\nnote: fine\\nn: false\\n' > $OUTPUT/scores.txt",
        "bad": "echo '{\"accuracy\": {\"mean\": 1}, \"n\": 1}' > $OUTPUT/scores.json",
    }
    client = live_server.client()
    with running_worker(live_server, tmp_path, concurrency=3):
        tasks = client.tasks_create(
            [{"command": command, "shell": True, "layout": "codabench",
              "score_keys": ["accuracy", "n"], "output": f"file://{tmp_path / case}",
              "name": case} for case, command in cases.items()])
        done = finish(client, tasks, timeout=30)
    found = {task["name"]: executions(client, task["id"])[-1] for task in done}
    assert found["nested"]["status"] == "succeeded", found["nested"]
    assert found["nested"]["scores"] == {"accuracy": 0.5, "n": 1.0}
    assert found["text"]["status"] == "succeeded", found["text"]
    assert found["text"]["scores"] == {"accuracy": 0.25, "n": 0.0}
    bad = found["bad"]
    assert (bad["status"], bad["reason"]) == ("failed", "score_not_numeric")
    assert "'accuracy'" in bad["error"] and "an object" in bad["error"]
