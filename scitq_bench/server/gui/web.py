"""What every GUI page shares: one decorator for routes (sign-in, role, CSRF on every
POST), fragment rendering for live regions, and the answers to errors.

Pages are rendered on the server by Jinja with autoescaping, and live regions are
re-rendered by the same templates, so nothing a task or a participant wrote is ever
turned into markup in the browser."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse  # what redirect() answers

from scitq_bench.exceptions import Busy, ScitqBenchError
from scitq_bench.server import auth
from scitq_bench.server.context import server_context
from scitq_bench.server.gui import sessions

bp = Blueprint("gui", __name__, url_prefix=sessions.GUI_PREFIX, template_folder="templates",
               static_folder="static", static_url_path="/static")

ADMIN = (auth.ADMIN,)
ORGANIZERS = (auth.ADMIN, auth.ORGANIZER)
EVERYONE = sessions.GUI_ROLES
ROLE_WORDS = {
    ADMIN: "the admin role",
    ORGANIZERS: "the organizer or admin role",
    EVERYONE: "a signed-in account",
}


def page(rule: str, *, methods: tuple[str, ...] = ("GET",),
         roles: tuple[str, ...] = ADMIN) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a GUI view that needs one of ``roles``. Signed-out visitors go to the
    sign-in page and come back; a wrong role gets the 403 page naming the role needed;
    a POST without the session's CSRF token is refused before the view runs."""

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        def view(**kwargs: Any) -> Any:
            try:
                user = sessions.current_user()
            except sessions.SessionExpired as exc:
                return _to_sign_in(str(exc))
            if user is None:
                return _to_sign_in(None)
            if request.method == "POST" and not sessions.csrf_valid():
                return error_page(400, "This form is out of date (its security token does "
                                       "not match your session). Reload the page and try again.")
            if user.role not in roles:
                return error_page(403, f"This page needs {ROLE_WORDS.get(roles, ', '.join(roles))}; "
                                       f"you are signed in as {user.name} ({user.role}).")
            g.user = user
            return fn(**kwargs)

        view.__name__ = fn.__name__
        bp.add_url_rule(rule, endpoint=fn.__name__, view_func=view, methods=list(methods))
        return fn

    return decorator


def _to_sign_in(reason: str | None) -> BaseResponse:
    """A live region's poll gets 401 (its script sends the page to sign-in); a page
    goes to sign-in with ``next`` so the user lands back where they were."""
    if is_fragment():
        return Response("signed out", status=401, mimetype="text/plain")
    if request.method == "POST":
        back = sessions.safe_next(request.referrer and _path_of(request.referrer), url_for("gui.home"))
    else:
        back = request.full_path.rstrip("?")
    if reason:
        flash(f"{reason.capitalize()}: sign in again to go on.", "error")
    return redirect(url_for("gui.sign_in", next=back))


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def is_fragment() -> bool:
    return request.args.get("fragment") == "1"


def render(template: str, *, fragment: str | None = None, status: int = 200,
           **context: Any) -> tuple[str, int]:
    """The page, or only its live region (``?fragment=1``) rendered by ``fragment``."""
    name = fragment if fragment is not None and is_fragment() else template
    return render_template(name, **context), status


def error_page(status: int, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, message=message), status


@contextmanager
def reading() -> Iterator[Session]:
    with server_context().db.read() as session:
        yield session


@contextmanager
def writing() -> Iterator[Session]:
    with server_context().db.write() as session:
        yield session


def principal() -> auth.Principal:
    return g.user.principal


def done(message: str, to: str) -> BaseResponse:
    """After a change: say what happened and go where the form asked (a path on this
    site only), else ``to``."""
    flash(message, "ok")
    return redirect(sessions.safe_next(request.form.get("next"), to))


def failed(exc: ScitqBenchError, to: str) -> BaseResponse:
    """A refused change: the service's own words, shown on the page it came from."""
    flash(str(exc), "error")
    return redirect(sessions.safe_next(request.form.get("next"), to))


def sort_arguments(allowed: tuple[str, ...], problems: list[str],
                   args: dict[str, str]) -> tuple[str, str]:
    """``?sort=`` (one of ``allowed``) and ``?order=`` (asc or desc) as asked, '' for
    each not given or unknown (an unknown one said in ``problems``); the valid ones are
    kept in ``args`` for the page's links."""
    sort = (request.args.get("sort") or "").strip()
    if sort and sort not in allowed:
        problems.append(f"cannot sort by {sort!r}: choose {', '.join(allowed)}")
        sort = ""
    order = (request.args.get("order") or "").strip()
    if order and order not in ("asc", "desc"):
        problems.append(f"order {order!r} is neither asc nor desc")
        order = ""
    args.update({key: value for key, value in (("sort", sort), ("order", order)) if value})
    return sort, order


def form_int(name: str, errors: dict[str, str], *, minimum: int | None = 0,
             required: bool = True, label: str | None = None) -> int | None:
    """An integer form field; a problem goes into ``errors`` under the field's name so
    the template shows it next to the field."""
    raw = (request.form.get(name) or "").strip()
    label = label or name.replace("_", " ")
    if not raw:
        if required:
            errors[name] = f"{label} is required"
        return None
    try:
        value = int(raw)
    except ValueError:
        errors[name] = f"{label} must be a whole number, not {raw!r}"
        return None
    if minimum is not None and value < minimum:
        errors[name] = f"{label} must be at least {minimum}"
        return None
    return value


def not_found(what: str) -> NoReturn:
    abort(404, description=f"no {what}")


@bp.app_template_global()
def csrf_token() -> str:
    return sessions.csrf_token()


@bp.app_template_global()
def current_user() -> sessions.User | None:
    return g.get("user")


# No script but ours, no plugin, no framing of our pages, forms only to ourselves: even
# if some user text slipped through unescaped, the browser would refuse to run it.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'self'; frame-src 'self'"
)


@bp.after_request
def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")  # pages hold private data
    return response


@bp.errorhandler(ScitqBenchError)
def _domain_error(exc: ScitqBenchError) -> Response:
    page, status = error_page(exc.http_status, str(exc))
    response = make_response(page, status)
    if isinstance(exc, Busy):  # the browser (or a script scraping the page) may wait
        response.headers["Retry-After"] = exc.retry_after_header
    return response


@bp.errorhandler(404)
def _not_found(exc: Any) -> tuple[str, int]:
    return error_page(404, getattr(exc, "description", None) or "No such page.")


@dataclass(frozen=True)
class Pager:
    """One page of a long list: the database does the counting and the slicing, so a
    list of 100,000 rows costs one page of them."""

    offset: int
    limit: int
    total: int

    @classmethod
    def from_request(cls, total: int, limit: int = 50) -> Pager:
        try:
            offset = max(0, int(request.args.get("offset", "0")))
        except ValueError:
            offset = 0
        return cls(offset=min(offset, max(0, total - 1)) if total else 0, limit=limit, total=total)

    @property
    def first(self) -> int:
        return self.offset + 1 if self.total else 0

    @property
    def last(self) -> int:
        return min(self.offset + self.limit, self.total)

    @property
    def previous(self) -> int:
        return max(0, self.offset - self.limit)

    @property
    def next(self) -> int:
        return self.offset + self.limit

    @property
    def has_next(self) -> bool:
        return self.offset + self.limit < self.total
