"""GUI test fixtures: a Flask test client that signs in and carries the CSRF token,
and real headless Chromium (Debian's package) driven by Playwright against a live
server. The test command installs Chromium and requires it: there, browser tests run
or fail, never skip. Screenshots go to ``test-artifacts/screenshots`` (or
``$SCITQ_BENCH_ARTIFACTS/screenshots``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gui import GuiClient

CHROMIUM = os.environ.get("SCITQ_BENCH_CHROMIUM", "/usr/bin/chromium")
# the closed network refuses Chromium's background connections: switch them off
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """GUI tests run on SQLite; the services under them are tested on both backends."""
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def gui_client(app: Any) -> GuiClient:
    return GuiClient(app.test_client())


@pytest.fixture
def admin_gui(gui_client: GuiClient, admin_token: str) -> GuiClient:
    gui_client.sign_in(admin_token)
    return gui_client


# -- a real browser --------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        if os.environ.get("SCITQ_BENCH_TEST_BROWSER") == "required":
            pytest.fail(f"Chromium is required for the GUI tests: {CHROMIUM} is missing")
        pytest.skip("Chromium is not installed (the test command installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                              headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
