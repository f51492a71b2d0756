"""The one place where the domains built on the queue are connected to it.

The queue knows nothing of benchmarks: what follows tasks to their end is listed here,
and every entry point that can move a task (the app factory, the background loops) calls
``connect()`` before it starts. Importing this module also loads every table
(``tables``), so that the whole schema is mapped.
"""

from __future__ import annotations

from scitq_bench.server import tables  # noqa: F401 - every domain's tables, mapped
from scitq_bench.server.bench.runs import refresh_runs
from scitq_bench.server.queue import transitions

# Called in the same transaction as the moves of tasks to a final status.
FINAL_LISTENERS: tuple[transitions.FinalListener, ...] = (refresh_runs,)


def connect() -> None:
    """Register the listeners with the state machine (idempotent)."""
    for listener in FINAL_LISTENERS:
        transitions.on_final(listener)
