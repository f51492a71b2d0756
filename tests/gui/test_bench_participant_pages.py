"""A participant's pages in real headless Chromium: the benchmark page warns while no
worker can run the steps, the submit form says how many submissions are left, "My
submissions" shows each one's wait reason, then its score and rank, and the
participant's own row is highlighted on the leaderboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scitq_bench.client import Client
from tests.support.bundles import make_bundle, make_submission
from tests.support.gui import screenshot, sign_in


def _score(live_server: Any, scores: dict[int, float]) -> None:
    """Play a worker with a container engine: claim every step, report its score."""
    admin = live_server.client()
    registered = admin.worker_register(name="engine", concurrency=10, containers=True)
    worker = Client(live_server.url, registered["token"])
    worker_id = registered["worker"]["id"]
    by_task = {admin.submission_get(sid)["attempts_detail"][0]["runs"][0]["scoring_task"]["id"]:
               value for sid, value in scores.items()}
    claimed = worker.claim(worker_id, 10)
    assert len(claimed) == len(scores)
    worker.report(worker_id, [{"execution_id": e["execution_id"], "status": "succeeded",
                               "duration": 0.1, "scores": {"score": by_task[e["task_id"]]}}
                              for e in claimed])


def test_a_participant_sees_its_quota_its_submissions_and_its_row(live_server, page,
                                                                  tmp_path: Path) -> None:
    admin = live_server.client()
    bench = admin.bench_import(make_bundle(tmp_path / "bundle"))
    phase = bench["phases"][0]["id"]
    admin.phase_update(phase, max_submissions=5, max_submissions_per_day=3)
    alice = admin.account_create("alice")["token"]
    bob = admin.account_create("bob")["token"]

    sign_in(page, live_server.url, alice, f"/ui/benchmarks/{bench['id']}")
    page.wait_for_url(f"**/ui/benchmarks/{bench['id']}")
    assert "no worker is up" in page.inner_text("#bench-status .readiness-warning")
    assert "3 left today, 5 left in total" in page.inner_text("#submissions-left")

    # the form says what is left, before and after a submission
    page.goto(f"{live_server.url}/ui/benchmarks/{bench['id']}/submit?phase={phase}")
    assert "3 left today, 5 left in total" in page.inner_text(
        f"#submissions-left li[data-phase='{phase}']")
    assert "no worker is up" in page.inner_text(".readiness-warning")
    page.set_input_files("#f-file", str(make_submission(tmp_path / "a", "result", 40)))
    page.click("#submit-form button[type=submit]")
    page.wait_for_url("**/ui/submissions/*")
    mine = int(page.url.rstrip("/").rsplit("/", 1)[1])
    page.goto(f"{live_server.url}/ui/benchmarks/{bench['id']}/submit?phase={phase}")
    assert "2 left today, 4 left in total" in page.inner_text("#submissions-left")
    screenshot(page, "participant-submit")

    # my submissions: waiting, and why
    page.goto(f"{live_server.url}/ui/benchmarks/{bench['id']}")
    row = page.locator(f"#my-submissions tr[data-submission='{mine}']")
    assert row.locator(".waiting-reason").inner_text() == "queued: no worker is up"

    theirs = Client(live_server.url, bob).submission_submit(
        phase, make_submission(tmp_path / "b", "result", 41), kind="result")["id"]
    _score(live_server, {mine: 90.0, theirs: 95.0})

    # scored: its score and rank, the warning gone
    page.goto(f"{live_server.url}/ui/benchmarks/{bench['id']}")
    assert page.locator(".readiness-warning").count() == 0
    row = page.locator(f"#my-submissions tr[data-submission='{mine}']")
    key = bench["leaderboards"][0]["key"]
    board = Client(live_server.url, alice).leaderboard(phase, key)
    shown = next(r for r in board["rows"] if r["submission_id"] == mine)
    assert shown["rank"] == 2
    assert row.locator(".score").inner_text() == shown["display"]["0"]["score"]
    assert row.locator(".rank").inner_text() == "2"
    assert page.locator(f"#my-submissions tr[data-submission='{theirs}']").count() == 0
    screenshot(page, "participant-benchmark")

    # "My submissions": each with its score and rank, only its own
    page.goto(f"{live_server.url}/ui/submissions")
    row = page.locator(f"#my-standings tr[data-submission='{mine}']")
    assert row.locator(".score").inner_text() == shown["display"]["0"]["score"]
    assert row.locator(".rank").inner_text() == "2"
    assert page.locator("#my-standings tbody tr").count() == 1
    screenshot(page, "participant-submissions")

    # the leaderboard: its own row highlighted, nobody else's
    page.goto(f"{live_server.url}/ui/phases/{phase}/leaderboards/{key}")
    page.wait_for_selector("#board-live tr[data-submission]")
    own = page.locator(f"#board-live tr[data-submission='{mine}']")
    assert own.get_attribute("class") == "mine"
    assert own.get_attribute("aria-current") == "true"
    assert page.locator(f"#board-live tr[data-submission='{theirs}']").get_attribute(
        "class") is None
    assert page.locator("#board-live tr.mine").count() == 1
    highlighted = own.evaluate("row => getComputedStyle(row).backgroundColor")
    other = page.locator(f"#board-live tr[data-submission='{theirs}']").evaluate(
        "row => getComputedStyle(row).backgroundColor")
    assert highlighted != other
    screenshot(page, "participant-leaderboard")
