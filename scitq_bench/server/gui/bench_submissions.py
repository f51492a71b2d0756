"""Submissions pages: submitting to a phase, the list (a participant's own only, all of
their benchmarks' for organizers), and a submission with its runs, live logs, scores,
outputs and detailed results; re-runs and cancels. Same services as the API."""

from __future__ import annotations

import os
from typing import IO, Any

from flask import request, url_for
from sqlalchemy import func, select

from scitq_bench.exceptions import Conflict, Forbidden, NotFound, ScitqBenchError
from scitq_bench.server.bench import outputs
from scitq_bench.server.bench import submissions as service
from scitq_bench.server.bench.access import visible_benchmark, visible_submission
from scitq_bench.server.bench.boards import phase_tasks
from scitq_bench.server.bench.models import Account, Benchmark, Phase, Submission
from scitq_bench.server.bench.runs import RUNNING
from scitq_bench.server.bench.serialize import benchmark_dict, submission_dict
from scitq_bench.server.bounds import whole_number
from scitq_bench.server.context import server_context
from scitq_bench.server.downloads import send_stored
from scitq_bench.server.gui.benchmarks import phase_rows
from scitq_bench.server.gui.tails import tail_answer
from scitq_bench.server.gui.web import (
    EVERYONE,
    ORGANIZERS,
    Pager,
    bp,
    done,
    failed,
    is_fragment,
    page,
    principal,
    reading,
    render,
    writing,
)
from scitq_bench.server.models import Task
from scitq_bench.server.notify import WORK
from scitq_bench.states import FINAL_EXECUTION_VALUES, FINAL_TASK_VALUES

KIND_LABELS = (("result", "results (predictions in a zip)"),
               ("code", "code (a zip the ingestion program runs)"),
               ("image", "an image (runs its own command)"))
STATUSES = ("submitted", "running", "finished", "failed", "cancelled")


# -- submitting -------------------------------------------------------------------------


@page("/benchmarks/<id:benchmark_id>/submit", methods=("GET", "POST"), roles=EVERYONE)
def bench_submit(benchmark_id: int) -> Any:
    """The form, and its POST: the API's ``submissions.submit`` with the uploaded zip;
    a refusal (phase closed, quota reached, bad or too big a file) is shown next to the
    field it is about."""
    who = principal()
    with reading() as session:
        benchmark = visible_benchmark(session, who, benchmark_id)
        bench = {"id": benchmark.id, "title": benchmark.title}
        phases = phase_rows(list(session.scalars(
            select(Phase).where(Phase.benchmark_id == benchmark.id).order_by(Phase.index))))
    options = [(p["id"], f"{p['name']} ({p['state']})") for p in phases]
    form = {"phase": request.values.get("phase", str(_default_phase(phases))),
            "kind": request.form.get("kind", "result"), "name": request.form.get("name", ""),
            "image": request.form.get("image", ""), "command": request.form.get("command", "")}
    errors: dict[str, str] = {}
    if request.method == "POST":
        submission_id = _submit(form, {p["id"] for p in phases}, errors)
        if submission_id is not None:
            return done(f"Submission {submission_id} received; it runs now.",
                        url_for("gui.bench_submission", submission_id=submission_id))
    return render("benchmarks/submit.html", status=400 if errors else 200, bench=bench,
                  phases=options, form=form, errors=errors, kinds=KIND_LABELS)


def _default_phase(phases: list[dict[str, Any]]) -> int | str:
    return next((p["id"] for p in phases if p["state"] == "open"),
                phases[-1]["id"] if phases else "")


def _submit(form: dict[str, str], phase_ids: set[int], errors: dict[str, str]) -> int | None:
    try:
        phase_id = int(form["phase"])
    except ValueError:
        phase_id = -1
    if phase_id not in phase_ids:
        errors["phase"] = "choose a phase of this benchmark"
        return None
    body, size = _upload("file")
    context = server_context()
    try:
        submission_id = service.submit(
            context.db, context.files, principal(), phase_id, kind=form["kind"], body=body,
            declared_size=size, image=form["image"].strip() or None,
            command=form["command"].strip() or None, name=form["name"].strip() or None,
            limits=context.settings.submission_limits)
    except ScitqBenchError as exc:
        errors[_submit_field(exc)] = str(exc)
        return None
    context.notifier.notify(WORK)
    return submission_id


def _upload(name: str) -> tuple[IO[bytes] | None, int | None]:
    """The uploaded file of field ``name`` and its size (None, None: no file chosen)."""
    upload = request.files.get(name)
    if upload is None or not upload.filename:
        return None, None
    stream = upload.stream
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return stream, size


def _submit_field(exc: ScitqBenchError) -> str:
    """Which field a refusal is about: the one the service names, else the phase
    (closed, over quota, not allowed) or the file."""
    if exc.field:
        return exc.field
    return "phase" if isinstance(exc, Conflict | Forbidden | NotFound) else "file"


# -- the list ---------------------------------------------------------------------------


@page("/submissions", roles=EVERYONE)
def bench_submissions() -> Any:
    """Newest first, filtered and paginated in the database; participants see only
    their own (``submissions.listing``, as the API)."""
    filters = {"benchmark": request.args.get("benchmark", type=whole_number),
               "phase": request.args.get("phase", type=whole_number),
               "status": request.args.get("status") or None}
    query = service.listing(principal(), benchmark_id=filters["benchmark"],
                                phase_id=filters["phase"], status=filters["status"])
    with reading() as session:
        total = session.scalar(select(func.count()).select_from(
            query.order_by(None).subquery())) or 0
        pager = Pager.from_request(total)
        found = list(session.scalars(query.offset(pager.offset).limit(pager.limit)))
        rows = _rows(session, found)
        bench_title = None
        if filters["benchmark"] is not None and not is_fragment():  # the page's heading
            bench_title = session.scalar(select(Benchmark.title).where(
                Benchmark.id == filters["benchmark"]))
    args = {k: v for k, v in filters.items() if v is not None}
    return render("benchmarks/submissions.html", fragment="benchmarks/_submissions_table.html",
                  rows=rows, pager=pager, filters=filters, args=args, statuses=STATUSES,
                  bench_title=bench_title)


def _rows(session: Any, found: list[Submission]) -> list[dict[str, Any]]:
    """One page of submissions with their benchmark, phase and owner names (three
    small queries for the page, not one per row)."""
    def names(model: Any, column: Any, ids: set[int]) -> dict[int, str]:
        if not ids:
            return {}
        return dict(session.execute(select(model.id, column).where(model.id.in_(ids))).all())

    benches = names(Benchmark, Benchmark.title, {s.benchmark_id for s in found})
    phases = names(Phase, Phase.name, {s.phase_id for s in found})
    owners = names(Account, Account.name, {s.owner_id for s in found if s.owner_id})
    return [{"id": s.id, "benchmark_id": s.benchmark_id, "benchmark": benches.get(s.benchmark_id),
             "phase": phases.get(s.phase_id), "owner": owners.get(s.owner_id or -1),
             "name": s.name, "kind": s.kind, "status": s.status, "attempts": s.attempts,
             "created_at": s.created_at} for s in found]


# -- one submission ---------------------------------------------------------------------


@page("/submissions/<id:submission_id>", roles=EVERYONE)
def bench_submission(submission_id: int) -> Any:
    who = principal()
    context = server_context()
    with reading() as session:
        found, benchmark, phase = visible_submission(session, who, submission_id)
        found_owner = found.owner_id
        info = submission_dict(session, who, found, benchmark, phase)
        bench = benchmark_dict(session, who, benchmark)
        task_names = [t.name for t in phase_tasks(session, phase.id)]
        hides = outputs.hidden_outputs(phase, bench["manage"])
        phase_info = {"id": phase.id, "name": phase.name}
        latest = info["attempts_detail"][-1] if info["attempts_detail"] else None
        files = {} if latest is None else {
            (run["position"], step): _outputs(context, outputs.find_step(
                session, who, found.id, attempt=latest["number"], run=run["position"],
                step=step))
            for run in latest["runs"] for step in outputs.STEPS
            if run[f"{step}_task"] is not None and not hides[step]}
    return render("benchmarks/submission.html", fragment="benchmarks/_submission_live.html",
                  sub=info, bench=bench, phase=phase_info, task_names=task_names,
                  latest=latest, files=files, hides=hides,
                  running=info["status"] == RUNNING,
                  may_rerun=bench["manage"] and who.role in ORGANIZERS,
                  may_choose=(bench["manage"] or found_owner == who.account_id) and any(
                      b["submission_rule"] in service.ADD_RULES for b in bench["leaderboards"]),
                  columns=_visible_columns(bench))


def _outputs(context: Any, step: outputs.Step) -> list[dict[str, Any]]:
    """The files the step wrote, named as the download route takes them."""
    prefix = step.output_prefix
    return [{"path": f["path"].removeprefix(prefix + "/"), "size": f["size"]}
            for f in context.files.list(prefix)]


def _visible_columns(bench: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{board key: {title, columns}} of the leaderboards and columns this reader may
    see (``benchmark_dict`` already left out the hidden ones for participants)."""
    return {b["key"]: {"title": b["title"], "columns": b["columns"]}
            for b in bench["leaderboards"]}


def _step_args() -> dict[str, Any]:
    return {"attempt": request.args.get("attempt", type=whole_number),
            "run": request.args.get("run", type=whole_number) or 0,
            "step": request.args.get("step", "scoring")}


@page("/submissions/<id:submission_id>/log", roles=EVERYONE)
def bench_submission_log(submission_id: int) -> Any:
    """A live tail of one step's stdout or stderr: {text, offset, done} from
    ``?offset=``; done once the step ended and everything was read."""
    stream = request.args.get("stream", "stdout")
    with reading() as session:
        step = outputs.find_step(session, principal(), submission_id, **_step_args())
        execution = outputs.log_execution(session, step)
        task_status = session.scalar(select(Task.status).where(Task.id == step.task_id))
    reading_one = (execution[0], execution[1] in FINAL_EXECUTION_VALUES) if execution else None
    return tail_answer(reading_one, stream, more_may_come=task_status not in FINAL_TASK_VALUES)


@page("/submissions/<id:submission_id>/outputs/<path:path>", roles=EVERYONE)
def bench_submission_output(submission_id: int, path: str) -> Any:
    with reading() as session:
        step = outputs.find_step(session, principal(), submission_id, **_step_args())
    step.check_output_visible()
    return send_stored(server_context().files.open(f"{step.output_prefix}/{path}"),
                       name=os.path.basename(path))


@page("/submissions/<id:submission_id>/detailed_results", roles=EVERYONE)
def bench_submission_detailed_results(submission_id: int) -> Any:
    """The scoring program's HTML, for a ``sandbox=""`` iframe only: the policy header
    sandboxes it even when opened directly, so its scripts never run as this site."""
    with reading() as session:
        step = outputs.find_step(session, principal(), submission_id, **_step_args())
    return outputs.detailed_results_response(server_context().files, step)


@page("/submissions/<id:submission_id>/rerun", methods=("POST",), roles=ORGANIZERS)
def bench_submission_rerun(submission_id: int) -> Any:
    here = url_for("gui.bench_submission", submission_id=submission_id)
    context = server_context()
    try:
        with writing() as session:
            found = service.rerun_as(context.db, session, principal(), submission_id)
            number = found.attempts
    except ScitqBenchError as exc:
        return failed(exc, here)
    context.notifier.notify(WORK)
    return done(f"Submission {submission_id} runs again (attempt {number}).", here)


@page("/submissions/<id:submission_id>/leaderboard", methods=("POST",), roles=EVERYONE)
def bench_submission_leaderboard(submission_id: int) -> Any:
    """Put a submission on the leaderboard or take it off, where the board's rule lets
    its owner choose (the Add rules)."""
    here = url_for("gui.bench_submission", submission_id=submission_id)
    wanted = request.form.get("on") == "1"
    try:
        with writing() as session:
            found, benchmark, _ = visible_submission(session, principal(), submission_id)
            service.set_on_leaderboard(session, principal(), found, benchmark, wanted)
    except ScitqBenchError as exc:
        return failed(exc, here)
    return done(f"Submission {submission_id} is {'on' if wanted else 'off'} the leaderboard.",
                here)


@page("/submissions/<id:submission_id>/cancel", methods=("POST",), roles=EVERYONE)
def bench_submission_cancel(submission_id: int) -> Any:
    here = url_for("gui.bench_submission", submission_id=submission_id)
    try:
        with writing() as session:
            found, _, _ = visible_submission(session, principal(), submission_id)
            service.cancel(session, found)
    except ScitqBenchError as exc:
        return failed(exc, here)
    return done(f"Submission {submission_id} cancelled.", here)


__all__ = ["bp"]
