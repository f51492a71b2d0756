"""Every error leaves the API as ``{"error", "message", "details"}`` with the right code."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from scitq_bench.exceptions import ScitqBenchError

log = logging.getLogger(__name__)


def http_error_answer(exc: HTTPException) -> tuple[Response, int]:
    """An HTTP error (404, 405, 413...) in the API's JSON shape."""
    code = (exc.name or "error").lower().replace(" ", "_")
    return jsonify(error=code, message=exc.description, details=None), exc.code or 500


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ScitqBenchError)
    def _domain_error(exc: ScitqBenchError):  # type: ignore[no-untyped-def]
        return jsonify(error=exc.code, message=str(exc), details=exc.details), exc.http_status

    app.register_error_handler(HTTPException, http_error_answer)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        log.exception("unexpected error")
        return jsonify(error="internal_error", message="internal server error", details=None), 500
