"""Sign in and out, and the home page that sends each role where its work is."""

from __future__ import annotations

from typing import Any

from flask import flash, g, redirect, render_template, request, url_for

from scitq_bench.exceptions import Forbidden, Unauthorized
from scitq_bench.server import auth
from scitq_bench.server.gui import sessions
from scitq_bench.server.gui.web import EVERYONE, bp, error_page, page


@bp.route("/login", methods=["GET", "POST"], endpoint="sign_in")
def sign_in() -> Any:
    """Public: the form, and its POST (CSRF-checked like every other change)."""
    target = sessions.safe_next(request.values.get("next"), url_for("gui.home"))
    if request.method == "GET":
        return render_template("login.html", next=target, errors={})
    if not sessions.csrf_valid():
        return error_page(400, "This form is out of date (its security token does not "
                               "match your session). Reload the page and try again.")
    try:
        user = sessions.sign_in(request.form.get("token", ""))
    except (Unauthorized, Forbidden) as exc:
        return render_template("login.html", next=target, errors={"token": str(exc)}), 401
    flash(f"Signed in as {user.name} ({user.role}).", "ok")
    return redirect(target)


@page("/logout", methods=("POST",), roles=EVERYONE)
def sign_out() -> Any:
    sessions.sign_out()
    flash("Signed out.", "ok")
    return redirect(url_for("gui.sign_in"))


@page("/", roles=EVERYONE)
def home() -> Any:
    if g.user.role == auth.ADMIN:
        return redirect(url_for("gui.dashboard"))
    return redirect(url_for("gui.benchmarks"))
