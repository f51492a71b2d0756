"""What a request may carry, checked once for every route: ids in URLs fit a 64-bit key,
integers fit the column they go to, no text holds a NUL character (PostgreSQL refuses
it in text columns) and no number is NaN or infinite. A value out of these bounds is
answered 400 or 404 naming the field, never passed on for the database to choke on."""

from __future__ import annotations

import math
from typing import Any

from flask import Flask, request
from werkzeug.routing import BaseConverter

from scitq_bench.exceptions import InvalidInput, NotFound

ID_MAX = 2**63 - 1  # the largest 64-bit key; also the cap of offsets and limits
INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # what an Integer column holds (PostgreSQL)
BIG_MIN = -(2**63)  # the smallest number a JSON body may carry anywhere
NUL = "\x00"
_ID_DIGITS = len(str(ID_MAX))


class IdConverter(BaseConverter):
    """``<id:task_id>``: ASCII digits only (``<int:>`` also takes other scripts'
    digits); the view-argument check below answers out-of-range values naming the
    argument."""

    regex = r"[0-9]+"
    weight = 50

    def to_python(self, value: str) -> int:
        # a string of thousands of digits is no id, and int() itself would refuse it
        return int(value) if len(value) <= _ID_DIGITS else ID_MAX + 1

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
    for name, value in request.args.items(multi=True):
        check_text(name, "query parameter name")
        check_text(value, f"query parameter {name}")
    if request.blueprint == "gui" and request.mimetype in (
            "application/x-www-form-urlencoded", "multipart/form-data"):
        for name, value in request.form.items(multi=True):
            check_text(name, "form field name")
            check_text(value, name)


def check_text(value: str, field: str) -> str:
    """``value`` unless it holds a NUL character."""
    if NUL in value:
        raise InvalidInput(f"{field}: NUL characters are not allowed", field=field)
    return value


def whole_number(raw: str) -> int:
    """A query value as a count or id, 0 to ``ID_MAX``; ValueError otherwise (usable
    as werkzeug's ``args.get(type=...)``, which then falls back to the default)."""
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > _ID_DIGITS:
        raise ValueError(f"not a whole number up to {ID_MAX}: {raw!r}")
    value = int(text)
    if value > ID_MAX:
        raise ValueError(f"not a whole number up to {ID_MAX}: {raw!r}")
    return value


def payload_problem(data: Any) -> tuple[str, str] | None:
    """The first value of a JSON document that no column could take: (field path,
    problem), or None. Text with NUL, NaN or infinity, integers past 64 bits. Runs on
    every body (a worker's report carries hundreds of events): the path is put together
    only once a problem is found."""
    found = _problem(data)
    if found is None:
        return None
    reversed_path, message = found
    return ".".join(reversed(reversed_path)), message


def _problem(data: Any) -> tuple[list[str], str] | None:
    """(path from the value up, innermost first; problem), or None."""
    if isinstance(data, str):
        return ([], "NUL characters are not allowed") if NUL in data else None
    if isinstance(data, bool):
        return None
    if isinstance(data, int):
        return None if BIG_MIN <= data <= ID_MAX else ([], f"must be between {BIG_MIN} and {ID_MAX}")
    if isinstance(data, float):
        return None if math.isfinite(data) else ([], "must be a finite number")
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and NUL in key:
                return [key.replace(NUL, "\\x00")], "NUL characters are not allowed in names"
            if (found := _problem(value)) is not None:
                found[0].append(str(key))
                return found
    elif isinstance(data, (list, tuple)):
        for index, value in enumerate(data):
            if (found := _problem(value)) is not None:
                found[0].append(str(index))
                return found
    return None
