"""One exception hierarchy for the whole project.

The server maps these to HTTP answers in one place (``server/api/errors.py``); the
client raises them back from error answers, so the CLI can print ``str(exc)``.
"""

from __future__ import annotations

import math
from typing import Any


class ScitqBenchError(Exception):
    """Something went wrong in scitq_bench."""

    http_status = 500
    code = "internal_error"

    def __init__(self, message: str | None = None, details: Any = None, *,
                 field: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        self.details = details
        # the request field the error is about, when it is about one: a form shows the
        # message next to that field (never guessed from the message's wording)
        self.field = field

    @property
    def message(self) -> str:
        return str(self)


class InvalidInput(ScitqBenchError):
    """The request is malformed or a field is invalid."""

    http_status = 400
    code = "invalid_input"


class TooLarge(InvalidInput):
    """The upload is bigger than allowed."""

    http_status = 413
    code = "too_large"


class Unauthorized(ScitqBenchError):
    """A valid token is required."""

    http_status = 401
    code = "unauthorized"


class Forbidden(ScitqBenchError):
    """This token may not do that."""

    http_status = 403
    code = "forbidden"


class NotFound(ScitqBenchError):
    """No such object."""

    http_status = 404
    code = "not_found"


class Conflict(ScitqBenchError):
    """The object is not in a state that allows this."""

    http_status = 409
    code = "conflict"


class IllegalTransition(Conflict):
    """The requested status change is not allowed from the current status."""

    code = "illegal_transition"


class ServerUnreachable(ScitqBenchError):
    """The server could not be reached."""

    http_status = 503
    code = "server_unreachable"


class Busy(ServerUnreachable):
    """The server is too busy to answer now; try again after ``retry_after`` seconds.

    A kind of ``ServerUnreachable``: whoever rides over an outage rides over this too."""

    code = "busy"

    def __init__(self, message: str | None = None, details: Any = None, *,
                 field: str | None = None, retry_after: float = 1.0) -> None:
        super().__init__(message, details, field=field)
        self.retry_after = retry_after

    @property
    def retry_after_header(self) -> str:
        """The ``Retry-After`` value: whole seconds, at least one."""
        return str(max(1, math.ceil(self.retry_after)))


ERRORS_BY_CODE: dict[str, type[ScitqBenchError]] = {
    cls.code: cls
    for cls in (
        ScitqBenchError,
        InvalidInput,
        TooLarge,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        IllegalTransition,
        ServerUnreachable,
        Busy,
    )
}


class TasksFailed(ScitqBenchError):
    """Some tasks waited for ended failed or cancelled (after their retries).

    Raised on the client side only (``Client.join(..., check=True)``); ``tasks`` holds
    the final state of those tasks."""

    code = "tasks_failed"

    def __init__(self, message: str | None = None, details: Any = None, *,
                 field: str | None = None, tasks: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, details, field=field)
        self.tasks = tasks or []
