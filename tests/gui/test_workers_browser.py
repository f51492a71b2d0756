"""Workers and jobs in real Chromium, against a live server that recruits (its
``public_url`` and ``recruitment:`` settings set, the ``local`` provider hiring worker
processes on this machine): a worker deployed from the form comes up in the live table
and its job finishes in the jobs panel, without a reload; then it is given back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from scitq_bench.server.app import create_app
from scitq_bench.server.recruit import catalog
from scitq_bench.server.recruit.runtime import EXTENSION
from scitq_bench.settings import ServerSettings
from tests.conftest import LiveServer, serving
from tests.support.gui import screenshot, sign_in
from tests.support.postgres import free_port

UP_TIMEOUT = 45_000  # ms: a worker process starts and registers


@pytest.fixture
def recruiting_server(settings: ServerSettings, admin_token: str) -> Iterator[LiveServer]:
    """A live server whose recruitment is set up (its loop left off: nothing is hired
    or given back but what the test asks for)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    live_settings = ServerSettings(
        data_dir=settings.data_dir, database_url=settings.database_url, lease_seconds=3.0,
        reaper_interval=0.2, run_reaper=True, claim_max_wait=5.0, public_url=url,
        recruitment={"deploy_timeout": 60, "providers": {"local": {"grace_seconds": 3}}})
    application = create_app(live_settings, start_recruiter=False)
    context = application.extensions["scitq_bench"]
    with context.db.write() as session:
        catalog.ensure_local_flavor(session, live_settings.data_dir)
    try:
        with serving(application, port=port):
            try:
                yield LiveServer(url, admin_token, application, live_settings)
            finally:
                _kill_workers_of(url)
    finally:
        application.extensions[EXTENSION].runner.shutdown()
        application.extensions["scitq_bench_reaper"].stop()
        context.db.dispose()


def _kill_workers_of(url: str) -> None:
    """Whatever happened, no worker process of this server is left behind."""
    for process in psutil.process_iter(["cmdline"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            if "worker" in cmdline and "run" in cmdline and url in cmdline:
                process.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


def test_deploy_a_local_worker_and_follow_it_live(recruiting_server: LiveServer, page: Any,
                                                  tmp_path: Path) -> None:
    base = recruiting_server.url
    sign_in(page, base, recruiting_server.token, "/ui/workers")
    page.wait_for_url("**/ui/workers")
    assert "No worker yet" in page.inner_text("#workers-table")
    page.wait_for_selector("#chart-workers-up .chart-area[data-points]")

    # the deploy form, with suggestions from the catalog as the flavor is typed
    page.click("#deploy-panel summary")
    page.fill("#f-flavor", "auto:cpu>=1:")
    page.wait_for_selector('#flavor-suggestions[data-for="auto:cpu>=1:"]', state="attached")
    offered = page.eval_on_selector_all("#flavor-suggestions option", "os => os.map(o => o.value)")
    assert "auto:cpu>=1:ram>=8" in offered and all(o.startswith("auto:cpu>=1:") for o in offered)
    page.fill("#f-flavor", "local")
    page.select_option("#f-provider", "local")
    page.fill("#f-batch", "gui-pool")
    page.fill("#f-concurrency", "1")
    screenshot(page, "workers-deploy-form")
    page.click("#deploy-form button[type=submit]")
    page.wait_for_url("**/ui/workers")
    assert "1 deploy job(s) started" in page.inner_text(".flashes")
    # recorded before its machine is up
    assert page.get_attribute("#workers-table tr[data-worker]", "data-status") == "offline"

    # the jobs panel, open beside it while the job runs
    jobs_tab = page.context.new_page()
    jobs_tab.goto(f"{base}/ui/jobs")
    assert jobs_tab.locator("#jobs-table tr[data-job]").count() == 1
    assert jobs_tab.get_attribute("#jobs-table tr[data-job]", "data-status") in (
        "pending", "running")
    for tab in (page, jobs_tab):
        tab.evaluate("window.notReloaded = true")

    # the worker comes up in the live table: status running, no reload
    page.wait_for_selector('#workers-table tr[data-status="running"]', timeout=UP_TIMEOUT)
    row = page.locator('#workers-table tr[data-status="running"]')
    assert "gui-pool" in row.inner_text() and "local" in row.inner_text()
    assert page.evaluate("window.notReloaded") is True
    screenshot(page, "workers-page")

    # and its job finishes in the jobs panel
    jobs_tab.wait_for_selector('#jobs-table tr[data-status="succeeded"]', timeout=15_000)
    assert jobs_tab.evaluate("window.notReloaded") is True
    progress = jobs_tab.locator('#jobs-table tr[data-status="succeeded"] progress')
    assert progress.get_attribute("value") == "100"
    screenshot(jobs_tab, "jobs-panel")
    jobs_tab.click("#jobs-table tr[data-job] td a")
    jobs_tab.wait_for_selector("#job-log:has-text('the worker registered')")
    screenshot(jobs_tab, "job-page")
    jobs_tab.close()

    # the worker's page, then the machine given back (a confirmed undeploy)
    row.locator("a").first.click()
    page.wait_for_selector("#worker-live")
    assert "gui-pool" in page.inner_text("#worker-live")
    screenshot(page, "worker-page")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#worker-actions button:has-text('Undeploy')")
    page.wait_for_url("**/ui/jobs/*")
    page.wait_for_selector('#job-log[data-done="1"]', timeout=30_000)
    assert "machine given back" in page.inner_text("#job-log")
    assert recruiting_server.client().worker_list()[0]["status"] == "offline"
