"""What machines cost, and who they worked for.

A worker's price is per hour of its life (from its record to its release). That cost is
attributed to the work it did: an execution is charged its duration times the worker's
price divided by the worker's concurrency (its share of the machine). Batches and
submissions sum their executions; idle time is the recruiter's overhead, shown per
worker.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scitq_bench.server.queue.models import Execution, Task, Worker, utcnow


def _charge() -> Any:
    """The SQL expression of one execution's cost."""
    share = func.coalesce(Execution.duration, 0.0) / 3600.0
    return share * func.coalesce(Worker.cost_per_hour, 0.0) / func.coalesce(
        func.nullif(Worker.concurrency, 0), 1)


def batch_costs(session: Session, batch_ids: list[int]) -> dict[int, float]:
    """What each batch's executions cost, in one query."""
    if not batch_ids:
        return {}
    rows = session.execute(
        select(Task.batch_id, func.sum(_charge())).select_from(Execution)
        .join(Task, Task.id == Execution.task_id).join(Worker, Worker.id == Execution.worker_id)
        .where(Task.batch_id.in_(batch_ids)).group_by(Task.batch_id)).all()
    found = {batch_id: float(total or 0.0) for batch_id, total in rows}
    return {batch_id: found.get(batch_id, 0.0) for batch_id in batch_ids}


def batch_cost(session: Session, batch_id: int) -> float:
    return batch_costs(session, [batch_id])[batch_id]


def tasks_cost(session: Session, task_ids: list[int]) -> float:
    if not task_ids:
        return 0.0
    return float(session.scalar(
        select(func.coalesce(func.sum(_charge()), 0.0)).select_from(Execution)
        .join(Worker, Worker.id == Execution.worker_id)
        .where(Execution.task_id.in_(task_ids))) or 0.0)


def worker_cost(worker: Worker, now: datetime | None = None) -> float:
    """The machine's whole cost so far (busy or idle)."""
    if not worker.cost_per_hour:
        return 0.0
    end = worker.released_at or now or utcnow()
    hours = max(0.0, (end - worker.created_at).total_seconds() / 3600.0)
    return hours * worker.cost_per_hour


def spend_over_time(session: Session, since: datetime,
                    now: datetime | None = None) -> list[tuple[datetime, float]]:
    """What recruited machines cost from ``since`` on, at each moment the pace changed
    (a machine hired or given back) and now: as ``worker_cost`` counts, each machine's
    price per hour from its record to its release. Between two points the sum grows in a
    straight line, so these points draw it exactly."""
    now = now or utcnow()
    rows = session.execute(
        select(Worker.created_at, Worker.released_at, Worker.cost_per_hour)
        .where(Worker.cost_per_hour > 0, Worker.created_at <= now,
               (Worker.released_at.is_(None)) | (Worker.released_at >= since)))
    changes: list[tuple[datetime, float]] = []
    for created, released, rate in rows:
        if rate is None:  # left out by the query (cost_per_hour > 0)
            continue
        changes.append((max(created, since), rate))
        end = min(released or now, now)
        if end < now:
            changes.append((end, -rate))
    changes.sort(key=lambda change: change[0])
    points, spent, pace, moment = [(since, 0.0)], 0.0, 0.0, since
    for when, delta in changes:
        spent += pace * (when - moment).total_seconds() / 3600.0
        pace, moment = pace + delta, when
        _point(points, when, spent)
    spent += pace * (now - moment).total_seconds() / 3600.0
    _point(points, now, spent)
    return points


def _point(points: list[tuple[datetime, float]], when: datetime, spent: float) -> None:
    """One point per moment: machines hired at the same time make one step."""
    if points[-1][0] == when:
        points[-1] = (when, round(spent, 6))
    else:
        points.append((when, round(spent, 6)))
