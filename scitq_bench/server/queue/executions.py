"""Executions as the API and the GUI read them: lists, one execution, a task's attempts,
a worker's live ones, and an execution's status for log tails."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scitq_bench.server.db import Database
from scitq_bench.server.lookup import get_or_404
from scitq_bench.server.queue.models import Batch, Execution, Task, Worker
from scitq_bench.server.queue.tasks import get_task
from scitq_bench.states import LIVE_EXECUTION_VALUES


def get_execution(session: Session, execution_id: int) -> Execution:
    return get_or_404(session, Execution, execution_id)


def status_of(db: Database, execution_id: int) -> str:
    """The execution's status now, in a read of its own (a log tail asks it again while
    it waits)."""
    with db.read() as session:
        return get_execution(session, execution_id).status


def list_executions(session: Session, *, task_id: int | None = None,
                    worker_id: int | None = None, statuses: Sequence[str] = (),
                    batch: str | None = None, limit: int | None = None,
                    offset: int | None = None) -> list[Execution]:
    """Executions by id, filtered by task, worker, statuses and batch name."""
    stmt = select(Execution).order_by(Execution.id)
    if task_id is not None:
        stmt = stmt.where(Execution.task_id == task_id)
    if worker_id is not None:
        stmt = stmt.where(Execution.worker_id == worker_id)
    if statuses:
        stmt = stmt.where(Execution.status.in_(statuses))
    if batch:
        stmt = (stmt.join(Task, Task.id == Execution.task_id).join(Batch)
                .where(Batch.name == batch))
    if limit:
        stmt = stmt.limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    return list(session.scalars(stmt).all())


def of_task(session: Session, task_id: int) -> list[Execution]:
    """The task's attempts, oldest first (a 404 when there is no such task)."""
    get_task(session, task_id)
    return list(session.scalars(
        select(Execution).where(Execution.task_id == task_id).order_by(Execution.id)).all())


def of_task_with_workers(session: Session, task_id: int) -> list[tuple[Execution, str | None]]:
    """The task's attempts, oldest first, each with its worker's name (None when it had
    none, or the worker record is gone)."""
    return [(execution, name) for execution, name in session.execute(
        select(Execution, Worker.name).outerjoin(Worker, Worker.id == Execution.worker_id)
        .where(Execution.task_id == task_id).order_by(Execution.id))]


def live_of_worker(session: Session, worker_id: int, limit: int = 100) -> list[Any]:
    """(id, task_id, status, started_at) of the worker's live executions, oldest first."""
    return list(session.execute(
        select(Execution.id, Execution.task_id, Execution.status, Execution.started_at)
        .where(Execution.worker_id == worker_id, Execution.status.in_(LIVE_EXECUTION_VALUES))
        .order_by(Execution.id).limit(limit)).all())
