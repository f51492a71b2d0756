"""Copying execution logs to the terminal page by page, so a 50 MB log is never held
in memory, with an optional live tail on the server's ``wait`` long-poll."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import BinaryIO, Protocol

from scitq_bench.states import FINAL_EXECUTION_VALUES

PAGE = 1 << 20  # bytes asked for per request
# Seconds each long-poll may wait for new bytes. Kept short because the server reads
# the execution status when the request arrives: a wait on a quiet stream is not cut
# short when the execution ends, so this bounds how late ``-f`` notices the end.
FOLLOW_WAIT = 2.0
NO_EXECUTION_POLL = 1.0  # seconds between looks while a task has no execution yet


class Fetch(Protocol):
    def __call__(self, stream: str, offset: int, limit: int, wait: float) -> tuple[bytes, int, str]:
        """(bytes, next offset, execution status; "" when there is no execution)."""


def selected_streams(stdout_only: bool, stderr_only: bool) -> list[tuple[str, BinaryIO]]:
    """Which logs go where: ``-o`` stdout, ``-e`` stderr (both to our stdout, to pipe
    them); by default the task's stdout to ours and its stderr to ours."""
    out = sys.stdout.buffer
    if stdout_only and stderr_only:
        return [("stdout", out), ("stderr", out)]
    if stdout_only:
        return [("stdout", out)]
    if stderr_only:
        return [("stderr", out)]
    return [("stdout", out), ("stderr", sys.stderr.buffer)]


def copy_log(fetch: Fetch, stream: str, sink: BinaryIO, *, follow: bool,
             stop: threading.Event, lock: threading.Lock,
             gone: Callable[[], bool] | None = None) -> None:
    """Write one stream to ``sink`` from the start. Without ``follow``, stop at the
    current end; with it, until the execution is in a final status (the server reads
    the status before the log, so the last answer holds every byte). ``gone`` says
    whether to give up while there is no execution yet."""
    offset = 0
    while not stop.is_set():
        data, next_offset, status = fetch(stream, offset, PAGE, FOLLOW_WAIT if follow else 0)
        if data:
            with lock:
                sink.write(data)
                sink.flush()
        offset = max(next_offset, offset)
        if len(data) >= PAGE:
            continue  # a full page: more is waiting
        if not follow or status in FINAL_EXECUTION_VALUES:
            return
        if not status:
            if gone is None or gone():
                return
            stop.wait(NO_EXECUTION_POLL)


def copy_logs(fetch: Fetch, streams: list[tuple[str, BinaryIO]], *, follow: bool,
              gone: Callable[[], bool] | None = None) -> None:
    """Copy each stream; live tails of two streams run side by side in threads so
    neither waits on the other's long-poll."""
    sys.stdout.flush()
    stop, lock = threading.Event(), threading.Lock()
    if not follow or len(streams) == 1:
        for stream, sink in streams:
            copy_log(fetch, stream, sink, follow=follow, stop=stop, lock=lock, gone=gone)
        return
    errors: list[BaseException] = []

    def run(stream: str, sink: BinaryIO) -> None:
        try:
            copy_log(fetch, stream, sink, follow=True, stop=stop, lock=lock, gone=gone)
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=run, args=pair, daemon=True) for pair in streams]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    finally:
        stop.set()
    if errors:
        raise errors[0]
