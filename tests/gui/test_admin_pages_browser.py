"""The admin pages in real Chromium, on one server for the module: a recruiter created
(after a refusal shown next to its field), edited and deleted; an account created, a
token minted and the tokens revoked, the destructive actions asked first; the flavor
catalog filtered, a bad filter shown next to its box."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from scitq_bench.recruiters.protofilter import Offer
from scitq_bench.server.recruit import catalog
from tests.conftest import ApiClient, LiveServer
from tests.support.gui import module_server, screenshot, sign_in


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server with a batch and a small catalog."""
    with module_server(tmp_path_factory.mktemp("admin")) as server:
        application, token = server.app, server.token
        with application.extensions["scitq_bench"].db.write() as session:
            catalog.upsert_offers(session, "fake", [
                Offer(provider="fake", region="r1", flavor="small", cpu=2, ram_gb=4, cost=0.1),
                Offer(provider="fake", region="r1", flavor="big", cpu=16, ram_gb=64, cost=0.9)])
        api = ApiClient(application.test_client(), token)
        assert api.post("/tasks", json={"command": "true", "batch": "nightly"}).status_code == 201
        yield server


def api_of(server: LiveServer, token: str | None = None) -> ApiClient:
    return ApiClient(server.app.test_client(), token or server.token)


def answer_dialogs(page: Any, answers: list[bool]) -> list[str]:
    """Answer the next confirmations in turn (then accept); returns what they asked."""
    asked: list[str] = []

    def on_dialog(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept() if (answers.pop(0) if answers else True) else dialog.dismiss()

    page.on("dialog", on_dialog)
    return asked


def test_a_recruiter_through_the_pages(server: LiveServer, page: Any) -> None:
    sign_in(page, server.url, server.token, "/ui/flavors")
    page.wait_for_url("**/ui/flavors")
    assert page.locator("#flavors-table tbody tr").count() == 2
    page.fill("#f-protofilters", "cpu>=eight")
    page.click("#flavors-filters button[type=submit]")
    assert "cpu needs a number" in page.inner_text("[data-error-for=protofilters]")
    assert page.input_value("#f-protofilters") == "cpu>=eight"
    page.fill("#f-protofilters", "cpu>=8")
    page.click("#flavors-filters button[type=submit]")
    page.wait_for_selector("tr[data-offer='fake/r1/big']")
    assert page.locator("#flavors-table tbody tr").count() == 1
    screenshot(page, "admin-flavors")

    page.click("nav.main a:has-text('Recruiters')")
    page.wait_for_url("**/ui/recruiters")
    page.fill("#f-batch", "nightlyy")
    page.fill("#f-flavor", "auto:cpu>=8")
    page.fill("#f-maximum_workers", "3")
    page.click("#recruiter-form button[type=submit]")
    assert "not found" in page.inner_text("[data-error-for=batch]")
    assert page.input_value("#f-flavor") == "auto:cpu>=8"  # what was typed is kept
    page.fill("#f-batch", "nightly")
    page.click("#recruiter-form button[type=submit]")
    page.wait_for_selector(".flash-ok >> text=Recruiter of rank 1 added")
    row = page.locator("tr[data-recruiter]")
    assert "auto:cpu>=8" in row.inner_text() and "nightly" in row.inner_text()
    [made] = api_of(server).get("/recruiters").json
    assert (made["batch"], made["flavor"], made["maximum_workers"]) == ("nightly", "auto:cpu>=8", 3)
    screenshot(page, "admin-recruiters")

    row.locator("a", has_text="Edit").click()
    page.wait_for_url("**/edit")
    page.fill("#f-flavor", "big")
    page.fill("#f-workflow", "pipeline")
    page.click("#recruiter-form button[type=submit]")
    page.wait_for_selector(".flash-ok >> text=saved")
    assert api_of(server).get("/recruiters").json[0]["workflow"] == "pipeline"

    asked = answer_dialogs(page, [False, True])
    row.locator("button", has_text="Delete").click()  # dismissed: nothing happens
    assert len(api_of(server).get("/recruiters").json) == 1
    row.locator("button", has_text="Delete").click()
    page.wait_for_selector(".flash-ok >> text=deleted")
    assert api_of(server).get("/recruiters").json == []
    assert len(asked) == 2 and "rank 1 of batch nightly" in asked[0]


def test_an_account_its_tokens_and_their_revocation(server: LiveServer, page: Any) -> None:
    sign_in(page, server.url, server.token, "/ui/accounts")
    page.wait_for_url("**/ui/accounts")
    page.fill("#f-name", "carol")
    page.select_option("#f-role", "organizer")
    page.click("#account-form button[type=submit]")
    page.wait_for_selector("#new-token")
    first = page.input_value("#new-token")
    assert first.startswith("sqb_") and api_of(server, first).get("/me").json["role"] == "organizer"
    screenshot(page, "admin-account-token")

    page.click("a:has-text('← Accounts')")
    page.wait_for_url("**/ui/accounts")
    assert first not in page.content()
    row = page.locator("tr[data-account]", has_text="carol")
    assert row.locator("[data-tokens]").inner_text() == "1"
    row.locator("button", has_text="New token").click()
    page.wait_for_selector("#new-token")
    second = page.input_value("#new-token")
    assert second != first and api_of(server, second).get("/me").status_code == 200
    page.reload()  # the browser posts the form again: a token is minted anew, not shown again
    page.wait_for_selector("#new-token")
    assert page.input_value("#new-token") not in (first, second)

    page.goto(f"{server.url}/ui/accounts")
    assert row.locator("[data-tokens]").inner_text() == "3"
    asked = answer_dialogs(page, [False, True])
    row.locator("button", has_text="Revoke tokens").click()
    assert row.locator("[data-tokens]").inner_text() == "3"  # dismissed
    row.locator("button", has_text="Revoke tokens").click()
    page.wait_for_selector(".flash-ok >> text=3 token(s) of carol revoked")
    assert row.locator("[data-tokens]").inner_text() == "0"
    assert "Revoke every token of carol" in asked[0]
    for token in (first, second):
        assert api_of(server, token).get("/me").status_code == 401
    screenshot(page, "admin-accounts")

    row.locator("button", has_text="Delete").click()
    page.wait_for_selector(".flash-ok >> text=Account carol deleted")
    assert page.locator("tr[data-account]", has_text="carol").count() == 0


LONG = "a-rather-long-name-that-does-not-break-anywhere-" * 3


def test_the_pages_fit_a_phone_with_long_names(server: LiveServer, browser: Any) -> None:
    api = api_of(server)
    batch = f"b-{LONG}"[:150]
    assert api.post("/tasks", json={"command": "true", "batch": batch}).status_code == 201
    assert api.post("/recruiters", json={"batch": batch, "flavor": f"f-{LONG}"[:100],
                                         "workflow": f"w-{LONG}"[:100]}).status_code == 201
    assert api.post("/accounts", json={"name": f"n-{LONG}"[:150],
                                       "email": f"{LONG}@example.org"}).status_code == 201
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  has_touch=True)
    try:
        page = context.new_page()
        sign_in(page, server.url, server.token, "/ui/recruiters")
        for path in ("/ui/recruiters", "/ui/accounts", "/ui/flavors?protofilters=cpu>=x"):
            page.goto(server.url + path)
            width, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
            assert width <= inner, f"{path} is {width} px wide on a {inner} px screen"
            for box in page.locator(".field input").all():
                assert box.bounding_box()["width"] <= inner, path  # the forms stack
        screenshot(page, "admin-flavors-phone")
    finally:
        context.close()
