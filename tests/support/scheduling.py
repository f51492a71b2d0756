"""The queue's domain functions called directly on a database (no HTTP): tasks and
workers made, reports sent, claims taken, task states read."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from scitq_bench.server.queue import reports, scheduling, workers
from scitq_bench.server.queue import tasks as task_domain
from scitq_bench.server.queue.models import Task
from scitq_bench.server.schemas import ExecutionEvent, TaskCreate, WorkerRegister

LEASE = 30.0  # the lease, in seconds, claims are taken with


def make_tasks(db: Any, *specs: dict[str, Any]) -> list[int]:
    with db.write() as session:
        created = task_domain.create_tasks(db, session, [TaskCreate(**s) for s in specs])
        return [t.id for t in created]


def make_worker(db: Any, name: str = "w1", **fields: Any) -> int:
    fields.setdefault("concurrency", 4)
    with db.write() as session:
        worker, _token, _ = workers.register(session, WorkerRegister(name=name, **fields))
        return worker.id


def task_state(db: Any, task_id: int) -> SimpleNamespace:
    with db.read() as session:
        task = session.get(Task, task_id)
        return SimpleNamespace(status=task.status, status_reason=task.status_reason,
                               retries_used=task.retries_used, losses=task.losses)


def send(db: Any, worker_id: int, *events: dict[str, Any]) -> list[dict[str, Any]]:
    return reports.report(db, worker_id, [ExecutionEvent(**e) for e in events]).results


def claim(db: Any, worker_id: int, count: int = 10) -> list[dict[str, Any]]:
    return scheduling.claim(db, worker_id, count, LEASE)
