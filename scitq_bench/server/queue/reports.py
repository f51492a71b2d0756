"""Worker reports: execution events applied in order, in a few set-based statements.

The report's executions are locked first, read with what their tasks need to follow
(status, retries, whether other tasks wait on them); each event is then checked against
the state machine in memory, in order, so one report of a thousand events costs a
handful of statements instead of a few per event. An event about an execution that is no
longer live (lost, deleted, another worker's) is refused on its own, and the worker
drops that execution: that is what makes a late finish after a requeue harmless.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Select, bindparam, exists, select, true
from sqlalchemy.orm import Session

from scitq_bench.exceptions import Forbidden
from scitq_bench.server.db import Database
from scitq_bench.server.prepared import hot
from scitq_bench.server.queue import scheduling, transitions
from scitq_bench.server.queue import tasks as task_domain
from scitq_bench.server.queue.models import Execution, Requirement, Task, utcnow
from scitq_bench.server.schemas import ExecutionEvent
from scitq_bench.states import LIVE_EXECUTION_VALUES, LIVE_TASK_VALUES
from scitq_bench.states import ExecutionStatus as E
from scitq_bench.states import TaskStatus as T


@dataclass
class ReportOutcome:
    results: list[dict[str, Any]]
    work_released: bool  # a task went back to (or newly entered) the queue
    # the worker as read at the start, its executions this report ended taken off
    # ``held``: what a claim in the same transaction starts from
    worker: scheduling.WorkerState | None = None


@dataclass
class _Outcomes:
    """What happened to each execution of the report, for the task follow-up."""

    accepted: set[int] = field(default_factory=set)  # task ids
    running: set[int] = field(default_factory=set)
    final: dict[int, tuple[E, ExecutionEvent]] = field(default_factory=dict)


def report(db: Database, worker_id: int, events: list[ExecutionEvent],
           lease_seconds: float | None = None) -> ReportOutcome:
    with db.write() as session:
        return report_in(db, session, worker_id, events, lease_seconds)


_execution, _task = Execution.__table__, Task.__table__
# The reporting worker, read once (materialized: not once per execution row)
_WORKER = scheduling.WORKER_STATE.cte("reporter").prefix_with("MATERIALIZED")
# Everything a report needs, in one statement: the reporting worker, the executions
# reported (locked) and what their tasks need to follow them (not locked: the tasks'
# moves are guarded by status).
_REPORTED_COLUMNS = (
    _execution.c.id, _execution.c.task_id, _execution.c.worker_id, _execution.c.status,
    _execution.c.started_at, _task.c.status.label("task_status"), _task.c.retries_used,
    _task.c.retries_allowed,
    exists().where(Requirement.__table__.c.prerequisite_id == _task.c.id)
    .label("has_dependents"),
)
_REPORTED_EXECUTIONS = _execution.c.id.in_(bindparam("e_ids", expanding=True))
_REPORTED = (
    select(*_REPORTED_COLUMNS, *_WORKER.c)
    .select_from(_execution.join(_task, _task.c.id == _execution.c.task_id)
                 .join(_WORKER, true()))
    .where(_REPORTED_EXECUTIONS)
)
# The same rows for the reports of several workers (their states read apart)
_REPORTED_ROWS = (
    select(*_REPORTED_COLUMNS)
    .select_from(_execution.join(_task, _task.c.id == _execution.c.task_id))
    .where(_REPORTED_EXECUTIONS)
)


@lru_cache(maxsize=16)
def _reported(db: Database) -> Select[Any]:
    return hot(db.lock_for_update(_REPORTED, _execution))


@lru_cache(maxsize=16)
def _reported_rows(db: Database) -> Select[Any]:
    return db.lock_for_update(_REPORTED_ROWS, _execution)


def report_in(db: Database, session: Session, worker_id: int,
              events: list[ExecutionEvent], lease_seconds: float | None = None) -> ReportOutcome:
    """``report`` inside the caller's write transaction (the claim that follows a report
    shares it: one transaction, one commit per round trip). The worker's last contact
    is written unless it was less than the slack of ``lease_seconds`` ago (None:
    always), after the executions and tasks: rows are locked in that order."""
    connection = session.connection()
    ids = sorted({e.execution_id for e in events})
    found = connection.execute(_reported(db), {"w_id": worker_id, "e_ids": ids}).all()
    worker = (scheduling.worker_state_of(found[0]) if found
              else scheduling.worker_state(connection, worker_id))
    if worker is None:
        raise scheduling.unregistered(worker_id)
    now = utcnow()
    taken = _Taken({row.id: row for row in found})
    results = taken.add(worker, events, now)
    released = taken.write(session)
    scheduling.touch(connection, worker, now, lease_seconds)
    return ReportOutcome(results=results, work_released=released, worker=worker)


def reports_in(db: Database, session: Session, reports: dict[int, list[ExecutionEvent]],
               lease_seconds: float | None = None) -> dict[int, ReportOutcome | Forbidden]:
    """The reports of several workers (worker id -> events) inside the caller's write
    transaction, each taken as ``report_in`` would take it alone, their statements
    shared: one read of every reported execution, one of every worker, each kind of
    execution move and task move once for them all, one write of the last contacts
    due. A worker that is not registered gets its ``Forbidden``; the others go on. The
    outcomes' ``work_released`` is the group's."""
    connection = session.connection()
    ids = sorted({e.execution_id for events in reports.values() for e in events})
    found = connection.execute(_reported_rows(db), {"e_ids": ids}).all() if ids else []
    states = scheduling.worker_states(connection, sorted(reports))
    now = utcnow()
    taken = _Taken({row.id: row for row in found})
    results: dict[int, list[dict[str, Any]]] = {}
    for worker_id in sorted(states):
        results[worker_id] = taken.add(states[worker_id], reports[worker_id], now)
    released = taken.write(session)
    scheduling.touch_all(connection, list(states.values()), now, lease_seconds)
    return {worker_id: ReportOutcome(results=results[worker_id], work_released=released,
                                     worker=states[worker_id])
            if worker_id in states else scheduling.unregistered(worker_id)
            for worker_id in reports}


class _Taken:
    """The events of one or more reports, checked against the executions as read
    (``rows``, locked) and merged into one write per execution; then written, and the
    tasks moved after them."""

    def __init__(self, rows: dict[int, Any]) -> None:
        self.rows = rows
        self.status = {i: E(row.status) for i, row in rows.items()}
        self.started = {i: row.started_at for i, row in rows.items()}
        self.merged: dict[int, dict[str, Any]] = {}  # one write per execution, events merged
        self.outcomes = _Outcomes()

    def add(self, worker: scheduling.WorkerState, events: list[ExecutionEvent],
            now: datetime) -> list[dict[str, Any]]:
        """Take one worker's events, in order; their results. The worker's ``held``
        loses the executions they end."""
        rows, status = self.rows, self.status
        results = []
        written: set[int] = set()  # this worker's executions that the events move
        for event in events:
            error = _refusal(event, rows, status, worker.id)
            results.append({"execution_id": event.execution_id, "ok": error is None,
                            "error": error})
            if error is None:
                target = E(event.status)
                task_id = rows[event.execution_id].task_id
                if _implies_running(status[event.execution_id], target, event):
                    self.outcomes.running.add(task_id)
                values = _event_values(event, now, self.started)
                status[event.execution_id] = target
                self.merged.setdefault(event.execution_id, {}).update(values)
                written.add(event.execution_id)
                _note(self.outcomes, task_id, target, event)
        worker.held -= sum(1 for i in written if rows[i].status in LIVE_EXECUTION_VALUES
                           and status[i].value not in LIVE_EXECUTION_VALUES)
        return results

    def write(self, session: Session) -> bool:
        """Write the executions' moves, then the tasks'; True if work entered the queue."""
        rows, status = self.rows, self.status
        transitions.apply_execution_changes(
            session,
            [(i, E(rows[i].status), status[i], values) for i, values in self.merged.items()],
        )
        tasks = {row.task_id: row for row in rows.values()
                 if row.task_id in self.outcomes.final}
        return _tasks_follow(session, self.outcomes, tasks)


def _refusal(event: ExecutionEvent, rows: dict[int, Any], status: dict[int, E],
             worker_id: int) -> str | None:
    row = rows.get(event.execution_id)
    if row is None:
        return f"execution {event.execution_id} not found"
    if row.worker_id != worker_id:
        return f"execution {event.execution_id} belongs to another worker"
    current, target = status[event.execution_id], E(event.status)
    if target in transitions.EXECUTION_TRANSITIONS[current] or _implies_running(current, target, event):
        return None
    return f"execution {event.execution_id} is {current.value}; it cannot become {target.value}"


def _implies_running(current: E, target: E, event: ExecutionEvent) -> bool:
    """A final event with a duration says the command ran: a worker may leave out the
    ``running`` event of a task that started and ended between two reports."""
    return (
        event.duration is not None
        and target not in transitions.EXECUTION_TRANSITIONS[current]
        and E.RUNNING in transitions.EXECUTION_TRANSITIONS[current]
        and target in transitions.EXECUTION_TRANSITIONS[E.RUNNING]
    )


def _event_values(event: ExecutionEvent, now: datetime, started: dict[int, Any]) -> dict[str, Any]:
    """Column values for an event, dated by its age (the worker's clock is not used)."""
    happened = now - timedelta(seconds=event.age or 0)
    target = E(event.status)
    if target == E.RUNNING:
        started[event.execution_id] = happened
        return {"started_at": happened}
    if target == E.ACCEPTED:
        return {}
    values: dict[str, Any] = {
        "finished_at": happened,
        "return_code": event.return_code,
        "error": event.error,
        "reason": event.reason,
        "output_files": event.output_files,
        "duration": event.duration,
        "scores": event.scores,
    }
    if started.get(event.execution_id) is None and event.duration is not None:
        values["started_at"] = happened - timedelta(seconds=event.duration)
    return values


def _note(outcomes: _Outcomes, task_id: int, target: E, event: ExecutionEvent) -> None:
    if target == E.ACCEPTED:
        outcomes.accepted.add(task_id)
    elif target == E.RUNNING:
        outcomes.running.add(task_id)
    else:
        outcomes.final[task_id] = (target, event)


def _tasks_follow(session: Any, outcomes: _Outcomes, tasks: dict[int, Any]) -> bool:
    """Move the tasks after their executions moved; True if work entered the queue.
    ``tasks``: the tasks of the final events as the report read them (``task_status``,
    retries, ``has_dependents``). A task the report also brings further goes there
    without the accepted step: an assigned task may move to whatever an accepted one
    may."""
    transitions.move_tasks(session, outcomes.accepted - outcomes.running - set(outcomes.final),
                           T.ACCEPTED, only_from=[T.ASSIGNED])
    transitions.move_tasks(session, outcomes.running, T.RUNNING,
                           only_from=[T.ASSIGNED, T.ACCEPTED])
    if not outcomes.final:
        return False
    by_outcome: dict[E, list[int]] = defaultdict(list)
    for task_id, (outcome, _event) in outcomes.final.items():
        if task_id in tasks:
            by_outcome[outcome].append(task_id)
    released = _succeeded(session, tasks, by_outcome[E.SUCCEEDED])
    for outcome in (E.FAILED, E.TIMEOUT):
        for task_id in by_outcome[outcome]:
            task = tasks[task_id]
            if task.task_status in LIVE_TASK_VALUES:
                released |= _spend_retry_or_fail(session, task, outcome,
                                                 outcomes.final[task_id][1])
    not_their_fault = [
        task_id for outcome in (E.REFUSED, E.CANCELLED) for task_id in by_outcome[outcome]
        if tasks[task_id].task_status in LIVE_TASK_VALUES
    ]
    if transitions.move_tasks(session, not_their_fault, T.PENDING,
                              only_from=[T.ASSIGNED, T.ACCEPTED, T.RUNNING],
                              reason="the worker gave the task back",
                              values={"losses": Task.losses + 1}):
        released = True
    return released


def _succeeded(session: Any, tasks: dict[int, Any], task_ids: list[int]) -> bool:
    # A task paused by a user whose execution still completed is done all the same;
    # a cancelled one stays cancelled.
    movable = [i for i in task_ids if tasks[i].task_status in LIVE_TASK_VALUES
               or tasks[i].task_status == T.PAUSED.value]
    if not movable:
        return False
    transitions.move_tasks(session, movable, T.SUCCEEDED)
    released = False
    for task_id in movable:
        if tasks[task_id].has_dependents:
            released |= bool(task_domain.release_dependents(session, task_id))
    return released


def _failure(outcome: E, event: ExecutionEvent) -> str:
    """Why an attempt failed, in words: a command that never ran (an image that could
    not be pulled, an input that could not be fetched) has no exit code to give."""
    if outcome == E.TIMEOUT:
        what = "timed out"
    elif event.return_code is None and event.error:
        what = event.error  # it never ran: the worker's own words
    else:
        what = f"exit code {event.return_code}" + (f": {event.error}" if event.error else "")
    if event.reason and event.reason != "timeout" and not what.startswith(event.reason):
        what = f"{what} [{event.reason}]"
    return what


def _spend_retry_or_fail(session: Any, task: Any, outcome: E, event: ExecutionEvent) -> bool:
    what = _failure(outcome, event)
    if task.retries_used < task.retries_allowed:
        transitions.move_tasks(
            session, [task.task_id], T.PENDING,
            reason=f"attempt failed ({what}); retry {task.retries_used + 1} of "
            f"{task.retries_allowed}",
            values={"retries_used": Task.retries_used + 1},
        )
        return True
    transitions.move_tasks(session, [task.task_id], T.FAILED, reason=what)
    if task.has_dependents:
        task_domain.fail_dependents(session, task.task_id)
    return False
