"""The web GUI: server-rendered pages under ``/ui`` for admins, organizers and
participants, on the same accounts, tokens and services as the API."""

from __future__ import annotations

from flask import Flask, redirect

from scitq_bench.server.gui import sessions
from scitq_bench.settings import ServerSettings


def register(app: Flask, settings: ServerSettings) -> None:
    # importing the page modules registers their routes on the blueprint
    from scitq_bench.server.gui import (  # noqa: F401
        batches,
        bench_leaderboards,
        bench_submissions,
        benchmarks,
        jobs,
        signin,
        tasks,
        workers,
    )
    from scitq_bench.server.gui.web import bp

    sessions.configure(app, settings)
    app.register_blueprint(bp)
    app.add_url_rule("/", "root", lambda: redirect("/ui/"))
