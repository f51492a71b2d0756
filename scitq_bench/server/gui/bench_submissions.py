"""Submissions pages: submitting to a phase, the list (a participant's own only, all of
their benchmarks' for organizers), and a submission with its runs, live logs, scores,
outputs and detailed results; re-runs and cancels. Same services as the API."""

from __future__ import annotations

import os
from typing import IO, Any

from flask import jsonify, request, url_for

from scitq_bench.exceptions import Conflict, Forbidden, NotFound, ScitqBenchError
from scitq_bench.server.bench import outputs, service, submitting
from scitq_bench.server.context import server_context
from scitq_bench.server.downloads import send_stored
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
from scitq_bench.server.limits import whole_number
from scitq_bench.server.web import detailed_results_response
from scitq_bench.states import SubmissionStatus

KIND_LABELS = (("auto", "detect (code when the zip has a metadata file with a command)"),
               ("result", "results (predictions in a zip)"),
               ("code", "code (a zip the ingestion program runs)"),
               ("image", "an image (runs its own command)"))
STATUSES = tuple(s.value for s in SubmissionStatus)


# -- submitting -------------------------------------------------------------------------


@page("/benchmarks/<id:benchmark_id>/submit", methods=("GET", "POST"), roles=EVERYONE)
def bench_submit(benchmark_id: int) -> Any:
    """The form, and its POST: ``submitting.submit`` (as the API) with the uploaded zip;
    a refusal (phase closed, quota reached, bad or too big a file) is shown next to the
    field it is about."""
    with reading() as session:
        bench, phases = service.submit_choices(session, principal(), benchmark_id)
    options = [(p["id"], f"{p['name']} ({p['state']})") for p in phases]
    form = {"phase": request.values.get("phase", str(_default_phase(phases))),
            "kind": request.form.get("kind", "auto"), "name": request.form.get("name", ""),
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
    try:
        return submitting.submit(
            server_context(), principal(), phase_id, kind=form["kind"], body=body,
            declared_size=size, image=form["image"].strip() or None,
            command=form["command"].strip() or None, name=form["name"].strip() or None)
    except ScitqBenchError as exc:
        errors[_submit_field(exc)] = str(exc)
        return None


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
    benchmark_id = request.args.get("benchmark", type=whole_number)
    phase_id = request.args.get("phase", type=whole_number)
    status = request.args.get("status") or None
    filters = {"benchmark": benchmark_id, "phase": phase_id, "status": status}
    who = principal()
    with reading() as session:
        pager = Pager.from_request(submitting.count_rows(
            session, who, benchmark_id=benchmark_id, phase_id=phase_id, status=status))
        rows = submitting.rows(session, who, benchmark_id=benchmark_id, phase_id=phase_id,
                               status=status, offset=pager.offset, limit=pager.limit)
        bench_title = None
        if benchmark_id is not None and not is_fragment():  # the page's heading
            bench_title = service.benchmark_title(session, benchmark_id)
    args = {k: v for k, v in filters.items() if v is not None}
    return render("benchmarks/submissions.html", fragment="benchmarks/_submissions_table.html",
                  rows=rows, pager=pager, filters=filters, args=args, statuses=STATUSES,
                  bench_title=bench_title)


# -- one submission ---------------------------------------------------------------------


@page("/submissions/<id:submission_id>", roles=EVERYONE)
def bench_submission(submission_id: int) -> Any:
    who = principal()
    with reading() as session:
        facts = submitting.page_facts(session, server_context().files, who, submission_id)
        steps = outputs.progress(session, submission_id)
    info, bench = facts["sub"], facts["bench"]
    running = info["status"] in (SubmissionStatus.RUNNING, "queued")  # queued: not started
    return render("benchmarks/submission.html", fragment="benchmarks/_submission_live.html",
                  sub=info, bench=bench, phase=facts["phase"], task_names=facts["task_names"],
                  latest=facts["latest"], files=facts["files"], hides=facts["hides"],
                  steps=steps["steps"], running=running,
                  may_rerun=bench["manage"] and who.role in ORGANIZERS,
                  may_choose=facts["may_choose"], columns=_visible_columns(bench))


def _visible_columns(bench: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{board key: {title, columns}} of the leaderboards and columns this reader may
    see (``benchmark_dict`` already left out the hidden ones for participants)."""
    return {b["key"]: {"title": b["title"], "columns": b["columns"]}
            for b in bench["leaderboards"]}


def _step_args() -> dict[str, Any]:
    return {"attempt": request.args.get("attempt", type=whole_number),
            "run": request.args.get("run", type=whole_number) or 0,
            "step": request.args.get("step", "scoring")}


def _step(submission_id: int) -> outputs.Step:
    with reading() as session:
        return outputs.find_step(session, principal(), submission_id, **_step_args())


@page("/submissions/<id:submission_id>/log", roles=EVERYONE)
def bench_submission_log(submission_id: int) -> Any:
    """A live tail of one step's stdout or stderr: {text, offset, done} from
    ``?offset=``; done once the step ended and everything was read."""
    stream = request.args.get("stream", "stdout")
    with reading() as session:
        step = outputs.find_step(session, principal(), submission_id, **_step_args())
        reading_one, more = outputs.log_tail(session, step)
    return tail_answer(reading_one, stream, more_may_come=more)


@page("/submissions/<id:submission_id>/ingestion-log", roles=EVERYONE)
def bench_submission_ingestion_log(submission_id: int) -> Any:
    """What the ingestion program printed beside the scoring program, as a log tail
    reads it ({text, offset, done}): the whole file once the scoring step uploaded it."""
    stream = request.args.get("stream", "stdout")
    offset = request.args.get("offset", 0, type=whole_number) or 0
    with reading() as session:
        step = outputs.find_step(session, principal(), submission_id, **_step_args())
        _, more = outputs.log_tail(session, step)
    data = outputs.ingestion_log(server_context().files, step, stream)[offset:]
    return jsonify(text=data.decode("utf-8", errors="replace"), offset=offset + len(data),
                   done=not more, execution=None, reset=False)


@page("/submissions/<id:submission_id>/outputs/<path:path>", roles=EVERYONE)
def bench_submission_output(submission_id: int, path: str) -> Any:
    stored = outputs.open_output(server_context().files, _step(submission_id), path)
    return send_stored(stored, name=os.path.basename(path))


@page("/submissions/<id:submission_id>/detailed_results", roles=EVERYONE)
def bench_submission_detailed_results(submission_id: int) -> Any:
    """The scoring program's HTML, for a ``sandbox=""`` iframe only: the policy header
    sandboxes it even when opened directly, so its scripts never run as this site."""
    return detailed_results_response(server_context().files, _step(submission_id))


@page("/submissions/<id:submission_id>/rerun", methods=("POST",), roles=ORGANIZERS)
def bench_submission_rerun(submission_id: int) -> Any:
    here = url_for("gui.bench_submission", submission_id=submission_id)
    try:
        number = submitting.rerun(server_context(), principal(), submission_id,
                                  lambda _session, found: found.attempts)
    except ScitqBenchError as exc:
        return failed(exc, here)
    return done(f"Submission {submission_id} runs again (attempt {number}).", here)


@page("/submissions/<id:submission_id>/leaderboard", methods=("POST",), roles=EVERYONE)
def bench_submission_leaderboard(submission_id: int) -> Any:
    """Put a submission on the leaderboard or take it off, where the board's rule lets
    its owner choose (the Add rules)."""
    here = url_for("gui.bench_submission", submission_id=submission_id)
    wanted = request.form.get("on") == "1"
    try:
        with writing() as session:
            submitting.set_on_leaderboard(session, principal(), submission_id, wanted)
    except ScitqBenchError as exc:
        return failed(exc, here)
    return done(f"Submission {submission_id} is {'on' if wanted else 'off'} the leaderboard.",
                here)


@page("/submissions/<id:submission_id>/cancel", methods=("POST",), roles=EVERYONE)
def bench_submission_cancel(submission_id: int) -> Any:
    here = url_for("gui.bench_submission", submission_id=submission_id)
    try:
        with writing() as session:
            submitting.cancel(session, principal(), submission_id)
    except ScitqBenchError as exc:
        return failed(exc, here)
    return done(f"Submission {submission_id} cancelled.", here)


__all__ = ["bp"]
