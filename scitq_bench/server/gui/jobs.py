"""Jobs pages (admins): deploy and destroy jobs with their progress, one job with its
log (followed live while it runs), cancel, retry and delete, through the recruitment
service the jobs API uses."""

from __future__ import annotations

from typing import Any, TypedDict

from flask import g, request, url_for

from scitq_bench.exceptions import ScitqBenchError
from scitq_bench.server.context import server_context
from scitq_bench.server.gui.web import (
    Pager,
    bp,
    done,
    failed,
    page,
    reading,
    render,
    writing,
)
from scitq_bench.server.gui.workers_view import moment
from scitq_bench.server.queue import workers
from scitq_bench.server.recruit import service as recruit
from scitq_bench.server.recruit.jobs import DEPLOY, DESTROY
from scitq_bench.server.recruit.models import Job
from scitq_bench.server.web import current_recruitment, require_recruitment
from scitq_bench.states import FINAL_JOB_VALUES, LIVE_JOB_VALUES, JobStatus

STATUSES = tuple(s.value for s in JobStatus)
KINDS = (DEPLOY, DESTROY)
STATUS_CHOICES = [("", "any status")] + [(s, s) for s in STATUSES]
KIND_CHOICES = [("", "any kind")] + [(k, k) for k in KINDS]
PAGE_SIZE = 50


class JobFilters(TypedDict, total=False):
    """The list's filters that are set: the service's arguments and the page's links."""

    status: str
    kind: str


class JobListArgs(JobFilters, total=False):
    """A link to the list: its filters and where the page starts."""

    offset: int


def _filters() -> JobFilters:
    filters: JobFilters = {}
    status, kind = request.args.get("status", ""), request.args.get("kind", "")
    if status in STATUSES:
        filters["status"] = status
    if kind in KINDS:
        filters["kind"] = kind
    return filters


@page("/jobs")
def jobs() -> Any:
    filters = _filters()
    with reading() as session:
        pager = Pager.from_request(recruit.count_jobs(session, **filters), limit=PAGE_SIZE)
        found = recruit.list_jobs(session, offset=pager.offset, limit=pager.limit, **filters)
        names = workers.names_of(session, {job.worker_id for job in found if job.worker_id})
        rows = [job_row(job, names) for job in found]
    live_args: JobListArgs = {**filters}
    if pager.offset:
        live_args["offset"] = pager.offset
    return render("jobs/list.html", fragment="jobs/_table.html", jobs=rows, pager=pager,
                  filters=filters, status_choices=STATUS_CHOICES, kind_choices=KIND_CHOICES,
                  live_url=url_for("gui.jobs", fragment=1, **live_args))


def job_row(job: Job, names: dict[int, str]) -> dict[str, Any]:
    """A job as its row shows it: the worker's name, or the name it was given when the
    worker record is gone."""
    arguments = job.arguments or {}
    return {
        "id": job.id, "kind": job.kind, "status": job.status, "progress": job.progress,
        "attempts": job.attempts, "error": job.error,
        "worker_id": job.worker_id if job.worker_id in names else None,
        "worker": names.get(job.worker_id or 0) or arguments.get("name") or "",
        "flavor": arguments.get("flavor"), "provider": arguments.get("provider"),
        "region": arguments.get("region"), "arguments": arguments,
        "created": moment(job.created_at), "modified": moment(job.modified_at),
        "ended": job.status in FINAL_JOB_VALUES, "live": job.status in LIVE_JOB_VALUES,
        "cancelled_by": job.cancelled_by,
        "cancelled": moment(job.cancelled_at) if job.cancelled_at else None,
    }


@page("/jobs/<id:job_id>")
def job_detail(job_id: int) -> Any:
    with reading() as session:
        job = recruit.get_job(session, job_id)
        row = job_row(job, workers.names_of(session, {job.worker_id} if job.worker_id else set()))
    return render("jobs/detail.html", fragment="jobs/_facts.html", job=row,
                  recruiting=current_recruitment() is not None)


@page("/jobs/<id:job_id>/log")
def job_log(job_id: int) -> Any:
    """The log from ``?offset=`` on, for the live tail; ``done`` once the job ended
    (a retried job starts a new tail when its page is opened again)."""
    try:
        offset = max(0, int(request.args.get("offset", "0")))
    except ValueError:
        offset = 0
    with reading() as session:
        job = recruit.get_job(session, job_id)
        log, ended = job.log or "", job.status in FINAL_JOB_VALUES
    return {"text": log[offset:], "offset": len(log), "done": ended}


@page("/jobs/<id:job_id>/retry", methods=("POST",))
def job_retry(job_id: int) -> Any:
    back = url_for("gui.job_detail", job_id=job_id)
    try:
        recruit.retry_now(server_context().db, require_recruitment(), job_id)
    except ScitqBenchError as exc:
        return failed(exc, back)
    return done(f"Job {job_id} runs again.", back)


@page("/jobs/<id:job_id>/cancel", methods=("POST",))
def job_cancel(job_id: int) -> Any:
    back = url_for("gui.job_detail", job_id=job_id)
    try:
        recruit.cancel_now(server_context().db, current_recruitment(), job_id, g.user.name)
    except ScitqBenchError as exc:
        return failed(exc, back)
    return done(f"Job {job_id} cancelled: it stops and gives its machine back.", back)


@page("/jobs/<id:job_id>/delete", methods=("POST",))
def job_delete(job_id: int) -> Any:
    try:
        with writing() as session:
            recruit.delete_job(session, job_id)
    except ScitqBenchError as exc:
        return failed(exc, url_for("gui.job_detail", job_id=job_id))
    return done(f"Job {job_id} deleted.", url_for("gui.jobs"))


__all__ = ["bp"]
