"""Worker registry: registration (a restarted worker keeps its identity), settings."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from scitq_bench.exceptions import Conflict
from scitq_bench.server import auth, scheduling, transitions
from scitq_bench.server.lookup import get_or_404
from scitq_bench.server.models import Execution, Worker, utcnow
from scitq_bench.server.schemas import WorkerRegister, WorkerUpdate
from scitq_bench.server.tasks import get_or_create_batch
from scitq_bench.states import LIVE_EXECUTION_VALUES, WorkerStatus


def get_worker(session: Session, worker_id: int) -> Worker:
    return get_or_404(session, Worker, worker_id)


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


def update_worker(session: Session, worker_id: int, changes: WorkerUpdate) -> Worker:
    worker = get_worker(session, worker_id)
    fields = changes.model_dump(exclude_unset=True)
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


def list_workers(session: Session, *, name: str | None = None,
                 statuses: tuple[str, ...] = ()) -> list[Worker]:
    stmt = select(Worker).order_by(Worker.id)
    if name:
        stmt = stmt.where(Worker.name.like(name) if "%" in name else Worker.name == name)
    if statuses:
        stmt = stmt.where(Worker.status.in_(statuses))
    return list(session.scalars(stmt).all())


def live_counts(session: Session) -> dict[int, dict[str, int]]:
    """Per worker, how many executions are in each live status."""
    from sqlalchemy import func

    counts: dict[int, dict[str, int]] = {}
    rows = session.execute(
        select(Execution.worker_id, Execution.status, func.count())
        .where(Execution.status.in_(LIVE_EXECUTION_VALUES), Execution.worker_id.is_not(None))
        .group_by(Execution.worker_id, Execution.status)
    )
    for worker_id, status, count in rows:
        counts.setdefault(worker_id, {})[status] = count
    return counts


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
