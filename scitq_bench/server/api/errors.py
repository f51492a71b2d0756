"""Every error leaves the API as ``{"error", "message", "details"}`` with the right code."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from scitq_bench.exceptions import Busy, ScitqBenchError
from scitq_bench.server.db import busy_error
from scitq_bench.server.web import http_error_answer

log = logging.getLogger(__name__)


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
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        busy = busy_error(exc)  # a busy database reached outside Database.write/read
        if busy is not None:
            log.warning("database busy: %s", exc)
            return domain_error_answer(busy)
        log.exception("unexpected error")
        return jsonify(error="internal_error", message="internal server error", details=None), 500
