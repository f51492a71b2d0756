"""The web GUI: server-rendered pages under ``/ui`` for admins, organizers and
participants, on the same accounts, tokens and services as the API."""

from __future__ import annotations

from typing import Any

from flask import Flask, redirect, request
from werkzeug.exceptions import HTTPException

from scitq_bench.server.gui import sessions
from scitq_bench.server.web import http_error_answer
from scitq_bench.settings import ServerSettings


def register(app: Flask, settings: ServerSettings) -> None:
    # importing the page modules registers their routes on the blueprint
    from scitq_bench.server.gui import (  # noqa: F401
        accounts,
        batches,
        bench_leaderboards,
        bench_submissions,
        benchmarks,
        dashboard,
        flavors,
        jobs,
        recruiters,
        signin,
        tasks,
        workers,
    )
    from scitq_bench.server.gui.web import bp

    sessions.configure(app, settings)
    app.register_blueprint(bp)
    app.add_url_rule("/", "root", lambda: redirect("/ui/"))
    # browsers ask for /favicon.ico whatever the page links: answer it, no 404 logged
    app.add_url_rule("/favicon.ico", "favicon",
                     lambda: redirect("/ui/static/favicon.svg", code=301))
    for code in (404, 405):
        app.register_error_handler(code, _routing_error)


def _routing_error(exc: HTTPException) -> Any:
    """A URL no route matches never reaches the blueprint's own handlers: under the
    GUI's prefix it gets a page, elsewhere the API's JSON answer."""
    from scitq_bench.server.gui.web import error_page

    if sessions.under_gui(request.path):
        return error_page(exc.code or 404,
                          "No such page." if exc.code == 404 else exc.description or "")
    return http_error_answer(exc)
