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
from scitq_bench.server import transitions
from scitq_bench.server.db import Database
from scitq_bench.server.models import Batch, Execution, Signal, Task, Worker, utcnow
from scitq_bench.server.schemas import Heartbeat
from scitq_bench.states import LIVE_EXECUTION_VALUES, UP_WORKER_VALUES, BatchStatus, WorkerStatus
from scitq_bench.states import ExecutionStatus as E
from scitq_bench.states import TaskStatus as T

SNAPSHOT_COLUMNS = (
    Task.id, Task.name, Task.command, Task.shell, Task.container, Task.container_options,
    Task.inputs, Task.resources, Task.output, Task.download_timeout, Task.run_timeout,
    Task.cpu, Task.mem, Task.gpu, Task.network, Task.layout, Task.score_keys,
)


def task_snapshot(row: Any, batch_network: bool = False) -> dict[str, Any]:
    """What a worker needs to run a task; stored with the execution as what ran.
    ``network`` is what the task may do (its own flag or its batch's); ``gpu`` is a
    count, or ``GPU_ALL`` (-1) for all the worker's GPUs."""
    return {
        "task_id": row.id,
        "name": row.name,
        "command": row.command,
        "shell": row.shell,
        "container": row.container,
        "container_options": row.container_options,
        "network": bool(row.network or batch_network),
        "inputs": list(row.inputs or []),
        "resources": list(row.resources or []),
        "output": row.output,
        "download_timeout": row.download_timeout,
        "run_timeout": row.run_timeout,
        "cpu": row.cpu,
        "mem": row.mem,
        "gpu": row.gpu,
        "layout": row.layout,
        "score_keys": row.score_keys,
    }


def claim(db: Database, worker_id: int, max_count: int, lease_seconds: float) -> list[dict]:
    """Atomically hand up to ``max_count`` pending tasks to a worker (never above its
    concurrency + prefetch), highest batch then task priority first, oldest first.
    A few statements whatever the count: select (locking), one update, one insert."""
    with db.write() as session:
        return claim_in(db, session, worker_id, max_count, lease_seconds)


def claim_in(db: Database, session: Session, worker_id: int, max_count: int,
             lease_seconds: float) -> list[dict]:
    """``claim`` inside the caller's write transaction (a report and the claim that
    follows it share one)."""
    worker = session.get(Worker, worker_id)
    if worker is None or worker.status != WorkerStatus.RUNNING.value:
        return []
    held = session.scalar(
        select(func.count())
        .select_from(Execution)
        .where(Execution.worker_id == worker_id, Execution.status.in_(LIVE_EXECUTION_VALUES))
    )
    room = min(max_count, worker.concurrency + worker.prefetch - (held or 0))
    if room <= 0:
        return []
    picked = _pick(db, session, worker, room)
    if not picked:
        return []
    claimed = [row for row, _network in picked]
    snapshots = [task_snapshot(row, batch_network) for row, batch_network in picked]
    now = utcnow()
    moved = transitions.move_tasks(
        session, [row.id for row in claimed], T.ASSIGNED, only_from=[T.PENDING]
    )
    if moved != len(claimed):  # impossible under the lock; refuse to half-claim
        raise Conflict("claim raced with another transaction; nothing was claimed")
    rows = [
        {
            "task_id": row.id,
            "worker_id": worker_id,
            "attempt": row.retries_used + row.losses + 1,
            "status": E.PENDING.value,
            "lease_deadline": now + timedelta(seconds=lease_seconds),
            "created_at": now,
            "output_files": [],
            "snapshot": snapshot,
        }
        for row, snapshot in zip(claimed, snapshots, strict=True)
    ]
    ids = db.insert_returning_ids(session, Execution, rows)
    worker.last_contact_at = now
    return [
        {"execution_id": execution_id, "attempt": row["attempt"], **snapshot}
        for execution_id, row, snapshot in zip(ids, rows, snapshots, strict=True)
    ]


def _pick(db: Database, session: Session, worker: Worker, room: int) -> list[tuple[Any, bool]]:
    """Up to ``room`` claimable tasks with their batch's network flag, batch by batch in
    priority order. Within a batch the claim index yields tasks already ordered, so each
    query stops at its limit."""
    batches = select(Batch.id, Batch.network).where(
        Batch.status == BatchStatus.RUNNING.value,
        exists().where(Task.batch_id == Batch.id, Task.status == T.PENDING.value),
    )
    if worker.batch_id is not None:
        batches = batches.where(Batch.id == worker.batch_id)
    picked: list[tuple[Any, bool]] = []
    for batch_id, network in session.execute(
        batches.order_by(Batch.priority.desc(), Batch.id)
    ).all():
        statement = db.lock_rows(_claimable(worker, batch_id).limit(room - len(picked)), Task)
        picked.extend((row, bool(network)) for row in session.execute(statement).all())
        if len(picked) >= room:
            break
    return picked


def _claimable(worker: Worker, batch_id: int) -> Any:
    conditions = [
        Task.status == T.PENDING.value,
        Task.batch_id == batch_id,
        ~exists().where(Execution.task_id == Task.id, Execution.status.in_(LIVE_EXECUTION_VALUES)),
    ]
    if worker.cpus is not None:
        conditions.append(or_(Task.cpu.is_(None), Task.cpu <= worker.cpus))
    if worker.mem_gb is not None:
        conditions.append(or_(Task.mem.is_(None), Task.mem <= worker.mem_gb))
    if not worker.containers:
        conditions.append(or_(Task.container.is_(None), Task.container == ""))
    gpus = worker.gpus or 0
    # GPU_ALL (-1) asks for every GPU of the worker: at least one
    conditions.append(Task.gpu == 0 if gpus <= 0 else Task.gpu <= gpus)
    return (
        select(*SNAPSHOT_COLUMNS, Task.retries_used, Task.losses)
        .where(and_(*conditions))
        .order_by(Task.priority.desc(), Task.id)
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
                    Execution.status.in_(LIVE_EXECUTION_VALUES),
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


def reap(db: Database, lease_seconds: float, now: datetime | None = None,
         *, sweep_silent: bool = True) -> dict[str, int]:
    """Executions whose lease expired are lost and their tasks re-queued without
    spending retries; workers silent for a lease go offline (unless ``sweep_silent`` is
    off: right after the server's own stall, their silence is the server's doing)."""
    now = now or utcnow()
    with db.write() as session:
        expired = list(
            session.execute(
                db.lock_rows(
                    select(Execution.id, Execution.task_id, Execution.worker_id).where(
                        Execution.status.in_(LIVE_EXECUTION_VALUES), Execution.lease_deadline < now
                    ),
                    Execution,
                )
            ).all()
        )
        requeued = lose_executions(session, expired, now, "lease expired: the worker stopped answering")
        silent = (_silent_workers(session, now - timedelta(seconds=lease_seconds))
                  if sweep_silent else 0)
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
            Worker.status.in_(UP_WORKER_VALUES),
            Worker.last_contact_at < silent_since,
        )
    ).all()
    for worker_id in rows:
        transitions.move_worker(session, worker_id, WorkerStatus.OFFLINE)
    return len(rows)


def extend_leases(db: Database, lease_seconds: float, now: datetime | None = None) -> int:
    """Give every live execution at least a full lease from ``now``: at server start,
    and after the server itself stalled, so a server that could not hear its workers
    does not blame them for the silence. Leases are only ever lengthened here."""
    deadline = (now or utcnow()) + timedelta(seconds=lease_seconds)
    with db.write() as session:
        return session.execute(
            update(Execution)
            .where(Execution.status.in_(LIVE_EXECUTION_VALUES), Execution.lease_deadline < deadline)
            .values(lease_deadline=deadline)
            .execution_options(synchronize_session=False)
        ).rowcount
