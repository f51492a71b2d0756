"""/api/v1 for benchmarks: accounts, bundles, phases, submissions, leaderboards.

Participants and organizers reach only these routes (``bench`` and ``organize``
access); what each may see of a benchmark is decided in ``server.bench.access``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, g, request, send_file
from sqlalchemy import select

from scitq_bench.container_options import GPU_ALL, validate_image
from scitq_bench.exceptions import Forbidden, InvalidInput, NotFound
from scitq_bench.server.api.logs import log_response
from scitq_bench.server.api.registry import (
    ADMIN,
    BENCH,
    ORGANIZE,
    QueryParam,
    endpoint,
    int_arg,
)
from scitq_bench.server.auth import ADMIN as ADMIN_ROLE
from scitq_bench.server.bench import accounts, importer, leaderboards, submissions
from scitq_bench.server.bench.access import (
    managed_benchmark,
    manages,
    require_manager,
    visible_benchmark,
    visible_phase,
    visible_submission,
)
from scitq_bench.server.bench.models import (
    Account,
    Attempt,
    Benchmark,
    BenchTask,
    Phase,
    Run,
    Submission,
)
from scitq_bench.server.bench.runs import runs_of
from scitq_bench.server.bench.schemas import (
    AccountCreate,
    BenchTaskUpdate,
    LeaderboardChoice,
    PhaseUpdate,
    TokenRequest,
)
from scitq_bench.server.bench.serialize import (
    benchmark_dict,
    phase_dict,
    submission_dict,
)
from scitq_bench.server.bench.service import delete_benchmark
from scitq_bench.server.context import server_context
from scitq_bench.server.models import Execution, Task
from scitq_bench.server.notify import WORK
from scitq_bench.server.serialize import iso

bp = Blueprint("bench", __name__)
MAX_BUNDLE_UPLOAD = 4 << 30


# -- accounts ---------------------------------------------------------------------------


@endpoint(bp, "/accounts", "POST", access=ADMIN, body=AccountCreate,
          summary="Create a participant or organizer account; its token is shown once")
def create_account(body: AccountCreate) -> Any:
    with server_context().db.write() as session:
        account, token = accounts.create_account(session, body.name, body.role, body.email)
        return {"account": accounts.account_dict(account), "token": token}, 201


@endpoint(bp, "/accounts", "GET", access=ADMIN, summary="List accounts")
def list_accounts() -> Any:
    with server_context().db.read() as session:
        return [accounts.account_dict(a) for a in session.scalars(
            select(Account).order_by(Account.id))]


@endpoint(bp, "/accounts/<int:account_id>/tokens", "POST", access=ADMIN, body=TokenRequest,
          summary="A new token for an account (optionally revoking its others)")
def new_account_token(account_id: int, body: TokenRequest) -> Any:
    with server_context().db.write() as session:
        account = accounts.find_account(session, str(account_id))
        token = accounts.new_token(session, account, body.revoke_others)
    server_context().forget_tokens()
    return {"account": accounts.account_dict(account), "token": token}, 201


@endpoint(bp, "/accounts/<int:account_id>", "DELETE", access=ADMIN,
          summary="Delete an account and its tokens (its submissions stay, ownerless)")
def delete_account(account_id: int) -> Any:
    with server_context().db.write() as session:
        session.delete(accounts.find_account(session, str(account_id)))
    server_context().forget_tokens()
    return {"deleted": account_id}


@endpoint(bp, "/me", "GET", access=BENCH, summary="Who this token is")
def me() -> Any:
    principal = g.principal
    with server_context().db.read() as session:
        account = session.get(Account, principal.account_id) if principal.account_id else None
        return {"role": principal.role,
                "account": accounts.account_dict(account) if account else None}


# -- benchmarks -------------------------------------------------------------------------


@endpoint(
    bp, "/benchmarks", "POST", access=ORGANIZE, raw_body=True,
    summary="Import a Codabench bundle (zip body); all of it or nothing",
    query=(QueryParam("key", "short name (default: from the title)"),
           QueryParam("visibility", "public (default) or private"),
           QueryParam("run_on_host", "true: trusted programs run sandboxed on the workers' "
                      "hosts, without an image (admin only)")),
)
def import_benchmark() -> Any:
    context = server_context()
    run_on_host = request.args.get("run_on_host", "").lower() in ("1", "true", "yes")
    if run_on_host and g.principal.role != ADMIN_ROLE:
        raise Forbidden("only an admin may let a benchmark's programs run on the hosts")
    length = request.content_length
    if length is not None and length > MAX_BUNDLE_UPLOAD:
        raise InvalidInput(f"bundle of {length} bytes is over the {MAX_BUNDLE_UPLOAD} limit")
    work = context.settings.data_dir / "imports"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=work, suffix=".zip") as upload:
        written = 0
        while chunk := request.stream.read(1 << 16):
            written += len(chunk)
            if written > MAX_BUNDLE_UPLOAD:
                raise InvalidInput(f"bundle is over the {MAX_BUNDLE_UPLOAD} bytes limit")
            upload.write(chunk)
        upload.flush()
        if not written:
            raise InvalidInput("request body is empty; the bundle (a zip) is expected")
        benchmark_id = importer.import_bundle(
            context.db, context.files, Path(upload.name), key=request.args.get("key") or None,
            owner_id=g.principal.account_id, run_on_host=run_on_host,
            visibility=request.args.get("visibility", "public"), work_dir=work)
    with context.db.read() as session:
        return benchmark_dict(session, g.principal,
                              visible_benchmark(session, g.principal, benchmark_id)), 201


@endpoint(bp, "/benchmarks", "GET", access=BENCH, summary="Benchmarks this token may see")
def list_benchmarks() -> Any:
    principal = g.principal
    with server_context().db.read() as session:
        found = session.scalars(select(Benchmark).order_by(Benchmark.id))
        return [{"id": b.id, "key": b.key, "title": b.title, "visibility": b.visibility,
                 "created_at": iso(b.created_at)}
                for b in found if b.visibility == "public" or manages(principal, b)]


@endpoint(bp, "/benchmarks/<int:benchmark_id>", "GET", access=BENCH,
          summary="A benchmark: pages, phases, tasks, leaderboards")
def get_benchmark(benchmark_id: int) -> Any:
    with server_context().db.read() as session:
        return benchmark_dict(session, g.principal,
                              visible_benchmark(session, g.principal, benchmark_id))


@endpoint(bp, "/benchmarks/<int:benchmark_id>", "DELETE", access=ORGANIZE,
          summary="Delete a benchmark with its submissions, their tasks and its files")
def remove_benchmark(benchmark_id: int) -> Any:
    context = server_context()
    with context.db.write() as session:
        benchmark = managed_benchmark(session, g.principal, benchmark_id)
        stored = delete_benchmark(session, benchmark)
    context.files.discard(*stored)
    return {"deleted": benchmark_id}


@endpoint(bp, "/phases/<int:phase_id>", "PATCH", access=ORGANIZE, body=PhaseUpdate,
          summary="Change a phase's dates, limits or output visibility")
def update_phase(phase_id: int, body: PhaseUpdate) -> Any:
    with server_context().db.write() as session:
        phase, benchmark = visible_phase(session, g.principal, phase_id)
        require_manager(g.principal, benchmark)
        for key, value in body.model_dump(exclude_unset=True).items():
            setattr(phase, key, value)
        if phase.end is not None and phase.end <= phase.start:
            raise InvalidInput(f"end: {phase.end} is not after start {phase.start}")
        session.flush()
        return phase_dict(phase, [])


@endpoint(bp, "/benchmarks/<int:benchmark_id>/tasks/<int:index>", "PATCH", access=ORGANIZE,
          body=BenchTaskUpdate,
          summary="Set a task's resources: GPUs per step, and an image of its own")
def update_bench_task(benchmark_id: int, index: int, body: BenchTaskUpdate) -> Any:
    with server_context().db.write() as session:
        benchmark = managed_benchmark(session, g.principal, benchmark_id)
        task = session.scalars(select(BenchTask).where(
            BenchTask.benchmark_id == benchmark.id, BenchTask.index == index)).first()
        if task is None:
            raise NotFound(f"benchmark {benchmark_id} has no task {index}")
        if "gpu" in body.model_fields_set:
            task.gpu = GPU_ALL if body.gpu == "all" else int(body.gpu or 0)
        if "image" in body.model_fields_set:
            task.image = validate_image(body.image) if body.image else None
        session.flush()
        return benchmark_dict(session, g.principal, benchmark)


# -- submissions ------------------------------------------------------------------------


@endpoint(
    bp, "/phases/<int:phase_id>/submissions", "POST", access=BENCH, raw_body=True,
    summary="Submit to a phase: a zip body (result or code), or ?kind=image&image=...",
    query=(QueryParam("kind", "result (default), code or image"),
           QueryParam("name", "a name for it"),
           QueryParam("image", "the image of an image submission"),
           QueryParam("command", "what an image or code submission runs when the task "
                      "has no ingestion program")),
)
def submit(phase_id: int) -> Any:
    context = server_context()
    kind = request.args.get("kind", "result")
    has_body = bool(request.content_length) or request.headers.get("Transfer-Encoding")
    submission_id = submissions.submit(
        context.db, context.files, g.principal, phase_id, kind=kind,
        body=request.stream if has_body else None, declared_size=request.content_length,
        image=request.args.get("image"), command=request.args.get("command"),
        name=request.args.get("name"))
    context.notifier.notify(WORK)
    with context.db.read() as session:
        submission, benchmark, phase = visible_submission(session, g.principal, submission_id)
        return submission_dict(session, g.principal, submission, benchmark, phase), 201


@endpoint(bp, "/submissions", "GET", access=BENCH,
          summary="Submissions: a participant's own; all of a benchmark for its organizers",
          query=(QueryParam("benchmark", "benchmark id", "integer"),
                 QueryParam("phase", "phase id", "integer"),
                 QueryParam("status", "submitted, running, finished, failed, cancelled"),
                 QueryParam("limit", "at most this many (default 1000)", "integer")))
def list_submissions() -> Any:
    principal = g.principal
    query = select(Submission).order_by(Submission.id.desc())
    if (benchmark_id := int_arg("benchmark")) is not None:
        query = query.where(Submission.benchmark_id == benchmark_id)
    if (phase_id := int_arg("phase")) is not None:
        query = query.where(Submission.phase_id == phase_id)
    if status := request.args.get("status"):
        query = query.where(Submission.status == status)
    if principal.role != ADMIN_ROLE:
        mine = Submission.owner_id == principal.account_id
        owned = select(Benchmark.id).where(Benchmark.owner_id == principal.account_id)
        query = query.where(mine | Submission.benchmark_id.in_(owned)
                            if principal.role == "organizer" else mine)
    query = query.limit(int_arg("limit", 1000, minimum=1))
    with server_context().db.read() as session:
        return [submission_dict(session, principal, s, None, None, brief=True)
                for s in session.scalars(query)]


@endpoint(bp, "/submissions/<int:submission_id>", "GET", access=BENCH,
          summary="A submission with its attempts, runs and scores")
def get_submission(submission_id: int) -> Any:
    with server_context().db.read() as session:
        submission, benchmark, phase = visible_submission(session, g.principal, submission_id)
        return submission_dict(session, g.principal, submission, benchmark, phase)


@dataclass(frozen=True)
class Step:
    """One step of one run of a submission, as the request named it; plain values,
    usable once the session is gone."""

    run_id: int
    detailed_results: str | None
    task_id: int | None
    step: str
    phase_name: str
    hide_output: bool
    hide_prediction_output: bool
    hide_score_output: bool
    organizer: bool

    def check_output_visible(self, step: str) -> None:
        hidden = self.hide_prediction_output if step == "prediction" else self.hide_score_output
        if hidden and not self.organizer:
            raise Forbidden(f"phase {self.phase_name!r} hides the {step} output")


def _step(submission_id: int) -> Step:
    with server_context().db.read() as session:
        run, task, phase, organizer = _step_task(session, submission_id)
        return Step(run_id=run.id, detailed_results=run.detailed_results,
                    task_id=task.id if task is not None else None,
                    step=request.args.get("step", "scoring"), phase_name=phase.name,
                    hide_output=phase.hide_output,
                    hide_prediction_output=phase.hide_prediction_output,
                    hide_score_output=phase.hide_score_output, organizer=organizer)


def _step_task(session: Any, submission_id: int) -> tuple[Run, Task | None, Phase, bool]:
    """The run and queue task named by ?attempt= (default: latest) &run= (position,
    default 0) &step= (prediction or scoring, default scoring)."""
    submission, benchmark, phase = visible_submission(session, g.principal, submission_id)
    number = int_arg("attempt") or submission.attempts
    attempt = session.scalars(select(Attempt).where(
        Attempt.submission_id == submission.id, Attempt.number == number)).first()
    if attempt is None:
        raise NotFound(f"submission {submission_id} has no attempt {number}")
    position = int_arg("run", 0)
    run = next((r for r in runs_of(session, [attempt.id]) if r.position == position), None)
    if run is None:
        raise NotFound(f"attempt {number} has no run {position}")
    step = request.args.get("step", "scoring")
    if step not in ("prediction", "scoring"):
        raise InvalidInput(f"step: {step!r} is not prediction or scoring")
    task_id = run.prediction_task_id if step == "prediction" else run.scoring_task_id
    task = session.get(Task, task_id) if task_id else None
    return run, task, phase, manages(g.principal, benchmark)


STEP_QUERY = (QueryParam("attempt", "attempt number (default: the latest)", "integer"),
              QueryParam("run", "run position in the phase (default 0)", "integer"),
              QueryParam("step", "prediction or scoring (default)"))


@endpoint(bp, "/submissions/<int:submission_id>/logs", "GET", access=BENCH,
          summary="A step's log (unless the phase hides output); ?stream=&offset=&wait=",
          query=STEP_QUERY)
def submission_logs(submission_id: int) -> Any:
    context = server_context()
    step = _step(submission_id)
    if step.hide_output and not step.organizer:
        raise Forbidden(f"phase {step.phase_name!r} hides the output of submissions")
    if step.task_id is None:
        raise NotFound("this step did not run (a result submission has no prediction)")
    with context.db.read() as session:
        execution_id = session.scalar(select(Execution.id).where(
            Execution.task_id == step.task_id).order_by(Execution.id.desc()).limit(1))
    if execution_id is None:
        return Response(b"", mimetype="application/octet-stream")

    def status() -> str:
        with context.db.read() as session:
            return session.scalar(select(Execution.status).where(Execution.id == execution_id))

    return log_response(execution_id, status)


def _output_prefix(submission_id: int) -> tuple[str, bool]:
    step = _step(submission_id)
    step.check_output_visible(step.step)
    return f"runs/{step.run_id}/{step.step}", step.organizer


@endpoint(bp, "/submissions/<int:submission_id>/outputs", "GET", access=BENCH,
          summary="Files a step wrote to /app/output", query=STEP_QUERY)
def submission_outputs(submission_id: int) -> Any:
    prefix, _ = _output_prefix(submission_id)
    files = server_context().files.list(prefix)
    return {"files": [{"path": f["path"].removeprefix(prefix + "/"), "size": f["size"]}
                      for f in files]}


@endpoint(bp, "/submissions/<int:submission_id>/outputs/<path:path>", "GET", access=BENCH,
          summary="Download one output file of a step", query=STEP_QUERY)
def submission_output_file(submission_id: int, path: str) -> Any:
    prefix, _ = _output_prefix(submission_id)
    return send_file(server_context().files.open(f"{prefix}/{path}"),
                     mimetype="application/octet-stream", as_attachment=True,
                     download_name=Path(path).name)


@endpoint(bp, "/submissions/<int:submission_id>/detailed_results", "GET", access=BENCH,
          summary="The scoring step's detailed results page (sandboxed HTML)",
          query=STEP_QUERY)
def detailed_results(submission_id: int) -> Any:
    step = _step(submission_id)
    step.check_output_visible("scoring")
    if not step.detailed_results:
        raise NotFound("this run has no detailed results")
    response = send_file(server_context().files.open(step.detailed_results),
                         mimetype="text/html")
    # participants' HTML: no scripts, no same-origin access, whatever it contains
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'; " \
        "img-src data:; style-src 'unsafe-inline'"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@endpoint(bp, "/submissions/<int:submission_id>/rerun", "POST", access=ORGANIZE,
          summary="Run a submission again (a new attempt; earlier ones are kept)")
def rerun_submission(submission_id: int) -> Any:
    context = server_context()
    with context.db.write() as session:
        submission, benchmark, phase = visible_submission(session, g.principal, submission_id)
        require_manager(g.principal, benchmark)
        submissions.rerun(context.db, session, submission)
        answer = submission_dict(session, g.principal, submission, benchmark, phase)
    context.notifier.notify(WORK)
    return answer


@endpoint(bp, "/phases/<int:phase_id>/rerun", "POST", access=ORGANIZE,
          summary="Run every submission of a phase again (those not running)")
def rerun_phase(phase_id: int) -> Any:
    context = server_context()
    with context.db.write() as session:
        phase, benchmark = visible_phase(session, g.principal, phase_id)
        require_manager(g.principal, benchmark)
        started = []
        for submission in session.scalars(select(Submission).where(
                Submission.phase_id == phase.id, Submission.status != "running")):
            submissions.rerun(context.db, session, submission)
            started.append(submission.id)
    context.notifier.notify(WORK)
    return {"rerun": started}


@endpoint(bp, "/submissions/<int:submission_id>/cancel", "POST", access=BENCH,
          summary="Cancel a running submission (its owner or organizers)")
def cancel_submission(submission_id: int) -> Any:
    context = server_context()
    with context.db.write() as session:
        submission, benchmark, phase = visible_submission(session, g.principal, submission_id)
        submissions.cancel(session, submission)
        return submission_dict(session, g.principal, submission, benchmark, phase)


@endpoint(bp, "/submissions/<int:submission_id>/attempts/<int:number>", "DELETE",
          access=ORGANIZE, summary="Delete a re-run (never the original attempt)")
def delete_attempt(submission_id: int, number: int) -> Any:
    with server_context().db.write() as session:
        submission, benchmark, phase = visible_submission(session, g.principal, submission_id)
        require_manager(g.principal, benchmark)
        submissions.delete_attempt(session, submission, number)
        return submission_dict(session, g.principal, submission, benchmark, phase)


@endpoint(bp, "/submissions/<int:submission_id>", "DELETE", access=ORGANIZE,
          summary="Delete a submission with all its attempts")
def delete_submission(submission_id: int) -> Any:
    with server_context().db.write() as session:
        submission, benchmark, _ = visible_submission(session, g.principal, submission_id)
        require_manager(g.principal, benchmark)
        stored = submission.file
        submissions.delete_submission(session, submission)
    if stored:
        server_context().files.discard(stored)
    return {"deleted": submission_id}


@endpoint(bp, "/submissions/<int:submission_id>/leaderboard", "PUT", access=BENCH,
          body=LeaderboardChoice,
          summary="Put a submission on the leaderboard or take it off (Add* rules)")
def choose_for_leaderboard(submission_id: int, body: LeaderboardChoice) -> Any:
    with server_context().db.write() as session:
        submission, benchmark, phase = visible_submission(session, g.principal, submission_id)
        submissions.set_on_leaderboard(session, g.principal, submission, benchmark, body.on)
        return submission_dict(session, g.principal, submission, benchmark, phase)


# -- leaderboards -----------------------------------------------------------------------


@endpoint(bp, "/phases/<int:phase_id>/leaderboards/<key>", "GET", access=BENCH,
          summary="A ranked page of a phase's leaderboard",
          query=(QueryParam("offset", "first rank to return, from 0", "integer"),
                 QueryParam("limit", "rows (default 50, at most 1000)", "integer")))
def leaderboard(phase_id: int, key: str) -> Any:
    offset = int_arg("offset", 0) or 0
    limit = min(int_arg("limit", 50, minimum=1) or 50, 1000)
    with server_context().db.read() as session:
        phase, benchmark = visible_phase(session, g.principal, phase_id)
        return leaderboards.page(session, g.principal, benchmark, phase, key, offset, limit)


@endpoint(bp, "/phases/<int:phase_id>/leaderboards/<key>/csv", "GET", access=BENCH,
          summary="The whole leaderboard as CSV")
def leaderboard_csv(phase_id: int, key: str) -> Any:
    with server_context().db.read() as session:
        phase, benchmark = visible_phase(session, g.principal, phase_id)
        text = leaderboards.csv_export(session, g.principal, benchmark, phase, key)
        filename = f"{benchmark.key}-{phase.index}-{key}.csv"
    return Response(text, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
