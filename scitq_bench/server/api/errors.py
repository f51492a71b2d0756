"""Every error leaves the API as ``{"error", "message", "details"}`` with the right code."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from scitq_bench.exceptions import Busy, ScitqBenchError
from scitq_bench.server.db import busy_error

log = logging.getLogger(__name__)


def http_error_answer(exc: HTTPException) -> tuple[Response, int]:
    """An HTTP error (404, 405, 413...) in the API's JSON shape."""
    code = (exc.name or "error").lower().replace(" ", "_")
    return jsonify(error=code, message=exc.description, details=None), exc.code or 500


def domain_error_answer(exc: ScitqBenchError) -> tuple[Response, int]:
    """A domain error as its JSON answer; ``Busy`` adds ``Retry-After`` (whole seconds)."""
    response = jsonify(error=exc.code, message=str(exc), details=exc.details)
    if isinstance(exc, Busy):
        response.headers["Retry-After"] = exc.retry_after_header
    return response, exc.http_status


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ScitqBenchError, domain_error_answer)
    app.register_error_handler(HTTPException, http_error_answer)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        busy = busy_error(exc)  # a busy database reached outside Database.write/read
        if busy is not None:
            log.warning("database busy: %s", exc)
            return domain_error_answer(busy)
        log.exception("unexpected error")
        return jsonify(error="internal_error", message="internal server error", details=None), 500
