"""Signing in and out, CSRF on every change, roles, expiry and revocation, through
the Flask test client (the browser tests drive the same pages in Chromium)."""

from __future__ import annotations

import time

import flask
import pytest
from sqlalchemy import delete

from scitq_bench.server import auth
from scitq_bench.server.gui import sessions
from scitq_bench.server.queue.models import ApiToken
from tests.support.gui import GuiClient, account_token


def test_pages_send_signed_out_visitors_to_sign_in_and_back(gui_client, admin_token):
    response = gui_client.get("/ui/workers?x=1")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/ui/login?next=/ui/workers")
    gui_client.get("/ui/login")
    response = gui_client.post("/ui/login", {"token": admin_token, "next": "/ui/workers?x=1"})
    assert response.status_code == 302 and response.headers["Location"] == "/ui/workers?x=1"
    assert "workers-table" in gui_client.get("/ui/workers").get_data(as_text=True)


def test_bad_tokens_are_refused_next_to_the_field(gui_client, app):
    gui_client.get("/ui/login")
    response = gui_client.post("/ui/login", {"token": "sqb_nope"})
    assert response.status_code == 401
    page = response.get_data(as_text=True)
    assert 'data-error-for="token"' in page and "invalid token" in page
    response = gui_client.post("/ui/login", {"token": ""})
    assert "enter your API token" in response.get_data(as_text=True)
    with app.extensions["scitq_bench"].db.write() as session:
        enroll = auth.issue_token(session, auth.ENROLL, name="enroll")
    response = gui_client.post("/ui/login", {"token": enroll})
    assert "is for machines" in response.get_data(as_text=True)


def test_the_cookie_holds_no_token_and_is_http_only(gui_client, admin_token):
    gui_client.get("/ui/login")
    response = gui_client.post("/ui/login", {"token": admin_token})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert admin_token not in cookie
    assert admin_token.split("_", 1)[1][:16] not in cookie


def test_posts_without_the_session_csrf_token_change_nothing(admin_gui: GuiClient):
    response = admin_gui.post("/ui/logout", csrf=False)
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert admin_gui.get("/ui/workers").status_code == 200  # still signed in
    response = admin_gui.post("/ui/logout", {"csrf_token": "forged"})
    assert response.status_code == 400
    assert admin_gui.post("/ui/logout").status_code == 302
    assert admin_gui.get("/ui/workers").status_code == 302  # signed out now


def test_sign_in_itself_needs_the_csrf_token(gui_client, admin_token):
    gui_client.get("/ui/login")
    response = gui_client.post("/ui/login", {"token": admin_token}, csrf=False)
    assert response.status_code == 400
    assert gui_client.get("/ui/workers").status_code == 302


def test_a_page_for_another_role_says_which_role_it_needs(gui_client, app):
    gui_client.sign_in(account_token(app, "alice", auth.PARTICIPANT))
    response = gui_client.get("/ui/workers")
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "needs the admin role" in page and "alice (participant)" in page
    assert gui_client.get("/ui/benchmarks").status_code == 200


def test_expired_and_revoked_sessions_go_back_to_sign_in(gui_client, app, admin_token, monkeypatch):
    gui_client.sign_in(admin_token)
    later = time.time() + sessions.SESSION_HOURS * 3600 + 5
    monkeypatch.setattr(sessions, "now", lambda: later)
    response = gui_client.get("/ui/workers")
    assert response.status_code == 302 and "next=/ui/workers" in response.headers["Location"]
    assert "session expired" in gui_client.get(response.headers["Location"]).get_data(as_text=True)
    monkeypatch.undo()
    token = account_token(app, "olga", auth.ORGANIZER)
    gui_client.sign_in(token)
    assert gui_client.get("/ui/benchmarks").status_code == 200
    with app.extensions["scitq_bench"].db.write() as session:
        session.execute(delete(ApiToken).where(ApiToken.token_hash == auth.hash_token(token)))
    assert gui_client.get("/ui/benchmarks").status_code == 302
    # a live region's poll is told with a 401, so its script can send the page to sign-in
    assert gui_client.get("/ui/workers?fragment=1").status_code == 401


def test_next_only_leads_to_this_site(gui_client, admin_token):
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        gui_client.get("/ui/login")
        response = gui_client.post("/ui/login", {"token": admin_token, "next": target})
        assert response.headers["Location"] == "/ui/", target
        gui_client.post("/ui/logout")


def test_the_signing_key_is_kept_private_and_reused(settings):
    first = sessions._secret_from_file(settings.data_dir / "k")
    assert sessions._secret_from_file(settings.data_dir / "k") == first
    assert (settings.data_dir / "k").stat().st_mode & 0o777 == 0o600


def test_pages_carry_a_strict_content_security_policy(admin_gui: GuiClient):
    response = admin_gui.get("/ui/workers")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert "object-src 'none'" in policy and "form-action 'self'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


def test_unknown_gui_pages_get_the_html_error_page(admin_gui: GuiClient, api):
    response = admin_gui.get("/ui/no-such-page")
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "Not found" in response.get_data(as_text=True)
    assert api.get("/no-such-endpoint").get_json()["error"] == "not_found"  # the API stays JSON


def test_a_wrong_method_gets_a_page_in_the_gui_and_json_in_the_api(admin_gui: GuiClient, api):
    response = admin_gui.flask.delete("/ui/workers")
    assert response.status_code == 405 and response.mimetype == "text/html"
    assert api.delete("/workers").get_json()["error"] == "method_not_allowed"


def test_the_signer_is_built_once_per_key_and_a_new_key_signs_out(admin_gui: GuiClient, app):
    interface = app.session_interface
    signer = interface.get_signing_serializer(app)
    assert interface.get_signing_serializer(app) is signer  # not rebuilt per request
    assert admin_gui.get("/ui/workers").status_code == 200  # its cookie reads back
    app.secret_key = "another key"  # a rotated key: the old cookies no longer verify
    assert interface.get_signing_serializer(app) is not signer
    assert admin_gui.get("/ui/workers").status_code == 302


def test_only_the_gui_opens_a_session(admin_gui: GuiClient, app, admin_token):
    """The API's calls carry tokens: they read no cookie, write none, and code serving
    them cannot put anything in a session."""
    interface = app.session_interface
    for path in ("/ui", "/ui/workers"):
        with app.test_request_context(path):
            assert interface.open_session(app, flask.request) is not None
    for path in ("/api/v1/workers", "/metrics", "/uix", "/"):
        with app.test_request_context(path):
            assert interface.open_session(app, flask.request) is None
    with app.test_request_context("/api/v1/workers"):
        app.preprocess_request()
        with pytest.raises(RuntimeError):
            flask.session["role"] = "admin"
    # the GUI's cookie sent along with an API call is neither read nor renewed
    client = admin_gui.flask
    answer = client.get("/api/v1/workers", headers={"Authorization": f"Bearer {admin_token}"})
    assert answer.status_code == 200 and "Set-Cookie" not in answer.headers
    assert client.get("/api/v1/workers").status_code == 401  # the cookie is no token
    assert admin_gui.get("/ui/workers").status_code == 200


def test_an_unrouted_path_under_the_gui_gets_a_page_and_elsewhere_json(admin_gui: GuiClient):
    """The same rule as the sessions' decides how a URL no route matches is answered."""
    for path in ("/ui/no-such-page", "/ui/workers/x/y/z"):
        answer = admin_gui.get(path)
        assert answer.status_code == 404 and answer.mimetype == "text/html", path
    for path in ("/api/v1/no-such-call", "/uix/workers", "/no-such-path"):
        answer = admin_gui.get(path)
        assert answer.status_code == 404 and answer.is_json, path
        assert answer.get_json()["error"] == "not_found", answer.get_json()
