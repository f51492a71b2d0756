"""What the API's views and the GUI's pages share of the web: reading the query string,
serving logs, text downloads and participants' HTML, the JSON answer to an HTTP error,
and this app's recruitment. Everything here knows Flask's request or app; the services
these views call do not, and get what they need from here as plain values."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import overload

from flask import Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from scitq_bench.exceptions import InvalidInput
from scitq_bench.server.bench.outputs import Step, detailed_results_path
from scitq_bench.server.context import server_context
from scitq_bench.server.downloads import attachment, send_stored
from scitq_bench.server.limits import ID_MAX
from scitq_bench.server.queue import executions
from scitq_bench.server.recruit.runtime import EXTENSION as RECRUITMENT
from scitq_bench.server.recruit.runtime import NOT_RUNNING, Recruitment
from scitq_bench.server.storage import FileStorage
from scitq_bench.states import FINAL_EXECUTION_VALUES

# -- the query string -------------------------------------------------------------------


@overload
def int_arg(name: str, default: int, minimum: int | None = 0, maximum: int = ID_MAX) -> int: ...


@overload
def int_arg(name: str, default: None = None, minimum: int | None = 0,
            maximum: int = ID_MAX) -> int | None: ...


def int_arg(name: str, default: int | None = None, minimum: int | None = 0,
            maximum: int = ID_MAX) -> int | None:
    """An integer from the query, ``minimum`` to ``maximum`` (at most a 64-bit key),
    or ``default`` when absent."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    return _bounded_int(name, raw, -ID_MAX - 1 if minimum is None else minimum, maximum)


def _bounded_int(name: str, raw: str, minimum: int, maximum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"query parameter {name} must be an integer, got {raw[:40]!r}",
                           field=name) from None
    if not minimum <= value <= maximum:
        raise InvalidInput(f"query parameter {name} must be between {minimum} and {maximum}, "
                           f"got {raw[:40]}", field=name)
    return value


@overload
def float_arg(name: str, default: float) -> float: ...


@overload
def float_arg(name: str, default: None) -> float | None: ...


def float_arg(name: str, default: float | None) -> float | None:
    """A number >= 0 from the query, or ``default`` when absent."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"query parameter {name} must be a number, got {raw[:40]!r}",
                           field=name) from None
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(f"query parameter {name} must be a finite number >= 0, "
                           f"got {raw[:40]!r}", field=name)
    return value


def list_arg(name: str, allowed: list[str] | None = None) -> list[str]:
    """A list given as repeated parameters and/or comma-separated values."""
    values = [v for raw in request.args.getlist(name) for v in raw.split(",") if v]
    if allowed is not None:
        unknown = [v for v in values if v not in allowed]
        if unknown:
            raise InvalidInput(
                f"query parameter {name}: unknown value(s) {', '.join(unknown)}; "
                f"expected one of {', '.join(allowed)}"
            )
    return values


def int_list_arg(name: str) -> list[int]:
    """Ids given as repeated parameters and/or comma-separated, each a 64-bit key."""
    return [_bounded_int(name, v, 0, ID_MAX) for v in list_arg(name)]


def bool_arg(name: str) -> bool:
    return request.args.get(name, "").lower() in ("1", "true", "yes", "on")


# -- logs, downloads and pages ----------------------------------------------------------

MAX_WAIT = 30.0
POLL = 0.1
STATUS_EVERY = 5  # re-read the execution's status every half second while waiting


def log_response(
    execution_id: int, current_status: Callable[[], str], stream: str | None = None
) -> Response:
    """Bytes of one stream from ``offset`` (``limit`` at most), streamed so a 50 MB log
    never sits in memory. With ``wait``, a live tail: answer as soon as new bytes exist,
    the execution ends, or ``wait`` passes."""
    logs = server_context().logs
    stream = stream or request.args.get("stream", "stdout")
    offset = int_arg("offset", 0) or 0
    limit = int_arg("limit")
    wait = min(float_arg("wait", 0.0), MAX_WAIT)
    status = current_status()
    size = logs.size(execution_id, stream)
    deadline = time.monotonic() + wait
    polls = 0
    while size <= offset and status not in FINAL_EXECUTION_VALUES and time.monotonic() < deadline:
        time.sleep(POLL)
        size = logs.size(execution_id, stream)
        polls += 1
        if polls % STATUS_EVERY == 0:
            status = current_status()
    end = size if limit is None else min(size, offset + limit)
    headers = {
        "X-Log-Size": str(size),
        "X-Next-Offset": str(max(end, offset)),
        "X-Execution-Id": str(execution_id),
        "X-Execution-Status": status,
    }
    body = logs.read(execution_id, stream, offset, max(end - offset, 0))
    return Response(body, mimetype="application/octet-stream", headers=headers)


def execution_log(execution_id: int, stream: str | None = None) -> Response:
    """``log_response`` of an execution, its status read again while a tail waits."""
    db = server_context().db
    return log_response(execution_id, lambda: executions.status_of(db, execution_id), stream)


def csv_attachment(text: str, name: str) -> Response:
    """``text`` offered as the CSV download ``name``."""
    return Response(text, mimetype="text/csv", headers={"Content-Disposition": attachment(name)})


DETAILED_RESULTS_POLICY = ("sandbox; default-src 'none'; img-src data:; "
                           "style-src 'unsafe-inline'")


def detailed_results_response(files: FileStorage, step: Step) -> Response:
    """A run's detailed results page as the API and the GUI serve it: participants' HTML,
    so sandboxed by its own header (no scripts, no same-origin access) whatever it
    contains and however it is opened."""
    response = send_stored(files.open(detailed_results_path(step)), mimetype="text/html")
    response.headers["Content-Security-Policy"] = DETAILED_RESULTS_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def http_error_answer(exc: HTTPException) -> tuple[Response, int]:
    """An HTTP error (404, 405, 413...) in the API's JSON shape."""
    code = (exc.name or "error").lower().replace(" ", "_")
    return jsonify(error=code, message=exc.description, details=None), exc.code or 500


# -- this app's recruitment -------------------------------------------------------------


def current_recruitment() -> Recruitment | None:
    """This app's recruitment, or None where the server does not recruit."""
    found: Recruitment | None = current_app.extensions.get(RECRUITMENT)
    return found


def require_recruitment() -> Recruitment:
    found = current_recruitment()
    if found is None:
        raise InvalidInput(NOT_RUNNING)
    return found
