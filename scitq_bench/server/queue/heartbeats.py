"""Heartbeats: leases renewed, signals acknowledged, the worker's last contact and stats.

A heartbeat reads its worker and live executions in one statement and writes only what
is due (``scheduling.contact_slack``): a heartbeat that follows another closely is one
read. What it writes is decided in memory from that read (``_decide``), by a lone
heartbeat as by the heartbeats of several workers that arrive together
(``heartbeats_in``): those share their statements, one read of every worker, one
renewal of every lease due, one executemany of the contacts due, and one commit.

Rows are written executions first, then signals, then workers: the order reports and
claims lock them in too, so none of them waits for another in a cycle.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, exists, select, update
from sqlalchemy.orm import Session

from scitq_bench.exceptions import Forbidden
from scitq_bench.server.prepared import hot
from scitq_bench.server.queue import transitions
from scitq_bench.server.queue.models import Batch, Execution, Signal, Worker, utcnow
from scitq_bench.server.queue.scheduling import contact_due, contact_slack, unregistered
from scitq_bench.server.schemas import Heartbeat
from scitq_bench.states import LIVE_EXECUTION_VALUES, WorkerStatus

_batch: Table = Batch.__table__  # type: ignore[assignment]
_execution: Table = Execution.__table__  # type: ignore[assignment]
_signal: Table = Signal.__table__  # type: ignore[assignment]
_worker: Table = Worker.__table__  # type: ignore[assignment]
_live_execution = transitions.status_in(_execution.c.status, LIVE_EXECUTION_VALUES)


@dataclass
class HeartbeatAnswer:
    """The worker's settings as the server has them, the signals it has to apply, and
    the executions it holds that are no longer its own."""

    status: str
    concurrency: int
    prefetch: int
    batch: str | None
    signals: list[Any] = field(default_factory=list)
    drop: list[int] = field(default_factory=list)


_STATE_COLUMNS = (
    _worker.c.status, _worker.c.concurrency, _worker.c.prefetch, _worker.c.last_contact_at,
    _worker.c.stats, _batch.c.name.label("batch"),
    exists().where(_signal.c.worker_id == _worker.c.id,
                   _signal.c.acknowledged_at.is_(None)).label("signalled"),
    _execution.c.id.label("execution_id"), _execution.c.lease_deadline,
)
_STATE_FROM = _worker.outerjoin(_batch, _batch.c.id == _worker.c.batch_id).outerjoin(
    _execution, and_(_execution.c.worker_id == _worker.c.id, _live_execution))
# The worker's settings, whether signals wait for it, and its live executions (one row
# each, or one row of NULLs), in one statement: no list of ids to splice into the SQL.
_HEARTBEAT_STATE = hot(select(*_STATE_COLUMNS).select_from(_STATE_FROM)
                       .where(_worker.c.id == bindparam("w_id")))
# The same for several workers, each row naming its worker
_HEARTBEAT_STATES = (select(_worker.c.id.label("worker_id"), *_STATE_COLUMNS)
                     .select_from(_STATE_FROM)
                     .where(_worker.c.id.in_(bindparam("w_ids", expanding=True))))
# Renewing every live execution of the worker, when it holds them all (the usual
# case), or only those it listed: one it no longer knows of must run out.
_RENEW_ALL = hot(update(_execution)
                 .where(_execution.c.worker_id == bindparam("w_id"), _live_execution)
                 .values(lease_deadline=bindparam("e_deadline")))
_RENEW = _RENEW_ALL.where(_execution.c.id.in_(bindparam("e_ids", expanding=True)))
# Several workers' renewals: the executions each listed and holds live, as read
_RENEW_HELD = (update(_execution)
               .where(_execution.c.id.in_(bindparam("e_ids", expanding=True)),
                      _execution.c.worker_id.in_(bindparam("w_ids", expanding=True)),
                      _live_execution)
               .values(lease_deadline=bindparam("e_deadline")))
_ACKNOWLEDGE = update(_signal).where(
    _signal.c.id.in_(bindparam("s_ids", expanding=True)),
    _signal.c.worker_id == bindparam("w_id"),
).values(acknowledged_at=bindparam("s_now"))
_PENDING_SIGNALS = hot(
    select(_signal.c.id, _signal.c.execution_id, _signal.c.signal)
    .where(_signal.c.worker_id == bindparam("w_id"), _signal.c.acknowledged_at.is_(None))
    .order_by(_signal.c.id)
)
_TOUCH_WITH_STATS = hot(update(_worker).where(_worker.c.id == bindparam("w_id"))
                        .values(last_contact_at=bindparam("w_now"),
                                stats=bindparam("w_stats", type_=_worker.c.stats.type)))


@dataclass
class _Beat:
    """What one heartbeat writes, decided from its worker's rows as read."""

    worker_id: int
    renew: list[int]  # the live executions whose leases are due, sorted (empty: none)
    renew_all: bool  # those are all the worker's live executions
    wakes: bool  # an offline worker is running again
    touch: bool  # the last contact and the stats are due
    signalled: bool  # signals wait for it
    answer: HeartbeatAnswer


def _decide(worker_id: int, rows: Sequence[Any], beat: Heartbeat, now: datetime,
            lease_seconds: float) -> _Beat:
    state = rows[0]
    held = sorted(set(beat.executions))
    live = {row.execution_id: row.lease_deadline for row in rows
            if row.execution_id is not None}
    renewed = {i: live[i] for i in held if i in live}
    deadline = now + timedelta(seconds=lease_seconds)
    slack = contact_slack(lease_seconds)
    leases_due = any(d is None or deadline - d >= slack for d in renewed.values())
    wakes = state.status == WorkerStatus.OFFLINE.value
    status = WorkerStatus.RUNNING.value if wakes else state.status
    # Reports and claims also write the last contact, never the stats: those are due
    # with the leases (a busy worker's heartbeats renew some every time), or when none
    # came yet (the first heartbeat after registering)
    touch = (leases_due or wakes or not state.stats
             or contact_due(state.last_contact_at, now, lease_seconds))
    answer = HeartbeatAnswer(status=status, concurrency=state.concurrency,
                             prefetch=state.prefetch, batch=state.batch,
                             drop=[i for i in held if i not in renewed])
    return _Beat(worker_id=worker_id, renew=sorted(renewed) if leases_due else [],
                 renew_all=len(renewed) == len(live), wakes=wakes, touch=touch,
                 signalled=bool(state.signalled), answer=answer)


def heartbeat(session: Session, worker_id: int, beat: Heartbeat, lease_seconds: float,
              now: datetime | None = None) -> HeartbeatAnswer:
    """Renew the leases of what the worker still holds, acknowledge signals, and tell it
    which executions are no longer its own (lost or deleted) so it drops them. Leases
    and the last contact (with the stats) are written only when due."""
    connection = session.connection()
    rows = connection.execute(_HEARTBEAT_STATE, {"w_id": worker_id}).all()
    if not rows:
        raise unregistered(worker_id)
    now = now or utcnow()
    decided = _decide(worker_id, rows, beat, now, lease_seconds)
    if decided.renew:
        params = {"w_id": worker_id, "e_deadline": now + timedelta(seconds=lease_seconds)}
        if decided.renew_all:
            connection.execute(_RENEW_ALL, params)
        else:
            connection.execute(_RENEW, {**params, "e_ids": decided.renew})
    _acknowledge(connection, worker_id, beat, now)
    _follow_up(session, [(decided, beat)], now)
    return decided.answer


def heartbeats_in(session: Session, beats: dict[int, Heartbeat], lease_seconds: float,
                  now: datetime | None = None) -> dict[int, HeartbeatAnswer | Forbidden]:
    """The heartbeats of several workers (worker id -> heartbeat) inside the caller's
    write transaction, each answered as ``heartbeat`` would answer it alone (a worker
    that is not registered: its ``Forbidden``), their statements shared."""
    connection = session.connection()
    rows: defaultdict[int, list[Any]] = defaultdict(list)
    for row in connection.execute(_HEARTBEAT_STATES, {"w_ids": sorted(beats)}):
        rows[row.worker_id].append(row)
    now = now or utcnow()
    decided = [_decide(w, rows[w], beats[w], now, lease_seconds) for w in sorted(rows)]
    renewing = [d for d in decided if d.renew]
    if renewing:  # in id order, as reports lock them
        connection.execute(_RENEW_HELD, {
            "e_ids": sorted(i for d in renewing for i in d.renew),
            "w_ids": [d.worker_id for d in renewing],
            "e_deadline": now + timedelta(seconds=lease_seconds)})
    for d in decided:
        _acknowledge(connection, d.worker_id, beats[d.worker_id], now)
    _follow_up(session, [(d, beats[d.worker_id]) for d in decided], now)
    answers: dict[int, HeartbeatAnswer | Forbidden] = {d.worker_id: d.answer for d in decided}
    answers.update({w: unregistered(w) for w in beats if w not in rows})
    return answers


def _acknowledge(connection: Connection, worker_id: int, beat: Heartbeat,
                 now: datetime) -> None:
    if beat.acknowledged_signals:
        connection.execute(_ACKNOWLEDGE, {"s_ids": sorted(set(beat.acknowledged_signals)),
                                          "w_id": worker_id, "s_now": now})


def _follow_up(session: Session, decided: list[tuple[_Beat, Heartbeat]],
               now: datetime) -> None:
    """The workers' rows (in worker id order), then the signals they are to apply."""
    for d, _ in decided:
        if d.wakes:
            transitions.move_worker(session, d.worker_id, WorkerStatus.RUNNING)
    touched = [{"w_id": d.worker_id, "w_now": now, "w_stats": beat.stats}
               for d, beat in decided if d.touch]
    if touched:
        session.connection().execute(_TOUCH_WITH_STATS,
                                     touched[0] if len(touched) == 1 else touched)
    for d, _ in decided:
        if d.signalled:
            d.answer.signals = pending_signals(session, d.worker_id)


def pending_signals(session: Session, worker_id: int) -> list[Any]:
    """Signals not yet acknowledged (rows with ``id``, ``execution_id``, ``signal``)."""
    return list(session.connection().execute(_PENDING_SIGNALS, {"w_id": worker_id}).all())
