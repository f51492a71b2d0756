"""Benchmarks in real headless Chromium with a real worker: a bundle imported from the
form, a submission uploaded from the form and scored on the host (bubblewrap sandbox),
the leaderboard and its chart updated live without a reload, the logs tailed, the
detailed results kept in a sandboxed frame, and markup in titles shown as text."""

from __future__ import annotations

from tests.support.bundles import SCORING_COMMAND, make_bundle, make_submission
from tests.support.gui import screenshot, sign_in
from tests.support.workers import running_worker

EVIL = "<script>window.__xss = 1</script>"
DETAILED = ("echo '<p id=\"d\">detailed</p><script>parent.document.title = \"owned\"</script>'"
            " > /app/output/detailed_results.html")


def test_import_submit_and_watch_the_leaderboard(live_server, page, tmp_path):
    bundle = make_bundle(tmp_path / "bundle", title=f"Guess {EVIL}",
                         scoring_command=f"{SCORING_COMMAND} && {DETAILED}")
    sign_in(page, live_server.url, live_server.token, "/ui/benchmarks")
    page.wait_for_url("**/ui/benchmarks")

    # import from the form (run on the host: the test worker has no container engine)
    page.set_input_files("#f-bundle", str(bundle))
    page.check("#f-run_on_host")
    page.click("#import-form button[type=submit]")
    page.wait_for_url("**/ui/benchmarks/*")
    assert page.inner_text("#bench-title") == f"Guess {EVIL}"  # text, not markup
    assert page.evaluate("window.__xss") is None
    assert "Phase 0" in page.inner_text("#phases-table")
    assert page.locator(".empty-board").count() == 1
    screenshot(page, "benchmark")

    # submit from the form: the submission's page, running
    page.click("#phases-table >> text=Submit")
    page.wait_for_url("**/submit?phase=*")
    page.set_input_files("#f-file", str(make_submission(tmp_path / "s", "result", 40)))
    page.fill("#f-name", f"try {EVIL}")
    page.click("#submit-form button[type=submit]")
    page.wait_for_url("**/ui/submissions/*")
    assert f"try {EVIL}" in page.inner_text("h1")
    submission_page = page.url

    # the leaderboard, empty, then filled by the worker while the page stays open
    page.click("a:has-text('Guess')")
    page.click("text=Full leaderboard and charts")
    page.wait_for_url("**/leaderboards/main")
    assert "Nobody on this leaderboard yet" in page.inner_text("#board-live")
    page.evaluate("window.__same_page = true")
    with running_worker(live_server, tmp_path, concurrency=2):
        page.wait_for_selector("#board-live tr[data-submission]", timeout=20_000)
        assert page.evaluate("window.__same_page") is True  # updated live, no reload
        row = page.inner_text("#board-live tbody tr")
        assert "98" in row and "98.00" not in row and "2.000" in row  # whole: no decimals
        page.wait_for_selector("#chart-best [data-chart][data-points='1']", timeout=10_000)
    # each chart polls on its own: the distribution may redraw a little later
    page.wait_for_selector("#chart-distribution-0 .chart-area:not([data-points='0']) canvas",
                           timeout=15_000)
    page.click("#board-live th:has-text('Error')")
    assert page.get_attribute("#board-live th:has-text('Error')", "aria-sort") == "ascending"
    screenshot(page, "leaderboard")

    # the submission: finished, its log tailed, its detailed results sandboxed
    page.goto(submission_page)
    page.wait_for_selector("#submission-status >> text=finished")
    page.wait_for_selector(
        "#log-0-scoring-stdout:has-text('scored prediction 40 against reference 42')")
    frame = page.locator("iframe.detailed-results")
    assert frame.get_attribute("sandbox") == ""
    assert page.frame_locator("iframe.detailed-results").locator("#d").inner_text() == "detailed"
    assert page.title() != "owned"
    screenshot(page, "submission")

    page.goto(f"{live_server.url}/ui/benchmarks")
    assert f"Guess {EVIL}" in page.inner_text("#benchmarks-table")
    screenshot(page, "benchmarks")
