"""Tasks in real Chromium with a real worker: a task launched from the form shows its
output while it runs, and what a task's name, command and output hold is shown as
text, never run as markup."""

from __future__ import annotations

import re
import shlex

from tests.support.gui import screenshot, sign_in
from tests.support.workers import finish, running_worker

SCRIPT = "<script>window.__xss=1</script>"
IMAGE = '<img src=x onerror="window.__xss=1">'


def log_has(page, stream: str, text: str, timeout: float = 10_000) -> None:
    page.wait_for_function(
        "([id, text]) => document.getElementById(id).textContent.includes(text)",
        arg=[f"log-{stream}", text], timeout=timeout)


def test_launch_a_task_and_watch_its_output_arrive_live(live_server, tmp_path, page):
    sign_in(page, live_server.url, live_server.token, "/ui/tasks")
    page.wait_for_url("**/ui/tasks")
    gate = shlex.quote(str(tmp_path / "go-on"))  # the second line waits for the test
    with running_worker(live_server, tmp_path, concurrency=1, engine=None):
        page.click("#new-task summary")
        page.fill("#f-command", f"echo first line; while [ ! -e {gate} ]; do sleep 0.05; "
                                "done; echo second line; echo oops >&2")
        page.fill("#f-batch", "live")
        page.fill("#f-name", "live-output")
        page.check("#new-task-form input[name=shell]")
        page.click("#new-task-form button[type=submit]")
        page.wait_for_url(re.compile(r".*/ui/tasks/\d+$"))
        page.evaluate("window.__samePage = true")
        log_has(page, "stdout", "first line")
        assert "second line" not in page.inner_text("#log-stdout")
        (tmp_path / "go-on").touch()
        log_has(page, "stdout", "second line")
        log_has(page, "stderr", "oops")
        page.wait_for_selector("#log-stdout[data-done='1']")
        page.wait_for_selector("#task-live .task-status >> text=succeeded")
        assert page.evaluate("window.__samePage") is True  # no reload: the tail did it
        assert page.inner_text("#log-stdout") == "first line\nsecond line\n"
        screenshot(page, "task")
    page.goto(f"{live_server.url}/ui/tasks")
    page.wait_for_selector("#tasks-table >> text=live-output")
    screenshot(page, "tasks")


def test_names_commands_and_output_are_shown_as_text(live_server, tmp_path, page):
    client = live_server.client()
    command = f"printf '%s\\n' {shlex.quote(SCRIPT)} {shlex.quote(IMAGE)}"
    with running_worker(live_server, tmp_path, concurrency=1, engine=None):
        [task] = finish(client, [client.task_create(command, shell=True, batch="xss",
                                                    name=SCRIPT + IMAGE)])
    assert task["status"] == "succeeded"
    sign_in(page, live_server.url, live_server.token, "/ui/tasks")
    page.wait_for_url("**/ui/tasks")
    page.wait_for_selector("#tasks-live[data-updated]", timeout=6000)  # re-rendered once
    row = page.locator(f"tr[data-task='{task['id']}']")
    assert row.locator(".task-name").inner_text() == SCRIPT + IMAGE
    assert SCRIPT in row.locator(".command").inner_text()
    page.goto(f"{live_server.url}/ui/tasks/{task['id']}")
    page.wait_for_selector("#log-stdout[data-done='1']")
    assert page.inner_text("#log-stdout") == f"{SCRIPT}\n{IMAGE}\n"
    assert page.inner_text("#task-name") == SCRIPT + IMAGE
    assert page.inner_text("#command-text") == command
    page.wait_for_selector("#task-live[data-updated]", timeout=6000)
    assert page.locator("img").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"


def test_the_tail_moves_on_to_a_retry_and_shows_only_its_log(live_server, tmp_path, page):
    """The page follows the latest attempt: when the first fails and the task is retried,
    the panes start over with the retry's own output (nothing of the first stays)."""
    marker, gate = tmp_path / "tried-once", tmp_path / "go-on"
    command = (f"if [ -e {shlex.quote(str(marker))} ]; then echo second try; else "
               f"touch {shlex.quote(str(marker))}; echo first try; "
               f"while [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.05; done; exit 3; fi")
    client = live_server.client()
    task = client.task_create(command, shell=True, retry=1, batch="retry", name="retried")
    sign_in(page, live_server.url, live_server.token, f"/ui/tasks/{task['id']}")
    page.wait_for_url(f"**/ui/tasks/{task['id']}")
    with running_worker(live_server, tmp_path, concurrency=1, engine=None):
        log_has(page, "stdout", "first try")
        gate.touch()  # the first attempt fails only once the page has shown its output
        log_has(page, "stdout", "second try", timeout=20_000)
        page.wait_for_selector("#log-stdout[data-done='1']")
        assert page.inner_text("#log-stdout") == "second try\n"
        assert finish(client, [task])[0]["status"] == "succeeded"
