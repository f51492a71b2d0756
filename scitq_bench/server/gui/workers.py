"""Workers pages (admins): the live list, one worker's page, and its changes (settings,
pause and resume, delete, undeploy), through the same services as the worker API."""

from __future__ import annotations

from typing import Any

from flask import g, request, url_for

from scitq_bench.exceptions import ScitqBenchError
from scitq_bench.server.context import server_context
from scitq_bench.server.gui import model_forms, workers_deploy
from scitq_bench.server.gui.web import (
    Pager,
    bp,
    done,
    error_page,
    failed,
    form_int,
    is_fragment,
    page,
    reading,
    render,
)
from scitq_bench.server.gui.workers_charts import window_hours
from scitq_bench.server.gui.workers_view import moment, worker_row
from scitq_bench.server.queue import executions as attempts
from scitq_bench.server.queue import workers as domain
from scitq_bench.server.recruit import service as recruit
from scitq_bench.server.schemas import WorkerUpdate
from scitq_bench.server.web import current_recruitment, require_recruitment
from scitq_bench.states import WorkerStatus

STATUS_CHOICES = [("", "any status")] + [(s.value, s.value) for s in WorkerStatus]
PAGE_SIZE = 50


def _filters() -> dict[str, str]:
    """The list's filters as the query string gave them (kept by links and polls)."""
    found = {key: (request.args.get(key) or "").strip() for key in ("status", "name")}
    return {key: value for key, value in found.items() if value}


@page("/workers")
def workers() -> Any:
    filters = _filters()
    statuses = (filters["status"],) if filters.get("status") else ()
    search = filters.get("name")
    with reading() as session:
        pager = Pager.from_request(
            domain.count_workers(session, name_contains=search, statuses=statuses),
            limit=PAGE_SIZE)
        found = domain.list_workers(session, name_contains=search, statuses=statuses,
                                    offset=pager.offset, limit=pager.limit)
        counts = domain.execution_counts(session, [w.id for w in found])
        rows = [worker_row(w, counts[w.id]) for w in found]
        if is_fragment():
            return render("workers/list.html", fragment="workers/_table.html", workers=rows,
                          pager=pager, filters=filters)
        deploy = workers_deploy.deploy_choices(session)
    live_args: dict[str, Any] = {**filters, **({"offset": pager.offset} if pager.offset else {})}
    return render("workers/list.html", workers=rows, pager=pager, filters=filters,
                  status_choices=STATUS_CHOICES,
                  live_url=url_for("gui.workers", fragment=1, **live_args),
                  hours=window_hours(), values=dict(workers_deploy.DEFAULTS), errors={},
                  **deploy)


@page("/workers/<id:worker_id>")
def worker_detail(worker_id: int) -> Any:
    return _detail(worker_id, {}, {})


def _detail(worker_id: int, errors: dict[str, str], form: dict[str, Any],
            status: int = 200) -> Any:
    with reading() as session:
        worker = domain.get_worker(session, worker_id)
        row = worker_row(worker, domain.execution_counts(session, [worker_id])[worker_id])
        jobs = [_job_line(job) for job in recruit.list_jobs(session, worker_id=worker_id,
                                                              limit=10)]
        held = attempts.live_of_worker(session, worker_id, limit=100)
    executions = [{"id": e.id, "task_id": e.task_id, "status": e.status,
                   "started": moment(e.started_at)} for e in held]
    values = {"concurrency": row["concurrency"], "prefetch": row["prefetch"],
              "batch": row["batch"] or "", **form}
    return render("workers/detail.html", fragment="workers/_facts.html", worker=row,
                  jobs=jobs, executions=executions, errors=errors, values=values,
                  recruiting=current_recruitment() is not None, status=status)


def _job_line(job: Any) -> dict[str, Any]:
    return {"id": job.id, "kind": job.kind, "status": job.status, "progress": job.progress,
            "created": moment(job.created_at), "error": job.error}


@page("/workers/<id:worker_id>/settings", methods=("POST",))
def worker_settings(worker_id: int) -> Any:
    """Concurrency, prefetch and batch: checked as the API checks them, refused next to
    the field."""
    errors: dict[str, str] = {}
    form = {key: (request.form.get(key) or "").strip()
            for key in ("concurrency", "prefetch", "batch")}
    concurrency = form_int("concurrency", errors, minimum=0)
    prefetch = form_int("prefetch", errors, minimum=0)
    changes = None
    if not errors:
        changes = model_forms.validate(WorkerUpdate, {
            "concurrency": concurrency, "prefetch": prefetch, "batch": form["batch"]}, errors)
    if changes is None:
        return _detail(worker_id, errors, form, status=400)
    try:
        updated = domain.change_worker(server_context(), worker_id, changes)
    except ScitqBenchError as exc:
        return failed(exc, url_for("gui.worker_detail", worker_id=worker_id))
    batch = f", batch {updated['batch']}" if updated["batch"] else ", any batch"
    return done(f"Worker {updated['name']}: concurrency {updated['concurrency']}, "
                f"prefetch {updated['prefetch']}{batch}.",
                url_for("gui.worker_detail", worker_id=worker_id))


@page("/workers/<id:worker_id>/status", methods=("POST",))
def worker_status(worker_id: int) -> Any:
    """Pause (it takes no new task; what runs goes on) or resume."""
    errors: dict[str, str] = {}
    changes = model_forms.validate(WorkerUpdate, {"status": request.form.get("status")},
                                   errors)
    if changes is None:
        return error_page(400, f"status: {errors.get('status', 'running or paused')}")
    back = url_for("gui.worker_detail", worker_id=worker_id)
    try:
        updated = domain.change_worker(server_context(), worker_id, changes)
    except ScitqBenchError as exc:
        return failed(exc, back)
    said = "paused: it takes no new task" if updated["status"] == WorkerStatus.PAUSED else "resumed"
    return done(f"Worker {updated['name']} {said}.", back)


@page("/workers/<id:worker_id>/delete", methods=("POST",))
def worker_delete(worker_id: int) -> Any:
    """Delete the record; with force, what it still holds is queued again."""
    force = request.form.get("force") in ("1", "on", "true")
    with reading() as session:
        name = domain.get_worker(session, worker_id).name
    try:
        domain.remove_worker(server_context(), worker_id, force=force)
    except ScitqBenchError as exc:
        return failed(exc, url_for("gui.worker_detail", worker_id=worker_id))
    return done(f"Worker {name} deleted.", url_for("gui.workers"))


@page("/workers/<id:worker_id>/undeploy", methods=("POST",))
def worker_undeploy(worker_id: int) -> Any:
    """Give a recruited machine back: a destroy job, or the cancel of its deploy while
    it is being deployed; the job is followed on its page."""
    back = url_for("gui.worker_detail", worker_id=worker_id)
    try:
        job = recruit.undeploy_now(server_context().db, require_recruitment(), worker_id,
                                   g.user.name)
    except ScitqBenchError as exc:
        return failed(exc, back)
    said = (f"Deploy job {job['id']} cancelled: the machine is being given back."
            if job["kind"] == "deploy" else
            f"Destroy job {job['id']} started: the machine is being given back.")
    return done(said, url_for("gui.job_detail", job_id=job["id"]))

__all__ = ["bp"]
