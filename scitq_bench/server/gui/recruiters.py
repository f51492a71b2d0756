"""The recruiters page (admins): every recruiter of every batch with the workers alive
for it (live), and create, edit and delete through the recruitment service the
``/api/v1/recruiters`` routes use. Unlike the API, creating here needs a batch that
exists: a mistyped name is refused next to the field rather than making a new batch."""

from __future__ import annotations

from typing import Any

from flask import request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scitq_bench.exceptions import NotFound, ScitqBenchError
from scitq_bench.server.gui.model_forms import edited, filled, validate
from scitq_bench.server.gui.web import done, failed, not_found, page, reading, render, writing
from scitq_bench.server.queue import batches
from scitq_bench.server.queue.models import Worker
from scitq_bench.server.recruit import service as recruiting
from scitq_bench.server.recruit.engine import alive
from scitq_bench.server.recruit.models import Recruiter
from scitq_bench.server.recruit.schemas import RecruiterCreate, RecruiterUpdate

FIELDS = ("batch", "rank", "flavor", "provider", "region", "concurrency", "prefetch",
          "tasks_per_worker", "minimum_tasks", "maximum_workers", "workflow",
          "workflow_maximum_workers")
EDITABLE = FIELDS[2:]
# blank means "from the tasks' needs", "no such rule" or "no workflow": an edit clears them
CLEARABLE = ("concurrency", "tasks_per_worker", "workflow", "workflow_maximum_workers")


@page("/recruiters")
def recruiters() -> Any:
    return _page({}, {})


def _page(form: Any, errors: dict[str, str], status: int = 200) -> Any:
    with reading() as session:
        rows = recruiter_rows(session)
        names = batches.recent_names(session, 200)
    return render("recruiters/list.html", fragment="recruiters/_table.html", status=status,
                  recruiters=rows, batch_names=names, form=form, errors=errors,
                  live_url=url_for("gui.recruiters", fragment=1))


def recruiter_rows(session: Session) -> list[dict[str, Any]]:
    """Every recruiter by batch and rank, with its recruited workers alive now (as the
    recruitment loop counts them against ``maximum_workers``)."""
    counts = dict(session.execute(
        alive(select(Worker.recruiter_id, func.count()).select_from(Worker))
        .where(Worker.recruiter_id.is_not(None)).group_by(Worker.recruiter_id)).all())
    return [{**row, "alive": counts.get(row["id"], 0)}
            for row in recruiting.list_recruiters(session)]


@page("/recruiters", methods=("POST",))
def recruiter_create() -> Any:
    errors: dict[str, str] = {}
    body = validate(RecruiterCreate, filled(request.form, FIELDS), errors)
    if body is not None:
        try:
            with writing() as session:
                batches.find_batch(session, body.batch)
                recruiter = recruiting.create_recruiter(session, body)
                rank = recruiter.rank
        except NotFound as exc:
            errors["batch"] = f"{exc}: recruiters are added to a batch that exists"
        except ScitqBenchError as exc:
            errors["rank"] = str(exc)
        else:
            return done(f"Recruiter of rank {rank} added to batch {body.batch}.",
                        url_for("gui.recruiters"))
    return _page(request.form, errors, status=400)


@page("/recruiters/<id:recruiter_id>/edit", methods=("GET", "POST"))
def recruiter_edit(recruiter_id: int) -> Any:
    with reading() as session:
        current = _current(session, recruiter_id)
    if request.method == "GET":
        return render("recruiters/edit.html", recruiter=current, form=current, errors={})
    errors: dict[str, str] = {}
    body = edited(RecruiterUpdate, request.form, EDITABLE, CLEARABLE, errors)
    if body is None or errors:
        return render("recruiters/edit.html", recruiter=current, form=request.form,
                      errors=errors, status=400)
    try:
        with writing() as session:
            recruiting.update_recruiter(session, recruiter_id, body)
    except ScitqBenchError as exc:
        return failed(exc, url_for("gui.recruiter_edit", recruiter_id=recruiter_id))
    return done(f"Recruiter of rank {current['rank']} of batch {current['batch']} saved.",
                url_for("gui.recruiters"))


@page("/recruiters/<id:recruiter_id>/delete", methods=("POST",))
def recruiter_delete(recruiter_id: int) -> Any:
    try:
        with writing() as session:
            current = _current(session, recruiter_id)
            recruiting.delete_recruiter(session, recruiter_id)
    except ScitqBenchError as exc:
        return failed(exc, url_for("gui.recruiters"))
    return done(f"Recruiter of rank {current['rank']} of batch {current['batch']} deleted; "
                "its workers stay until idle.", url_for("gui.recruiters"))


def _current(session: Session, recruiter_id: int) -> dict[str, Any]:
    found = session.get(Recruiter, recruiter_id)
    if found is None:
        not_found(f"recruiter {recruiter_id}")
    return recruiting.recruiter_dict(found, batches.get_batch(session, found.batch_id).name)


__all__ = ["recruiters"]
