"""A request id for every request: the one a proxy sent (``X-Request-Id``, as nginx's
``$request_id``) when it is well formed, a new one otherwise. It is echoed in the answer,
carried by every log line written while serving the request, and written in the access
log, so one id follows a call from the proxy to the error it caused."""

from __future__ import annotations

import logging
import os
import re

from flask import Flask, Response, g, has_request_context, request

HEADER = "X-Request-Id"
# what a proxy's id looks like; anything else (too long, spaces, control characters)
# is replaced rather than written into logs
ACCEPTED = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")
NONE = "-"


def current() -> str:
    """The id of the request being served, or ``-`` outside a request."""
    if has_request_context():
        return str(g.get("request_id", NONE))
    return NONE


def install(app: Flask) -> None:
    @app.before_request
    def _identify() -> None:
        given = request.headers.get(HEADER, "")
        # 128 random bits in hex, as a UUID4's hex without building the UUID object
        g.request_id = given if ACCEPTED.fullmatch(given) else os.urandom(16).hex()

    @app.after_request
    def _echo(response: Response) -> Response:
        response.headers[HEADER] = current()
        return response


class RequestIdFilter(logging.Filter):
    """Gives every record a ``request_id`` attribute (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current()
        return True
