"""In real Chromium, on one server seeded once for the module: the dashboard follows
the queue and the workers live and draws its charts with uPlot; the favicon answers;
and every page fits a 390 px wide phone, its navigation folded behind a menu button."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scitq_bench.server.queue.models import Worker
from tests.conftest import ApiClient, LiveServer
from tests.gui.test_bench_organizer_pages import _phone_setup
from tests.gui.test_jobs import add_job
from tests.support.gui import module_server, screenshot, sign_in

PHONE = {"width": 390, "height": 844}
LONG = "a-rather-long-name-that-does-not-break-anywhere-" * 3


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, Any]]]:
    """One server for the module, with a bit of everything: tasks with long names and
    commands, a worker running one, a running job, a benchmark with scored
    submissions."""
    folder: Path = tmp_path_factory.mktemp("site")
    with module_server(folder) as server:
        application, token = server.app, server.token
        made = _phone_setup(server, folder)
        api = ApiClient(application.test_client(), token)
        worker = api.post("/workers", json={"name": f"w-{LONG}"[:120], "concurrency": 2}).json
        for i in range(2):
            task = api.post("/tasks", json={"command": f"echo {LONG * 2} {i}", "name": f"t{i}-{LONG}",
                                            "batch": f"b-{LONG}"[:150]})
            assert task.status_code == 201, task.json
        claimed = api.post(f"/workers/{worker['worker']['id']}/claim?max=1",
                           token=worker["token"]).json["executions"]
        made.update(worker=worker["worker"]["id"], task=claimed[0]["task_id"],
                    batch=api.get("/batches").json["batches"][0]["id"],
                    job=add_job(application, "running", progress=40))
        yield server, made


@pytest.fixture(scope="module")
def admin_context(browser: Any, site: tuple[LiveServer, dict[str, Any]]) -> Iterator[Any]:
    """A phone-sized browser signed in as admin once for the module."""
    server, _ = site
    context = browser.new_context(viewport=PHONE, device_scale_factor=1, is_mobile=True,
                                  has_touch=True)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    sign_in(tab, server.url, server.token, "/ui/")
    tab.close()
    yield context
    context.close()


@pytest.fixture
def tab(admin_context: Any) -> Iterator[Any]:
    page = admin_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # the charts' library is our own file: the page's CSP refuses nothing it does
    page.on("console", lambda message: errors.append(message.text)
            if "Content Security Policy" in message.text else None)
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_dashboard_follows_the_queue_and_the_workers_live(site, tab) -> None:
    server, _ = site
    tab.set_viewport_size({"width": 1280, "height": 900})
    tab.goto(f"{server.url}/ui/")
    tab.wait_for_url("**/ui/dashboard")  # where an admin lands
    pending = "#dash-queue li[data-status=pending] [data-count]"
    before = int(tab.inner_text(pending))
    # a uPlot chart, drawn from the server's points: one queued task (t1) at least now
    tab.wait_for_selector("#chart-queue .chart-area:not([data-points='0']) .uplot canvas")
    queued_now = tab.evaluate("""() => {
        const u = document.querySelector('#chart-queue .chart-area').uplot;
        const queued = u.data[1];
        return [u.series[1].label, queued[queued.length - 1], u.data[0].length];
    }""")
    assert queued_now[0] == "queued" and queued_now[1] >= 1 and queued_now[2] > 60, queued_now
    assert tab.get_attribute("#chart-queue .chart-area", "data-y-ticks")
    tab.wait_for_selector("#chart-ended .chart-area .uplot canvas")

    # a task and a worker arrive while the page stays open
    tab.evaluate("window.__same_page = true")
    api = ApiClient(server.app.test_client(), server.token)
    assert api.post("/tasks", json={"command": "true", "batch": "dash-live"}).status_code == 201
    with server.app.extensions["scitq_bench"].db.write() as session:
        session.add(Worker(name="dash-live-worker", status="running", provider="local",
                           concurrency=1))
    tab.wait_for_function(f"() => Number(document.querySelector('{pending}').textContent) "
                          f"=== {before + 1}", timeout=6000)
    tab.wait_for_selector("#dash-workers >> text=dash-live-worker", timeout=6000)
    assert tab.evaluate("window.__same_page") is True  # live, no reload
    assert "running" in tab.inner_text(f"#dash-workers tr:has-text('{LONG[:20]}')")
    screenshot(tab, "dashboard")


def test_the_favicon_answers_and_no_request_is_a_404(site, tab) -> None:
    server, _ = site
    missing: list[str] = []
    tab.on("response", lambda response: missing.append(response.url)
           if response.status == 404 else None)
    tab.goto(f"{server.url}/ui/dashboard")
    tab.wait_for_load_state("networkidle")
    icon = tab.get_attribute("link[rel=icon]", "href")
    assert icon and icon.endswith(".svg")
    fetched = tab.evaluate("""async (paths) => Promise.all(paths.map(async (p) => {
        const r = await fetch(p); return [r.status, r.headers.get('content-type')];
    }))""", [icon, "/favicon.ico"])
    assert all(status == 200 and kind.startswith("image/svg+xml") for status, kind in fetched), fetched
    assert missing == []


def _pages(made: dict[str, Any]) -> dict[str, str]:
    return {
        "dashboard": "/ui/dashboard",
        "workers": "/ui/workers",
        "worker": f"/ui/workers/{made['worker']}",
        "deploy": "/ui/workers/deploy",
        "jobs": "/ui/jobs",
        "job": f"/ui/jobs/{made['job']}",
        "batches": "/ui/batches",
        "batch": f"/ui/batches/{made['batch']}",
        "tasks": "/ui/tasks",
        "task": f"/ui/tasks/{made['task']}",
        "benchmarks": "/ui/benchmarks",
        "benchmark": f"/ui/benchmarks/{made['bench']}",
        "submissions": "/ui/submissions",
        "submission": f"/ui/submissions/{made['subs'][0]}",
        "leaderboard": f"/ui/phases/{made['phase']}/leaderboards/main",
        "flavors": "/ui/flavors",
        "recruiters": "/ui/recruiters",
        "accounts": "/ui/accounts",
        "error": "/ui/tasks/987654",
        "login": "/ui/login",
    }


PAGES = list(_pages({"worker": 0, "job": 0, "batch": 0, "task": 0, "bench": 0, "subs": [0],
                     "phase": 0}))


def _fits(page: Any) -> None:
    width, inner = page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"{page.url} is {width} px wide on a {inner} px screen"


@pytest.mark.parametrize("name", PAGES)
def test_every_page_fits_a_phone(site, tab, browser, name: str) -> None:
    server, made = site
    url = server.url + _pages(made)[name]
    if name == "login":  # signed out: a browser of its own
        context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
        try:
            page = context.new_page()
            page.goto(url)
            screenshot(page, f"phone-{name}")
            _fits(page)
            assert page.locator("#f-token").bounding_box()["width"] <= PHONE["width"]
        finally:
            context.close()
        return
    response = tab.goto(url)
    assert response.status == (404 if name == "error" else 200), (url, response.status)
    tab.wait_for_load_state("networkidle")
    _fits(tab)
    # the navigation is folded behind its button, which opens it
    link = tab.locator("nav.main a", has_text="Benchmarks")
    assert not link.is_visible()
    tab.click("button[data-menu]")
    assert tab.get_attribute("button[data-menu]", "aria-expanded") == "true"
    box = link.bounding_box()
    assert link.is_visible() and box is not None and box["x"] + box["width"] <= PHONE["width"]
    _fits(tab)
    screenshot(tab, f"phone-{name}")
    # tables wider than the screen scroll inside their own box
    for wrapper in tab.locator(".table-scroll").all():
        assert wrapper.evaluate("e => e.clientWidth") <= PHONE["width"]
