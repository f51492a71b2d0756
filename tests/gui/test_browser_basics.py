"""The GUI in real headless Chromium: signing in lands back on the page asked for,
live regions follow the server, and an expired session sends the page to sign-in."""

from __future__ import annotations

from tests.gui.conftest import screenshot, sign_in


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
