"""Status vocabularies shared by the server, the worker and the CLI.

Statuses are defined once here; which transitions between them are legal is owned by
``scitq_bench.server.transitions``.
"""

from __future__ import annotations

from enum import Enum


class TaskStatus(str, Enum):
    WAITING = "waiting"  # prerequisites not yet succeeded
    PENDING = "pending"  # ready to be claimed
    ASSIGNED = "assigned"  # claimed by a worker, not yet started downloading
    ACCEPTED = "accepted"  # worker is fetching inputs/resources
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PAUSED = "paused"  # held back by a user (or its live process is suspended)
    CANCELLED = "cancelled"


class ExecutionStatus(str, Enum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"  # the worker could not take it; not the task's fault
    LOST = "lost"  # the worker stopped answering; not the task's fault
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"  # stopped or killed on request


class WorkerStatus(str, Enum):
    RUNNING = "running"
    PAUSED = "paused"
    OFFLINE = "offline"
    FAILED = "failed"
    EVICTED = "evicted"


class BatchStatus(str, Enum):
    RUNNING = "running"
    PAUSED = "paused"


class Signal(str, Enum):
    """What a user can ask a worker to do to a live execution."""

    PAUSE = "pause"  # SIGSTOP
    RESUME = "resume"  # SIGCONT
    STOP = "stop"  # SIGTERM, then SIGKILL after a grace period
    KILL = "kill"  # SIGKILL


LIVE_TASK_STATUSES = frozenset(
    {TaskStatus.ASSIGNED, TaskStatus.ACCEPTED, TaskStatus.RUNNING}
)
LIVE_EXECUTION_STATUSES = frozenset(
    {ExecutionStatus.PENDING, ExecutionStatus.ACCEPTED, ExecutionStatus.RUNNING}
)
FINAL_EXECUTION_STATUSES = frozenset(set(ExecutionStatus) - LIVE_EXECUTION_STATUSES)
FINAL_TASK_STATUSES = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED})

# The same sets as plain strings, for SQL ``IN`` clauses and comparisons with columns.
LIVE_TASK_VALUES = tuple(sorted(s.value for s in LIVE_TASK_STATUSES))
LIVE_EXECUTION_VALUES = tuple(sorted(s.value for s in LIVE_EXECUTION_STATUSES))
FINAL_TASK_VALUES = frozenset(s.value for s in FINAL_TASK_STATUSES)
FINAL_EXECUTION_VALUES = frozenset(s.value for s in FINAL_EXECUTION_STATUSES)
# workers that are up: they hold work or may take some
UP_WORKER_VALUES = (WorkerStatus.RUNNING.value, WorkerStatus.PAUSED.value)
