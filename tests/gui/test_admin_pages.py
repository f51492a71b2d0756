"""The flavor catalog, recruiters and accounts pages through the Flask test client, on
SQLite and PostgreSQL: what they list is what the API lists (the same services), forms
refuse bad input next to the field and change nothing, a new token is shown once, other
roles get 403, every POST needs the CSRF token, and hostile names stay text."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from scitq_bench.recruiters.protofilter import Offer
from scitq_bench.server import auth
from scitq_bench.server.bench.models import Account
from scitq_bench.server.queue.models import ApiToken, Batch, Worker
from scitq_bench.server.recruit import catalog
from scitq_bench.server.recruit.models import Recruiter
from tests.conftest import BACKENDS, ApiClient, fresh_database
from tests.support.gui import GuiClient, account_token

HOSTILE = "<script>alert(1)</script>"
OFFERS = [
    Offer(provider="fake", region="r1", flavor="small", cpu=2, ram_gb=4, cost=0.10),
    Offer(provider="fake", region="r2", flavor="big", cpu=16, ram_gb=64, disk_gb=500,
          tags="N", cost=0.80),
    Offer(provider="fake", region="r1", flavor="gpu1", cpu=8, ram_gb=32, gpu_count=1,
          gpu_model="A100", gpu_mem_gb=80, tags="G", cost=2.5),
    Offer(provider="other", region="r9", flavor="mid", cpu=8, ram_gb=32, cost=0.40),
]
PAGES = ("/ui/flavors", "/ui/recruiters", "/ui/accounts")


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path, request) as url:
        yield url


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def error_for(page: str, field: str) -> str:
    assert f'data-error-for="{field}"' in page, page
    return page.split(f'data-error-for="{field}"')[1].split("</p>")[0]


def rows(page: str, marker: str) -> list[str]:
    """The table rows carrying ``marker`` (``data-offer``...), in page order."""
    return [part.split("</tr>")[0] for part in page.split(f"{marker}=")[1:]]


def add_offers(app: Any, provider: str, offers: list[Offer]) -> None:
    with app.extensions["scitq_bench"].db.write() as session:
        catalog.upsert_offers(session, provider, offers)


def count(app: Any, model: Any, *where: Any) -> int:
    with app.extensions["scitq_bench"].db.read() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


@pytest.fixture
def other_roles(app: Any) -> list[GuiClient]:
    clients = []
    for name, role in (("org", auth.ORGANIZER), ("someone", auth.PARTICIPANT)):
        client = GuiClient(app.test_client())
        client.sign_in(account_token(app, name, role))
        clients.append(client)
    return clients


# -- roles and CSRF ---------------------------------------------------------------------


def test_only_admins_see_the_pages_and_their_links(admin_gui: GuiClient, other_roles,
                                                   api: ApiClient, app) -> None:
    page = text(admin_gui.get("/ui/tasks"))
    for path in PAGES:
        assert f'href="{path}"' in page, path  # in the navigation
        assert admin_gui.get(path).status_code == 200, path
    api.post("/tasks", json={"command": "true", "batch": "b1"})
    recruiter = api.post("/recruiters", json={"batch": "b1", "flavor": "small"}).json["id"]
    account = api.post("/accounts", json={"name": "victim"}).json["account"]["id"]
    for client in other_roles:
        nav = text(client.get("/ui/benchmarks"))
        for path in PAGES:
            assert f'href="{path}"' not in nav, path
            answer = client.get(path)
            assert answer.status_code == 403 and "needs the admin role" in text(answer), path
        for path, form in [("/ui/recruiters", {"batch": "b1", "flavor": "small", "rank": "2"}),
                           (f"/ui/recruiters/{recruiter}/edit", {"flavor": "big",
                                                                "maximum_workers": "3"}),
                           (f"/ui/recruiters/{recruiter}/delete", {}),
                           ("/ui/accounts", {"name": "intruder", "role": "organizer"}),
                           (f"/ui/accounts/{account}/tokens", {}),
                           (f"/ui/accounts/{account}/revoke", {}),
                           (f"/ui/accounts/{account}/delete", {})]:
            answer = client.post(path, form)
            assert answer.status_code == 403, (path, text(answer))
    assert api.get("/recruiters").json[0]["flavor"] == "small"
    assert count(app, Recruiter) == 1 and count(app, Account, Account.name == "intruder") == 0
    assert count(app, ApiToken, ApiToken.account_id == account) == 1


def test_every_change_needs_the_csrf_token(admin_gui: GuiClient, api: ApiClient, app) -> None:
    api.post("/tasks", json={"command": "true", "batch": "b1"})
    recruiter = api.post("/recruiters", json={"batch": "b1", "flavor": "small"}).json["id"]
    account = api.post("/accounts", json={"name": "kept"}).json["account"]["id"]
    for path, form in [("/ui/recruiters", {"batch": "b1", "flavor": "small", "rank": "2"}),
                       (f"/ui/recruiters/{recruiter}/edit", {"flavor": "big",
                                                            "maximum_workers": "3"}),
                       (f"/ui/recruiters/{recruiter}/delete", {}),
                       ("/ui/accounts", {"name": "forged", "role": "organizer"}),
                       (f"/ui/accounts/{account}/tokens", {"revoke_others": "1"}),
                       (f"/ui/accounts/{account}/revoke", {}),
                       (f"/ui/accounts/{account}/delete", {})]:
        answer = admin_gui.post(path, form, csrf=False)
        assert answer.status_code == 400 and "security token" in text(answer), path
        assert "sqb_" not in text(answer)
    assert [(r["rank"], r["flavor"]) for r in api.get("/recruiters").json] == [(1, "small")]
    assert [a["name"] for a in api.get("/accounts").json] == ["kept"]
    assert count(app, ApiToken, ApiToken.account_id == account) == 1


# -- flavors ------------------------------------------------------------------------------


def test_the_catalog_lists_the_apis_offers_best_first(admin_gui: GuiClient, api: ApiClient,
                                                      app) -> None:
    add_offers(app, "fake", OFFERS[:3])
    add_offers(app, "other", OFFERS[3:])
    page = text(admin_gui.get("/ui/flavors"))
    listed = [row.split('"')[1] for row in rows(page, "data-offer")]
    from_api = [f"{o['provider']}/{o['region']}/{o['flavor']}"
                for o in api.get("/flavors").json["flavors"]]
    assert listed == from_api == ["fake/r1/small", "other/r9/mid", "fake/r2/big", "fake/r1/gpu1"]
    gpu = rows(page, "data-offer")[3]
    assert "1 × A100" in gpu and "(80 GB)" in gpu and "2.5000" in gpu and ">G<" in gpu
    big = rows(page, "data-offer")[2]
    assert ">16<" in big and ">64<" in big and ">500<" in big and ">N<" in big

    def shown(query: str) -> list[str]:
        answer = admin_gui.get(f"/ui/flavors?{query}")
        assert answer.status_code == 200, text(answer)
        return [row.split('"')[1] for row in rows(text(answer), "data-offer")]

    assert shown("protofilters=cpu%3E%3D8%3Aram%3E%3D32") == \
        ["other/r9/mid", "fake/r2/big", "fake/r1/gpu1"]
    assert shown("protofilters=auto%3Atags%23G") == ["fake/r1/gpu1"]
    assert shown("provider=fake&region=r1") == ["fake/r1/small", "fake/r1/gpu1"]
    assert shown("provider=other") == ["other/r9/mid"]
    assert shown("limit=2") == ["fake/r1/small", "other/r9/mid"]
    assert shown("region=nowhere") == []
    page = text(admin_gui.get("/ui/flavors?provider=fake"))
    assert '<option value="fake" selected>' in page and '<option value="r9">' in page


@pytest.mark.parametrize(("query", "field", "message"), [
    ("protofilters=cpu%3E%3Dten", "protofilters", "&#39;cpu&gt;=ten&#39;: cpu needs a number"),
    ("protofilters=colour%3D%3Dred", "protofilters", "colour"),
    ("protofilters=" + HOSTILE, "protofilters", "&lt;script&gt;"),
    ("limit=0", "limit", "between 1 and 1000"),
    ("limit=many", "limit", "whole number"),
])
def test_a_bad_filter_is_shown_next_to_its_box(admin_gui: GuiClient, app, query, field,
                                               message) -> None:
    add_offers(app, "fake", OFFERS[:1])
    answer = admin_gui.get(f"/ui/flavors?{query}")
    assert answer.status_code == 400
    page = text(answer)
    assert message in error_for(page, field) and "data-offer=" not in page
    assert HOSTILE not in page and 'id="flavors-filters"' in page


# -- recruiters ---------------------------------------------------------------------------


def test_recruiters_of_every_batch_with_their_workers(admin_gui: GuiClient, api: ApiClient,
                                                      app) -> None:
    for batch in ("b1", "b2"):
        api.post("/tasks", json={"command": "true", "batch": batch})
    first = api.post("/recruiters", json={
        "batch": "b2", "flavor": "auto:cpu>=8", "maximum_workers": 3, "tasks_per_worker": 5,
        "concurrency": 4, "workflow": "wf", "workflow_maximum_workers": 2}).json["id"]
    second = api.post("/recruiters", json={"batch": "b1", "rank": 2, "flavor": "small",
                                           "provider": "fake", "region": "r1"}).json["id"]
    with app.extensions["scitq_bench"].db.write() as session:
        session.add_all([
            Worker(name="alive-1", status="running", provider="fake", recruiter_id=first),
            Worker(name="alive-2", status="offline", provider="fake", recruiter_id=first),
            Worker(name="failed", status="failed", provider="fake", recruiter_id=first),
            Worker(name="released", status="running", provider="fake", recruiter_id=second,
                   released_at=session.scalar(select(func.now()))),
        ])
    page = text(admin_gui.get("/ui/recruiters"))
    assert 'data-live="/ui/recruiters?fragment=1"' in page
    found = rows(page, "data-recruiter")
    assert [row.split('"')[1] for row in found] == [str(second), str(first)]  # by batch, rank
    assert ">b2</a>" in found[1] and "auto:cpu&gt;=8" in found[1] and ">4<" in found[1]
    assert ">5<" in found[1] and ">3<" in found[1] and "wf" in found[1] and "cap 2" in found[1]
    assert found[1].split("data-alive>")[1].startswith("2<")
    assert found[0].split("data-alive>")[1].startswith("0<")
    assert ">fake<" in found[0] and ">r1<" in found[0] and ">auto<" in found[0]
    fragment = text(admin_gui.get("/ui/recruiters?fragment=1"))
    assert "<html" not in fragment and f'data-recruiter="{first}"' in fragment
    assert 'id="recruiter-form"' not in fragment
    assert '<option value="b2">' in page  # the batch field offers the batches


def test_a_recruiter_is_created_edited_and_deleted_as_the_api_does(
        admin_gui: GuiClient, api: ApiClient, app) -> None:
    api.post("/tasks", json={"command": "true", "batch": "b1"})
    answer = admin_gui.post("/ui/recruiters", {
        "batch": "b1", "rank": "", "flavor": "auto:cpu>=8:ram>=32", "provider": "",
        "region": "", "concurrency": "", "prefetch": "", "tasks_per_worker": "10",
        "minimum_tasks": "", "maximum_workers": "4", "workflow": "", "workflow_maximum_workers": ""})
    assert answer.status_code == 302 and answer.headers["Location"] == "/ui/recruiters"
    [made] = api.get("/recruiters").json
    assert {k: made[k] for k in ("batch", "rank", "flavor", "provider", "region", "concurrency",
                                 "prefetch", "tasks_per_worker", "minimum_tasks",
                                 "maximum_workers", "workflow")} == {
        "batch": "b1", "rank": 1, "flavor": "auto:cpu>=8:ram>=32", "provider": "auto",
        "region": "auto", "concurrency": None, "prefetch": 0, "tasks_per_worker": 10,
        "minimum_tasks": 0, "maximum_workers": 4, "workflow": None}
    assert "Recruiter of rank 1 added to batch b1" in text(admin_gui.get("/ui/recruiters"))

    edit = text(admin_gui.get(f"/ui/recruiters/{made['id']}/edit"))
    assert 'value="auto:cpu&gt;=8:ram&gt;=32"' in edit and 'value="10"' in edit
    answer = admin_gui.post(f"/ui/recruiters/{made['id']}/edit", {
        "flavor": "small", "provider": "fake", "region": "r1", "concurrency": "2",
        "prefetch": "1", "tasks_per_worker": "", "minimum_tasks": "3", "maximum_workers": "6",
        "workflow": "wf", "workflow_maximum_workers": "2"})
    assert answer.status_code == 302, text(answer)
    [changed] = api.get("/recruiters").json
    assert (changed["flavor"], changed["provider"], changed["concurrency"],
            changed["tasks_per_worker"], changed["minimum_tasks"], changed["maximum_workers"],
            changed["workflow"], changed["workflow_maximum_workers"]) == \
        ("small", "fake", 2, None, 3, 6, "wf", 2)
    refused = admin_gui.post(f"/ui/recruiters/{made['id']}/edit", {
        "flavor": "auto:gpu>=x", "provider": "fake", "region": "r1", "prefetch": "0",
        "minimum_tasks": "0", "maximum_workers": ""})
    assert refused.status_code == 400
    assert "gpu needs a number" in error_for(text(refused), "flavor")
    assert "maximum workers is required" in error_for(text(refused), "maximum_workers")
    assert api.get("/recruiters").json[0]["flavor"] == "small"

    answer = admin_gui.post(f"/ui/recruiters/{made['id']}/delete", {})
    assert answer.status_code == 302 and api.get("/recruiters").json == []
    assert "deleted" in text(admin_gui.get("/ui/recruiters"))
    assert admin_gui.get(f"/ui/recruiters/{made['id']}/edit").status_code == 404
    gone = admin_gui.post(f"/ui/recruiters/{made['id']}/delete", {})
    assert gone.status_code == 404 and f"no recruiter {made['id']}" in text(gone)
    assert "no recruiter" in text(admin_gui.get("/ui/recruiters")).lower()


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"batch": "nope"}, "batch", "batch &#39;nope&#39; not found"),
    ({"batch": ""}, "batch", "Field required"),
    ({"batch": "no/slash"}, "batch", "should match pattern"),
    ({"rank": "1"}, "rank", "already has a recruiter of rank 1"),
    ({"tasks_per_worker": "0"}, "tasks_per_worker", "greater than or equal to 1"),
    ({"flavor": "auto:cpu>=ten"}, "flavor", "cpu needs a number"),
    ({"flavor": ""}, "flavor", "Field required"),
    ({"maximum_workers": "-1"}, "maximum_workers", "greater than or equal to 0"),
    ({"concurrency": "many"}, "concurrency", "valid integer"),
    ({"workflow": "a/b"}, "workflow", "should match pattern"),
])
def test_a_bad_recruiter_is_refused_next_to_its_field(admin_gui: GuiClient, api: ApiClient,
                                                      app, changes, field, message) -> None:
    api.post("/tasks", json={"command": "true", "batch": "b1"})
    api.post("/recruiters", json={"batch": "b1", "flavor": "small"})
    answer = admin_gui.post("/ui/recruiters", {"batch": "b1", "rank": "2", "flavor": "big",
                                               "maximum_workers": "2", **changes})
    assert answer.status_code == 400
    page = text(answer)
    assert message in error_for(page, field)
    for value in changes.values():
        if value:
            assert f'value="{value.replace(">", "&gt;")}"' in page  # what was typed is kept
    assert count(app, Recruiter) == 1 and count(app, Batch) == 1  # no batch made either


# -- accounts ----------------------------------------------------------------------------


def signed_in_as(app: Any, token: str) -> int:
    return ApiClient(app.test_client(), token).get("/me").status_code


def token_of(page: str) -> str:
    return page.split('id="new-token"')[1].split('value="')[1].split('"')[0]


def test_a_token_is_shown_once(admin_gui: GuiClient, app, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    answer = admin_gui.post("/ui/accounts", {"name": "alice", "role": "organizer",
                                             "email": "alice@example.org"})
    assert answer.status_code == 201 and answer.headers["Cache-Control"] == "no-store"
    token = token_of(text(answer))
    assert token.startswith("sqb_") and "shown this once" in text(answer)
    assert signed_in_as(app, token) == 200
    me = ApiClient(app.test_client(), token).get("/me").json
    assert me["role"] == "organizer" and me["account"]["email"] == "alice@example.org"
    listing = text(admin_gui.get("/ui/accounts"))
    [row] = rows(listing, "data-account")
    assert ">alice<" in row and ">organizer<" in row and "data-tokens>1<" in row
    assert token not in listing  # a reload never shows it again
    session_cookie = admin_gui.flask.get_cookie("scitq_bench_session")
    saved = app.session_interface.get_signing_serializer(app).loads(session_cookie.value)
    assert token not in repr(saved)  # not kept in a flash message either

    account = row.split('"')[1]
    minted = admin_gui.post(f"/ui/accounts/{account}/tokens", {})
    second = token_of(text(minted))
    assert minted.status_code == 201 and second != token and "still work" in text(minted)
    assert signed_in_as(app, token) == signed_in_as(app, second) == 200
    assert "data-tokens>2<" in text(admin_gui.get("/ui/accounts"))

    replaced = admin_gui.post(f"/ui/accounts/{account}/tokens", {"revoke_others": "1"})
    third = token_of(text(replaced))
    assert "other tokens are revoked" in text(replaced)
    assert (signed_in_as(app, token), signed_in_as(app, second), signed_in_as(app, third)) \
        == (401, 401, 200)

    revoked = admin_gui.post(f"/ui/accounts/{account}/revoke", {})
    assert revoked.status_code == 302
    listing = text(admin_gui.get("/ui/accounts"))
    assert "1 token(s) of alice revoked" in listing and "data-tokens>0<" in listing
    assert signed_in_as(app, third) == 401
    for secret in (token, second, third):
        assert secret not in caplog.text and secret not in listing

    deleted = admin_gui.post(f"/ui/accounts/{account}/delete", {})
    assert deleted.status_code == 302
    assert "Account alice deleted" in text(admin_gui.get("/ui/accounts"))
    assert count(app, Account) == 0
    gone = admin_gui.post(f"/ui/accounts/{account}/tokens", {})
    assert gone.status_code == 302
    assert f"no account &#39;{account}&#39;" in text(admin_gui.get("/ui/accounts"))


def test_revoking_ends_the_accounts_browser_sessions(admin_gui: GuiClient, app) -> None:
    token = token_of(text(admin_gui.post("/ui/accounts", {"name": "bob", "role": "participant"})))
    bob = GuiClient(app.test_client())
    bob.sign_in(token)
    assert bob.get("/ui/benchmarks").status_code == 200
    with app.extensions["scitq_bench"].db.read() as session:
        account = session.scalar(select(Account.id).where(Account.name == "bob"))
    assert admin_gui.post(f"/ui/accounts/{account}/revoke", {}).status_code == 302
    answer = bob.get("/ui/benchmarks")
    assert answer.status_code == 302 and "/ui/login" in answer.headers["Location"]


@pytest.mark.parametrize(("form", "field", "message"), [
    ({"name": "taken"}, "name", "an account named &#39;taken&#39; exists already"),
    ({"name": ""}, "name", "Field required"),
    ({"name": HOSTILE}, "name", "should match pattern"),
    ({"name": "x", "role": "admin"}, "role", "&#39;participant&#39; or &#39;organizer&#39;"),
])
def test_a_bad_account_is_refused_next_to_its_field(admin_gui: GuiClient, api: ApiClient,
                                                    app, form, field, message) -> None:
    api.post("/accounts", json={"name": "taken"})
    answer = admin_gui.post("/ui/accounts", {"role": "participant", **form})
    assert answer.status_code == 400
    page = text(answer)
    assert message in error_for(page, field) and 'id="new-token"' not in page
    assert HOSTILE not in page
    assert count(app, Account) == 1


def test_hostile_names_are_text(admin_gui: GuiClient, api: ApiClient, app) -> None:
    add_offers(app, "fake", [Offer(provider="fake", region="r1", flavor=HOSTILE, cpu=2,
                                   ram_gb=4, gpu_count=1, gpu_model=HOSTILE, cost=0.1)])
    api.post("/tasks", json={"command": "true", "batch": "b1"})
    assert api.post("/recruiters", json={"batch": "b1", "flavor": HOSTILE, "provider": HOSTILE,
                                         "region": HOSTILE}).status_code == 201
    assert api.post("/accounts", json={"name": "eve", "email": HOSTILE}).status_code == 201
    for path in (*PAGES, "/ui/recruiters/1/edit", "/ui/recruiters?fragment=1"):
        page = text(admin_gui.get(path))
        assert HOSTILE not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path
    refused = admin_gui.post("/ui/recruiters", {"batch": "b1", "flavor": "auto:" + HOSTILE})
    assert refused.status_code == 400 and HOSTILE not in text(refused)
    assert "&lt;script&gt;" in error_for(text(refused), "flavor")
