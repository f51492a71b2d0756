"""Status vocabularies shared by the server, the worker and the CLI.

Statuses are defined once here; which transitions between them are legal is owned by
the transitions modules: ``scitq_bench.server.queue.transitions`` (tasks, executions,
workers, batches), ``scitq_bench.server.recruit.transitions`` (jobs) and
``scitq_bench.server.bench.transitions`` (submissions, attempts, runs).

Members are ``str`` mixins: they compare equal to (and hash as) the strings stored in
status columns. Formatted in text they show their class (``TaskStatus.PENDING``), so
text and SQL take ``.value``.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal


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


class JobStatus(str, Enum):
    """A deploy or destroy job of recruitment."""

    PENDING = "pending"  # queued for the leader's runner
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # may be retried: pending again
    CANCELLED = "cancelled"  # by a user; a running job stops in the step it is in


class SubmissionStatus(str, Enum):
    """A benchmark submission: its newest attempt's status once it has one."""

    SUBMITTED = "submitted"  # created, its first attempt not started yet
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AttemptStatus(str, Enum):
    """One attempt (the first run or a re-run) of a submission: ends with its last run."""

    RUNNING = "running"
    FINISHED = "finished"  # every run has scores
    FAILED = "failed"
    CANCELLED = "cancelled"


class RunStatus(str, Enum):
    """One task of the phase for one attempt: follows its prediction and scoring tasks."""

    RUNNING = "running"
    FINISHED = "finished"  # scored
    FAILED = "failed"
    CANCELLED = "cancelled"


class InstanceStatus(str, Enum):
    """A provider's machine, as the provider reports it (no column: asked each time)."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPED = "stopped"
    GONE = "gone"


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

LIVE_JOB_STATUSES = frozenset({JobStatus.PENDING, JobStatus.RUNNING})
FINAL_JOB_STATUSES = frozenset(set(JobStatus) - LIVE_JOB_STATUSES)
LIVE_JOB_VALUES = tuple(sorted(s.value for s in LIVE_JOB_STATUSES))
FINAL_JOB_VALUES = frozenset(s.value for s in FINAL_JOB_STATUSES)
# submissions that stop changing (until a re-run)
FINAL_SUBMISSION_VALUES = frozenset(
    s.value for s in (SubmissionStatus.FINISHED, SubmissionStatus.FAILED,
                      SubmissionStatus.CANCELLED))

# Statuses a request body may carry, as pydantic ``Literal`` types (their validation
# errors and JSON schema list the plain values). Each is a subset of its enum's values:
# tests/unit/test_states.py holds them to it.
ReportedExecutionStatus = Literal[
    "accepted", "running", "succeeded", "failed", "refused", "timeout", "cancelled"
]  # what a worker reports of an execution (pending and lost are the server's)
RequestedTaskStatus = Literal["paused", "pending"]  # a user pauses or queues a task again
RequestedWorkerStatus = Literal["running", "paused"]  # a user pauses or resumes a worker
