"""Batches in real Chromium: a batch paused and resumed from its row's actions menu on
the batches page (its status follows), and a batch's page with its chart of tasks
ended per minute."""

from __future__ import annotations

from tests.support.gui import screenshot, sign_in
from tests.support.workers import finish, running_worker


def status_is(page, batch: str, status: str) -> None:
    page.wait_for_selector(f"tr[data-batch-name='{batch}'] .batch-status >> text={status}",
                           timeout=6000)


def test_pause_and_resume_a_batch_from_the_batches_page(live_server, tmp_path, page):
    client = live_server.client()
    with running_worker(live_server, tmp_path, concurrency=2, engine=None):
        done = finish(client, client.tasks_create(
            [{"command": "true", "batch": "gui-batch"} for _ in range(4)]
            + [{"command": "false", "batch": "gui-batch"}]))
    assert sorted(t["status"] for t in done) == ["failed"] + ["succeeded"] * 4
    client.task_create("true", batch="gui-batch")  # no worker left: it waits
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, live_server.url, live_server.token, "/ui/batches")
    page.wait_for_url("**/ui/batches")
    row = page.locator("tr[data-batch-name='gui-batch']")
    status_is(page, "gui-batch", "running")
    screenshot(page, "batches")
    assert not row.locator("button", has_text="Stop").is_visible()  # folded in the menu
    row.locator("details[data-row-menu] > summary").click()
    row.locator("select[name=signal]").select_option("pause")
    row.locator("input[name=workers]").check()
    row.locator("button", has_text="Stop").click()
    page.wait_for_selector(".flash-ok >> text=Batch")
    status_is(page, "gui-batch", "paused")
    assert client.batch_find("gui-batch")["status"] == "paused"
    row.locator("details[data-row-menu] > summary").click()
    row.locator("button", has_text="Go").click()
    status_is(page, "gui-batch", "running")
    assert client.batch_find("gui-batch")["status"] == "running"
    # a change made elsewhere shows up without reload
    client.batch_stop(client.batch_find("gui-batch")["id"])
    status_is(page, "gui-batch", "paused")

    row.locator("a", has_text="gui-batch").click()
    page.wait_for_url("**/ui/batches/*")
    chart = page.locator("#batch-pace [data-chart]")
    page.wait_for_selector("#batch-pace canvas")
    assert int(chart.get_attribute("data-points")) >= 2
    assert "succeeded: 4" in page.inner_text("#batch-facts")
    screenshot(page, "batch")
