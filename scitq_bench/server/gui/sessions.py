"""Browser sessions for the web GUI: sign in with an API token, a signed cookie that
holds only the token's hash, its role, an expiry and a CSRF token.

The cookie never carries the token itself, and every request checks that the token
still exists, so revoking a token signs its browser sessions out too."""

from __future__ import annotations

import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Request, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

from scitq_bench.exceptions import Forbidden, Unauthorized
from scitq_bench.server import auth
from scitq_bench.server.bench.accounts import display_name
from scitq_bench.server.context import server_context
from scitq_bench.settings import ServerSettings

SESSION_HOURS = 12.0
GUI_PREFIX = "/ui"  # the web GUI's blueprint (gui.web), the one user of sessions
SECRET_FILE = "gui-secret"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# roles that may sign in to the GUI; worker and enrollment tokens are for machines
GUI_ROLES = (auth.ADMIN, auth.ORGANIZER, auth.PARTICIPANT)


@dataclass(frozen=True)
class User:
    """Who is signed in: the API principal plus a name to show."""

    principal: auth.Principal
    name: str

    @property
    def role(self) -> str:
        return self.principal.role


def configure(app: Flask, settings: ServerSettings) -> None:
    """Cookie settings and the signing key. The key comes from
    ``SCITQ_BENCH_SECRET_KEY`` or a file created once in the data directory (mode 0600),
    so sessions survive restarts and several server processes agree."""
    app.secret_key = os.environ.get("SCITQ_BENCH_SECRET_KEY") or _secret_from_file(
        settings.data_dir / SECRET_FILE)
    app.session_interface = _SigningOnce()
    secure = os.environ.get("SCITQ_BENCH_SECURE_COOKIES")
    if secure is None:
        secure = "1" if (settings.public_url or "").startswith("https://") else "0"
    app.config.update(
        SESSION_COOKIE_NAME="scitq_bench_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure.lower() in ("1", "true", "yes"),
        # the expiry is inside the signed session, not the cookie's date: answers need
        # not set the cookie again (a poll in flight would otherwise bring back a
        # cookie the user just cleared by signing out)
        SESSION_REFRESH_EACH_REQUEST=False,
    )


class _SigningOnce(SecureCookieSessionInterface):
    """Flask's signed cookie sessions, for the GUI's pages only, their signer built once
    per key rather than on every request: Flask builds it even for a request with no
    cookie (every worker call), and building it serializes a probe value, a few per
    cent of a heartbeat. The API and the worker calls carry tokens, never this cookie:
    they get Flask's null session (no cookie read, none written), which refuses writes."""

    _built: tuple[tuple[Any, ...], URLSafeTimedSerializer | None] | None = None

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not under_gui(request.path):
            return None  # Flask's null session
        return super().open_session(app, request)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))
        built = self._built
        if built is None or built[0] != keys:
            built = self._built = (keys, super().get_signing_serializer(app))
        return built[1]


def under_gui(path: str) -> bool:
    """Whether a URL path is one of the GUI's (its pages, forms and static files)."""
    return path == GUI_PREFIX or path.startswith(GUI_PREFIX + "/")


def _secret_from_file(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    try:  # O_EXCL: two processes starting together keep the first key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    return secret


def now() -> float:
    """The clock sessions expire by (a function, so tests can move it)."""
    return time.time()


def sign_in(token: str) -> User:
    """Check ``token`` and start a fresh session for it (the old one is dropped, so a
    session id planted before sign-in is worth nothing)."""
    token = token.strip()
    if not token:
        raise Unauthorized("enter your API token")
    context = server_context()
    with context.db.read() as db_session:
        principal = auth.authenticate(db_session, f"Bearer {token}")
        if principal.role not in GUI_ROLES:
            raise Forbidden(f"a {principal.role} token is for machines; sign in with an "
                            "admin, organizer or participant token")
        name = display_name(db_session, principal)
    session.clear()
    session.update(
        token_hash=auth.hash_token(token),
        role=principal.role,
        account_id=principal.account_id,
        name=name,
        expires=now() + SESSION_HOURS * 3600,
        csrf=secrets.token_urlsafe(32),
    )
    session.permanent = True
    return User(principal, name)


def sign_out() -> None:
    session.clear()


class SessionExpired(Exception):
    """The browser had a session, but it is too old or its token was revoked."""


def current_user() -> User | None:
    """The signed-in user, None when nobody is; raises SessionExpired when there was a
    session that no longer holds."""
    token_hash = session.get("token_hash")
    if not token_hash:
        return None
    if float(session.get("expires", 0)) < now():
        session.clear()
        raise SessionExpired("your session expired")
    with server_context().db.read() as db_session:
        principal = auth.principal_for_hash(db_session, str(token_hash))
    if principal is None or principal.role != session.get("role"):
        session.clear()
        raise SessionExpired("your token was revoked")
    return User(principal, str(session.get("name") or principal.role))


def csrf_token() -> str:
    """The session's CSRF token (made on first use for pages seen signed out)."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def csrf_valid() -> bool:
    expected = session.get("csrf")
    given = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    return bool(expected) and hmac.compare_digest(str(expected), given)


def safe_next(target: str | None, default: str) -> str:
    """Only paths on this site: no scheme, no host, no ``//`` (open-redirect proof)."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") \
            or "\\" in target:
        return default
    return target
