"""Batches pages: every batch with its progress, cost and actions (live); one batch with
its workers, its recruiters and the pace of its tasks."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request, url_for
from sqlalchemy.orm import Session

from scitq_bench.exceptions import ScitqBenchError
from scitq_bench.server.context import server_context
from scitq_bench.server.gui import formats  # noqa: F401  (the templates' filters)
from scitq_bench.server.gui.model_forms import edited, filled, validate
from scitq_bench.server.gui.web import (
    Pager,
    bp,
    done,
    failed,
    is_fragment,
    not_found,
    page,
    reading,
    render,
    sort_arguments,
    writing,
)
from scitq_bench.server.limits import whole_number
from scitq_bench.server.queue import batches as domain
from scitq_bench.server.queue import workers as worker_domain
from scitq_bench.server.queue.costs import worker_cost
from scitq_bench.server.queue.models import Batch, Worker
from scitq_bench.server.recruit import service as recruiting
from scitq_bench.server.recruit.models import Recruiter
from scitq_bench.server.recruit.schemas import RecruiterCreate, RecruiterUpdate
from scitq_bench.server.schemas import BatchStop, BatchUpdate
from scitq_bench.states import FINAL_TASK_VALUES, LIVE_TASK_VALUES, BatchStatus

STOP_SIGNALS = (
    ("none", "leave running tasks"),
    ("pause", "suspend running tasks"),
    ("stop", "stop running tasks"),
    ("kill", "kill running tasks"),
)
RECRUITER_FIELDS = ("rank", "flavor", "provider", "region", "concurrency", "prefetch",
                    "tasks_per_worker", "minimum_tasks", "maximum_workers")
# blank means "from the tasks' needs" for these: an edit may clear them
CLEARABLE = ("concurrency", "tasks_per_worker")
PAGE_SIZE = 50
SORT_LABELS = {"name": "Batch", "status": "Status", "priority": "Priority",
               "progress": "Progress", "created": "Created"}


@page("/batches")
def batches() -> Any:
    """The list, searched (``?q=``, a part of the name) and sorted (``?sort=``,
    ``?order=desc``) by the database, 50 a page."""
    problems: list[str] = []
    search = (request.args.get("q") or "").strip()
    sort, descending, args = _sorting(problems)
    if search:
        args["q"] = search
    with reading() as session:
        offset = _offset(problems)
        found, total = domain.batch_page(session, name_contains=search or None, sort=sort,
                                         descending=descending, limit=PAGE_SIZE, offset=offset)
        pager = Pager(offset=offset, limit=PAGE_SIZE, total=total)
        rows = _described(session, found)
    return render("batches/list.html", fragment="batches/_table.html", batches=rows,
                  stop_signals=STOP_SIGNALS, pager=pager, args=args, sort=sort,
                  descending=descending, sorts=SORT_LABELS, problems=problems)


def _sorting(problems: list[str]) -> tuple[str, bool, dict[str, str]]:
    """The list's order (created, oldest first, unless asked) and the arguments that
    keep it in the page's links."""
    args: dict[str, str] = {}
    sort, order = sort_arguments(domain.BATCH_SORTS, problems, args)
    return sort or "created", order == "desc", args


def _offset(problems: list[str]) -> int:
    raw = (request.args.get("offset") or "0").strip()
    try:
        return whole_number(raw)
    except ValueError:
        problems.append(f"offset {raw!r} is not a whole number")
        return 0


@page("/batches/<id:batch_id>")
def batch(batch_id: int) -> Any:
    return _batch_page(batch_id)


def _batch_page(batch_id: int, *, errors: dict[str, str] | None = None,
                form: dict[str, Any] | None = None, status: int = 200) -> Any:
    with reading() as session:
        found = domain.get_batch(session, batch_id)
        row = _described(session, [found])[0]
        workers = _batch_workers(session, batch_id)
        # recruiters are edited on the full page only, not in the polled live region
        recruiters = [] if is_fragment() else recruiting.list_recruiters(session, found.name)
    return render("batches/detail.html", fragment="batches/_detail.html", status=status,
                  batch=row, workers=workers, recruiters=recruiters, stop_signals=STOP_SIGNALS,
                  errors=errors or {}, form=form or {})


def _batch_workers(session: Session, batch_id: int) -> list[dict[str, Any]]:
    """Workers bound to the batch and workers running its tasks (bound elsewhere or to
    no batch), with how many of its executions each holds."""
    live = {r.id: r.live for r in domain.running_workers(session, [batch_id]).get(batch_id, [])}
    bound = worker_domain.of_batch(session, batch_id)
    others = [session.get(Worker, worker_id) for worker_id in live
              if worker_id not in {w.id for w in bound}]
    rows = [{**_worker_row(w), "bound": w.batch_id == batch_id, "live": live.get(w.id, 0)}
            for w in [*bound, *(o for o in others if o is not None)]]
    return sorted(rows, key=lambda r: (-r["live"], r["name"]))


def _described(session: Session, batches: list[Batch]) -> list[dict[str, Any]]:
    """Batch rows with their summaries (counts, durations, workers bound and running
    its tasks, cost), the progress bar's segments and the ETA."""
    ids = [b.id for b in batches]
    running = domain.running_workers(session, ids)
    paces = domain.paces(session, ids)
    rows = []
    for found, summary in zip(batches, domain.summaries(session, batches), strict=True):
        counts = summary["counts"]
        total = sum(counts.values())
        ended = sum(counts[status] for status in FINAL_TASK_VALUES)
        live = sum(counts[status] for status in LIVE_TASK_VALUES)
        eta = domain.eta_seconds(total - ended, paces.get(found.id),
                                 found.status == BatchStatus.RUNNING.value)
        rows.append({
            "id": found.id, "name": found.name, "status": found.status,
            "priority": found.priority, "network": found.network, "budget": found.budget,
            "created_at": found.created_at, "total": total, "ended": ended,
            "segments": _segments(counts, total), "running": live, "eta": eta,
            "pace": paces.get(found.id), "running_workers": running.get(found.id, []),
            **summary,
        })
    return rows


def _segments(counts: dict[str, int], total: int) -> list[tuple[str, int, float]]:
    """The progress bar's parts: succeeded, failed (and cancelled), running (held by a
    worker), each (name, count, percent of all the tasks); the rest is queued."""
    parts = (("succeeded", counts["succeeded"]),
             ("failed", counts["failed"] + counts["cancelled"]),
             ("running", sum(counts[s] for s in LIVE_TASK_VALUES)))
    return [(name, count, round(100 * count / total, 2) if total else 0.0)
            for name, count in parts]


def _worker_row(worker: Worker) -> dict[str, Any]:
    return {"id": worker.id, "name": worker.name, "status": worker.status,
            "concurrency": worker.concurrency, "flavor": worker.flavor,
            "provider": worker.provider, "region": worker.region,
            "cost_per_hour": worker.cost_per_hour, "cost": worker_cost(worker),
            "released": worker.released_at is not None}


@page("/batches/<id:batch_id>/done.json")
def batch_done_chart(batch_id: int) -> Any:
    """The batch page's chart: tasks ended per minute, over time."""
    with reading() as session:
        domain.get_batch(session, batch_id)
        pace = domain.done_per_minute(session, batch_id)
    minutes = pace["width"] // 60
    return jsonify({
        "kind": "line", "x": "time", "y_label": "tasks per minute",
        "x_label": "end time (UTC)" + (f", {minutes}-minute buckets" if minutes > 1 else ""),
        "series": [{"name": f"{name} per minute", "points": points}
                   for name, points in pace["series"].items()],
        "empty": "No task has ended yet.",
    })


# -- batch actions -----------------------------------------------------------------------


@page("/batches/<id:batch_id>/go", methods=("POST",))
def batch_go(batch_id: int) -> Any:
    try:
        result = domain.commit_go(server_context(), batch_id)
    except ScitqBenchError as exc:
        return failed(exc, url_for("gui.batches"))
    return done(f"Batch {batch_id} runs again: {result['tasks_resumed']} task(s) and "
                f"{result['workers_resumed']} worker(s) resumed.", url_for("gui.batches"))


@page("/batches/<id:batch_id>/stop", methods=("POST",))
def batch_stop(batch_id: int) -> Any:
    try:
        body = BatchStop.model_validate({"signal": request.form.get("signal") or "none",
                                         "workers": request.form.get("workers") == "1"})
    except ValueError:
        return failed(ScitqBenchError("choose what to do to the running tasks"),
                      url_for("gui.batches"))
    try:
        result = domain.commit_stop(server_context(), batch_id, body)
    except ScitqBenchError as exc:
        return failed(exc, url_for("gui.batches"))
    return done(f"Batch {batch_id} paused: {result['signalled']} running task(s) signalled, "
                f"{result['workers_paused']} worker(s) paused.", url_for("gui.batches"))


@page("/batches/<id:batch_id>/delete", methods=("POST",))
def batch_delete(batch_id: int) -> Any:
    try:
        removed = domain.commit_delete(server_context(), batch_id)
    except ScitqBenchError as exc:
        return failed(exc, url_for("gui.batches"))
    return done(f"Batch {batch_id} deleted with its tasks ({removed} execution(s)).",
                url_for("gui.batches"))


@page("/batches/<id:batch_id>/settings", methods=("POST",))
def batch_settings(batch_id: int) -> Any:
    """Priority and budget, as ``PATCH /batches/<id>`` changes them."""
    errors: dict[str, str] = {}
    data: dict[str, Any] = {"priority": (request.form.get("priority") or "").strip() or "0",
                            "budget": (request.form.get("budget") or "").strip() or None}
    changes = validate(BatchUpdate, data, errors)
    if changes is None:
        return _batch_page(batch_id, errors=errors, form=request.form, status=400)
    try:
        with writing() as session:
            domain.update_batch(session, batch_id, changes)
    except ScitqBenchError as exc:
        return failed(exc, url_for("gui.batch", batch_id=batch_id))
    return done("Batch settings saved.", url_for("gui.batch", batch_id=batch_id))


# -- recruiters ----------------------------------------------------------------------------


@page("/batches/<id:batch_id>/recruiters", methods=("POST",))
def batch_recruiter_create(batch_id: int) -> Any:
    errors: dict[str, str] = {}
    with reading() as session:
        name = domain.get_batch(session, batch_id).name
    body = validate(RecruiterCreate, {"batch": name, **filled(request.form, RECRUITER_FIELDS)},
                    errors)
    if body is not None:
        try:
            with writing() as session:
                recruiter = recruiting.create_recruiter(session, body)
                rank = recruiter.rank
        except ScitqBenchError as exc:
            errors["rank"] = str(exc)
        else:
            return done(f"Recruiter of rank {rank} added.", url_for("gui.batch", batch_id=batch_id))
    return _batch_page(batch_id, errors=errors, form=request.form, status=400)


@page("/batches/<id:batch_id>/recruiters/<id:recruiter_id>/edit", methods=("GET", "POST"))
def batch_recruiter_edit(batch_id: int, recruiter_id: int) -> Any:
    with reading() as session:
        found = _recruiter_of(session, batch_id, recruiter_id)
        current = recruiting.recruiter_dict(found, domain.get_batch(session, batch_id).name)
    if request.method == "GET":
        return render("batches/recruiter_edit.html", recruiter=current, form=current, errors={})
    errors: dict[str, str] = {}
    body = edited(RecruiterUpdate, request.form, RECRUITER_FIELDS[1:], CLEARABLE, errors)
    if body is None or errors:
        return render("batches/recruiter_edit.html", recruiter=current, form=request.form,
                      errors=errors, status=400)
    with writing() as session:
        recruiting.update_recruiter(session, recruiter_id, body)
    return done(f"Recruiter of rank {current['rank']} saved.",
                url_for("gui.batch", batch_id=batch_id))


@page("/batches/<id:batch_id>/recruiters/<id:recruiter_id>/delete", methods=("POST",))
def batch_recruiter_delete(batch_id: int, recruiter_id: int) -> Any:
    with writing() as session:
        rank = _recruiter_of(session, batch_id, recruiter_id).rank
        recruiting.delete_recruiter(session, recruiter_id)
    return done(f"Recruiter of rank {rank} deleted.", url_for("gui.batch", batch_id=batch_id))


def _recruiter_of(session: Session, batch_id: int, recruiter_id: int) -> Recruiter:
    """The recruiter, if it is this batch's (a 404 otherwise)."""
    found = recruiting.batch_recruiter(session, batch_id, recruiter_id)
    if found is None:
        not_found(f"recruiter {recruiter_id} in batch {batch_id}")
    return found


__all__ = ["bp"]
