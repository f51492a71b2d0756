"""The batches and task pages in real Chromium, on one server for the module: the
progress bar's colours and the row's actions menu (kept open while the row updates,
inside a phone's screen), and a running task's page: its running time counting, its
log followed or paused, searched and wrapped, then stderr beside stdout once it
failed (stacked on a phone)."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ApiClient, LiveServer
from tests.support.gui import module_server, screenshot, sign_in
from tests.support.workers import finish, running_worker

PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with module_server(tmp_path_factory.mktemp("pages")) as server:
        yield server


def colour(page: Any, selector: str) -> str:
    return page.eval_on_selector(selector, "e => getComputedStyle(e).backgroundColor")


def test_progress_colours_and_the_actions_menu(server: LiveServer, page: Any) -> None:
    api = ApiClient(server.app.test_client(), server.token)
    ids = [api.post("/tasks", json={"command": "true", "batch": "colours"}).json["tasks"][0]["id"]
           for _ in range(8)]
    worker = api.post("/workers", json={"name": "painter", "concurrency": 4}).json
    worker_id, token = worker["worker"]["id"], worker["token"]
    claimed = api.post(f"/workers/{worker_id}/claim?max=4", token=token).json["executions"]
    events = [{"execution_id": c["execution_id"], "status": s, "return_code": 0, "duration": 1}
              for c, s in zip(claimed, ["succeeded", "succeeded", "failed", "running"],
                              strict=True)]
    api.post(f"/workers/{worker_id}/report", token=token, json={"events": events})
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, server.url, server.token, "/ui/batches")
    page.wait_for_url("**/ui/batches")
    row = page.locator("tr[data-batch-name='colours']")
    bar = "tr[data-batch-name='colours'] .progress-bar"
    widths = {name: page.eval_on_selector(f"{bar} .segment-{name}",
                                          "e => e.getBoundingClientRect().width")
              for name in ("succeeded", "failed", "running")}
    whole = page.eval_on_selector(bar, "e => e.getBoundingClientRect().width")
    assert widths["succeeded"] == pytest.approx(whole * 2 / 8, abs=1)
    assert widths["failed"] == pytest.approx(whole / 8, abs=1)
    assert widths["running"] == pytest.approx(whole / 8, abs=1)
    assert colour(page, f"{bar} .segment-succeeded") == "rgb(22, 163, 74)"
    assert colour(page, f"{bar} .segment-failed") == "rgb(220, 38, 38)"
    assert colour(page, f"{bar} .segment-running") == "rgb(37, 99, 235)"
    assert "painter" in row.locator(".batch-workers").inner_text()
    height = row.evaluate("e => e.getBoundingClientRect().height")
    assert height < 48, f"a batch's row is {height} px tall"

    # the menu: folded, opened by its button, kept open while the row changes
    stop = row.locator("button", has_text="Stop")
    assert not stop.is_visible()
    row.locator("details[data-row-menu] > summary").click()
    assert stop.is_visible()
    screenshot(page, "batches-menu")
    updated = page.get_attribute("#batches-live", "data-updated")
    api.post("/tasks", json={"command": "true", "batch": "colours"})
    page.wait_for_function(
        "(before) => document.querySelector('#batches-live').dataset.updated !== before"
        " && document.querySelector(\"tr[data-batch-name='colours'] td.num:nth-of-type(4)\")"
        ".textContent.trim() === '9'", arg=updated)
    assert stop.is_visible()  # re-rendered with the menu still open
    page.keyboard.press("Escape")
    assert not stop.is_visible()
    row.locator("details[data-row-menu] > summary").click()
    stop.click()
    page.wait_for_selector(".flash-ok >> text=Batch")
    assert api.get("/batches?name=colours").json["batches"][0]["status"] == "paused"

    # on a phone the page keeps its width and the open menu fits the screen
    page.set_viewport_size(PHONE)
    page.reload()
    row.locator("details[data-row-menu]").scroll_into_view_if_needed()
    row.locator("details[data-row-menu] > summary").click()
    panel = row.locator(".row-menu-panel").bounding_box()
    assert panel is not None and panel["x"] >= 0 and panel["x"] + panel["width"] <= PHONE["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "phone-batches-menu")
    assert ids  # the batch's tasks were made above


def at_bottom(page: Any, selector: str) -> bool:
    return page.eval_on_selector(
        selector, "e => e.scrollTop + e.clientHeight >= e.scrollHeight - 4")


def test_a_running_task_then_its_failure(server: LiveServer, page: Any, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    command = (
        "for i in $(seq 1 150); do echo \"line $i <b>x</b>\"; done; echo NEEDLE one; "
        "echo needle two; echo Needle three; "
        f"while [ ! -e {shlex.quote(str(first))} ]; do sleep 0.05; done; "
        "for i in $(seq 151 300); do echo \"line $i\"; done; echo after the pause; "
        f"while [ ! -e {shlex.quote(str(second))} ]; do sleep 0.05; done; "
        "echo something broke >&2; exit 3")
    client = server.client()
    task = client.task_create(command, shell=True, batch="watched", name="watched")
    sign_in(page, server.url, server.token, f"/ui/tasks/{task['id']}")
    with running_worker(server, tmp_path, concurrency=1, engine=None):
        page.wait_for_function("() => document.getElementById('log-stdout').textContent"
                               ".includes('Needle three')")
        # the running time counts on between two updates of the page
        page.wait_for_selector("#running-time")
        before = page.inner_text("#running-time")
        page.wait_for_function("(b) => document.getElementById('running-time') &&"
                               " document.getElementById('running-time').textContent !== b",
                               arg=before, timeout=4000)
        assert page.inner_text("#running-time").endswith("s")
        assert at_bottom(page, "#log-stdout")  # followed
        assert page.locator("#log-stdout b").count() == 0  # the log is text

        # search: matches marked, any case, next and previous go round
        page.fill("[data-log-tools='log-stdout'] [data-log-search]", "needle")
        page.wait_for_selector("#log-stdout[data-matches='3']")
        tools = "[data-log-tools='log-stdout']"
        assert page.inner_text(f"{tools} [data-log-count]") == "1 / 3"
        assert page.locator("#log-stdout mark.current").inner_text() == "NEEDLE"
        page.click(f"{tools} [data-log-next]")
        assert page.inner_text(f"{tools} [data-log-count]") == "2 / 3"
        assert page.locator("#log-stdout mark.current").inner_text() == "needle"
        page.click(f"{tools} [data-log-prev]")
        page.click(f"{tools} [data-log-prev]")
        assert page.inner_text(f"{tools} [data-log-count]") == "3 / 3"
        assert page.get_attribute("#log-stdout", "data-follow") == "0"  # reading: paused
        screenshot(page, "task-log-search")

        # paused, new lines do not scroll the pane; following again goes to the end
        page.eval_on_selector("#log-stdout", "e => { e.scrollTop = 0; }")
        first.touch()
        page.wait_for_function("() => document.getElementById('log-stdout').textContent"
                               ".includes('after the pause')")
        assert page.eval_on_selector("#log-stdout", "e => e.scrollTop") == 0
        assert page.locator("#log-stdout mark").count() == 3  # matches kept as text grew
        page.click(f"{tools} [data-log-follow]")
        assert page.get_attribute(f"{tools} [data-log-follow]", "aria-pressed") == "true"
        assert at_bottom(page, "#log-stdout")
        page.fill(f"{tools} [data-log-search]", "")
        assert page.locator("#log-stdout mark").count() == 0

        # wrap, or not
        wrap = f"{tools} [data-log-wrap]"
        assert page.eval_on_selector("#log-stdout", "e => getComputedStyle(e).whiteSpace") \
            == "pre-wrap"
        page.click(wrap)
        assert page.eval_on_selector("#log-stdout", "e => getComputedStyle(e).whiteSpace") == "pre"
        assert page.get_attribute(wrap, "aria-pressed") == "false"
        page.click(wrap)
        assert page.eval_on_selector("#log-stdout", "e => getComputedStyle(e).whiteSpace") \
            == "pre-wrap"

        # it fails: stderr beside stdout, without reloading the page
        assert "side-by-side" not in (page.get_attribute("#log-panes", "class") or "")
        page.evaluate("window.__samePage = true")
        second.touch()
        page.wait_for_selector("#log-panes.side-by-side", timeout=10_000)
        assert finish(client, [task])[0]["status"] == "failed"
    page.wait_for_function("() => document.getElementById('log-stderr').textContent"
                           ".includes('something broke')")
    assert page.evaluate("window.__samePage") is True
    assert page.locator("#running-time").count() == 0  # it no longer runs
    out, err = (page.locator(f"#log-{s}").bounding_box() for s in ("stdout", "stderr"))
    assert out and err and err["x"] >= out["x"] + out["width"] and abs(err["y"] - out["y"]) < 2
    screenshot(page, "task-failed")
    page.set_viewport_size(PHONE)
    out, err = (page.locator(f"#log-{s}").bounding_box() for s in ("stdout", "stderr"))
    assert out and err and err["y"] >= out["y"] + out["height"]  # stacked
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "phone-task-failed")
    # opened anew, a failed task's page lays them side by side from the start
    page.set_viewport_size({"width": 1400, "height": 900})
    page.reload()
    assert "side-by-side" in page.get_attribute("#log-panes", "class")
