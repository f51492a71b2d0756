"""Task lifecycle outside of running: creation, dependencies, relaunch, pause, delete."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import delete, exists, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scitq_bench.exceptions import Conflict, InvalidInput
from scitq_bench.server.db import Database
from scitq_bench.server.lookup import get_or_404
from scitq_bench.server.notify import WORK, work_keys, worker_key
from scitq_bench.server.queue import transitions
from scitq_bench.server.queue.models import (
    Batch,
    Execution,
    Requirement,
    Signal,
    Task,
    Worker,
    utcnow,
)
from scitq_bench.server.schemas import FieldProblem, TaskCreate, TaskUpdate, container_settings
from scitq_bench.server.serialize import task_dict
from scitq_bench.states import LIVE_EXECUTION_VALUES, ExecutionStatus
from scitq_bench.states import Signal as SignalKind
from scitq_bench.states import TaskStatus as T

if TYPE_CHECKING:
    from scitq_bench.server.context import ServerContext

DEPENDENCY_REASON = "prerequisite task {id} failed"


def get_task(session: Session, task_id: int) -> Task:
    return get_or_404(session, Task, task_id)


def get_or_create_batch(session: Session, name: str) -> Batch:
    """Batches spring into existence when a task or worker names them."""
    batch = session.scalar(select(Batch).where(Batch.name == name))
    if batch is not None:
        return batch
    try:
        with session.begin_nested():
            batch = Batch(name=name)
            session.add(batch)
        return batch
    except IntegrityError:  # created concurrently by another transaction
        return session.scalars(select(Batch).where(Batch.name == name)).one()


def batch_names(session: Session, batch_ids: Iterable[int]) -> dict[int, str]:
    """{id: name} of these batches, in one query."""
    return dict(session.execute(
        select(Batch.id, Batch.name).where(Batch.id.in_(set(batch_ids)))).all())


def describe_tasks(session: Session, tasks: Sequence[Any]) -> list[dict[str, Any]]:
    """Tasks (models, or rows as created) as the API answers them, with two queries
    whatever their number."""
    requires = prerequisites_of(session, [t.id for t in tasks])
    names = batch_names(session, (t.batch_id for t in tasks))
    return [task_dict(t, requires[t.id], names[t.batch_id]) for t in tasks]


def describe_task(session: Session, task: Any) -> dict[str, Any]:
    return describe_tasks(session, [task])[0]


def create_tasks(
    db: Database, session: Session, specs: Sequence[TaskCreate], *, bulk: bool = False
) -> list[SimpleNamespace]:
    """Create all tasks or none: every check runs before the first insert. Returns the
    rows as written (with their ids), in the order of ``specs``: one multi-row INSERT,
    no ORM objects, so bulk creation of thousands of tasks stays cheap. A spec whose
    key exists in its batch gets the existing task, unchanged (``new`` is False on its
    row). ``bulk``: errors name the task's index (``tasks.3.container_options``) as
    validation errors of a bulk body do."""
    where = (lambda index: f"tasks.{index}.") if bulk else (lambda _index: "")
    batches = {name: get_or_create_batch(session, name) for name in {s.batch for s in specs}}
    _refuse_repeated_keys(specs, where)
    found = _existing_by_key(session, [(batches[s.batch].id, s.key) for s in specs if s.key])
    fresh = [(index, spec) for index, spec in enumerate(specs)
             if found.get((batches[spec.batch].id, spec.key)) is None]
    wanted = {p for _index, spec in fresh for p in spec.requires}
    prerequisites = _prerequisite_statuses(session, wanted)
    unknown = sorted(wanted - prerequisites.keys())
    if unknown:
        raise InvalidInput(
            f"requires: unknown task id(s) {', '.join(map(str, unknown))}",
            details={"unknown": unknown},
        )
    for index, spec in fresh:
        _check_network(spec, batches[spec.batch], where(index))
    now = utcnow()
    values = [_new_task(spec, batches[spec.batch].id, prerequisites, now)
              for _index, spec in fresh]
    ids = db.insert_returning_ids(session, Task, values)
    created = [SimpleNamespace(id=task_id, new=True, **row)
               for task_id, row in zip(ids, values, strict=True)]
    rows = [
        {"task_id": task.id, "prerequisite_id": prerequisite}
        for task, (_index, spec) in zip(created, fresh, strict=True)
        for prerequisite in sorted(set(spec.requires))
    ]
    if rows:
        session.execute(insert(Requirement), rows)
    made = iter(created)
    return [found.get((batches[spec.batch].id, spec.key)) or next(made) for spec in specs]


KEYS_PER_QUERY = 5000  # bound parameters of one lookup, well under either database's limit


def _refuse_repeated_keys(specs: Sequence[TaskCreate], where: Callable[[int], str]) -> None:
    """Two specs of one request with the same batch and key would be one task: refused."""
    first: dict[tuple[str, str], int] = {}
    for index, spec in enumerate(specs):
        if spec.key is None:
            continue
        earlier = first.setdefault((spec.batch, spec.key), index)
        if earlier != index:
            raise InvalidInput(f"{where(index)}key: {spec.key!r} repeats tasks.{earlier}",
                               details={"key": spec.key, "indexes": [earlier, index]})


def _existing_by_key(session: Session, pairs: Sequence[tuple[int, str | None]]
                     ) -> dict[tuple[int, str | None], SimpleNamespace]:
    """The tasks these (batch id, key) pairs name, as rows like created ones: one query
    per batch (and per ``KEYS_PER_QUERY`` keys)."""
    by_batch: dict[int, list[str]] = {}
    for batch_id, key in pairs:
        if key is not None:
            by_batch.setdefault(batch_id, []).append(key)
    found: dict[tuple[int, str | None], SimpleNamespace] = {}
    columns = Task.__table__.columns
    for batch_id, keys in by_batch.items():
        for start in range(0, len(keys), KEYS_PER_QUERY):
            chunk = keys[start:start + KEYS_PER_QUERY]
            for row in session.execute(select(*columns).where(
                    Task.batch_id == batch_id, Task.key.in_(chunk))).mappings():
                found[(batch_id, row["key"])] = SimpleNamespace(new=False, **row)
    return found


def _check_network(spec: TaskCreate, batch: Batch, where: str) -> None:
    """The options were checked when the body was parsed, but for the network: asking
    for one needs ``network`` on the task or its batch."""
    if spec.options.network in (None, "none") or spec.network or batch.network:
        return
    try:
        container_settings(spec.container, spec.container_options, int(spec.gpu),
                           network_allowed=False)
    except FieldProblem as exc:
        raise InvalidInput(f"{where}{exc.field}: {exc}") from None


def _prerequisite_statuses(session: Session, ids: Iterable[int]) -> dict[int, str]:
    ids = list(ids)
    if not ids:
        return {}
    return dict(session.execute(select(Task.id, Task.status).where(Task.id.in_(ids))).all())


def _new_task(
    spec: TaskCreate, batch_id: int, prerequisites: dict[int, str], now: datetime
) -> dict[str, Any]:
    status, reason = _initial_status(spec.requires, prerequisites)
    if spec.paused and status != T.FAILED:
        status, reason = T.PAUSED, "created paused"
    return dict(
        batch_id=batch_id,
        name=spec.name,
        command=spec.command,
        shell=spec.shell,
        container=spec.container,
        container_options=spec.container_options,
        inputs=list(spec.inputs),
        resources=list(spec.resources),
        output=spec.output,
        retries_allowed=spec.retry,
        retries_used=0,
        losses=0,
        download_timeout=spec.download_timeout,
        run_timeout=spec.run_timeout,
        cpu=spec.cpu,
        mem=spec.mem,
        gpu=spec.gpu,
        network=spec.network,
        priority=spec.priority,
        layout=spec.layout,
        host_environment=spec.host_environment,
        score_keys=list(spec.score_keys) if spec.score_keys is not None else None,
        key=spec.key,
        status=status.value,
        status_reason=reason,
        created_at=now,
        modified_at=now,
    )


def _initial_status(requires: Iterable[int], statuses: dict[int, str]) -> tuple[T, str | None]:
    """Failed if a prerequisite failed for good, waiting if one is unfinished, else pending."""
    waiting = False
    for prerequisite in sorted(set(requires)):
        status = statuses[prerequisite]
        if status in (T.FAILED.value, T.CANCELLED.value):
            return T.FAILED, DEPENDENCY_REASON.format(id=prerequisite)
        waiting = waiting or status != T.SUCCEEDED.value
    return (T.WAITING, None) if waiting else (T.PENDING, None)


def queued_status(session: Session, task_id: int) -> tuple[T, str | None]:
    """Where a task goes when it re-enters the queue: pending, waiting, or failed."""
    rows = session.execute(
        select(Requirement.prerequisite_id, Task.status)
        .join(Task, Task.id == Requirement.prerequisite_id)
        .where(Requirement.task_id == task_id)
    ).all()
    statuses = dict(rows)
    return _initial_status(statuses.keys(), statuses)


def prerequisites_of(session: Session, task_ids: Sequence[int]) -> dict[int, list[int]]:
    result: dict[int, list[int]] = {task_id: [] for task_id in task_ids}
    if not task_ids:
        return result
    rows = session.execute(
        select(Requirement.task_id, Requirement.prerequisite_id)
        .where(Requirement.task_id.in_(task_ids))
        .order_by(Requirement.prerequisite_id)
    )
    for task_id, prerequisite in rows:
        result[task_id].append(prerequisite)
    return result


def dependents_in(
    session: Session, prerequisite_id: int, status: T, reason: str | None = None
) -> list[int]:
    """Ids of the tasks that require ``prerequisite_id`` and are in ``status`` (with
    that ``reason``, if given)."""
    conditions = [Requirement.prerequisite_id == prerequisite_id, Task.status == status.value]
    if reason is not None:
        conditions.append(Task.status_reason == reason)
    return list(
        session.scalars(
            select(Requirement.task_id).join(Task, Task.id == Requirement.task_id).where(*conditions)
        ).all()
    )


def release_dependents(session: Session, task_id: int) -> list[int]:
    """After ``task_id`` succeeded: waiting dependents whose prerequisites all succeeded
    become pending. Returns the ids released."""
    candidates = dependents_in(session, task_id, T.WAITING)
    if not candidates:
        return []
    # Two prerequisites of one task succeeding at once in two transactions would each
    # see the other unfinished, and neither would release it (PostgreSQL reads what was
    # committed). Locking the dependents first makes the second wait for the first to
    # commit; its next statement then sees that success. SQLite has one writer anyway.
    session.execute(select(Task.id).where(Task.id.in_(candidates)).order_by(Task.id)
                    .with_for_update())
    blocked = set(
        session.scalars(
            select(Requirement.task_id)
            .join(Task, Task.id == Requirement.prerequisite_id)
            .where(Requirement.task_id.in_(candidates), Task.status != T.SUCCEEDED.value)
        ).all()
    )
    ready = [c for c in candidates if c not in blocked]
    transitions.move_tasks(session, ready, T.PENDING, only_from=[T.WAITING])
    return ready


def fail_dependents(session: Session, task_id: int) -> list[int]:
    """``task_id`` failed for good: every task waiting on it, directly or not, fails too,
    with a reason naming the prerequisite (nothing waits forever)."""
    failed: list[int] = []
    frontier = [task_id]
    while frontier:
        current = frontier.pop()
        for dependent in dependents_in(session, current, T.WAITING):
            reason = DEPENDENCY_REASON.format(id=current)
            if transitions.move_tasks(
                session, [dependent], T.FAILED, only_from=[T.WAITING], reason=reason
            ):
                failed.append(dependent)
                frontier.append(dependent)
    return failed


def live_execution(session: Session, task_id: int) -> Execution | None:
    return session.scalar(
        select(Execution).where(
            Execution.task_id == task_id, Execution.status.in_(LIVE_EXECUTION_VALUES)
        )
    )


def requeue(session: Session, task_id: int, *, only_from: Iterable[T]) -> T:
    """Put a task back in the queue (pending or waiting, or failed if a prerequisite did)."""
    target, reason = queued_status(session, task_id)
    transitions.move_task(session, task_id, target, only_from=only_from, reason=reason,
                          values={"retries_used": 0})
    if target == T.FAILED:
        fail_dependents(session, task_id)
    return target


def relaunch(session: Session, task_id: int) -> Task:
    """Run a finished task again (retries reset); dependents that failed because of it
    go back to waiting."""
    task = get_task(session, task_id)
    if task.status not in (T.FAILED.value, T.SUCCEEDED.value, T.CANCELLED.value):
        raise Conflict(
            f"task {task_id} is {task.status}; only failed, succeeded or cancelled tasks "
            "can be relaunched",
            details={"task_id": task_id, "status": task.status},
        )
    live = live_execution(session, task_id)
    if live is not None:
        raise Conflict(
            f"task {task_id} still has live execution {live.id} ({live.status}) being stopped; "
            "try again when it has ended"
        )
    _refuse_if_prerequisite_broken(session, task_id)
    requeue(session, task_id, only_from=[T.FAILED, T.SUCCEEDED, T.CANCELLED])
    _revive_dependents(session, task_id)
    session.refresh(task)
    return task


def _refuse_if_prerequisite_broken(session: Session, task_id: int) -> None:
    """A task cannot run again while a prerequisite is failed or cancelled: say which
    one to relaunch instead (its dependents come back with it)."""
    broken = session.scalar(
        select(Requirement.prerequisite_id)
        .join(Task, Task.id == Requirement.prerequisite_id)
        .where(Requirement.task_id == task_id,
               Task.status.in_([T.FAILED.value, T.CANCELLED.value]))
        .order_by(Requirement.prerequisite_id)
        .limit(1)
    )
    if broken is not None:
        raise Conflict(
            f"task {task_id} cannot run again while its prerequisite task {broken} is "
            f"failed or cancelled; relaunch task {broken}: its dependents come back with it",
            details={"task_id": task_id, "prerequisite_id": broken},
        )


def _revive_dependents(session: Session, task_id: int) -> None:
    frontier = [task_id]
    while frontier:
        current = frontier.pop()
        dependents = dependents_in(
            session, current, T.FAILED, reason=DEPENDENCY_REASON.format(id=current)
        )
        transitions.move_tasks(session, dependents, T.WAITING, only_from=[T.FAILED])
        frontier.extend(dependents)


def update_task(session: Session, task_id: int, changes: TaskUpdate) -> Task:
    task = get_task(session, task_id)
    fields = changes.model_dump(exclude_unset=True)
    status = fields.pop("status", None)
    for key in REQUIRED_FIELDS & fields.keys():
        if fields[key] is None:  # null for a field that cannot be empty: left as it is
            del fields[key]
    if PLACEMENT_FIELDS & fields.keys():
        _refuse_if_running(session, task)
    requires = fields.pop("requires", None)
    batch = task.batch
    name = fields.pop("batch", None)
    if name is not None and name != batch.name:
        batch = get_or_create_batch(session, name)
        _refuse_if_key_taken(session, task, batch)
    if "retry" in fields:
        fields["retries_allowed"] = fields.pop("retry")
    if CONTAINER_FIELDS & fields.keys() or batch is not task.batch:
        fields["gpu"] = _checked_gpu(task, fields, batch)
    for key, value in fields.items():
        setattr(task, key, value)
    task.batch = batch
    session.flush()
    if requires is not None:
        _replace_requirements(session, task, requires)
    if status == T.PAUSED.value:
        transitions.move_task(session, task_id, T.PAUSED, only_from=[T.PENDING, T.WAITING],
                              reason="paused by a user")
    elif status == T.PENDING.value:
        if task.status == T.PAUSED.value and live_execution(session, task_id) is not None:
            raise Conflict(
                f"task {task_id} is paused with a live (suspended) execution; "
                "send it the 'resume' signal instead"
            )
        requeue(session, task_id, only_from=[T.PAUSED])
    session.refresh(task)
    return task


REQUIRED_FIELDS = frozenset({"command", "shell", "network", "gpu", "retry", "priority",
                             "batch", "inputs", "resources", "requires"})
CONTAINER_FIELDS = frozenset({"container", "container_options", "network", "gpu"})
# what and where a task runs: only changed while no execution of it is live
PLACEMENT_FIELDS = frozenset({"batch", "inputs", "resources", "output", "requires"})
RUNNING_VALUES = frozenset({T.ASSIGNED.value, T.ACCEPTED.value, T.RUNNING.value})


def _refuse_if_running(session: Session, task: Task) -> None:
    live = live_execution(session, task.id)
    if live is not None or task.status in RUNNING_VALUES:
        running = f" with live execution {live.id} ({live.status})" if live else ""
        raise Conflict(
            f"task {task.id} is {task.status}{running}: its batch, inputs, resources, output "
            "and requires change only while it does not run",
            details={"task_id": task.id, "status": task.status},
        )


def _refuse_if_key_taken(session: Session, task: Task, batch: Batch) -> None:
    if task.key is None:
        return
    other = session.scalar(select(Task.id).where(Task.batch_id == batch.id,
                                                 Task.key == task.key))
    if other is not None:
        raise Conflict(
            f"task {other} of batch {batch.name} has key {task.key!r} already: task "
            f"{task.id} cannot move there with it",
            details={"task_id": task.id, "key": task.key, "existing": other},
        )


def _replace_requirements(session: Session, task: Task, requires: Sequence[int]) -> None:
    """The task's prerequisites become ``requires``; a queued task is then pending,
    waiting or failed as they are (a paused task stays paused)."""
    wanted = sorted(set(requires))
    statuses = _prerequisite_statuses(session, wanted)
    unknown = [p for p in wanted if p not in statuses]
    if unknown:
        raise InvalidInput(f"requires: unknown task id(s) {', '.join(map(str, unknown))}",
                           field="requires", details={"unknown": unknown})
    if task.id in statuses:
        raise InvalidInput(f"requires: task {task.id} cannot require itself",
                           field="requires")
    looping = sorted(_dependents(session, task.id) & statuses.keys())
    if looping:
        raise InvalidInput(
            f"requires: task {looping[0]} depends on task {task.id} (directly or not): "
            "requiring it would make a cycle", field="requires",
            details={"cycle": looping})
    session.execute(delete(Requirement).where(Requirement.task_id == task.id))
    if wanted:
        session.execute(insert(Requirement),
                        [{"task_id": task.id, "prerequisite_id": p} for p in wanted])
    if task.status not in (T.PENDING.value, T.WAITING.value):
        return
    target, reason = _initial_status(wanted, statuses)
    if target == T.FAILED:  # a queued task fails by way of waiting
        transitions.move_tasks(session, [task.id], T.WAITING, only_from=[T.PENDING])
        transitions.move_tasks(session, [task.id], T.FAILED, only_from=[T.WAITING],
                               reason=reason)
        fail_dependents(session, task.id)
    elif target.value != task.status:
        transitions.move_tasks(session, [task.id], target, only_from=[T.PENDING, T.WAITING],
                               reason=reason)


def _dependents(session: Session, task_id: int) -> set[int]:
    """Every task that requires ``task_id``, directly or not (one query per level)."""
    found: set[int] = set()
    frontier = {task_id}
    while frontier:
        frontier = set(session.scalars(select(Requirement.task_id).where(
            Requirement.prerequisite_id.in_(frontier)))) - found
        found |= frontier
    return found


def _checked_gpu(task: Task, fields: dict[str, Any], batch: Batch) -> int:
    """Check the task's container fields as they will be after the update (a field
    set to null clears it; ``batch``: the one it will be in); returns its gpu (taken
    from ``--gpus`` when 0)."""
    def after(key: str) -> Any:
        return fields[key] if key in fields else getattr(task, key)

    gpu = after("gpu")
    try:
        _options, gpu = container_settings(
            after("container"), after("container_options"), 0 if gpu is None else gpu,
            network_allowed=bool(after("network") or batch.network),
        )
    except FieldProblem as exc:
        raise InvalidInput(f"{exc.field}: {exc}") from None
    return gpu


def signal_task(session: Session, task_id: int, kind: SignalKind) -> Signal:
    """Queue a signal for the worker running the task and move the task accordingly."""
    task = get_task(session, task_id)
    execution = live_execution(session, task_id)
    if execution is None or execution.worker_id is None:
        raise Conflict(
            f"task {task_id} is {task.status} with no live execution to signal",
            details={"task_id": task_id, "status": task.status},
        )
    if kind == SignalKind.PAUSE:
        if execution.status != ExecutionStatus.RUNNING.value:
            raise Conflict(f"task {task_id} is {task.status}; only a running task can be paused")
        transitions.move_task(session, task_id, T.PAUSED, only_from=[T.RUNNING],
                              reason="suspended by a user")
    elif kind == SignalKind.RESUME:
        transitions.move_task(session, task_id, T.RUNNING, only_from=[T.PAUSED])
    else:
        transitions.move_task(session, task_id, T.CANCELLED, reason=f"{kind.value} requested")
    signal = Signal(execution_id=execution.id, worker_id=execution.worker_id, signal=kind.value)
    session.add(signal)
    session.flush()
    return signal


def delete_task(session: Session, task_id: int) -> list[int]:
    """Delete a task; its worker drops any live execution at its next heartbeat.
    Dependents lose the requirement and may become runnable. Returns deleted execution ids."""
    get_task(session, task_id)
    dependents = session.scalars(
        select(Requirement.task_id).where(Requirement.prerequisite_id == task_id)
    ).all()
    execution_ids = session.scalars(select(Execution.id).where(Execution.task_id == task_id)).all()
    session.execute(delete(Task).where(Task.id == task_id))
    for dependent in dependents:
        status = session.scalar(select(Task.status).where(Task.id == dependent))
        if status == T.WAITING.value:
            target, reason = queued_status(session, dependent)
            if target != T.WAITING:
                transitions.move_tasks(session, [dependent], target, reason=reason)
    return list(execution_ids)


def list_tasks(
    session: Session,
    *,
    limit: int | None = None,
    offset: int = 0,
    newest_first: bool = False,
    **filters: Any,
) -> list[Task]:
    """One page of tasks; ``filters`` are those of ``_task_filters``."""
    stmt = select(Task).where(*_task_filters(**filters))
    stmt = stmt.order_by(Task.id.desc() if newest_first else Task.id)
    if limit:
        stmt = stmt.limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    return list(session.scalars(stmt).all())


def count_tasks(session: Session, **filters: Any) -> int:
    """How many tasks ``list_tasks`` would list with the same filters (without a page)."""
    return session.scalar(select(func.count(Task.id)).where(*_task_filters(**filters))) or 0


def _task_filters(
    *,
    batch: str | None = None,
    batch_id: int | None = None,
    statuses: Sequence[str] = (),
    name: str | None = None,
    name_contains: str | None = None,
    key: str | None = None,
    ids: Sequence[int] = (),
    worker_id: int | None = None,
) -> list[Any]:
    """SQL conditions on the task table: lists are filtered, counted and sliced by the
    database, never in Python."""
    conditions: list[Any] = []
    if batch:
        conditions.append(Task.batch_id == select(Batch.id).where(Batch.name == batch)
                          .scalar_subquery())
    if batch_id is not None:
        conditions.append(Task.batch_id == batch_id)
    if statuses:
        conditions.append(Task.status.in_(list(statuses)))
    if name:
        conditions.append(Task.name.like(name) if "%" in name else Task.name == name)
    if name_contains:
        conditions.append(Task.name.icontains(name_contains, autoescape=True))
    if key:
        conditions.append(Task.key == key)
    if ids:
        conditions.append(Task.id.in_(list(ids)))
    if worker_id is not None:
        conditions.append(
            exists().where(Execution.task_id == Task.id, Execution.worker_id == worker_id)
        )
    return conditions


def latest_execution(session: Session, task_id: int) -> Execution | None:
    """The task's newest attempt (its logs are the task's output)."""
    return session.scalar(
        select(Execution).where(Execution.task_id == task_id)
        .order_by(Execution.id.desc()).limit(1)
    )


def execution_of(session: Session, task_id: int,
                 execution_id: int | None = None) -> Execution | None:
    """Attempt ``execution_id`` of the task, or without it the task's latest; None when
    the task has no such attempt (or none yet)."""
    if execution_id is None:
        return latest_execution(session, task_id)
    found = session.get(Execution, execution_id)
    return found if found is not None and found.task_id == task_id else None


def latest_runs(session: Session, task_ids: Sequence[int]) -> dict[int, Any]:
    """For a page of tasks, in one query: each task's number of attempts and its latest
    execution's worker and timings."""
    if not task_ids:
        return {}
    latest = (
        select(Execution.task_id, func.max(Execution.id).label("latest_id"),
               func.count(Execution.id).label("attempts"))
        .where(Execution.task_id.in_(list(task_ids)))
        .group_by(Execution.task_id)
        .subquery()
    )
    rows = session.execute(
        select(latest.c.task_id, latest.c.attempts, Execution.id, Execution.status,
               Execution.worker_id, Worker.name.label("worker"), Execution.started_at,
               Execution.finished_at, Execution.duration, Execution.return_code)
        .join(Execution, Execution.id == latest.c.latest_id)
        .outerjoin(Worker, Worker.id == Execution.worker_id)
    ).all()
    return {row.task_id: row for row in rows}


def count_by_status(session: Session, batch_ids: Sequence[int] | None = None) -> dict[Any, Any]:
    stmt = select(Task.batch_id, Task.status, func.count()).group_by(Task.batch_id, Task.status)
    if batch_ids is not None:
        stmt = stmt.where(Task.batch_id.in_(list(batch_ids)))
    counts: dict[int, dict[str, int]] = {}
    for batch_id, status, count in session.execute(stmt):
        counts.setdefault(batch_id, {})[status] = count
    return counts



# -- changes as the API and the GUI make them: one transaction, then what follows its
# commit (workers woken, logs of deleted executions removed). ``describe`` turns the
# result into the caller's answer while the session is still open. ------------------------

R = TypeVar("R")


def commit_create(ctx: ServerContext, specs: Sequence[TaskCreate], *, bulk: bool = False,
                  describe: Callable[[Session, list[SimpleNamespace]], R] | None = None
                  ) -> R | None:
    """Claimers of the batches that got new tasks are woken. Two requests racing on one
    key: the second insert breaks the batch's key index; its transaction rolls back
    and runs once more, and then finds the first one's task."""
    def create() -> R | None:
        return _write_then_wake(ctx, lambda s: create_tasks(ctx.db, s, specs, bulk=bulk),
                                describe,
                                wakes=_new_work)

    if not any(spec.key for spec in specs):
        return create()
    try:
        return create()
    except IntegrityError:
        return create()


def _new_work(tasks: Sequence[SimpleNamespace]) -> Sequence[str]:
    """What new tasks wake (nothing when every task existed already)."""
    new = [t.batch_id for t in tasks if t.new]
    return work_keys(new) if new else ()


def commit_update(ctx: ServerContext, task_id: int, changes: TaskUpdate, *,
                  describe: Callable[[Session, Task], R] | None = None) -> R | None:
    return _write_then_wake(ctx, lambda s: update_task(s, task_id, changes), describe)


def commit_relaunch(ctx: ServerContext, task_id: int, *,
                    describe: Callable[[Session, Task], R] | None = None) -> R | None:
    return _write_then_wake(ctx, lambda s: relaunch(s, task_id), describe)


def _write_then_wake(ctx: ServerContext, change: Callable[[Session], Any],
                     describe: Callable[[Session, Any], R] | None,
                     wakes: Callable[[Any], Sequence[str]] = lambda _result: (WORK,),
                     ) -> R | None:
    """``change`` in a write transaction, described before the commit, then idle
    claimers woken (work may have entered the queue): those ``wakes`` names from the
    result, every one by default."""
    with ctx.db.write() as session:
        result = change(session)
        answer = describe(session, result) if describe is not None else None
    ctx.notifier.notify(*wakes(result))
    return answer


def commit_signal(ctx: ServerContext, task_id: int, kind: SignalKind, *,
                  describe: Callable[[Session, Signal], R] | None = None) -> R | None:
    """The signal waits for the worker's heartbeat, which is woken to take it now."""
    with ctx.db.write() as session:
        signal = signal_task(session, task_id, kind)
        answer = describe(session, signal) if describe is not None else None
        worker_id = signal.worker_id
    ctx.notifier.notify(worker_key(worker_id))
    return answer


def commit_delete(ctx: ServerContext, task_id: int) -> None:
    with ctx.db.write() as session:
        execution_ids = delete_task(session, task_id)
    ctx.logs.delete(execution_ids)
    ctx.notifier.notify(WORK)


# what the tasks list may be sorted by (a request names a key, never a column)
TASK_SORTS = ("id", "name", "status", "batch", "created", "modified")


def list_tasks_sorted(session: Session, *, sort: str = "id", descending: bool = True,
                      limit: int = 50, offset: int = 0, **filters: Any) -> list[Task]:
    """One page of tasks ordered by one of ``TASK_SORTS`` (then by id; tasks without a
    name last), filtered as ``list_tasks`` filters them."""
    if sort not in TASK_SORTS:
        raise InvalidInput(f"cannot sort tasks by {sort!r}: choose one of {', '.join(TASK_SORTS)}")
    stmt = select(Task).where(*_task_filters(**filters))
    key: Any = {"id": Task.id, "name": Task.name, "status": Task.status,
                "created": Task.created_at, "modified": Task.modified_at}.get(sort)
    if sort == "batch":
        stmt = stmt.join(Batch, Batch.id == Task.batch_id)
        key = Batch.name
    ordered = key.desc() if descending else key.asc()
    if sort == "name":
        ordered = ordered.nulls_last()
    tie = Task.id.desc() if descending else Task.id.asc()
    stmt = stmt.order_by(ordered, tie).limit(limit).offset(offset)
    return list(session.scalars(stmt).all())
