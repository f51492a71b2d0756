"""Benchmarks pages: the list, importing a bundle, a benchmark's own page (its texts,
logo, phases with their counts, tasks and a live view of its leaderboards), and what its
organizers change there: a phase's dates and limits, a phase run again, the benchmark
deleted. Everything goes through the bench services the API uses, with the same rules
of who sees what and who may change it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Response, request, url_for
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scitq_bench.exceptions import NotFound, ScitqBenchError
from scitq_bench.server import auth
from scitq_bench.server.bench import service, submitting
from scitq_bench.server.bench.access import require_manager, visible_benchmark, visible_phase
from scitq_bench.server.bench.models import Benchmark, Phase, Submission
from scitq_bench.server.bench.schemas import PhaseUpdate
from scitq_bench.server.context import server_context
from scitq_bench.server.downloads import send_stored
from scitq_bench.server.gui import bench_pages
from scitq_bench.server.gui.web import (
    EVERYONE,
    ORGANIZERS,
    Pager,
    bp,
    done,
    failed,
    page,
    principal,
    reading,
    render,
    writing,
)

PREVIEW_ROWS = 10


@page("/benchmarks", roles=EVERYONE)
def benchmarks() -> Any:
    return _list_page()


def _list_page(errors: dict[str, str] | None = None, form: dict[str, str] | None = None,
               status: int = 200) -> Any:
    """The benchmarks the user may see, a page at a time, and (for organizers) the
    import form, with its errors when an import was refused."""
    who = principal()
    with reading() as session:
        pager = Pager.from_request(service.count_benchmarks(session, who))
        listed = service.benchmark_rows(session, who, pager.offset, pager.limit)
    return render("benchmarks/list.html", status=status, benchmarks=listed, pager=pager,
                  errors=errors or {}, form=form or {},
                  may_import=principal().role in ORGANIZERS,
                  admin=principal().role == auth.ADMIN)


@page("/benchmarks/import", methods=("POST",), roles=ORGANIZERS)
def benchmark_import() -> Any:
    """A Codabench bundle from the form, imported by the API's service; a refusal comes
    back next to the field it is about."""
    form = {"key": request.form.get("key", "").strip(),
            "visibility": request.form.get("visibility", "public"),
            "run_on_host": request.form.get("run_on_host", "")}
    upload = request.files.get("bundle")
    if upload is None or not upload.filename:
        return _list_page({"bundle": "choose a bundle (a zip) to import"}, form, 400)
    try:
        benchmark_id = service.import_benchmark(
            server_context(), principal(), upload.stream, key=form["key"] or None,
            visibility=form["visibility"], run_on_host=bool(form["run_on_host"]))
    except ScitqBenchError as exc:
        return _list_page({exc.field or "bundle": str(exc)}, form, 400)
    return done(f"Imported benchmark {benchmark_id} from {upload.filename}.",
                url_for("gui.benchmark", benchmark_id=benchmark_id))


@page("/benchmarks/<id:benchmark_id>", roles=EVERYONE)
def benchmark(benchmark_id: int) -> Any:
    """The benchmark: texts (shown as text), phases with their limits, tasks, and the
    leaderboards of one phase (?phase=, else the open one), live."""
    who = principal()
    with reading() as session:
        facts = service.overview(session, who, benchmark_id, request.args.get("phase", ""),
                                 PREVIEW_ROWS)
        counts = phase_counts(session, [p["id"] for p in facts["phases"]])
        logo = bench_pages.logo_candidates(session, session.get_one(Benchmark, benchmark_id))
    info = facts["bench"]
    found = bench_pages.open_logo(server_context().files, logo)
    if found is not None:
        found[0].close()
    return render("benchmarks/detail.html", fragment="benchmarks/_boards.html",
                  bench=info, phases=facts["phases"], chosen=facts["chosen"],
                  boards=facts["boards"], preview=True, counts=counts,
                  texts=bench_pages.page_texts(info), has_logo=found is not None,
                  may_submit=who.role in (auth.ADMIN, auth.PARTICIPANT) or info["manage"],
                  may_manage=info["manage"] and who.role in ORGANIZERS)


def phase_counts(session: Session, phase_ids: list[int]) -> dict[int, dict[str, int]]:
    """{phase id: {participants, submissions}}: who submitted (distinct accounts) and
    how many submissions, counted by the database."""
    counted = {i: {"participants": 0, "submissions": 0} for i in phase_ids}
    if not phase_ids:
        return counted
    rows = session.execute(
        select(Submission.phase_id, func.count(func.distinct(Submission.owner_id)),
               func.count(Submission.id))
        .where(Submission.phase_id.in_(phase_ids)).group_by(Submission.phase_id)).all()
    for phase_id, participants, submissions in rows:
        counted[phase_id] = {"participants": participants, "submissions": submissions}
    return counted


@page("/benchmarks/<id:benchmark_id>/logo", roles=EVERYONE)
def benchmark_logo(benchmark_id: int) -> Any:
    """The bundle's logo, as a raster image under a policy that runs nothing."""
    with reading() as session:
        candidates = bench_pages.logo_candidates(
            session, visible_benchmark(session, principal(), benchmark_id))
    found = bench_pages.open_logo(server_context().files, candidates)
    if found is None:
        raise NotFound(f"benchmark {benchmark_id} has no logo")
    stored, mimetype = found
    response: Response = send_stored(stored, mimetype=mimetype)
    response.headers["Content-Security-Policy"] = bench_pages.LOGO_POLICY
    response.headers["Content-Disposition"] = "inline"
    return response


@page("/benchmarks/<id:benchmark_id>/delete", methods=("POST",), roles=ORGANIZERS)
def benchmark_delete(benchmark_id: int) -> Any:
    """The API's delete (its owner or an admin): rows first, then its files."""
    here = url_for("gui.benchmark", benchmark_id=benchmark_id)
    try:
        service.commit_delete(server_context(), principal(), benchmark_id)
    except ScitqBenchError as exc:
        return failed(exc, here)
    return done(f"Benchmark {benchmark_id} deleted.", url_for("gui.benchmarks"))


@page("/phases/<id:phase_id>/rerun", methods=("POST",), roles=ORGANIZERS)
def bench_phase_rerun(phase_id: int) -> Any:
    """Every submission of the phase not running now gets a new attempt (as the API's
    and the command line's phase rerun)."""
    back = url_for("gui.benchmarks")  # the form's ``next`` (a path here) wins
    try:
        started = submitting.rerun_phase(server_context(), principal(), phase_id)
    except ScitqBenchError as exc:
        return failed(exc, back)
    return done(f"{len(started)} submission(s) of phase {phase_id} run again.", back)


# -- a phase's dates and limits -----------------------------------------------------------

LIMITS = ("max_submissions", "max_submissions_per_day", "max_submission_mb",
          "execution_time_limit")
SWITCHES = ("hide_output", "hide_prediction_output", "hide_score_output",
            "accepts_only_result_submissions")
DATE_SHAPE = "%Y-%m-%dT%H:%M"


@page("/phases/<id:phase_id>/edit", methods=("GET", "POST"), roles=ORGANIZERS)
def bench_phase_edit(phase_id: int) -> Any:
    """The phase's form; its POST goes through the API's ``PhaseUpdate`` and
    ``service.update_phase``, so the same values are refused with the same words."""
    with reading() as session:
        phase, benchmark = visible_phase(session, principal(), phase_id)
        require_manager(principal(), benchmark)
        bench = {"id": benchmark.id, "title": benchmark.title}
        form = _phase_form(phase)
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = {name: request.form.get(name, "").strip() for name in form}
        form.update({name: "1" if request.form.get(name) else "" for name in SWITCHES})
        if _save_phase(phase_id, form, errors):
            return done(f"Phase {form['name']} saved.",
                        url_for("gui.benchmark", benchmark_id=bench["id"], phase=phase_id))
    return render("benchmarks/phase_edit.html", status=400 if errors else 200, bench=bench,
                  phase_id=phase_id, form=form, errors=errors)


def _phase_form(phase: Phase) -> dict[str, str]:
    def text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "1" if value else ""
        if isinstance(value, datetime):
            return value.strftime(DATE_SHAPE)
        return str(value)

    names = ("name", "description", "start", "end", *LIMITS, *SWITCHES)
    return {name: text(getattr(phase, name)) for name in names}


def _save_phase(phase_id: int, form: dict[str, str], errors: dict[str, str]) -> bool:
    """Validate as the API does and save; a refusal goes next to its field."""
    body: dict[str, Any] = {"name": form["name"], "description": form["description"] or None,
                            "start": form["start"] or None, "end": form["end"] or None}
    body.update({name: form[name] or None for name in LIMITS})
    body.update({name: bool(form[name]) for name in SWITCHES})
    try:
        changes = PhaseUpdate.model_validate(body)
    except ValidationError as exc:
        for problem in exc.errors():
            where = str(problem["loc"][0]) if problem["loc"] else _field_of(problem["msg"])
            errors.setdefault(where if where in form else "form",
                              problem["msg"].removeprefix("Value error, "))
        return False
    try:
        with writing() as session:
            service.update_phase(session, principal(), phase_id, changes)
    except ScitqBenchError as exc:
        where = exc.field or _field_of(str(exc))
        errors[where if where in form else "form"] = str(exc)
        return False
    return True


def _field_of(message: str) -> str:
    """The field a message starts with ("end: ..."), else the form as a whole."""
    head = message.removeprefix("Value error, ").split(":", 1)[0].strip()
    return head if head.isidentifier() else "form"


__all__ = ["bp"]
