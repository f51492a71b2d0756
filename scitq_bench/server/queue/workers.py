"""Worker registry: registration (a restarted worker keeps its identity), settings."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, joinedload

from scitq_bench.exceptions import Conflict
from scitq_bench.server import auth
from scitq_bench.server.db import Database
from scitq_bench.server.lookup import get_or_404
from scitq_bench.server.notify import WORK, worker_key
from scitq_bench.server.queue import heartbeats, reports, scheduling, transitions
from scitq_bench.server.queue.models import Execution, Worker, utcnow
from scitq_bench.server.queue.tasks import get_or_create_batch
from scitq_bench.server.schemas import (
    ExecutionEvent,
    Heartbeat,
    WorkerRegister,
    WorkerUpdate,
    changed_fields,
)
from scitq_bench.server.serialize import signal_dict, worker_dict
from scitq_bench.states import LIVE_EXECUTION_VALUES, UP_WORKER_VALUES, WorkerStatus

if TYPE_CHECKING:
    from scitq_bench.server.context import ServerContext


def get_worker(session: Session, worker_id: int) -> Worker:
    return get_or_404(session, Worker, worker_id)


def batch_of(db: Database, worker_id: int) -> int | None:
    """The batch a worker is bound to (None: free, or no such worker, which the claim
    that follows reports)."""
    with db.read() as session:
        return session.scalar(select(Worker.batch_id).where(Worker.id == worker_id))


# What the recruiter set for a machine it hired, which its worker process must not undo
# when it registers.
SERVER_DECIDES = frozenset({"concurrency", "prefetch", "flavor", "provider", "region",
                            "permanent"})


def register(session: Session, spec: WorkerRegister) -> tuple[Worker, str, int]:
    """Create the worker, or take over the record of the same name. Executions the old
    process held are lost (its children died with it) and re-queued without spending
    retries. A recruited machine keeps what its recruiter decided (batch, concurrency,
    flavor...). Returns the worker, its new token, and how many tasks were re-queued."""
    worker = session.scalar(select(Worker).where(Worker.name == spec.name))
    fields = spec.model_dump(exclude={"batch"})
    batch = get_or_create_batch(session, spec.batch) if spec.batch else None
    requeued = 0
    if worker is None:
        worker = Worker(**fields, batch=batch, last_contact_at=utcnow())
        session.add(worker)
        session.flush()
    else:
        recruited = worker.provider is not None  # a machine deployed by this server
        for key, value in fields.items():
            if not (recruited and key in SERVER_DECIDES):
                setattr(worker, key, value)
        if not recruited:
            worker.batch = batch
        worker.last_contact_at = utcnow()
        if worker.status != WorkerStatus.PAUSED.value:
            transitions.move_worker(session, worker.id, WorkerStatus.RUNNING)
        held = session.execute(
            select(Execution.id, Execution.task_id).where(
                Execution.worker_id == worker.id, Execution.status.in_(LIVE_EXECUTION_VALUES)
            )
        ).all()
        requeued = scheduling.lose_executions(
            session, list(held), utcnow(), "the worker restarted"
        )
        auth.revoke_worker_tokens(session, worker.id)
    token = auth.issue_token(session, auth.WORKER, worker_id=worker.id, name=spec.name)
    session.refresh(worker)
    return worker, token, requeued


def commit_register(ctx: ServerContext, spec: WorkerRegister) -> dict[str, Any]:
    """Register (or take over) a worker: the answer holds its new token; the tokens of
    its previous process stop at once (the cache is dropped), and what that process
    held is offered to the other workers."""
    with ctx.db.write() as session:
        worker, token, requeued = register(session, spec)
        worker_id = worker.id
        answer = {"worker": worker_dict(worker), "token": token,
                  "lease_seconds": ctx.settings.lease_seconds}
    ctx.forget_tokens(worker_id)
    if requeued:
        ctx.notifier.notify(WORK)
    return answer


def beat(ctx: ServerContext, worker_id: int, body: Heartbeat) -> dict[str, Any]:
    """One heartbeat in its transaction (``heartbeats.heartbeat``), as the worker reads
    it back: its settings, the signals to apply, the executions to drop."""
    with ctx.db.write() as session:
        answer = heartbeats.heartbeat(session, worker_id, body, ctx.settings.lease_seconds)
    return _heartbeat_dict(answer, ctx.settings.lease_seconds)


def beats(ctx: ServerContext, bodies: dict[int, Heartbeat]) -> dict[int, dict[str, Any] | Exception]:
    """Several workers' heartbeats (worker id -> heartbeat) in one transaction, each
    answered as ``beat`` would answer it alone (a worker that is not registered: its
    ``Forbidden``): when a fleet's heartbeats come together, a few statements and one
    commit per group instead of up to three statements and a commit each."""
    if len(bodies) == 1:  # alone: the single heartbeat's prepared statements
        ((worker_id, body),) = bodies.items()
        return {worker_id: beat(ctx, worker_id, body)}
    lease_seconds = ctx.settings.lease_seconds
    with ctx.db.write() as session:
        answers = heartbeats.heartbeats_in(session, bodies, lease_seconds)
    return {w: a if isinstance(a, Exception) else _heartbeat_dict(a, lease_seconds)
            for w, a in answers.items()}


def _heartbeat_dict(answer: heartbeats.HeartbeatAnswer, lease_seconds: float) -> dict[str, Any]:
    return {
        "status": answer.status,
        "concurrency": answer.concurrency,
        "prefetch": answer.prefetch,
        "batch": answer.batch,
        "signals": [signal_dict(s) for s in answer.signals],
        "drop": answer.drop,
        "lease_seconds": lease_seconds,
    }


def report_and_claim(ctx: ServerContext, worker_id: int, events: list[ExecutionEvent],
                     wanted: int = 0) -> dict[str, Any]:
    """A worker's report, and with ``wanted`` its next claim, in one transaction; the
    claimers are woken when the report released work (a retry, a dependent)."""
    answer: dict[str, Any] = {}
    lease_seconds = ctx.settings.lease_seconds
    with ctx.db.write() as session:
        outcome = reports.report_in(ctx.db, session, worker_id, events, lease_seconds)
        answer["results"] = outcome.results
        if wanted:
            answer["executions"] = scheduling.claim_in(
                ctx.db, session, worker_id, wanted, lease_seconds, worker=outcome.worker
            )
    if outcome.work_released:
        ctx.notifier.notify(WORK)
    return answer


def reports_and_claims(ctx: ServerContext, calls: dict[int, tuple[list[ExecutionEvent], int]],
                       ) -> dict[int, dict[str, Any] | Exception]:
    """Several workers' reports (worker id -> its events, how many to claim, 0 for none)
    in one transaction, each answered as ``report_and_claim`` would answer it alone (a
    worker that is not registered: its ``Forbidden``). The reports share their
    statements (``reports.reports_in``), and so do the claims that follow
    (``scheduling.claim_jointly_in``): when a thousand tasks end together, their
    workers' reports and next tasks cost a few statements and one commit per group,
    instead of about six statements and a commit each."""
    if len(calls) == 1:  # alone: the single call's statements
        ((worker_id, (events, wanted)),) = calls.items()
        return {worker_id: report_and_claim(ctx, worker_id, events, wanted)}
    lease_seconds = ctx.settings.lease_seconds
    with ctx.db.write() as session:
        outcomes = reports.reports_in(ctx.db, session,
                                      {w: events for w, (events, _) in calls.items()},
                                      lease_seconds)
        reported = {w: o for w, o in outcomes.items() if isinstance(o, reports.ReportOutcome)}
        handed = scheduling.claim_jointly_in(
            ctx.db, session,
            [(o.worker, calls[w][1]) for w, o in sorted(reported.items()) if o.worker],
            lease_seconds)
    answers: dict[int, dict[str, Any] | Exception] = {
        w: {"results": o.results, **({"executions": handed.get(w, [])} if calls[w][1] else {})}
        for w, o in reported.items()}
    answers.update({w: o for w, o in outcomes.items() if not isinstance(o, reports.ReportOutcome)})
    if any(o.work_released for o in reported.values()):
        ctx.notifier.notify(WORK)
    return answers


def update_worker(session: Session, worker_id: int, changes: WorkerUpdate) -> Worker:
    worker = get_worker(session, worker_id)
    fields = changed_fields(changes, Worker)
    if "batch" in fields:
        name = fields.pop("batch")
        worker.batch = get_or_create_batch(session, name) if name else None
    status = fields.pop("status", None)
    for key, value in fields.items():
        setattr(worker, key, value)
    if status:
        transitions.move_worker(session, worker_id, WorkerStatus(status))
    session.flush()
    session.refresh(worker)
    return worker


def change_worker(ctx: ServerContext, worker_id: int, changes: WorkerUpdate) -> dict[str, Any]:
    """Change a worker, then wake it: its waiting heartbeat answers at once with the new
    settings, and claims waiting for work look again (a resumed or widened worker)."""
    with ctx.db.write() as session:
        answer = worker_dict(update_worker(session, worker_id, changes))
    ctx.notifier.notify(worker_key(worker_id), WORK)
    return answer


def remove_worker(ctx: ServerContext, worker_id: int, *, force: bool = False) -> None:
    """Delete a worker record; its tokens stop working at once (the cache is dropped)
    and what it held is offered to the other workers."""
    with ctx.db.write() as session:
        delete_worker(session, worker_id, force=force)
    ctx.forget_tokens(worker_id)
    ctx.notifier.notify(WORK, worker_key(worker_id))


def delete_worker(session: Session, worker_id: int, *, force: bool = False) -> None:
    """Delete a worker record; refused while it holds live executions unless forced
    (forcing re-queues them)."""
    worker = get_worker(session, worker_id)
    held = session.execute(
        select(Execution.id, Execution.task_id).where(
            Execution.worker_id == worker_id, Execution.status.in_(LIVE_EXECUTION_VALUES)
        )
    ).all()
    if held and not force:
        raise Conflict(
            f"worker {worker_id} still holds {len(held)} live execution(s); "
            "stop it first or delete with force"
        )
    scheduling.lose_executions(session, list(held), utcnow(), "the worker was deleted")
    session.delete(worker)


def _filtered(stmt: Select[Any], name: str | None, statuses: tuple[str, ...],
              name_contains: str | None = None) -> Select[Any]:
    """``name``: exact, or a LIKE pattern when it holds ``%``; ``name_contains``: a
    case-insensitive substring, taken literally (a search box)."""
    if name:
        stmt = stmt.where(Worker.name.like(name) if "%" in name else Worker.name == name)
    if name_contains:
        stmt = stmt.where(Worker.name.icontains(name_contains, autoescape=True))
    if statuses:
        stmt = stmt.where(Worker.status.in_(statuses))
    return stmt


def list_workers(session: Session, *, name: str | None = None,
                 statuses: tuple[str, ...] = (), name_contains: str | None = None,
                 offset: int = 0, limit: int | None = None) -> list[Worker]:
    stmt = _filtered(select(Worker), name, statuses, name_contains).order_by(Worker.id)
    stmt = stmt.options(joinedload(Worker.batch))  # every row shows its batch's name
    return list(session.scalars(stmt.offset(offset).limit(limit)).all())


def count_workers(session: Session, *, name: str | None = None,
                  statuses: tuple[str, ...] = (), name_contains: str | None = None) -> int:
    return session.scalar(
        _filtered(select(func.count(Worker.id)), name, statuses, name_contains)) or 0


def live_counts(session: Session) -> dict[int, dict[str, int]]:
    """Per worker, how many executions are in each live status."""
    counts: dict[int, dict[str, int]] = {}
    rows = session.execute(
        select(Execution.worker_id, Execution.status, func.count())
        .where(Execution.status.in_(LIVE_EXECUTION_VALUES), Execution.worker_id.is_not(None))
        .group_by(Execution.worker_id, Execution.status)
    )
    for worker_id, status, count in rows:
        if worker_id is not None:  # the query leaves those out
            counts.setdefault(worker_id, {})[status] = count
    return counts


def execution_counts(session: Session, worker_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per worker of ``worker_ids``, how many of its executions are in each status (ended
    ones included: how many it failed), in one grouped query."""
    counts: dict[int, dict[str, int]] = {worker_id: {} for worker_id in worker_ids}
    if not worker_ids:
        return counts
    rows = session.execute(
        select(Execution.worker_id, Execution.status, func.count())
        .where(Execution.worker_id.in_(worker_ids))
        .group_by(Execution.worker_id, Execution.status))
    for worker_id, status, count in rows:
        if worker_id is not None:  # always one of worker_ids
            counts[worker_id][status] = count
    return counts


def worker_lifetimes(session: Session, since: datetime,
                     now: datetime | None = None) -> list[tuple[datetime, datetime | None, bool]]:
    """When each worker still on record was up, for those up at some time after
    ``since``: (from, until or None if up now, recruited). A worker is up from its record's
    creation (its registration, or its hire for a recruited machine) until its machine
    was given back, or else until its last contact once it is offline, failed or
    evicted. Deleted workers have no record left and are not counted."""
    now = now or utcnow()
    recent = or_(Worker.released_at >= since,
                 Worker.released_at.is_(None) & (Worker.status.in_(UP_WORKER_VALUES)
                                                  | (Worker.last_contact_at >= since)
                                                  | (Worker.created_at >= since)))
    rows = session.execute(
        select(Worker.created_at, Worker.released_at, Worker.last_contact_at, Worker.status,
               Worker.provider)
        .where(Worker.created_at <= now, recent).order_by(Worker.created_at))
    lifetimes = []
    for created, released, contact, status, provider in rows:
        if released is not None:
            until: datetime | None = released
        elif status in UP_WORKER_VALUES:
            until = None
        else:
            until = max(created, contact or created)
        lifetimes.append((created, until, provider is not None))
    return lifetimes


def commit_evict(ctx: ServerContext, worker_id: int, notice: str) -> int:
    """``evict``, then the claimers woken: what the worker held is queued again."""
    with ctx.db.write() as session:
        requeued = evict(session, worker_id, notice)
    ctx.notifier.notify(WORK)
    return requeued


def choices(session: Session) -> list[Any]:
    """(id, name) of every worker by name, for a filter's choices."""
    return list(session.execute(select(Worker.id, Worker.name).order_by(Worker.name)).all())


def names_of(session: Session, worker_ids: set[int]) -> dict[int, str]:
    """{id: name} of these workers (those still on record), in one query."""
    if not worker_ids:
        return {}
    return dict(session.execute(
        select(Worker.id, Worker.name).where(Worker.id.in_(worker_ids))).all())


def of_batch(session: Session, batch_id: int) -> list[Worker]:
    """The workers bound to a batch, by name."""
    return list(session.scalars(
        select(Worker).where(Worker.batch_id == batch_id).order_by(Worker.name)))


def evict(session: Session, worker_id: int, notice: str) -> int:
    """The machine is being taken back: the worker is evicted (it takes no more work and
    no longer counts toward its recruiter's maximum, so a replacement is recruited if
    work remains) and what it held is lost and re-queued without spending retries."""
    worker = get_worker(session, worker_id)
    transitions.move_worker(session, worker.id, WorkerStatus.EVICTED)
    held = session.execute(select(Execution.id, Execution.task_id).where(
        Execution.worker_id == worker.id, Execution.status.in_(LIVE_EXECUTION_VALUES))).all()
    reason = "the machine was reclaimed by its provider" + (f" ({notice[:200]})" if notice else "")
    return scheduling.lose_executions(session, list(held), utcnow(), reason)
