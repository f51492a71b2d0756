"""Live log tails for the GUI's ``data-log-tail`` panes (tasks and submissions).

The answer is ``{"text", "offset", "done", "execution", "reset"}``: text from byte
``?offset=`` of the execution's stream, cut before a partial UTF-8 character. The page
sends back the execution it was reading (``?seen=``); when the tail now follows another
execution (a retry or a relaunch), the answer starts that one from its first byte and
says ``reset`` so the page clears what it showed."""

from __future__ import annotations

from flask import Response, jsonify, request

from scitq_bench.server.context import server_context
from scitq_bench.server.limits import whole_number

TAIL_CHUNK = 256 << 10  # bytes of log one poll sends at most


def tail_answer(execution: tuple[int, bool] | None, stream: str, *,
                more_may_come: bool) -> Response:
    """``execution``: (id, ended) of the execution to read, None when there is none yet.
    ``more_may_come``: another execution may follow this one (its task is not over), so
    the tail is not done when this one ends."""
    offset = request.args.get("offset", 0, type=whole_number)
    if execution is None:
        return jsonify(text="", offset=offset, done=not more_may_come, execution=None,
                       reset=False)
    execution_id, ended = execution
    seen = request.args.get("seen", type=whole_number)
    reset = seen is not None and seen != execution_id
    if reset:
        offset = 0
    logs = server_context().logs
    size = logs.size(execution_id, stream)  # read after the status: nothing is missed
    data = b"".join(logs.read(execution_id, stream, offset,
                              min(TAIL_CHUNK, max(0, size - offset))))
    if not (ended and offset + len(data) >= size):
        data = whole_characters(data)
    offset += len(data)
    return jsonify(text=data.decode("utf-8", errors="replace"), offset=offset,
                   done=ended and offset >= size and not more_may_come,
                   execution=execution_id, reset=reset)


def whole_characters(data: bytes) -> bytes:
    """``data`` without a UTF-8 character cut at its end (its rest comes next time)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # the first byte of a character
            length = 1 if byte < 0x80 else 2 if byte >> 5 == 0b110 else \
                3 if byte >> 4 == 0b1110 else 4 if byte >> 3 == 0b11110 else 1
            return data if length <= back else data[:-back]
    return data
