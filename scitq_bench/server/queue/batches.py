"""Batches: stop and go, delete, and their per-status counts and durations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Float, Integer, cast, delete, extract, func, literal_column, select
from sqlalchemy.orm import Session

from scitq_bench.container_options import parse_container_options
from scitq_bench.exceptions import Conflict, InvalidInput, NotFound
from scitq_bench.server.lookup import get_or_404
from scitq_bench.server.notify import WORK, worker_key
from scitq_bench.server.queue import tasks as task_domain
from scitq_bench.server.queue import transitions
from scitq_bench.server.queue.costs import batch_costs
from scitq_bench.server.queue.models import Batch, Execution, Signal, Task, Worker, utcnow
from scitq_bench.server.schemas import BatchCreate, BatchStop, BatchUpdate
from scitq_bench.states import (
    FINAL_EXECUTION_VALUES,
    FINAL_TASK_VALUES,
    LIVE_EXECUTION_VALUES,
    BatchStatus,
    ExecutionStatus,
    WorkerStatus,
)
from scitq_bench.states import Signal as SignalKind
from scitq_bench.states import TaskStatus as T

if TYPE_CHECKING:
    from scitq_bench.server.context import ServerContext


def get_batch(session: Session, batch_id: int) -> Batch:
    return get_or_404(session, Batch, batch_id)


def find_batch(session: Session, name: str) -> Batch:
    batch = session.scalar(select(Batch).where(Batch.name == name))
    if batch is None:
        raise NotFound(f"batch {name!r} not found", details={"name": name})
    return batch


def list_batches(session: Session, name: str | None = None) -> list[Batch]:
    """Every batch by id, or the one called ``name``."""
    stmt = select(Batch).order_by(Batch.id)
    if name:
        stmt = stmt.where(Batch.name == name)
    return list(session.scalars(stmt).all())


def create_batch(session: Session, spec: BatchCreate) -> Batch:
    """A new batch (a name already taken is a conflict: batches that tasks or workers
    named come into existence on their own)."""
    if session.scalar(select(Batch.id).where(Batch.name == spec.name)) is not None:
        raise Conflict(f"batch {spec.name!r} already exists")
    batch = task_domain.get_or_create_batch(session, spec.name)
    batch.priority = spec.priority
    batch.network = spec.network
    session.flush()
    return batch


def choices(session: Session) -> list[Any]:
    """(id, name) of every batch by name, for a filter's choices."""
    return list(session.execute(select(Batch.id, Batch.name).order_by(Batch.name)).all())


def recent_names(session: Session, limit: int = 100) -> list[str]:
    """Names of the newest batches, newest first."""
    return list(session.scalars(select(Batch.name).order_by(Batch.id.desc()).limit(limit)))


def update_batch(session: Session, batch_id: int, changes: BatchUpdate) -> Batch:
    batch = get_batch(session, batch_id)
    if changes.priority is not None:
        batch.priority = changes.priority
    if "budget" in changes.model_fields_set:
        batch.budget = changes.budget
    if changes.network is not None:
        if batch.network and not changes.network:
            _refuse_if_network_needed(session, batch)
        batch.network = changes.network
    session.flush()
    return batch


def _refuse_if_network_needed(session: Session, batch: Batch) -> None:
    """Taking the network away from a batch is refused while unfinished tasks of it
    name a network in their container options without having ``network`` themselves."""
    candidates = session.execute(
        select(Task.id, Task.container_options).where(
            Task.batch_id == batch.id,
            Task.network.is_(False),
            Task.status.not_in([T.SUCCEEDED.value, T.FAILED.value, T.CANCELLED.value]),
            Task.container_options.like("%--net%"),
        ).order_by(Task.id)
    ).all()
    needing = []
    for row in candidates:
        try:
            parse_container_options(row.container_options, network_allowed=False)
        except InvalidInput:
            needing.append(row.id)
    if needing:
        shown = ", ".join(map(str, needing[:10])) + (", ..." if len(needing) > 10 else "")
        raise Conflict(
            f"batch {batch.name!r}: {len(needing)} unfinished task(s) use --network in their "
            f"container options ({shown}); give them network: true first, or finish them",
            details={"tasks": needing},
        )


def _live_executions(session: Session, batch_id: int) -> list[Any]:
    return list(
        session.execute(
            select(Execution.id, Execution.task_id, Execution.worker_id, Execution.status)
            .join(Task, Task.id == Execution.task_id)
            .where(Task.batch_id == batch_id, Execution.status.in_(LIVE_EXECUTION_VALUES))
        ).all()
    )


def stop(session: Session, batch_id: int, request: BatchStop) -> dict[str, int]:
    """Pause the batch: nothing new starts. Optionally suspend (pause) or end (stop,
    kill) what runs; ended tasks are paused, not failed, and run again on ``go``."""
    batch = get_batch(session, batch_id)
    transitions.set_batch_status(session, batch, BatchStatus.PAUSED)
    signalled = 0
    if request.signal != "none":
        kind = SignalKind(request.signal)
        for row in _live_executions(session, batch_id):
            if row.worker_id is None:
                continue
            if kind == SignalKind.PAUSE and row.status != ExecutionStatus.RUNNING.value:
                continue
            session.add(Signal(execution_id=row.id, worker_id=row.worker_id, signal=kind.value))
            transitions.move_tasks(session, [row.task_id], T.PAUSED,
                                   reason=f"batch stopped ({kind.value})")
            signalled += 1
    paused_workers = 0
    if request.workers:
        paused_workers = transitions.move_batch_workers(
            session, batch_id, WorkerStatus.RUNNING, WorkerStatus.PAUSED
        )
    return {"signalled": signalled, "workers_paused": paused_workers}


def go(session: Session, batch_id: int) -> dict[str, int]:
    """Resume the batch: suspended executions continue, paused tasks re-enter the queue,
    and the batch's paused workers run again."""
    batch = get_batch(session, batch_id)
    transitions.set_batch_status(session, batch, BatchStatus.RUNNING)
    resumed = 0
    suspended = {
        row.task_id: row for row in _live_executions(session, batch_id)
        if row.status == ExecutionStatus.RUNNING.value
    }
    paused = session.scalars(
        select(Task.id).where(Task.batch_id == batch_id, Task.status == T.PAUSED.value)
    ).all()
    for task_id in paused:
        row = suspended.get(task_id)
        if row is not None and _was_suspended(session, row.id):
            session.add(Signal(execution_id=row.id, worker_id=row.worker_id,
                               signal=SignalKind.RESUME.value))
            transitions.move_tasks(session, [task_id], T.RUNNING, only_from=[T.PAUSED])
        else:
            task_domain.requeue(session, task_id, only_from=[T.PAUSED])
        resumed += 1
    workers = transitions.move_batch_workers(
        session, batch_id, WorkerStatus.PAUSED, WorkerStatus.RUNNING
    )
    return {"tasks_resumed": resumed, "workers_resumed": workers}


def _was_suspended(session: Session, execution_id: int) -> bool:
    """True when the last signal sent to the execution was a pause."""
    last = session.scalar(
        select(Signal.signal)
        .where(Signal.execution_id == execution_id)
        .order_by(Signal.id.desc())
        .limit(1)
    )
    return last == SignalKind.PAUSE.value


def delete_batch(session: Session, batch_id: int) -> list[int]:
    """Delete a batch with its tasks; workers drop live executions at their next
    heartbeat. Returns the deleted execution ids (their logs are removed by the caller)."""
    get_batch(session, batch_id)
    execution_ids = session.scalars(
        select(Execution.id).join(Task, Task.id == Execution.task_id).where(Task.batch_id == batch_id)
    ).all()
    session.execute(delete(Batch).where(Batch.id == batch_id))
    return list(execution_ids)


def summaries(session: Session, batches: list[Batch]) -> list[dict[str, Any]]:
    """Counts by status, workers attached, run durations of succeeded executions, and
    what the batch's executions cost (their share of their machines' price)."""
    ids = [b.id for b in batches]
    counts = task_domain.count_by_status(session, ids)
    durations = {
        row.batch_id: row
        for row in session.execute(
            select(
                Task.batch_id,
                func.count(Execution.id).label("runs"),
                func.avg(Execution.duration).label("mean"),
                func.min(Execution.duration).label("min"),
                func.max(Execution.duration).label("max"),
                func.sum(Execution.duration).label("total"),
            )
            .join(Task, Task.id == Execution.task_id)
            .where(Task.batch_id.in_(ids), Execution.status == ExecutionStatus.SUCCEEDED.value)
            .group_by(Task.batch_id)
        )
    }
    costs = batch_costs(session, ids)
    workers: dict[int, list[str]] = {}
    for batch_id, name in session.execute(
        select(Worker.batch_id, Worker.name).where(Worker.batch_id.in_(ids)).order_by(Worker.name)
    ):
        if batch_id is not None:  # always one of ids
            workers.setdefault(batch_id, []).append(name)
    result = []
    for batch in batches:
        row = durations.get(batch.id)
        result.append({
            "counts": {s.value: counts.get(batch.id, {}).get(s.value, 0) for s in T},
            "durations": {
                "runs": row.runs if row else 0,
                "mean": float(row.mean) if row and row.mean is not None else None,
                "min": row.min if row else None,
                "max": row.max if row else None,
                "total": float(row.total) if row and row.total is not None else None,
            },
            "workers": workers.get(batch.id, []),
            "cost": round(costs[batch.id], 6),
        })
    return result


def signalled_workers(session: Session, batch_id: int) -> list[str]:
    """Notifier keys of the workers with signals of this batch not yet acknowledged:
    waking their long-polling heartbeats delivers the signals at once."""
    ids = session.scalars(
        select(Signal.worker_id)
        .join(Execution, Execution.id == Signal.execution_id)
        .join(Task, Task.id == Execution.task_id)
        .where(Task.batch_id == batch_id, Signal.acknowledged_at.is_(None))
        .distinct()
    ).all()
    return [worker_key(i) for i in ids]


# -- changes as the API and the GUI make them: one transaction, then what follows its
# commit (workers woken, logs of deleted executions removed) -----------------------------


def commit_stop(ctx: ServerContext, batch_id: int, request: BatchStop) -> dict[str, int]:
    with ctx.db.write() as session:
        result = stop(session, batch_id, request)
        keys = signalled_workers(session, batch_id)
    ctx.notifier.notify(*keys)
    return result


def commit_go(ctx: ServerContext, batch_id: int) -> dict[str, int]:
    with ctx.db.write() as session:
        result = go(session, batch_id)
        keys = signalled_workers(session, batch_id)
    ctx.notifier.notify(WORK, *keys)
    return result


def commit_delete(ctx: ServerContext, batch_id: int) -> int:
    """Delete the batch; returns how many executions (and their logs) went with it."""
    with ctx.db.write() as session:
        execution_ids = delete_batch(session, batch_id)
    ctx.logs.delete(execution_ids)
    return len(execution_ids)


def done_per_minute(session: Session, batch_id: int, max_points: int = 240) -> dict[str, Any]:
    """Executions of the batch that ended, succeeded or failed, per minute of their end
    (buckets widen past ``max_points`` minutes, the rate stays per minute). Counted by
    the database, whatever the number of executions."""
    ended = {"succeeded": [ExecutionStatus.SUCCEEDED.value],
             "failed": [ExecutionStatus.FAILED.value, ExecutionStatus.TIMEOUT.value]}
    finished = [Task.batch_id == batch_id, Execution.finished_at.is_not(None),
                Execution.status.in_(ended["succeeded"] + ended["failed"])]
    epoch = _epoch_seconds(session, Execution.finished_at)
    first, last = session.execute(
        select(func.min(epoch), func.max(epoch))
        .select_from(Execution).join(Task, Task.id == Execution.task_id).where(*finished)
    ).one()
    if first is None:
        return {"width": 60, "series": {name: [] for name in ended}}
    first, last = int(first), int(last)
    minutes = (last - first) // 60 + 1
    width = 60 * -(-minutes // max_points)
    bucket = time_bucket(session, Execution.finished_at, width)
    counts: dict[tuple[str, int], int] = {}
    for status, index, count in session.execute(
        select(Execution.status, bucket, func.count(Execution.id))
        .select_from(Execution).join(Task, Task.id == Execution.task_id).where(*finished)
        .group_by(Execution.status, bucket)
    ):
        name = "succeeded" if status in ended["succeeded"] else "failed"
        counts[name, int(index)] = counts.get((name, int(index)), 0) + count
    start, end = first // width, last // width
    per_minute = width / 60
    return {
        "width": width,
        "series": {
            name: [[index * width, round(counts.get((name, index), 0) / per_minute, 3)]
                   for index in range(start, end + 1)]
            for name in ended
        },
    }


def _epoch_seconds(session: Session, column: Any) -> Any:
    """Seconds since 1970 of a naive UTC timestamp column, in the database's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return extract("epoch", column)
    return cast(func.strftime("%s", column), Integer)


def time_bucket(session: Session, moment: Any, width: int) -> Any:
    """The index of ``moment``'s bucket, ``width`` seconds wide, counted from 1970. The
    width is written in the SQL, not bound, so the grouped expression and the selected
    one are the same to PostgreSQL; on SQLite a floor division of integers (``/``
    would be a true division, one bucket per second)."""
    divisor = literal_column(str(int(width)), Integer)
    if session.get_bind().dialect.name == "postgresql":
        return func.floor(extract("epoch", moment) / divisor)
    return cast(func.strftime("%s", moment), Integer) // divisor


# -- the batches list: sorted, searched and paged by the database; pace and workers ------

# what the list may be sorted by (a request names a key, never a column)
BATCH_SORTS = ("name", "status", "priority", "progress", "created")
PACE_WINDOW = timedelta(minutes=30)


def _progress_column() -> Any:
    """Each batch's ended tasks over its tasks (0 for a batch without tasks)."""
    ended = func.count(Task.id).filter(Task.status.in_(sorted(FINAL_TASK_VALUES)))
    counted = (select(Task.batch_id, ended.label("ended"), func.count(Task.id).label("total"))
               .group_by(Task.batch_id).subquery())
    ratio = cast(counted.c.ended, Float) / func.nullif(counted.c.total, 0)
    return counted, func.coalesce(ratio, 0.0)


def batch_page(session: Session, *, name_contains: str | None = None, sort: str = "created",
               descending: bool = False, limit: int = 50, offset: int = 0
               ) -> tuple[list[Batch], int]:
    """One page of batches (and how many match) whose name contains ``name_contains``
    (any case; ``%`` and ``_`` are plain characters), ordered by one of
    ``BATCH_SORTS`` then by id."""
    if sort not in BATCH_SORTS:
        raise InvalidInput(f"cannot sort batches by {sort!r}: choose one of "
                           f"{', '.join(BATCH_SORTS)}")
    conditions = [Batch.name.icontains(name_contains, autoescape=True)] if name_contains else []
    total = session.scalar(select(func.count(Batch.id)).where(*conditions)) or 0
    stmt = select(Batch).where(*conditions)
    key: Any
    if sort == "progress":
        counted, key = _progress_column()
        stmt = stmt.outerjoin(counted, counted.c.batch_id == Batch.id)
    else:
        key = {"name": Batch.name, "status": Batch.status, "priority": Batch.priority,
               "created": Batch.created_at}[sort]
    stmt = stmt.order_by(key.desc() if descending else key.asc(),
                         Batch.id.desc() if descending else Batch.id.asc())
    return list(session.scalars(stmt.limit(limit).offset(offset)).all()), total


def running_workers(session: Session, batch_ids: Sequence[int]) -> dict[int, list[Any]]:
    """Per batch, the workers holding live executions of its tasks (id, name, how many),
    whatever batch they are bound to."""
    found: dict[int, list[Any]] = {}
    if not batch_ids:
        return found
    for row in session.execute(
        select(Task.batch_id, Worker.id, Worker.name, func.count(Execution.id).label("live"))
        .join(Execution, Execution.task_id == Task.id)
        .join(Worker, Worker.id == Execution.worker_id)
        .where(Task.batch_id.in_(list(batch_ids)),
               Execution.status.in_(LIVE_EXECUTION_VALUES))
        .group_by(Task.batch_id, Worker.id, Worker.name)
        .order_by(Worker.name)
    ):
        found.setdefault(row.batch_id, []).append(row)
    return found


def paces(session: Session, batch_ids: Sequence[int], now: datetime | None = None
          ) -> dict[int, float]:
    """Tasks per second each batch ended lately: its tasks that are over and whose
    latest attempt finished in the last ``PACE_WINDOW``, over the time they took (the
    window, or less when the batch's first attempt started within it). A batch with no
    task ended lately has no pace (absent)."""
    if not batch_ids:
        return {}
    now = now or utcnow()
    since = now - PACE_WINDOW
    rows = session.execute(
        select(Task.batch_id, func.count(func.distinct(Task.id)))
        .join(Execution, Execution.task_id == Task.id)
        .where(Task.batch_id.in_(list(batch_ids)),
               Task.status.in_(sorted(FINAL_TASK_VALUES)),
               Execution.status.in_(sorted(FINAL_EXECUTION_VALUES)),
               Execution.finished_at >= since)
        .group_by(Task.batch_id)
    ).all()
    ended = {batch_id: count for batch_id, count in rows if count}
    if not ended:
        return {}
    began = dict(session.execute(
        select(Task.batch_id, func.min(Execution.started_at))
        .join(Execution, Execution.task_id == Task.id)
        .where(Task.batch_id.in_(list(ended)))
        .group_by(Task.batch_id)
    ).all())
    result = {}
    for batch_id, count in ended.items():
        start = max(since, began.get(batch_id) or since)
        seconds = max((now - start).total_seconds(), 1.0)
        result[batch_id] = count / seconds
    return result


def eta_seconds(remaining: int, pace: float | None, running: bool) -> float | None:
    """Seconds until a batch's ``remaining`` tasks end at its recent ``pace`` (tasks
    per second, see ``paces``): remaining ÷ pace. None when it cannot be told: nothing
    ended lately, nothing remains, or the batch is paused (its pace means nothing)."""
    if not running or not remaining or not pace:
        return None
    return remaining / pace
