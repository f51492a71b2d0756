"""Running work: claims, heartbeats and leases, worker reports, and the reaper.

Rules: a task has at most one live execution; losing a worker re-queues its tasks
without spending their retries (``Task.losses`` counts those); a task's own failures
spend ``Task.retries_used`` until ``retries_allowed`` is reached.

Claims, reports and heartbeats are the hot path (every worker, all the time): their
statements are Core constructs built once and run on the session's connection (no ORM
loads), and they write only what is due. A lease renewed less than ``contact_slack``
ago is not renewed again, nor is the worker's last contact written (nor its stats,
which heartbeats write with the leases or the contact): a worker heartbeats every third
of a lease at most, so a lease always keeps more than half of one (what the reaper's
stall detection counts on), and a worker's last contact is never older than a third of
a lease plus that slack.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    Result,
    Table,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Session

from scitq_bench.exceptions import Forbidden
from scitq_bench.server.db import Database
from scitq_bench.server.prepared import hot
from scitq_bench.server.queue import transitions
from scitq_bench.server.queue.models import Batch, Execution, Signal, Task, Worker, utcnow
from scitq_bench.states import LIVE_EXECUTION_VALUES, UP_WORKER_VALUES, BatchStatus, WorkerStatus
from scitq_bench.states import ExecutionStatus as E
from scitq_bench.states import TaskStatus as T

if TYPE_CHECKING:
    from typing_extensions import Unpack

# Leases renewed (and a last contact written) less than this fraction of a lease ago are
# not written again. Workers heartbeat every third of a lease at most, so a lease keeps
# at least 1 - 1/3 - 1/10 of itself until the next: more than the half a server stall
# may last unseen by the reaper (reaper.py). Keep it under 1/6.
CONTACT_SLACK = 0.1


def _table(model: type[DeclarativeBase]) -> Table:
    """The Table of a mapped class (``__table__`` is typed as any FROM clause, which an
    UPDATE cannot target)."""
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table


def _rowcount(result: Result[Unpack[tuple[Any, ...]]]) -> int:
    """The rows an UPDATE matched: the session answers one with a ``CursorResult``
    (its signature promises only a ``Result``)."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"an UPDATE answered {type(result).__name__}, not a CursorResult")
    return result.rowcount


_batch, _execution, _signal = _table(Batch), _table(Execution), _table(Signal)
_task, _worker = _table(Task), _table(Worker)
_live_execution = transitions.status_in(_execution.c.status, LIVE_EXECUTION_VALUES)

SNAPSHOT_COLUMNS = tuple(_task.c[name] for name in (
    "id", "name", "command", "shell", "container", "container_options", "inputs",
    "resources", "output", "download_timeout", "run_timeout", "cpu", "mem", "gpu",
    "network", "layout", "score_keys", "host_environment",
))


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
        "host_environment": row.host_environment,
    }


def contact_slack(lease_seconds: float) -> timedelta:
    """How recent a renewal (of leases, or of a worker's last contact) may be and
    still not be written again."""
    return timedelta(seconds=lease_seconds * CONTACT_SLACK)


@dataclass
class WorkerState:
    """What reports and claims read of their worker, in one statement; ``held``
    follows the live executions this transaction frees and claims."""

    id: int
    status: str
    concurrency: int
    prefetch: int
    batch_id: int | None
    cpus: int | None
    mem_gb: float | None
    containers: bool
    gpus: int | None
    last_contact_at: datetime | None
    held: int


_WORKER_FIELDS = ("id", "status", "concurrency", "prefetch", "batch_id", "cpus", "mem_gb",
                  "containers", "gpus", "last_contact_at")
# The worker ``w_id``, its columns labelled ``state_*``: other statements (reports) read
# it alongside their own rows
WORKER_STATE = hot(select(
    *(_worker.c[name].label(f"state_{name}") for name in _WORKER_FIELDS),
    select(func.count()).where(_execution.c.worker_id == _worker.c.id, _live_execution)
    .scalar_subquery().label("state_held"),
).where(_worker.c.id == bindparam("w_id")))


def worker_state_of(row: Any) -> WorkerState:
    """The worker's state from a row holding the columns of ``WORKER_STATE``."""
    values = row._mapping
    return WorkerState(**{name: values[f"state_{name}"] for name in (*_WORKER_FIELDS, "held")})


def worker_state(connection: Connection, worker_id: int) -> WorkerState | None:
    row = connection.execute(WORKER_STATE, {"w_id": worker_id}).first()
    return worker_state_of(row) if row is not None else None


def unregistered(worker_id: int) -> Forbidden:
    """The answer to a worker call from a worker id that is not registered."""
    return Forbidden(f"worker {worker_id} is not registered")


def contact_due(last: datetime | None, now: datetime, lease_seconds: float | None) -> bool:
    """Whether a worker's last contact is to be written again (``lease_seconds`` None:
    always)."""
    return (lease_seconds is None or last is None
            or now - last >= contact_slack(lease_seconds))


_TOUCH = hot(update(_worker).where(_worker.c.id == bindparam("w_id"))
             .values(last_contact_at=bindparam("w_now")))


def touch(connection: Connection, state: WorkerState, now: datetime,
          lease_seconds: float | None) -> bool:
    """Write the worker's last contact unless it was written less than the slack ago
    (``lease_seconds`` None: always). True when written."""
    if not contact_due(state.last_contact_at, now, lease_seconds):
        return False
    connection.execute(_TOUCH, {"w_id": state.id, "w_now": now})
    state.last_contact_at = now
    return True


def claim(db: Database, worker_id: int, max_count: int, lease_seconds: float) -> list[dict]:
    """Atomically hand up to ``max_count`` pending tasks to a worker (never above its
    concurrency + prefetch), highest batch then task priority first, oldest first.
    Three statements whatever the count, as long as the first batch with work has
    enough (the worker, the locking move, the insert); the other batches are listed
    and visited only for the room it leaves."""
    return claim_as(db, worker_id, max_count, lease_seconds)[0]


def claim_as(db: Database, worker_id: int, max_count: int,
             lease_seconds: float) -> tuple[list[dict], WorkerState | None]:
    """``claim``, and the worker as the claim read it (None: not registered): a long
    poll learns there, in the same statement, which work its worker may wait for."""
    with db.write() as session:
        state = worker_state(session.connection(), worker_id)
        if state is None:
            return [], None
        return claim_in(db, session, worker_id, max_count, lease_seconds, worker=state), state


def claim_in(db: Database, session: Session, worker_id: int, max_count: int,
             lease_seconds: float, *, worker: WorkerState | None = None) -> list[dict]:
    """``claim`` inside the caller's write transaction (a report and the claim that
    follows it share one, and the worker the report read: ``worker``)."""
    connection = session.connection()
    state = worker if worker is not None else worker_state(connection, worker_id)
    if state is None:
        return []
    room = _room(state, max_count)
    if room <= 0:
        return []
    now = utcnow()
    picked = _pick(db, connection, state, room, now)
    if not picked:
        return []
    handed = _hand_out(db, session, [(state, picked)], now, lease_seconds)[state.id]
    touch(connection, state, now, lease_seconds)
    return handed


def _room(state: WorkerState, max_count: int) -> int:
    """How many executions a claim of ``max_count`` may hand the worker now."""
    if state.status != WorkerStatus.RUNNING.value:
        return 0
    return min(max_count, state.concurrency + state.prefetch - state.held)


def _hand_out(db: Database, session: Session, shares: list[tuple[WorkerState, list[Any]]],
              now: datetime, lease_seconds: float) -> dict[int, list[dict]]:
    """The executions of the tasks each worker was given (``_CLAIMED_COLUMNS`` rows),
    inserted in one statement for them all; per worker, what its claim answers."""
    deadline = now + timedelta(seconds=lease_seconds)
    owners: list[int] = []
    rows: list[dict[str, Any]] = []
    snapshots: list[dict[str, Any]] = []
    for state, picked in shares:
        for row in picked:
            snapshot = task_snapshot(row, row.batch_network)
            owners.append(state.id)
            snapshots.append(snapshot)
            rows.append({
                "task_id": row.id,
                "worker_id": state.id,
                "attempt": row.retries_used + row.losses + 1,
                "status": E.PENDING.value,
                "lease_deadline": deadline,
                "created_at": now,
                "output_files": [],
                "snapshot": snapshot,
            })
        state.held += len(picked)
    ids = db.insert_returning_ids(session, Execution, rows)
    handed: dict[int, list[dict]] = {state.id: [] for state, _ in shares}
    for owner, execution_id, row, snapshot in zip(owners, ids, rows, snapshots, strict=True):
        handed[owner].append({"execution_id": execution_id, "attempt": row["attempt"],
                              **snapshot})
    return handed


# The states of the workers ``w_ids`` (``WORKER_STATE``'s columns), for joint calls
_WORKER_STATES = select(*WORKER_STATE.selected_columns).where(
    _worker.c.id.in_(bindparam("w_ids", expanding=True)))
_TOUCH_ALL = update(_worker).where(_worker.c.id.in_(bindparam("w_ids", expanding=True))) \
    .values(last_contact_at=bindparam("w_now"))


def worker_states(connection: Connection, worker_ids: list[int]) -> dict[int, WorkerState]:
    """The states of the registered workers among ``worker_ids``, in one statement."""
    return {row.state_id: worker_state_of(row)
            for row in connection.execute(_WORKER_STATES, {"w_ids": worker_ids})}


def touch_all(connection: Connection, states: list[WorkerState], now: datetime,
              lease_seconds: float | None) -> None:
    """``touch`` for several workers: one write of the last contacts that are due."""
    due = [state for state in states
           if contact_due(state.last_contact_at, now, lease_seconds)]
    if not due:
        return
    connection.execute(_TOUCH_ALL, {"w_ids": sorted(s.id for s in due), "w_now": now})
    for state in due:
        state.last_contact_at = now


def claim_jointly(db: Database, wanted: dict[int, int], lease_seconds: float,
                  ) -> dict[int, tuple[list[dict], WorkerState | None]]:
    """The claims of several workers (worker id -> ``max_count``) in one transaction,
    each answered as ``claim_as`` would: its executions, and its worker as read (None:
    not registered); see ``claim_jointly_in``. When a thousand long polls wake
    together, that is a few statements for all of them instead of three each."""
    if len(wanted) == 1:  # alone: the single claim's statements, prepared and cheap
        ((worker_id, max_count),) = wanted.items()
        claimed, state = claim_as(db, worker_id, max_count, lease_seconds)
        return {worker_id: (claimed, state)}
    with db.write() as session:
        states = worker_states(session.connection(), sorted(wanted))
        handed = claim_jointly_in(db, session, [(states[w], wanted[w]) for w in sorted(states)],
                                  lease_seconds)
    return {worker_id: (handed.get(worker_id, []), states.get(worker_id))
            for worker_id in wanted}


def claim_jointly_in(db: Database, session: Session, wanted: list[tuple[WorkerState, int]],
                     lease_seconds: float) -> dict[int, list[dict]]:
    """Claims of several workers (their states as read in this transaction, and each
    one's ``max_count``), inside the caller's write transaction; per worker that got
    any, its executions. Workers that take the same work (the same batch, or none, and
    the same resources) share one pick of as many tasks as they have room for, in claim
    order, handed out in the order given; then one insert of every execution and one
    write of every last contact due. The worker rows it writes are those of its own
    claims, which no other claim holds."""
    alike: dict[tuple[Any, ...], list[tuple[WorkerState, int]]] = defaultdict(list)
    for state, max_count in wanted:
        room = _room(state, max_count)
        if room > 0:
            alike[(state.batch_id, state.cpus, state.mem_gb, bool(state.containers),
                   state.gpus)].append((state, room))
    connection = session.connection()
    now = utcnow()
    shares: list[tuple[WorkerState, list[Any]]] = []
    for members in alike.values():
        picked = iter(_pick(db, connection, members[0][0],
                            sum(room for _, room in members), now))
        shares += [(state, list(itertools.islice(picked, room))) for state, room in members]
    shares = [(state, picked) for state, picked in shares if picked]
    if not shares:
        return {}
    handed = _hand_out(db, session, shares, now, lease_seconds)
    touch_all(connection, [state for state, _ in shares], now, lease_seconds)
    return handed


# Per running batch, one probe of the claim index (status, batch) for a pending task,
# whatever PostgreSQL's statistics say. OFFSET 0 keeps the EXISTS a probe (it became a
# join that read every pending task when they said that none was pending); the order,
# the claim index's own, makes that index the cheap way to the first row (a scan of
# the table looked cheaper when they said that a third of the tasks were pending, and
# read every task of a batch that had none).
_BATCHES_WITH_WORK = hot(
    select(_batch.c.id)
    .where(transitions.status_in(_batch.c.status, [BatchStatus.RUNNING.value]),
           select(_task.c.id).where(_task.c.batch_id == _batch.c.id,
                                    transitions.status_in(_task.c.status, [T.PENDING.value]))
           .order_by(_task.c.priority.desc(), _task.c.id).offset(0).exists())
    .order_by(_batch.c.priority.desc(), _batch.c.id)
)
_WORKER_BATCH = _batch.c.id == bindparam("w_batch")
_CLAIMED_COLUMNS = (
    *SNAPSHOT_COLUMNS, _task.c.retries_used, _task.c.losses, _task.c.priority,
    _task.c.batch_id,
    select(_batch.c.network).where(_batch.c.id == _task.c.batch_id)
    .scalar_subquery().label("batch_network"),
)


def _pick(db: Database, connection: Connection, worker: WorkerState, room: int,
          now: datetime) -> list[Any]:
    """Assign up to ``room`` claimable tasks, batch by batch in priority order, and
    return them (``_CLAIMED_COLUMNS``). The first statement claims from the
    first batch with work (found within it); only when that leaves room are the other
    batches listed, each claimed from in turn. Within a batch the claim index yields
    tasks already ordered, so each statement stops at its limit."""
    shape = (worker.cpus is not None, worker.mem_gb is not None, bool(worker.containers),
             (worker.gpus or 0) > 0)
    bound = worker.batch_id is not None
    params = {"c_cpus": worker.cpus, "c_mem": worker.mem_gb, "c_gpus": worker.gpus,
              "t_now": now, "t_reason": None, "w_batch": worker.batch_id}
    picked = _claimed(connection, _claim_statement(db, *shape, first=True, bound=bound),
                      {**params, "c_room": room})
    if len(picked) >= room or bound:  # a worker of one batch has no other to try
        return picked
    tried = {row.batch_id for row in picked}
    statement = _claim_statement(db, *shape, first=False, bound=False)
    for batch_id in connection.execute(_BATCHES_WITH_WORK).scalars().all():
        if batch_id in tried:
            continue
        picked += _claimed(connection, statement,
                           {**params, "c_batch": batch_id, "c_room": room - len(picked)})
        if len(picked) >= room:
            break
    return picked


def _claimed(connection: Connection, statement: Any, params: dict[str, Any]) -> list[Any]:
    # RETURNING keeps no order: claim order is priority first, then oldest
    return sorted(connection.execute(statement, params).all(),
                  key=lambda row: (-row.priority, row.id))


@lru_cache(maxsize=64)
def _claim_statement(db: Database, cpus: bool, mem: bool, containers: bool, gpus: bool,
                     *, first: bool, bound: bool) -> Any:
    """The one statement that picks (skipping rows other claims hold) and assigns the
    claimable tasks of a batch, for a worker of this shape; values are bound per call.
    ``first``: the batch is the first with work (of the worker's own batch when
    ``bound``), found by the statement itself; else it is bound as ``c_batch``."""
    candidate = _task.alias("candidate")
    batch: ColumnElement[int]
    if first:
        first_batch = _BATCHES_WITH_WORK.where(_WORKER_BATCH) if bound else _BATCHES_WITH_WORK
        batch = first_batch.limit(1).scalar_subquery()
    else:
        batch = bindparam("c_batch")
    conditions = [
        transitions.status_in(candidate.c.status, [T.PENDING.value]),
        candidate.c.batch_id == batch,
        ~exists().where(_execution.c.task_id == candidate.c.id, _live_execution),
    ]
    if cpus:
        conditions.append(or_(candidate.c.cpu.is_(None), candidate.c.cpu <= bindparam("c_cpus")))
    if mem:
        conditions.append(or_(candidate.c.mem.is_(None), candidate.c.mem <= bindparam("c_mem")))
    if not containers:
        conditions.append(or_(candidate.c.container.is_(None), candidate.c.container == ""))
    # GPU_ALL (-1) asks for every GPU of the worker: at least one
    conditions.append(candidate.c.gpu <= bindparam("c_gpus") if gpus else candidate.c.gpu == 0)
    # Materialized: picked once, whatever the plan (a subquery that skips locked rows,
    # scanned again, would pick other rows each time)
    picked = db.lock_rows(
        select(candidate.c.id).where(and_(*conditions))
        .order_by(candidate.c.priority.desc(), candidate.c.id)
        .limit(bindparam("c_room")),
        candidate,
    ).cte("picked").prefix_with("MATERIALIZED")
    # not marked hot (server.prepared): planned at each run, its plan follows the queue
    return transitions.assign_tasks_statement(picked, _CLAIMED_COLUMNS)


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
        return _rowcount(session.execute(
            update(Execution)
            .where(Execution.status.in_(LIVE_EXECUTION_VALUES), Execution.lease_deadline < deadline)
            .values(lease_deadline=deadline)
            .execution_options(synchronize_session=False)
        ))
