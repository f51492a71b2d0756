"""GUI test fixtures: a Flask test client that signs in and carries the CSRF token,
and real headless Chromium (Debian's package) driven by Playwright against a live
server. The test command installs Chromium and requires it: there, browser tests run
or fail, never skip. Screenshots go to ``test-artifacts/screenshots`` (or
``$SCITQ_BENCH_ARTIFACTS/screenshots``)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("SCITQ_BENCH_CHROMIUM", "/usr/bin/chromium")
# the closed network refuses Chromium's background connections: switch them off
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
ARTIFACTS = Path(os.environ.get("SCITQ_BENCH_ARTIFACTS") or Path(__file__).parents[2] / "test-artifacts")
CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """GUI tests run on SQLite; the services under them are tested on both backends."""
    return f"sqlite:///{tmp_path / 'test.db'}"


class GuiClient:
    """The Flask test client as a browser would use it: cookies kept, the CSRF token
    read from the last page and sent with every form."""

    def __init__(self, flask_client: Any) -> None:
        self.flask = flask_client
        self.csrf = ""

    def get(self, path: str, **kwargs: Any) -> Any:
        response = self.flask.get(path, **kwargs)
        found = CSRF.search(response.get_data(as_text=True))
        if found:
            self.csrf = found.group(1)
        return response

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True,
             **kwargs: Any) -> Any:
        if not self.csrf:
            self.get("/ui/login")
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.csrf)
        return self.flask.post(path, data=form, **kwargs)

    def sign_in(self, token: str) -> Any:
        self.get("/ui/login")
        response = self.post("/ui/login", {"token": token})
        assert response.status_code == 302, response.get_data(as_text=True)
        self.get("/ui/benchmarks")  # the session's own CSRF token
        return response


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


def sign_in(page: Any, base_url: str, token: str, next_path: str = "/ui/") -> None:
    page.goto(f"{base_url}/ui/login?next={next_path}")
    page.fill("#f-token", token)
    page.click("#login-form button[type=submit]")
    page.wait_for_load_state("load")


def screenshot(page: Any, name: str) -> Path:
    """Keep a picture of the page as a test artifact."""
    target = ARTIFACTS / "screenshots" / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    return target
