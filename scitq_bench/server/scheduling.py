"""Running work: claims, heartbeats and leases, worker reports, and the reaper.

Rules: a task has at most one live execution; losing a worker re-queues its tasks
without spending their retries (``Task.losses`` counts those); a task's own failures
spend ``Task.retries_used`` until ``retries_allowed`` is reached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from scitq_bench.exceptions import Conflict, Forbidden
from scitq_bench.server import tasks as task_domain
from scitq_bench.server import transitions
from scitq_bench.server.db import Database
from scitq_bench.server.models import Batch, Execution, Signal, Task, Worker, utcnow
from scitq_bench.server.schemas import ExecutionEvent, Heartbeat
from scitq_bench.states import LIVE_TASK_STATUSES, BatchStatus, WorkerStatus
from scitq_bench.states import ExecutionStatus as E
from scitq_bench.states import TaskStatus as T

LIVE_EXEC_VALUES = task_domain.LIVE_EXEC_VALUES
LIVE_TASK_VALUES = [s.value for s in LIVE_TASK_STATUSES]


def execution_payload(execution: Execution, task: Task) -> dict[str, Any]:
    """Everything a worker needs to run one execution (also stored as its snapshot)."""
    return {
        "execution_id": execution.id,
        "task_id": task.id,
        "attempt": execution.attempt,
        "name": task.name,
        "command": task.command,
        "shell": task.shell,
        "container": task.container,
        "container_options": task.container_options,
        "inputs": list(task.inputs or []),
        "resources": list(task.resources or []),
        "output": task.output,
        "download_timeout": task.download_timeout,
        "run_timeout": task.run_timeout,
        "cpu": task.cpu,
        "mem": task.mem,
        "gpu": task.gpu,
    }


def claim(db: Database, worker_id: int, max_count: int, lease_seconds: float) -> list[dict]:
    """Atomically hand up to ``max_count`` pending tasks to a worker (never above its
    concurrency + prefetch), highest batch then task priority first, oldest first."""
    with db.write() as session:
        worker = session.get(Worker, worker_id)
        if worker is None or worker.status != WorkerStatus.RUNNING.value:
            return []
        held = session.scalar(
            select(func.count())
            .select_from(Execution)
            .where(Execution.worker_id == worker_id, Execution.status.in_(LIVE_EXEC_VALUES))
        )
        room = min(max_count, worker.concurrency + worker.prefetch - (held or 0))
        if room <= 0:
            return []
        candidates = db.lock_rows(_claimable(worker).limit(room), Task)
        claimed = list(session.scalars(candidates).all())
        if not claimed:
            return []
        now = utcnow()
        lease = now + timedelta(seconds=lease_seconds)
        moved = transitions.move_tasks(
            session, [t.id for t in claimed], T.ASSIGNED, only_from=[T.PENDING]
        )
        if moved != len(claimed):  # impossible under the lock; refuse to half-claim
            raise Conflict("claim raced with another transaction; nothing was claimed")
        executions = [
            Execution(
                task_id=task.id,
                worker_id=worker_id,
                attempt=task.retries_used + task.losses + 1,
                status=E.PENDING.value,
                lease_deadline=lease,
                created_at=now,
            )
            for task in claimed
        ]
        session.add_all(executions)
        session.flush()
        payloads = []
        for execution, task in zip(executions, claimed, strict=True):
            payload = execution_payload(execution, task)
            execution.snapshot = payload
            payloads.append(payload)
        worker.last_contact_at = now
        return payloads


def _claimable(worker: Worker) -> Any:
    conditions = [
        Task.status == T.PENDING.value,
        Batch.status == BatchStatus.RUNNING.value,
        ~exists().where(Execution.task_id == Task.id, Execution.status.in_(LIVE_EXEC_VALUES)),
    ]
    if worker.batch_id is not None:
        conditions.append(Task.batch_id == worker.batch_id)
    if worker.cpus is not None:
        conditions.append(or_(Task.cpu.is_(None), Task.cpu <= worker.cpus))
    if worker.mem_gb is not None:
        conditions.append(or_(Task.mem.is_(None), Task.mem <= worker.mem_gb))
    conditions.append(Task.gpu <= (worker.gpus or 0))
    return (
        select(Task)
        .join(Batch, Batch.id == Task.batch_id)
        .where(and_(*conditions))
        .order_by(Batch.priority.desc(), Task.priority.desc(), Task.id)
    )


@dataclass
class HeartbeatAnswer:
    worker: Worker
    signals: list[Signal] = field(default_factory=list)
    drop: list[int] = field(default_factory=list)


def heartbeat(
    session: Session, worker_id: int, beat: Heartbeat, lease_seconds: float
) -> HeartbeatAnswer:
    """Renew the leases of what the worker still holds, acknowledge signals, and tell it
    which executions are no longer its own (lost or deleted) so it drops them."""
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise Forbidden(f"worker {worker_id} is not registered")
    now = utcnow()
    worker.last_contact_at = now
    worker.stats = beat.stats
    if worker.status == WorkerStatus.OFFLINE.value:
        transitions.move_worker(session, worker_id, WorkerStatus.RUNNING)
    held = set(beat.executions)
    live = set()
    if held:
        live = set(
            session.scalars(
                select(Execution.id).where(
                    Execution.id.in_(held),
                    Execution.worker_id == worker_id,
                    Execution.status.in_(LIVE_EXEC_VALUES),
                )
            ).all()
        )
        session.execute(
            update(Execution)
            .where(Execution.id.in_(live))
            .values(lease_deadline=now + timedelta(seconds=lease_seconds))
            .execution_options(synchronize_session=False)
        )
    if beat.acknowledged_signals:
        session.execute(
            update(Signal)
            .where(Signal.id.in_(beat.acknowledged_signals), Signal.worker_id == worker_id)
            .values(acknowledged_at=now)
            .execution_options(synchronize_session=False)
        )
    signals = pending_signals(session, worker_id)
    session.flush()
    session.refresh(worker)
    return HeartbeatAnswer(worker=worker, signals=signals, drop=sorted(held - live))


def pending_signals(session: Session, worker_id: int) -> list[Signal]:
    return list(
        session.scalars(
            select(Signal)
            .where(Signal.worker_id == worker_id, Signal.acknowledged_at.is_(None))
            .order_by(Signal.id)
        ).all()
    )


@dataclass
class ReportOutcome:
    results: list[dict[str, Any]]
    work_released: bool  # a task went back to (or newly entered) the queue


def report(session: Session, worker_id: int, events: list[ExecutionEvent]) -> ReportOutcome:
    """Apply a worker's execution events in order. Each event is answered on its own:
    an event about an execution that is no longer live (lost, deleted) is refused so the
    worker drops it, which is what makes a late finish after a requeue harmless."""
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise Forbidden(f"worker {worker_id} is not registered")
    worker.last_contact_at = utcnow()
    results = []
    released = False
    for event in events:
        ok, error, freed = _apply_event(session, worker_id, event)
        released = released or freed
        results.append({"execution_id": event.execution_id, "ok": ok, "error": error})
    return ReportOutcome(results=results, work_released=released)


def _apply_event(
    session: Session, worker_id: int, event: ExecutionEvent
) -> tuple[bool, str | None, bool]:
    execution = session.get(Execution, event.execution_id)
    if execution is None:
        return False, f"execution {event.execution_id} not found", False
    if execution.worker_id != worker_id:
        return False, f"execution {event.execution_id} belongs to another worker", False
    target = E(event.status)
    now = utcnow()
    happened = now - timedelta(seconds=event.age or 0)
    values: dict[str, Any] = {}
    if target == E.RUNNING:
        values["started_at"] = happened
    elif target != E.ACCEPTED:
        values.update(
            finished_at=happened,
            return_code=event.return_code,
            error=event.error,
            output_files=event.output_files,
            duration=event.duration,
        )
        if execution.started_at is None and event.duration is not None:
            values["started_at"] = happened - timedelta(seconds=event.duration)
    if not transitions.move_execution(session, execution.id, target, values):
        session.refresh(execution)
        return False, f"execution {execution.id} is {execution.status}; it cannot become {target.value}", False
    return True, None, _task_follows(session, execution.task_id, target, event)


def _task_follows(session: Session, task_id: int, outcome: E, event: ExecutionEvent) -> bool:
    """Move the task after its live execution moved; True if work entered the queue."""
    if outcome == E.ACCEPTED:
        transitions.move_tasks(session, [task_id], T.ACCEPTED, only_from=[T.ASSIGNED])
        return False
    if outcome == E.RUNNING:
        transitions.move_tasks(session, [task_id], T.RUNNING, only_from=[T.ASSIGNED, T.ACCEPTED])
        return False
    task = session.get(Task, task_id, populate_existing=True)
    if task is None:
        return False
    if outcome == E.SUCCEEDED:
        if task.status in LIVE_TASK_VALUES or task.status == T.PAUSED.value:
            transitions.move_tasks(session, [task_id], T.SUCCEEDED)
            return bool(task_domain.release_dependents(session, task_id))
        return False
    if task.status not in LIVE_TASK_VALUES:
        return False  # paused or cancelled on request: the user's decision stands
    if outcome in (E.FAILED, E.TIMEOUT):
        return _spend_retry_or_fail(session, task, outcome, event)
    # refused, or cancelled by the worker itself: not the task's fault
    transitions.move_tasks(
        session, [task_id], T.PENDING, reason=f"execution {outcome.value}",
        values={"losses": Task.losses + 1},
    )
    return True


def _spend_retry_or_fail(session: Session, task: Task, outcome: E, event: ExecutionEvent) -> bool:
    what = "timed out" if outcome == E.TIMEOUT else f"exit code {event.return_code}"
    if event.error and outcome != E.TIMEOUT:
        what = f"{what}: {event.error}"
    if task.retries_used < task.retries_allowed:
        transitions.move_tasks(
            session, [task.id], T.PENDING,
            reason=f"attempt failed ({what}); retry {task.retries_used + 1} of "
            f"{task.retries_allowed}",
            values={"retries_used": Task.retries_used + 1},
        )
        return True
    transitions.move_tasks(session, [task.id], T.FAILED, reason=what)
    task_domain.fail_dependents(session, task.id)
    return False


def reap(db: Database, lease_seconds: float, now: datetime | None = None) -> dict[str, int]:
    """Executions whose lease expired are lost and their tasks re-queued without
    spending retries; workers silent for a lease go offline."""
    now = now or utcnow()
    with db.write() as session:
        expired = list(
            session.execute(
                db.lock_rows(
                    select(Execution.id, Execution.task_id, Execution.worker_id).where(
                        Execution.status.in_(LIVE_EXEC_VALUES), Execution.lease_deadline < now
                    ),
                    Execution,
                )
            ).all()
        )
        requeued = lose_executions(session, expired, now, "lease expired: the worker stopped answering")
        silent = _silent_workers(session, now - timedelta(seconds=lease_seconds))
    return {"lost": len(expired), "requeued": requeued, "offline": silent}


def lose_executions(session: Session, rows: list[Any], now: datetime, reason: str) -> int:
    """Mark executions lost and put their live tasks back to pending (no retry spent)."""
    if not rows:
        return 0
    transitions.move_executions(
        session, [r.id for r in rows], E.LOST, {"finished_at": now, "error": reason}
    )
    return transitions.move_tasks(
        session, [r.task_id for r in rows], T.PENDING,
        only_from=[T.ASSIGNED, T.ACCEPTED, T.RUNNING],
        reason=reason, values={"losses": Task.losses + 1},
    )


def _silent_workers(session: Session, silent_since: datetime) -> int:
    rows = session.scalars(
        select(Worker.id).where(
            Worker.status.in_([WorkerStatus.RUNNING.value, WorkerStatus.PAUSED.value]),
            Worker.last_contact_at < silent_since,
        )
    ).all()
    for worker_id in rows:
        transitions.move_worker(session, worker_id, WorkerStatus.OFFLINE)
    return len(rows)


def extend_leases(db: Database, lease_seconds: float) -> int:
    """At server start: give every live execution a fresh lease, so a server that was
    down does not blame its workers for the silence."""
    with db.write() as session:
        return session.execute(
            update(Execution)
            .where(Execution.status.in_(LIVE_EXEC_VALUES))
            .values(lease_deadline=utcnow() + timedelta(seconds=lease_seconds))
            .execution_options(synchronize_session=False)
        ).rowcount
