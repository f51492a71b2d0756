"""Recruiters, one-off deploys and jobs, as the API and CLI handle them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scitq_bench.exceptions import Conflict, InvalidInput, NotFound
from scitq_bench.server.lookup import get_or_404
from scitq_bench.server.queue import transitions
from scitq_bench.server.queue.costs import worker_cost
from scitq_bench.server.queue.models import Batch, Worker, utcnow
from scitq_bench.server.queue.tasks import get_or_create_batch
from scitq_bench.server.recruit.engine import RecruitSettings, Refusal, destroy, hire
from scitq_bench.server.recruit.jobs import (
    DEPLOY,
    DESTROY,
    append_log,
    fail_worker,
)
from scitq_bench.server.recruit.models import Job, Recruiter
from scitq_bench.server.recruit.schemas import DeployRequest, RecruiterCreate, RecruiterUpdate
from scitq_bench.server.recruit.transitions import move_job
from scitq_bench.server.schemas import changed_fields
from scitq_bench.server.serialize import iso
from scitq_bench.states import LIVE_JOB_VALUES, JobStatus, WorkerStatus

if TYPE_CHECKING:
    from scitq_bench.server.db import Database
    from scitq_bench.server.recruit.runtime import Recruitment


def recruiter_dict(recruiter: Recruiter, batch_name: str | None = None) -> dict[str, Any]:
    return {
        "id": recruiter.id, "batch_id": recruiter.batch_id, "batch": batch_name,
        "rank": recruiter.rank, "flavor": recruiter.flavor, "provider": recruiter.provider,
        "region": recruiter.region, "concurrency": recruiter.concurrency,
        "prefetch": recruiter.prefetch, "tasks_per_worker": recruiter.tasks_per_worker,
        "minimum_tasks": recruiter.minimum_tasks, "maximum_workers": recruiter.maximum_workers,
        "workflow": recruiter.workflow,
        "workflow_maximum_workers": recruiter.workflow_maximum_workers,
        "created_at": iso(recruiter.created_at),
    }


def job_dict(job: Job, with_log: bool = False) -> dict[str, Any]:
    answer = {
        "id": job.id, "kind": job.kind, "worker_id": job.worker_id, "status": job.status,
        "progress": job.progress, "attempts": job.attempts, "error": job.error,
        "arguments": job.arguments, "created_at": iso(job.created_at),
        "modified_at": iso(job.modified_at), "cancelled_at": iso(job.cancelled_at),
        "cancelled_by": job.cancelled_by,
    }
    if with_log:
        answer["log"] = job.log
    return answer


def create_recruiter(session: Session, body: RecruiterCreate) -> Recruiter:
    batch = get_or_create_batch(session, body.batch)
    recruiter = Recruiter(batch_id=batch.id, **body.model_dump(exclude={"batch"}))
    try:
        with session.begin_nested():
            session.add(recruiter)
    except IntegrityError:
        raise Conflict(f"batch {body.batch} already has a recruiter of rank {body.rank}") from None
    return recruiter


def update_recruiter(session: Session, recruiter_id: int, body: RecruiterUpdate) -> Recruiter:
    recruiter = get_or_404(session, Recruiter, recruiter_id)
    for key, value in changed_fields(body, Recruiter).items():
        setattr(recruiter, key, value)
    session.flush()
    return recruiter


def list_recruiters(session: Session, batch: str | None = None) -> list[dict[str, Any]]:
    query = select(Recruiter, Batch.name).join(Batch).order_by(Batch.name, Recruiter.rank)
    if batch:
        query = query.where(Batch.name == batch)
    return [recruiter_dict(r, name) for r, name in session.execute(query).all()]


def deploy(session: Session, settings: RecruitSettings, body: DeployRequest) -> list[Job]:
    """``number`` machines now, for a batch or for the pool (recycled later)."""
    batch = get_or_create_batch(session, body.batch) if body.batch else None
    jobs: list[Job] = []
    for _ in range(body.number):
        outcome = hire(session, settings, batch=batch, flavor=body.flavor,
                       provider=body.provider, region=body.region,
                       concurrency=body.concurrency, prefetch=body.prefetch,
                       name=body.name, permanent=body.permanent)
        if isinstance(outcome, Refusal):
            if not jobs:
                raise InvalidInput(outcome.reason, field=outcome.field)
            break
        jobs.append(outcome)
    return jobs


def deploy_now(db: Database, runtime: Recruitment, body: DeployRequest) -> list[dict[str, Any]]:
    """Queue the deploys, then start them once their rows are committed (a job thread
    must find its job)."""
    with db.write() as session:
        answer = [job_dict(job) for job in deploy(session, runtime.settings, body)]
    for job in answer:
        runtime.runner.submit(job["id"])
    return answer


def undeploy_now(db: Database, runtime: Recruitment, worker_id: int,
                 who: str) -> dict[str, Any]:
    """Give the worker's machine back: a destroy job, or, while the machine is still
    being deployed, the cancel of that deploy (which gives it back): never a second
    Ansible run on a machine the first one may still be waiting for."""
    with db.read() as session:
        deploying = session.scalar(select(Job.id).where(
            Job.worker_id == worker_id, Job.kind == DEPLOY, Job.status.in_(LIVE_JOB_VALUES)))
    if deploying is not None:
        return cancel_now(db, runtime, deploying, who)
    with db.write() as session:
        job = job_dict(undeploy(session, worker_id))
    runtime.runner.submit(job["id"])
    return job


def cancel_now(db: Database, runtime: Recruitment | None, job_id: int,
               who: str) -> dict[str, Any]:
    """Cancel a pending or running job, then tell the runner: a running job stops where
    it is and gives its machine back."""
    with db.write() as session:
        job, was = cancel_job(session, job_id, who)
        answer = job_dict(job)
    if runtime is not None:
        runtime.runner.cancel(job_id, was)
    return answer


def cancel_job(session: Session, job_id: int, who: str) -> tuple[Job, str]:
    """Mark the job cancelled by ``who`` (guarded: a job that just ended stays as it
    ended); returns it and the status it had. A pending deploy holds no machine yet:
    its worker record is closed here."""
    job = get_or_404(session, Job, job_id)
    values = {"cancelled_at": utcnow(), "cancelled_by": who, "error": f"cancelled by {who}"}
    # one guarded move per source: the one that moves says what the job was, even if a
    # runner took it meanwhile
    was = next((source.value for source in (JobStatus.PENDING, JobStatus.RUNNING) if move_job(
        session, job_id, JobStatus.CANCELLED, only_from=[source], values=values)), None)
    if was is None:
        session.refresh(job)
        raise Conflict(f"job {job_id} is {job.status}; only a pending or running job is "
                       "cancelled", details={"job_id": job_id, "status": job.status})
    if was == JobStatus.PENDING and job.kind == DEPLOY and job.worker_id is not None:
        fail_worker(session, job.worker_id)
    session.flush()
    append_log(session, job_id, f"cancel requested by {who} (the job was {was})")
    session.refresh(job)
    return job, was


def retry_now(db: Database, runtime: Recruitment, job_id: int) -> dict[str, Any]:
    with db.write() as session:
        job = job_dict(retry_job(session, job_id))
    runtime.runner.submit(job_id)
    return job


def undeploy(session: Session, worker_id: int) -> Job:
    worker = get_or_404(session, Worker, worker_id)
    if worker.provider is None:
        raise Conflict(f"worker {worker.name} was not deployed here: stop it where it runs")
    if worker.released_at is not None:
        raise Conflict(f"worker {worker.name} was given back already")
    destroying = session.scalar(select(Job.id).where(
        Job.worker_id == worker_id, Job.kind == DESTROY, Job.status.in_(LIVE_JOB_VALUES)))
    if destroying is not None:
        raise Conflict(f"worker {worker.name} is being given back already (job {destroying})",
                       details={"job_id": destroying})
    return destroy(session, worker, "asked by a user")


def retry_job(session: Session, job_id: int) -> Job:
    job = get_or_404(session, Job, job_id)
    if not move_job(session, job_id, JobStatus.PENDING, only_from=[JobStatus.FAILED]):
        session.refresh(job)
        raise Conflict(f"job {job_id} is {job.status}; only a failed job is retried")
    if job.kind == DEPLOY:
        worker = session.get(Worker, job.worker_id) if job.worker_id else None
        if worker is None:
            raise Conflict(f"job {job_id}'s worker is gone; deploy anew")
        transitions.move_worker(session, worker.id, WorkerStatus.OFFLINE)
        worker.released_at, worker.instance_id = None, None
    job.log = (job.log or "") + "retry requested\n"
    session.flush()
    return job


def delete_job(session: Session, job_id: int) -> None:
    job = get_or_404(session, Job, job_id, lock=True)  # no run may start meanwhile
    if job.status in LIVE_JOB_VALUES:
        raise Conflict(f"job {job_id} is {job.status}; cancel it first (job cancel {job_id}), "
                       "then delete it", details={"job_id": job_id, "status": job.status})
    session.delete(job)


def _jobs_where(stmt: Select[Any], status: str | None, worker_id: int | None,
                kind: str | None) -> Select[Any]:
    if status:
        stmt = stmt.where(Job.status == status)
    if worker_id is not None:
        stmt = stmt.where(Job.worker_id == worker_id)
    if kind:
        stmt = stmt.where(Job.kind == kind)
    return stmt


def list_jobs(session: Session, *, status: str | None = None, worker_id: int | None = None,
              kind: str | None = None, offset: int = 0, limit: int = 200) -> list[Job]:
    """Jobs, newest first."""
    stmt = _jobs_where(select(Job), status, worker_id, kind).order_by(Job.id.desc())
    return list(session.scalars(stmt.offset(offset).limit(limit)))


def count_jobs(session: Session, *, status: str | None = None, worker_id: int | None = None,
               kind: str | None = None) -> int:
    return session.scalar(_jobs_where(select(func.count(Job.id)), status, worker_id,
                                      kind)) or 0


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found", details={"job_id": job_id})
    return job


def worker_costs(session: Session) -> list[dict[str, Any]]:
    return [{"worker_id": w.id, "name": w.name, "cost_per_hour": w.cost_per_hour,
             "cost": round(worker_cost(w), 6), "released_at": iso(w.released_at)}
            for w in session.scalars(select(Worker).where(Worker.cost_per_hour.is_not(None)))]


def delete_recruiter(session: Session, recruiter_id: int) -> None:
    """Its workers stay until idle."""
    session.delete(get_or_404(session, Recruiter, recruiter_id))


def batch_recruiter(session: Session, batch_id: int, recruiter_id: int) -> Recruiter | None:
    """The recruiter, if it is this batch's (None otherwise)."""
    found = session.get(Recruiter, recruiter_id)
    return found if found is not None and found.batch_id == batch_id else None


def providers(runtime: Recruitment) -> list[dict[str, Any]]:
    """The configured providers, with their settings' names (never their secrets)."""
    return [{"name": name, "settings": sorted(runtime.providers_config.get(name) or {})}
            for name in runtime.configured_providers()]


def check_provider(runtime: Recruitment, name: str) -> dict[str, Any]:
    """A cheap authenticated call to a configured provider, checking its credentials."""
    if name not in runtime.configured_providers():
        raise NotFound(f"provider {name!r} is not configured (configured: "
                       f"{', '.join(runtime.configured_providers())})")
    return {"name": name, "check": runtime.provider(name).check()}


def reconcile(runtime: Recruitment) -> list[str]:
    """Delete the instances tagged as ours that no live worker knows; returns them."""
    return runtime.engine.reconcile() if runtime.engine.reconcile is not None else []
