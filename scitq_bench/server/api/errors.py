"""Every error leaves the API as ``{"error", "message", "details"}`` with the right code."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from scitq_bench.exceptions import ScitqBenchError

log = logging.getLogger(__name__)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ScitqBenchError)
    def _domain_error(exc: ScitqBenchError):  # type: ignore[no-untyped-def]
        return jsonify(error=exc.code, message=str(exc), details=exc.details), exc.http_status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        if request.path.startswith("/ui/") and exc.code in (404, 405):
            # a routing error never reaches the GUI blueprint's own handlers
            from scitq_bench.server.gui.web import error_page

            return error_page(exc.code, "No such page." if exc.code == 404 else exc.description)
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(error=code, message=exc.description, details=None), exc.code or 500

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        log.exception("unexpected error")
        return jsonify(error="internal_error", message="internal server error", details=None), 500
