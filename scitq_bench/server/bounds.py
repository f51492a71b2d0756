"""What a request may carry, checked once for every route (the bounds themselves are in
``limits``): ids in URLs fit a 64-bit key and no text in a path, query or GUI form holds
a NUL character. A value out of these bounds is answered 400 or 404 naming the field,
never passed on for the database to choke on."""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from werkzeug.routing import BaseConverter

from scitq_bench.exceptions import NotFound
from scitq_bench.server.limits import ID_DIGITS, ID_MAX, NUL, check_text


class IdConverter(BaseConverter):
    """``<id:task_id>``: ASCII digits only (``<int:>`` also takes other scripts'
    digits); the view-argument check below answers out-of-range values naming the
    argument."""

    regex = r"[0-9]+"
    weight = 50

    def to_python(self, value: str) -> int:
        # a string of thousands of digits is no id, and int() itself would refuse it
        return int(value) if len(value) <= ID_DIGITS else ID_MAX + 1

    def to_url(self, value: Any) -> str:
        return str(int(value))


def register(app: Flask) -> None:
    """Install the ``id`` converter and the checks; call before routes are added."""
    app.url_map.converters["id"] = IdConverter
    app.url_value_preprocessor(check_view_args)
    app.before_request(check_query)


def check_view_args(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Out-of-range ids are not found (named); path text with NUL is refused."""
    for name, value in (values or {}).items():
        if isinstance(value, int) and not 0 <= value <= ID_MAX:
            label = name.removesuffix("_id")
            raise NotFound(f"{label} not found: {name} must be between 0 and {ID_MAX}",
                           details={name: "out of range"}, field=name)
        if isinstance(value, str):
            check_text(value, name)


def check_query() -> None:
    """No query parameter (name or value) and no GUI form field may hold NUL."""
    # a NUL reaches a decoded query as %00, or raw where a server lets one through:
    # without either, the query is not parsed here (most calls carry none)
    query = request.environ.get("QUERY_STRING", "")
    if "%00" in query or NUL in query:
        for name, value in request.args.items(multi=True):
            check_text(name, "query parameter name")
            check_text(value, f"query parameter {name}")
    if request.blueprint == "gui" and request.mimetype in (
            "application/x-www-form-urlencoded", "multipart/form-data"):
        for name, value in request.form.items(multi=True):
            check_text(name, "form field name")
            check_text(value, name)
