"""The GUI in real headless Chromium: signing in lands back on the page asked for,
live regions follow the server, and an expired session sends the page to sign-in."""

from __future__ import annotations

import time

from tests.support.gui import screenshot, sign_in


def test_sign_in_then_live_worker_list(live_server, page):
    page.goto(f"{live_server.url}/ui/workers")
    assert "/ui/login" in page.url
    screenshot(page, "login")
    page.fill("#f-token", "sqb_wrong")
    page.click("#login-form button[type=submit]")
    assert page.locator("[data-error-for=token]").inner_text() == "invalid token"
    page.fill("#f-token", live_server.token)
    page.click("#login-form button[type=submit]")
    page.wait_for_url("**/ui/workers")
    assert "No worker yet" in page.inner_text("#workers-table")
    client = live_server.client()
    client.worker_register(name="gui-w1", concurrency=3)
    # registered through the API while the page is open: the live region shows it
    page.wait_for_selector("#workers-table >> text=gui-w1", timeout=6000)


def test_signed_out_poll_sends_the_page_to_sign_in(live_server, page):
    sign_in(page, live_server.url, live_server.token, "/ui/workers")
    page.wait_for_url("**/ui/workers")
    # every answer renews the session cookie: none may be in flight (the page's charts
    # load at once) when the cookie is cleared
    page.wait_for_load_state("networkidle")
    page.context.clear_cookies()
    page.wait_for_url("**/ui/login?next=%2Fui%2Fworkers", timeout=6000)


def _set_hidden(page, hidden: bool) -> None:
    """What the browser does when the tab goes to the background or comes back."""
    page.evaluate("""(hidden) => {
        Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
        document.dispatchEvent(new Event("visibilitychange"));
    }""", hidden)


def _wait_for(page, condition, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """Let the page run (its requests are recorded meanwhile) until ``condition``."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        page.wait_for_timeout(50)


def test_live_updates_pause_while_the_tab_is_hidden(live_server, page):
    sign_in(page, live_server.url, live_server.token, "/ui/workers")
    page.wait_for_url("**/ui/workers")
    polls: list[float] = []
    page.on("request", lambda request: polls.append(time.monotonic())
            if "fragment=1" in request.url or "/charts/" in request.url else None)
    _wait_for(page, lambda: polls, 5.0)
    assert polls, "the live region polls while the tab is visible"
    _set_hidden(page, True)
    hidden_at = time.monotonic()
    page.wait_for_timeout(4500)
    assert [t for t in polls if t > hidden_at + 0.2] == [], "no poll while hidden"
    shown_at = time.monotonic()
    _set_hidden(page, False)
    # at once, not at the next tick of its 2 s period
    _wait_for(page, lambda: [t for t in polls if t >= shown_at], 1.5)
    assert [t for t in polls if t >= shown_at], "catches up as soon as it is visible"
