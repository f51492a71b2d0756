"""The state machine of the queue, and the one guarded move every status change goes
through.

Every change is a guarded ``UPDATE ... WHERE status IN (allowed sources)``, built by
``guarded_update``: if another transaction moved the row first, no row matches and the
caller learns it, so two writers can never both win. Each domain declares its table
(status -> the statuses it may become) and moves rows with ``move_rows``: the queue's
tables are below, recruitment jobs' in ``server/recruit/transitions.py``, benchmark
submissions', attempts' and runs' in ``server/bench/transitions.py``. Only these
modules write a status (tests/unit/test_status_writes.py holds the package to it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum
from functools import cache, lru_cache
from typing import Any, TypeVar

from sqlalchemy import (
    CTE,
    BindParameter,
    ColumnElement,
    String,
    Table,
    Update,
    bindparam,
    literal_column,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from scitq_bench.exceptions import IllegalTransition, NotFound
from scitq_bench.server.prepared import hot
from scitq_bench.server.queue.models import Base, Batch, Execution, Task, Worker, utcnow
from scitq_bench.states import FINAL_TASK_STATUSES, BatchStatus
from scitq_bench.states import ExecutionStatus as E
from scitq_bench.states import TaskStatus as T
from scitq_bench.states import WorkerStatus as W

S = TypeVar("S", bound=Enum)
_STATUS_NAME = re.compile(r"[a-z_]+")
Transitions = Mapping[S, frozenset[S]]  # status -> the statuses it may become

TASK_TRANSITIONS: Mapping[T, frozenset[T]] = {
    T.WAITING: frozenset({T.PENDING, T.FAILED, T.PAUSED, T.CANCELLED}),
    T.PENDING: frozenset({T.ASSIGNED, T.WAITING, T.PAUSED, T.CANCELLED}),
    T.ASSIGNED: frozenset({T.ACCEPTED, T.RUNNING, T.PENDING, T.FAILED, T.SUCCEEDED,
                           T.PAUSED, T.CANCELLED}),
    T.ACCEPTED: frozenset({T.RUNNING, T.PENDING, T.FAILED, T.PAUSED, T.CANCELLED}),
    T.RUNNING: frozenset({T.SUCCEEDED, T.FAILED, T.PENDING, T.PAUSED, T.CANCELLED}),
    T.PAUSED: frozenset({T.PENDING, T.WAITING, T.RUNNING, T.CANCELLED}),
    T.SUCCEEDED: frozenset({T.PENDING, T.WAITING}),
    T.FAILED: frozenset({T.PENDING, T.WAITING}),
    T.CANCELLED: frozenset({T.PENDING, T.WAITING}),
}

EXECUTION_TRANSITIONS: Mapping[E, frozenset[E]] = {
    E.PENDING: frozenset({E.ACCEPTED, E.RUNNING, E.FAILED, E.REFUSED, E.LOST, E.TIMEOUT,
                          E.CANCELLED}),
    E.ACCEPTED: frozenset({E.RUNNING, E.FAILED, E.REFUSED, E.LOST, E.TIMEOUT, E.CANCELLED}),
    E.RUNNING: frozenset({E.SUCCEEDED, E.FAILED, E.LOST, E.TIMEOUT, E.CANCELLED}),
    E.SUCCEEDED: frozenset(),
    E.FAILED: frozenset(),
    E.REFUSED: frozenset(),
    E.LOST: frozenset(),
    E.TIMEOUT: frozenset(),
    E.CANCELLED: frozenset(),
}

# Called in the same transaction with the ids of tasks just moved to a final status
# (some ids may not have moved): what is built on tasks (benchmark runs) follows them.
FinalListener = Callable[[Session, list[int]], None]
FINAL_LISTENERS: list[FinalListener] = []


def on_final(listener: FinalListener) -> FinalListener:
    """Register ``listener`` (once) for tasks reaching a final status."""
    if listener not in FINAL_LISTENERS:
        FINAL_LISTENERS.append(listener)
    return listener


WORKER_TRANSITIONS: Mapping[W, frozenset[W]] = {
    W.RUNNING: frozenset({W.PAUSED, W.OFFLINE, W.FAILED, W.EVICTED}),
    W.PAUSED: frozenset({W.RUNNING, W.OFFLINE, W.FAILED, W.EVICTED}),
    W.OFFLINE: frozenset({W.RUNNING, W.PAUSED, W.FAILED, W.EVICTED}),
    W.FAILED: frozenset({W.RUNNING, W.PAUSED, W.OFFLINE}),
    W.EVICTED: frozenset({W.RUNNING, W.PAUSED, W.OFFLINE}),
}


def status_in(column: Any, statuses: Iterable[str]) -> ColumnElement[bool]:
    """``column IN ('a', 'b')``, the statuses written into the statement as constants
    when it is compiled (once: a list of plain values would be spliced into the SQL
    text again at every execution). Constants, not parameters: PostgreSQL can then
    prove a partial index's condition (the live executions') for a prepared statement's
    generic plan, which it keeps instead of planning every run; with parameters the
    generic plan read the whole execution table and was never chosen."""
    return column.in_([_status_constant(s) for s in sorted(statuses)])


def _status_constant(status: str) -> ColumnElement[str]:
    # a status is one of the state machine's own names, never a caller's text
    if not _STATUS_NAME.fullmatch(status):
        raise ValueError(f"not a status name: {status!r}")
    return literal_column(f"'{status}'", String)


def _sources(table: Mapping[Any, frozenset[Any]], target: Any) -> list[str]:
    return [source.value for source, targets in table.items() if target in targets]


def sources(table: Transitions[S], target: S, only_from: Iterable[S] | None = None
            ) -> tuple[str, ...]:
    """The statuses a move to ``target`` may start from, of ``only_from`` (None: all)."""
    allowed = set(_sources(table, target))
    if only_from is not None:
        allowed &= {s.value for s in only_from}
    return tuple(sorted(allowed))


def guarded_update(table: Table, target: Enum, allowed: Iterable[str] | BindParameter[Any],
                   *where: ColumnElement[bool]) -> Update:
    """``UPDATE table SET status = target WHERE status IN (allowed) AND where``: the one
    statement that changes a status. ``allowed`` may instead be a bound parameter: the
    status the caller checked each row in (a compare-and-set per row)."""
    column = table.c.status
    guard = column == allowed if isinstance(allowed, BindParameter) else \
        status_in(column, allowed)
    return update(table).where(*where, guard).values(status=target.value)


def move_rows(
    session: Session,
    model: type[Base],
    table: Transitions[S],
    target: S,
    ids: Iterable[int] | None = None,
    *,
    where: Sequence[ColumnElement[bool]] = (),
    only_from: Iterable[S] | None = None,
    values: Mapping[str, Any] | None = None,
) -> int:
    """Move the rows of ``model`` (those ``ids``, and/or those ``where`` selects) that
    are in a status ``table`` lets become ``target`` (of ``only_from``), writing
    ``values`` with the status; returns how many moved. An illegal move moves nothing.

    What the session holds is flushed first (as its autoflush would), and objects it
    holds of the rows aimed at have the written columns expired: read again, they say
    what the database holds, moved or not."""
    wanted = None if ids is None else list(ids)
    if wanted is None and not where:
        raise ValueError("move_rows needs ids or where: it never moves a whole table")
    allowed = sources(table, target, only_from)
    if wanted == [] or not allowed:
        return 0
    clauses = list(where)
    if wanted is not None:
        clauses.append(model.id.in_(wanted))  # type: ignore[attr-defined]
    stmt = guarded_update(model.__table__, target, allowed, *clauses)  # type: ignore[arg-type]
    if values:
        stmt = stmt.values(**values)
    session.flush()
    moved = session.connection().execute(stmt).rowcount
    _expire(session, model, wanted, ["status", *(values or {}), *_updated_on_write(model)])
    return moved


@cache
def _updated_on_write(model: type[Base]) -> tuple[str, ...]:
    """Attributes of ``model`` whose column an UPDATE refreshes itself (``onupdate``)."""
    return tuple(prop.key for prop in model.__mapper__.column_attrs
                 if any(getattr(c, "onupdate", None) is not None for c in prop.columns))


def _expire(session: Session, model: type[Base], ids: list[int] | None,
            columns: list[str]) -> None:
    """Expire ``columns`` of the ``model`` objects the session holds among ``ids`` (None:
    all of them), so that the next read loads what a Core UPDATE wrote."""
    if ids is None:
        held = [o for o in session.identity_map.values() if isinstance(o, model)]
    else:
        held = [o for o in (session.identity_map.get(identity_key(model, i)) for i in ids)
                if o is not None]
    for found in held:
        session.expire(found, columns)


def task_sources(target: T) -> list[str]:
    """Statuses a task may move to ``target`` from."""
    return _sources(TASK_TRANSITIONS, target)


def check_task_transition(current: str, target: T, task_id: int) -> None:
    """Raise a 409-mapped error naming the current status if the move is illegal."""
    if target not in TASK_TRANSITIONS[T(current)]:
        raise task_refusal(task_id, current, target)


def task_refusal(task_id: int, current: str, target: T) -> IllegalTransition:
    """The 409 answer naming the task's current status."""
    return IllegalTransition(
        f"task {task_id} is {current}; it cannot become {target.value}",
        details={"task_id": task_id, "status": current, "requested": target.value},
    )


def move_tasks(
    session: Session,
    task_ids: Iterable[int],
    target: T,
    *,
    only_from: Iterable[T] | None = None,
    reason: str | None = None,
    values: dict[str, Any] | None = None,
) -> int:
    """Move every listed task that is in an allowed source status; return how many moved."""
    ids = list(task_ids)
    if not ids:
        return 0
    allowed = sources(TASK_TRANSITIONS, target, only_from)
    params = {"t_ids": ids, "t_reason": reason, "t_now": utcnow()}
    if values:  # counters moving with the status: a statement of its own
        stmt = hot(_task_move(target, allowed).values(**values))
    else:  # the usual moves: built once, bound per call
        stmt = _cached_task_move(target, allowed)
    session.flush()  # what the session holds goes first, as its autoflush would
    moved = session.connection().execute(stmt, params).rowcount
    if moved and target in FINAL_TASK_STATUSES:
        for listener in FINAL_LISTENERS:
            listener(session, ids)
    return moved


def _task_move(target: T, allowed: tuple[str, ...]) -> Update:
    """The guarded move of the tasks bound as ``t_ids``; bound per call: ``t_reason``,
    ``t_now``. Built apart from ``move_rows``: the queue's hot paths run it prepared
    once, bound per call."""
    task: Table = Task.__table__  # type: ignore[assignment]
    ids = task.c.id.in_(bindparam("t_ids", expanding=True))
    return _with_reason(guarded_update(task, target, allowed, ids))


def _with_reason(move: Update) -> Update:
    """What a task's move writes with its status: why, and when (bound per call)."""
    return move.values(status_reason=bindparam("t_reason"), modified_at=bindparam("t_now"))


@cache
def _cached_task_move(target: T, allowed: tuple[str, ...]) -> Update:
    """The usual moves, built once, prepared on the connections that repeat them
    (not the claim's, built on the same shape: planned each time, server.prepared)."""
    return hot(_task_move(target, allowed))


def assign_tasks_statement(picked: CTE, returning: Sequence[Any]) -> Update:
    """The claim's move, in one statement: the pending tasks ``picked`` holds (its
    column ``id``) become assigned, returning ``returning`` of each. Bound per call:
    ``t_reason``, ``t_now``, and what ``picked`` binds.

    ``picked`` is the guard: it selects pending tasks and locks them (``FOR UPDATE`` on
    PostgreSQL, which checks the status again on the row it locks; SQLite's write lock
    holds the whole database), in the same statement, so their status cannot change
    between the pick and the move. The move joins them on the id alone: with a status
    condition too, PostgreSQL could look each one up along the claim index, whose
    pending entries (those of tasks claimed since the last vacuum included) it then
    walked, about 1.5 ms a claim in the swarm, where the primary key takes
    microseconds."""
    task: Table = Task.__table__  # type: ignore[assignment]
    move = update(task).where(task.c.id == picked.c.id).values(status=T.ASSIGNED.value)
    return _with_reason(move).returning(*returning)


def move_task(
    session: Session,
    task_id: int,
    target: T,
    *,
    only_from: Iterable[T] | None = None,
    reason: str | None = None,
    values: dict[str, Any] | None = None,
) -> None:
    """Move one task or raise: 404 if it does not exist, 409 naming its status if illegal."""
    if move_tasks(session, [task_id], target, only_from=only_from, reason=reason, values=values):
        return
    current = session.get(Task, task_id, populate_existing=True)
    if current is None:
        raise NotFound(f"task {task_id} not found")
    raise task_refusal(task_id, current.status, target)


def move_execution(
    session: Session, execution_id: int, target: E, values: dict[str, Any] | None = None
) -> bool:
    """Move one execution if its status allows it; False if it had already moved on."""
    return move_rows(session, Execution, EXECUTION_TRANSITIONS, target, [execution_id],
                     values=values) == 1


def move_executions(
    session: Session, execution_ids: Iterable[int], target: E, values: dict[str, Any] | None = None
) -> int:
    return move_rows(session, Execution, EXECUTION_TRANSITIONS, target, execution_ids,
                     values=values)


def apply_execution_changes(
    session: Session, changes: Iterable[tuple[int, E, E, dict[str, Any]]]
) -> None:
    """Write already-validated execution moves ``(id, from, to, values)``, one per
    execution (callers merge successive events first), one executemany per kind of
    change. The guard is the status each row had when the caller locked and checked
    it: a row that moved meanwhile is left alone."""
    groups: dict[tuple[E, tuple[str, ...]], list[dict[str, Any]]] = {}
    for execution_id, source, target, values in changes:
        if target not in _reachable(source):
            raise IllegalTransition(
                f"execution {execution_id} is {source.value}; it cannot become {target.value}"
            )
        key = (target, tuple(sorted(values)))
        groups.setdefault(key, []).append(
            {"b_id": execution_id, "b_from": source.value, **values}
        )
    connection = session.connection()
    for (target, columns), rows in groups.items():
        connection.execute(_execution_move(target, columns), rows)


@lru_cache(maxsize=256)  # one per kind of event: a handful
def _execution_move(target: E, columns: tuple[str, ...]) -> Update:
    """The report's moves, run as one executemany per kind: guarded by the status each
    row was checked in (bound as ``b_from``)."""
    table: Table = Execution.__table__  # type: ignore[assignment]
    return hot(
        guarded_update(table, target, bindparam("b_from"), table.c.id == bindparam("b_id"))
        .values(**{c: bindparam(c) for c in columns})
    )


def _reachable(source: E) -> set[E]:
    """Statuses reachable from ``source`` through one or more legal moves."""
    seen: set[E] = set()
    frontier = [source]
    while frontier:
        for target in EXECUTION_TRANSITIONS[frontier.pop()]:
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    return seen


def move_batch_workers(session: Session, batch_id: int, source: W, target: W) -> int:
    """Move every worker of a batch that is in ``source`` (batch stop and go)."""
    if target not in WORKER_TRANSITIONS[source]:
        raise IllegalTransition(f"a worker cannot go from {source.value} to {target.value}")
    return move_rows(session, Worker, WORKER_TRANSITIONS, target,
                     where=[Worker.batch_id == batch_id], only_from=[source])


def set_batch_status(session: Session, batch: Batch, target: BatchStatus) -> None:
    """Batches have two statuses and may go either way (stop and go are idempotent)."""
    batch.status = target.value


def move_worker(session: Session, worker_id: int, target: W) -> bool:
    """Move a worker; moving to its current status is a no-op that succeeds."""
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise NotFound(f"worker {worker_id} not found")
    if worker.status == target.value:
        return False
    current = W(worker.status)
    if target not in WORKER_TRANSITIONS[current]:
        raise IllegalTransition(
            f"worker {worker_id} is {worker.status}; it cannot become {target.value}"
        )
    return move_rows(session, Worker, WORKER_TRANSITIONS, target, [worker_id],
                     only_from=[current]) == 1
