"""/api/v1 for benchmarks: accounts, bundles, phases, submissions, leaderboards.

Participants and organizers reach only these routes (``bench`` and ``organize``
access); what each may see of a benchmark is decided in ``server.bench.access``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from scitq_bench.container_options import GPU_ALL, validate_image
from scitq_bench.exceptions import InvalidInput, NotFound
from scitq_bench.server.api.executions import execution_status
from scitq_bench.server.api.logs import log_response
from scitq_bench.server.api.registry import (
    ADMIN,
    BENCH,
    ORGANIZE,
    QueryParam,
    endpoint,
    int_arg,
)
from scitq_bench.server.bench import (
    accounts,
    importer,
    leaderboards,
    outputs,
    submissions,
)
from scitq_bench.server.bench.access import (
    managed_benchmark,
    require_manager,
    visible_benchmark,
    visible_benchmarks,
    visible_phase,
    visible_submission,
)
from scitq_bench.server.bench.models import (
    Account,
    Benchmark,
    BenchTask,
    Phase,
    Submission,
)
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
from scitq_bench.server.downloads import send_stored
from scitq_bench.server.notify import WORK
from scitq_bench.server.schemas import changed_fields
from scitq_bench.server.serialize import iso

bp = Blueprint("bench", __name__)


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


@endpoint(bp, "/accounts/<id:account_id>/tokens", "POST", access=ADMIN, body=TokenRequest,
          summary="A new token for an account (optionally revoking its others)")
def new_account_token(account_id: int, body: TokenRequest) -> Any:
    with server_context().db.write() as session:
        account = accounts.find_account(session, str(account_id))
        token = accounts.new_token(session, account, body.revoke_others)
    server_context().forget_tokens()
    return {"account": accounts.account_dict(account), "token": token}, 201


@endpoint(bp, "/accounts/<id:account_id>", "DELETE", access=ADMIN,
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
    benchmark_id = importer.import_upload(
        context.db, context.files, context.settings.data_dir / "imports", g.principal,
        request.stream, declared_size=request.content_length,
        key=request.args.get("key") or None,
        visibility=request.args.get("visibility", "public"),
        run_on_host=request.args.get("run_on_host", "").lower() in ("1", "true", "yes"))
    with context.db.read() as session:
        return benchmark_dict(session, g.principal,
                              visible_benchmark(session, g.principal, benchmark_id)), 201


@endpoint(bp, "/benchmarks", "GET", access=BENCH, summary="Benchmarks this token may see")
def list_benchmarks() -> Any:
    principal = g.principal
    with server_context().db.read() as session:
        found = session.scalars(select(Benchmark).where(visible_benchmarks(principal))
                                .order_by(Benchmark.id))
        return [{"id": b.id, "key": b.key, "title": b.title, "visibility": b.visibility,
                 "created_at": iso(b.created_at)} for b in found]


@endpoint(bp, "/benchmarks/<id:benchmark_id>", "GET", access=BENCH,
          summary="A benchmark: pages, phases, tasks, leaderboards")
def get_benchmark(benchmark_id: int) -> Any:
    with server_context().db.read() as session:
        return benchmark_dict(session, g.principal,
                              visible_benchmark(session, g.principal, benchmark_id))


@endpoint(bp, "/benchmarks/<id:benchmark_id>", "DELETE", access=ORGANIZE,
          summary="Delete a benchmark with its submissions, their tasks and its files")
def remove_benchmark(benchmark_id: int) -> Any:
    context = server_context()
    with context.db.write() as session:
        benchmark = managed_benchmark(session, g.principal, benchmark_id)
        stored = delete_benchmark(session, benchmark)
    context.files.discard(*stored)
    return {"deleted": benchmark_id}


@endpoint(bp, "/phases/<id:phase_id>", "PATCH", access=ORGANIZE, body=PhaseUpdate,
          summary="Change a phase's dates, limits or output visibility")
def update_phase(phase_id: int, body: PhaseUpdate) -> Any:
    with server_context().db.write() as session:
        phase, benchmark = visible_phase(session, g.principal, phase_id)
        require_manager(g.principal, benchmark)
        for key, value in changed_fields(body, Phase).items():
            setattr(phase, key, value)
        if phase.end is not None and phase.end <= phase.start:
            raise InvalidInput(f"end: {phase.end} is not after start {phase.start}")
        session.flush()
        return phase_dict(phase, [])


@endpoint(bp, "/benchmarks/<id:benchmark_id>/tasks/<id:index>", "PATCH", access=ORGANIZE,
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
            task.image = validate_image(body.image, field="image") if body.image else None
        session.flush()
        return benchmark_dict(session, g.principal, benchmark)


# -- submissions ------------------------------------------------------------------------


@endpoint(
    bp, "/phases/<id:phase_id>/submissions", "POST", access=BENCH, raw_body=True,
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
        name=request.args.get("name"), limits=context.settings.submission_limits)
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
    query = submissions.listing(principal, benchmark_id=int_arg("benchmark"),
                                phase_id=int_arg("phase"), status=request.args.get("status"))
    query = query.limit(int_arg("limit", 1000, minimum=1))
    with server_context().db.read() as session:
        return [submission_dict(session, principal, s, None, None, brief=True)
                for s in session.scalars(query)]


@endpoint(bp, "/submissions/<id:submission_id>", "GET", access=BENCH,
          summary="A submission with its attempts, runs and scores")
def get_submission(submission_id: int) -> Any:
    with server_context().db.read() as session:
        submission, benchmark, phase = visible_submission(session, g.principal, submission_id)
        return submission_dict(session, g.principal, submission, benchmark, phase)


def _step(submission_id: int) -> outputs.Step:
    with server_context().db.read() as session:
        return _step_in(session, submission_id)


def _step_in(session: Session, submission_id: int) -> outputs.Step:
    """The step named by ?attempt= (default: latest) &run= (position, default 0)
    &step= (prediction or scoring, default scoring)."""
    return outputs.find_step(session, g.principal, submission_id,
                             attempt=int_arg("attempt"), run=int_arg("run", 0) or 0,
                             step=request.args.get("step", "scoring"))


STEP_QUERY = (QueryParam("attempt", "attempt number (default: the latest)", "integer"),
              QueryParam("run", "run position in the phase (default 0)", "integer"),
              QueryParam("step", "prediction or scoring (default)"))


@endpoint(bp, "/submissions/<id:submission_id>/logs", "GET", access=BENCH,
          summary="A step's log (unless the phase hides output); ?stream=&offset=&wait=",
          query=STEP_QUERY)
def submission_logs(submission_id: int) -> Any:
    with server_context().db.read() as session:
        execution = outputs.log_execution(session, _step_in(session, submission_id))
    if execution is None:
        return Response(b"", mimetype="application/octet-stream")
    execution_id = execution[0]
    return log_response(execution_id, lambda: execution_status(execution_id))


def _output_prefix(submission_id: int) -> str:
    step = _step(submission_id)
    step.check_output_visible()
    return step.output_prefix


@endpoint(bp, "/submissions/<id:submission_id>/outputs", "GET", access=BENCH,
          summary="Files a step wrote to /app/output", query=STEP_QUERY)
def submission_outputs(submission_id: int) -> Any:
    prefix = _output_prefix(submission_id)
    files = server_context().files.list(prefix)
    return {"files": [{"path": f["path"].removeprefix(prefix + "/"), "size": f["size"]}
                      for f in files]}


@endpoint(bp, "/submissions/<id:submission_id>/outputs/<path:path>", "GET", access=BENCH,
          summary="Download one output file of a step", query=STEP_QUERY)
def submission_output_file(submission_id: int, path: str) -> Any:
    prefix = _output_prefix(submission_id)
    return send_stored(server_context().files.open(f"{prefix}/{path}"), name=Path(path).name)


@endpoint(bp, "/submissions/<id:submission_id>/detailed_results", "GET", access=BENCH,
          summary="The scoring step's detailed results page (sandboxed HTML)",
          query=STEP_QUERY)
def detailed_results(submission_id: int) -> Any:
    return outputs.detailed_results_response(server_context().files, _step(submission_id))


@endpoint(bp, "/submissions/<id:submission_id>/rerun", "POST", access=ORGANIZE,
          summary="Run a submission again (a new attempt; earlier ones are kept)")
def rerun_submission(submission_id: int) -> Any:
    context = server_context()
    with context.db.write() as session:
        submission = submissions.rerun_as(context.db, session, g.principal, submission_id)
        answer = submission_dict(session, g.principal, *visible_submission(
            session, g.principal, submission.id))
    context.notifier.notify(WORK)
    return answer


@endpoint(bp, "/phases/<id:phase_id>/rerun", "POST", access=ORGANIZE,
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


@endpoint(bp, "/submissions/<id:submission_id>/cancel", "POST", access=BENCH,
          summary="Cancel a running submission (its owner or organizers)")
def cancel_submission(submission_id: int) -> Any:
    context = server_context()
    with context.db.write() as session:
        submission, benchmark, phase = visible_submission(session, g.principal, submission_id)
        submissions.cancel(session, submission)
        return submission_dict(session, g.principal, submission, benchmark, phase)


@endpoint(bp, "/submissions/<id:submission_id>/attempts/<id:number>", "DELETE",
          access=ORGANIZE, summary="Delete a re-run (never the original attempt)")
def delete_attempt(submission_id: int, number: int) -> Any:
    with server_context().db.write() as session:
        submission, benchmark, phase = visible_submission(session, g.principal, submission_id)
        require_manager(g.principal, benchmark)
        submissions.delete_attempt(session, submission, number)
        return submission_dict(session, g.principal, submission, benchmark, phase)


@endpoint(bp, "/submissions/<id:submission_id>", "DELETE", access=ORGANIZE,
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


@endpoint(bp, "/submissions/<id:submission_id>/leaderboard", "PUT", access=BENCH,
          body=LeaderboardChoice,
          summary="Put a submission on the leaderboard or take it off (Add* rules)")
def choose_for_leaderboard(submission_id: int, body: LeaderboardChoice) -> Any:
    with server_context().db.write() as session:
        submission, benchmark, phase = visible_submission(session, g.principal, submission_id)
        submissions.set_on_leaderboard(session, g.principal, submission, benchmark, body.on)
        return submission_dict(session, g.principal, submission, benchmark, phase)


# -- leaderboards -----------------------------------------------------------------------


@endpoint(bp, "/phases/<id:phase_id>/leaderboards/<key>", "GET", access=BENCH,
          summary="A ranked page of a phase's leaderboard",
          query=(QueryParam("offset", "first rank to return, from 0", "integer"),
                 QueryParam("limit", "rows (default 50, at most 1000)", "integer")))
def leaderboard(phase_id: int, key: str) -> Any:
    offset = int_arg("offset", 0) or 0
    limit = min(int_arg("limit", 50, minimum=1) or 50, 1000)
    with server_context().db.read() as session:
        phase, benchmark = visible_phase(session, g.principal, phase_id)
        return leaderboards.page(session, g.principal, benchmark, phase, key, offset, limit)


@endpoint(bp, "/phases/<id:phase_id>/leaderboards/<key>/csv", "GET", access=BENCH,
          summary="The whole leaderboard as CSV")
def leaderboard_csv(phase_id: int, key: str) -> Any:
    with server_context().db.read() as session:
        return leaderboards.csv_download(session, g.principal, phase_id, key)
