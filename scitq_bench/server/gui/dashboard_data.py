"""The figures of the dashboard, each from one or two aggregate queries: the database
counts and groups, and only the counts come back.

Where a query can use an index it does: tasks by status (``task.status``), failures by
status (``execution.status`` leads ``ix_execution_status_lease``), live executions per
worker (``ix_execution_worker_status``), jobs by status (``job.status``). The charts
over time read the time columns of executions and tasks, which carry no index: each
refresh costs the database one pass over those tables (aggregates only leave it), so
the charts refresh every few seconds, not at every poll of the live region."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    case,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.orm import Session

from scitq_bench.server.queue.batches import time_bucket
from scitq_bench.server.queue.costs import spend_over_time
from scitq_bench.server.queue.models import Batch, Execution, Task, Worker
from scitq_bench.server.recruit.models import Job
from scitq_bench.server.serialize import epoch
from scitq_bench.states import (
    LIVE_EXECUTION_VALUES,
    LIVE_JOB_VALUES,
    UP_WORKER_VALUES,
    ExecutionStatus,
    TaskStatus,
)

TASK_STATUSES = tuple(s.value for s in TaskStatus)
# a task not yet on a worker: waiting for its prerequisites, or ready to be claimed
QUEUED_VALUES = (TaskStatus.WAITING.value, TaskStatus.PENDING.value)
FAILED_VALUES = (ExecutionStatus.FAILED.value, ExecutionStatus.TIMEOUT.value,
                 ExecutionStatus.LOST.value, ExecutionStatus.REFUSED.value)
SUCCEEDED_VALUES = (ExecutionStatus.SUCCEEDED.value,)
ENDED_FAILED_VALUES = (ExecutionStatus.FAILED.value, ExecutionStatus.TIMEOUT.value)
ERROR_HEAD = 120  # characters of an error message grouped on
TOP = 5
WORKERS_SHOWN = 50
JOBS_SHOWN = 10


def status_counts(session: Session) -> dict[str, int]:
    """Tasks by status, every status listed (0 when none)."""
    found = dict(session.execute(
        select(Task.status, func.count(Task.id)).group_by(Task.status)).all())
    return {status: int(found.get(status, 0)) for status in TASK_STATUSES}


@dataclass
class Failures:
    """Attempts that failed since a moment, and what was said most often."""

    total: int = 0
    reasons: list[tuple[str, str, int]] = field(default_factory=list)  # status, reason
    errors: list[tuple[str, int]] = field(default_factory=list)


def failures(session: Session, since: datetime) -> Failures:
    """Executions that ended failed, timed out, lost or refused since ``since``, with
    their most frequent (status, reason) pairs and error messages (their first
    ``ERROR_HEAD`` characters)."""
    where = (Execution.status.in_(FAILED_VALUES), Execution.finished_at >= since)
    reasons = session.execute(
        select(Execution.status, Execution.reason, func.count(Execution.id))
        .where(*where).group_by(Execution.status, Execution.reason)).all()
    head = func.substr(Execution.error, 1, ERROR_HEAD).label("error_head")
    errors = session.execute(
        select(head, func.count(Execution.id)).where(*where, Execution.error.is_not(None))
        .group_by(literal_column("error_head"))
        .order_by(func.count(Execution.id).desc()).limit(TOP)).all()
    ranked = sorted(((s, r or "", int(n)) for s, r, n in reasons), key=lambda x: -x[2])
    return Failures(total=sum(n for _, _, n in ranked), reasons=ranked[:TOP],
                    errors=[(text or "", int(n)) for text, n in errors])


@dataclass
class UpWorker:
    id: int
    name: str
    status: str
    batch: str | None  # the only batch it takes, if one is set
    running: dict[str, int]  # live executions per batch name
    cost_per_hour: float


@dataclass
class Provider:
    name: str
    workers: list[UpWorker]
    count: int = 0
    cost_per_hour: float = 0.0


def workers_up(session: Session) -> tuple[list[Provider], int]:
    """Workers up (running or paused, not given back) by provider, each with its batch
    and its live executions per batch; at most ``WORKERS_SHOWN`` listed, all counted."""
    up = (Worker.status.in_(UP_WORKER_VALUES), Worker.released_at.is_(None))
    totals = session.execute(
        select(Worker.provider, func.count(Worker.id), func.sum(Worker.cost_per_hour))
        .where(*up).group_by(Worker.provider)).all()
    rows = session.execute(
        select(Worker.id, Worker.name, Worker.status, Worker.provider, Batch.name,
               Worker.cost_per_hour)
        .outerjoin(Batch, Batch.id == Worker.batch_id).where(*up)
        .order_by(Worker.provider, Worker.name).limit(WORKERS_SHOWN)).all()
    running: dict[int, dict[str, int]] = {}
    if rows:
        for worker_id, batch, count in session.execute(
                select(Execution.worker_id, Batch.name, func.count(Execution.id))
                .join(Task, Task.id == Execution.task_id).join(Batch, Batch.id == Task.batch_id)
                .where(Execution.worker_id.in_([r[0] for r in rows]),
                       Execution.status.in_(LIVE_EXECUTION_VALUES))
                .group_by(Execution.worker_id, Batch.name)):
            if worker_id is not None:
                running.setdefault(worker_id, {})[batch] = int(count)
    providers = {name or "": Provider(name=name or "", workers=[], count=int(count),
                                      cost_per_hour=float(cost or 0.0))
                 for name, count, cost in totals}
    for worker_id, name, status, provider, batch, cost in rows:
        providers[provider or ""].workers.append(UpWorker(
            id=worker_id, name=name, status=status, batch=batch,
            running=running.get(worker_id, {}), cost_per_hour=float(cost or 0.0)))
    ordered = sorted(providers.values(), key=lambda p: (p.name == "", p.name))
    return ordered, sum(p.count for p in ordered)


def spend(session: Session, now: datetime) -> dict[str, float]:
    """What recruited machines cost: per hour now (the machines up) and over the last
    hour and day, as ``costs.spend_over_time`` counts it."""
    per_hour = session.scalar(
        select(func.coalesce(func.sum(Worker.cost_per_hour), 0.0))
        .where(Worker.status.in_(UP_WORKER_VALUES), Worker.released_at.is_(None)))
    day = spend_over_time(session, now - timedelta(hours=24), now)
    hour = spend_over_time(session, now - timedelta(hours=1), now)
    return {"per_hour": float(per_hour or 0.0), "last_hour": hour[-1][1], "last_day": day[-1][1]}


def jobs_in_flight(session: Session) -> tuple[list[Job], int]:
    """Deploy and destroy jobs pending or running, newest first."""
    live = Job.status.in_(LIVE_JOB_VALUES)
    count = session.scalar(select(func.count(Job.id)).where(live)) or 0
    jobs = list(session.scalars(select(Job).where(live).order_by(Job.id.desc())
                                .limit(JOBS_SHOWN)))
    return jobs, int(count)


# -- over time ---------------------------------------------------------------------------


def _per_bucket(session: Session, source: Any, moment: Any, since: datetime, now: datetime,
                width: int, *extra: ColumnElement[bool]) -> Counter[int]:
    """How many rows of ``source`` have ``moment`` in each bucket of (since, now]."""
    bucket = time_bucket(session, moment, width).label("dash_bucket")
    rows = session.execute(
        select(bucket, func.count()).select_from(source)
        .where(moment > since, moment <= now, *extra)
        .group_by(literal_column("dash_bucket")))
    counts: Counter[int] = Counter()
    for index, count in rows:
        if index is not None:
            counts[int(index)] += int(count)
    return counts


def _open_over_time(session: Session, source: Any, start: Any, end: Any, since: datetime,
                    now: datetime, width: int, *extra: ColumnElement[bool]) -> list[list[float]]:
    """How many intervals [start, end) were open at ``since`` and at the end of each
    bucket after it (``end`` NULL: still open): the count at ``since``, then the
    openings and closings counted per bucket."""
    count = int(session.scalar(
        select(func.count()).select_from(source)
        .where(start <= since, or_(end.is_(None), end > since), *extra)) or 0)
    opened = _per_bucket(session, source, start, since, now, width, *extra)
    closed = _per_bucket(session, source, end, since, now, width, *extra)
    first, last = int(epoch(since)) // width, int(epoch(now)) // width
    points = [[epoch(since), float(count)]]
    for index in range(first, last + 1):
        count += opened.get(index, 0) - closed.get(index, 0)
        points.append([float(min((index + 1) * width, epoch(now))), float(count)])
    return points


def queue_over_time(session: Session, since: datetime, now: datetime,
                    width: int) -> dict[str, list[list[float]]]:
    """Tasks queued and executions running at each ``width``-second step since
    ``since``, rebuilt from the times the database keeps (no history is stored):

    - *running*: an execution runs from its ``started_at`` to its ``finished_at``
      (exact, from the executions' own times);
    - *queued*: a task is queued from its ``created_at`` until its first execution was
      created (a worker claimed it); a task never claimed is queued until now while it is
      waiting or pending, else until its ``modified_at`` (held back, cancelled). A task
      queued again between two attempts is not counted again, and deleted tasks are
      gone from the past too: the line is a lower bound, exact for tasks run once."""
    first_claim = (select(Execution.task_id.label("task_id"),
                          func.min(Execution.created_at).label("claimed_at"))
                   .group_by(Execution.task_id).subquery())
    left_queue = func.coalesce(first_claim.c.claimed_at, case(
        (Task.status.in_(QUEUED_VALUES), None), else_=Task.modified_at))
    tasks = Task.__table__.outerjoin(first_claim, first_claim.c.task_id == Task.id)
    return {
        "queued": _open_over_time(session, tasks, Task.created_at, left_queue, since, now, width),
        "running": _open_over_time(session, Execution.__table__, Execution.started_at,
                                   Execution.finished_at, since, now, width,
                                   Execution.started_at.is_not(None)),
    }


def ended_over_time(session: Session, since: datetime, now: datetime,
                    width: int) -> dict[str, list[list[float]]]:
    """Executions that succeeded or failed (failed, timed out) per minute, in buckets of
    ``width`` seconds by their end, since ``since``."""
    rates: dict[str, list[list[float]]] = {}
    first, last = int(epoch(since)) // width, int(epoch(now)) // width
    for name, values in (("succeeded", SUCCEEDED_VALUES), ("failed", ENDED_FAILED_VALUES)):
        counts = _per_bucket(session, Execution.__table__, Execution.finished_at, since, now,
                             width, Execution.status.in_(values))
        rates[name] = [[float(index * width), round(counts.get(index, 0) * 60 / width, 3)]
                       for index in range(first, last + 1)]
    return rates
