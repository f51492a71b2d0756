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

from scitq_bench.server.models import Execution, Task, Worker, utcnow


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
