"""Reading and appending execution logs over HTTP, streamed in both directions so a
50 MB log never sits in memory."""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Response, request

from scitq_bench.server.api.registry import float_arg, int_arg
from scitq_bench.server.context import server_context
from scitq_bench.states import FINAL_EXECUTION_VALUES

MAX_WAIT = 30.0
POLL = 0.1
STATUS_EVERY = 5  # re-read the execution's status every half second while waiting


def log_response(
    execution_id: int, current_status: Callable[[], str], stream: str | None = None
) -> Response:
    """Bytes of one stream from ``offset`` (``limit`` at most). With ``wait``, a live
    tail: answer as soon as new bytes exist, the execution ends, or ``wait`` passes."""
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
