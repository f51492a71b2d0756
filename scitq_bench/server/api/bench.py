"""/api/v1 for benchmarks: accounts, bundles, phases, submissions, leaderboards.

Participants and organizers reach only these routes (``bench`` and ``organize``
access); what each may see of a benchmark is decided in ``server.bench.access``, and
every route calls the bench services the GUI calls too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from scitq_bench.server.api.registry import (
    ADMIN,
    BENCH,
    ORGANIZE,
    QueryParam,
    endpoint,
)
from scitq_bench.server.bench import (
    accounts,
    leaderboards,
    outputs,
    priority,
    quotas,
    readiness,
    service,
    standing,
    submitting,
)
from scitq_bench.server.bench.access import managed_benchmark, manages
from scitq_bench.server.bench.models import Benchmark
from scitq_bench.server.bench.schemas import (
    AccountCreate,
    BenchmarkUpdate,
    BenchTaskUpdate,
    LeaderboardChoice,
    PhaseUpdate,
    TokenRequest,
)
from scitq_bench.server.context import server_context
from scitq_bench.server.downloads import send_stored
from scitq_bench.server.web import (
    csv_attachment,
    detailed_results_response,
    execution_log,
    int_arg,
)

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
        return accounts.list_accounts(session)


@endpoint(bp, "/accounts/<id:account_id>/tokens", "POST", access=ADMIN, body=TokenRequest,
          summary="A new token for an account (optionally revoking its others)")
def new_account_token(account_id: int, body: TokenRequest) -> Any:
    return accounts.commit_new_token(server_context(), account_id, body.revoke_others), 201


@endpoint(bp, "/accounts/<id:account_id>", "DELETE", access=ADMIN,
          summary="Delete an account and its tokens (its submissions stay, ownerless)")
def delete_account(account_id: int) -> Any:
    accounts.commit_delete(server_context(), account_id)
    return {"deleted": account_id}


@endpoint(bp, "/me", "GET", access=BENCH, summary="Who this token is")
def me() -> Any:
    with server_context().db.read() as session:
        return accounts.who_is(session, g.principal)


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
    benchmark_id = service.import_benchmark(
        context, g.principal, request.stream, declared_size=request.content_length,
        key=request.args.get("key") or None,
        visibility=request.args.get("visibility", "public"),
        run_on_host=request.args.get("run_on_host", "").lower() in ("1", "true", "yes"))
    with context.db.read() as session:
        return service.describe(session, g.principal, benchmark_id), 201


@endpoint(bp, "/benchmarks", "GET", access=BENCH, summary="Benchmarks this token may see")
def list_benchmarks() -> Any:
    with server_context().db.read() as session:
        return service.list_benchmarks(session, g.principal)


@endpoint(bp, "/benchmarks/<id:benchmark_id>", "GET", access=BENCH,
          summary="A benchmark: pages, phases, tasks, leaderboards")
def get_benchmark(benchmark_id: int) -> Any:
    with server_context().db.read() as session:
        answer = service.describe(session, g.principal, benchmark_id)
        found = session.get(Benchmark, benchmark_id)
        assert found is not None
        answer["readiness"] = readiness.readiness(session, found)
        answer.setdefault("priority", found.priority)
        quotas.annotate_phases(session, g.principal.account_id, answer["phases"])
        return answer


@endpoint(bp, "/benchmarks/<id:benchmark_id>/priority", "PUT", access=ORGANIZE,
          body=priority.PriorityChoice,
          summary="Set the priority of a benchmark's batches (within the server's bounds)")
def set_benchmark_priority(benchmark_id: int, body: priority.PriorityChoice) -> Any:
    settings = server_context().settings
    with server_context().db.write() as session:
        found = managed_benchmark(session, g.principal, benchmark_id)
        return priority.set_priority(session, found, body.priority,
                                     settings.bench_priority_min, settings.bench_priority_max)


@endpoint(bp, "/benchmarks/<id:benchmark_id>", "DELETE", access=ORGANIZE,
          summary="Delete a benchmark with its submissions, their tasks and its files")
def remove_benchmark(benchmark_id: int) -> Any:
    service.commit_delete(server_context(), g.principal, benchmark_id)
    return {"deleted": benchmark_id}


@endpoint(bp, "/benchmarks/<id:benchmark_id>", "PATCH", access=ORGANIZE, body=BenchmarkUpdate,
          summary="Set the image every step runs in, or the environment on the workers' "
          "hosts of a benchmark run there")
def update_benchmark(benchmark_id: int, body: BenchmarkUpdate) -> Any:
    with server_context().db.write() as session:
        return service.update_benchmark(session, g.principal, benchmark_id, body)


@endpoint(bp, "/phases/<id:phase_id>", "PATCH", access=ORGANIZE, body=PhaseUpdate,
          summary="Change a phase's dates, limits or output visibility")
def update_phase(phase_id: int, body: PhaseUpdate) -> Any:
    with server_context().db.write() as session:
        return service.update_phase(session, g.principal, phase_id, body)


@endpoint(bp, "/benchmarks/<id:benchmark_id>/tasks/<id:index>", "PATCH", access=ORGANIZE,
          body=BenchTaskUpdate,
          summary="Set a task's resources: GPUs per step, and an image of its own")
def update_bench_task(benchmark_id: int, index: int, body: BenchTaskUpdate) -> Any:
    with server_context().db.write() as session:
        return service.update_task(session, g.principal, benchmark_id, index, body)


# -- submissions ------------------------------------------------------------------------


@endpoint(
    bp, "/phases/<id:phase_id>/submissions", "POST", access=BENCH, raw_body=True,
    summary="Submit to a phase: a zip body (result or code), or ?kind=image&image=...",
    query=(QueryParam("kind", "auto (default: code when the zip holds a metadata file "
                      "with a command, else result), result, code or image"),
           QueryParam("name", "a name for it"),
           QueryParam("image", "the image of an image submission"),
           QueryParam("command", "what an image or code submission runs when the task "
                      "has no ingestion program"),
           QueryParam("key", "the submitter's name for this entry (1 to 255 characters), "
                      "unique per phase and owner: a key already used answers 200 with "
                      "that submission and \"existing\": true, storing nothing")),
)
def submit(phase_id: int) -> Any:
    """201 with the new submission (``existing``: false), or 200 with the one this
    owner already submitted under ``key`` (``existing``: true)."""
    context = server_context()
    has_body = bool(request.content_length) or request.headers.get("Transfer-Encoding")
    submission_id, existing = submitting.submit_keyed(
        context, g.principal, phase_id, request.args.get("key"),
        kind=request.args.get("kind", "auto"),
        body=request.stream if has_body else None, declared_size=request.content_length,
        image=request.args.get("image"), command=request.args.get("command"),
        name=request.args.get("name"))
    with context.db.read() as session:
        answer = submitting.get(session, g.principal, submission_id)
    answer["existing"] = existing
    return answer, 200 if existing else 201


@endpoint(bp, "/submissions", "GET", access=BENCH,
          summary="Submissions: a participant's own; all of a benchmark for its organizers",
          query=(QueryParam("benchmark", "benchmark id", "integer"),
                 QueryParam("phase", "phase id", "integer"),
                 QueryParam("status", "submitted, running, finished, failed, cancelled"),
                 QueryParam("key", "only the submission(s) submitted under this key"),
                 QueryParam("limit", "at most this many (default 1000)", "integer")))
def list_submissions() -> Any:
    benchmark_id, phase_id = int_arg("benchmark"), int_arg("phase")
    limit = int_arg("limit", 1000, minimum=1)
    with server_context().db.read() as session:
        answer = submitting.list_brief(session, g.principal, benchmark_id=benchmark_id,
                                       phase_id=phase_id, status=request.args.get("status"),
                                       limit=limit, key=request.args.get("key"))
        return _as_boards_show(session, answer)


@endpoint(bp, "/submissions/<id:submission_id>", "GET", access=BENCH,
          summary="A submission with its attempts, runs and scores")
def get_submission(submission_id: int) -> Any:
    """Its ``status`` reads ``queued`` while no step has started; ``steps``: the latest
    attempt's steps with their state and, once failed, their reason."""
    with server_context().db.read() as session:
        answer = submitting.get(session, g.principal, submission_id)
        answer.update(outputs.progress(session, submission_id))
        answer["waiting"] = readiness.submission_waiting(session, submission_id)
        return _as_boards_show(session, [answer])[0]


def _as_boards_show(session: Session, answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``on_leaderboard``: whether a leaderboard this reader sees shows the submission
    (its rule chose it), as the board's rows do."""
    ids = [a["id"] for a in answers]
    managed = {b.id for b in session.scalars(select(Benchmark).where(
        Benchmark.id.in_({a["benchmark_id"] for a in answers}))) if manages(g.principal, b)}
    shown = standing.shown_on_boards(session, ids, include_hidden=False) | \
        standing.shown_on_boards(session, [a["id"] for a in answers
                                           if a["benchmark_id"] in managed], True)
    for answer in answers:
        answer["on_leaderboard"] = answer["id"] in shown
    return answers


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
          query=(*STEP_QUERY, QueryParam(
              "part", "ingestion: what the ingestion program printed during a scoring "
              "step that ran it (ingestion only during scoring; stream=stdout or stderr)")))
def submission_logs(submission_id: int) -> Any:
    if request.args.get("part") == "ingestion":  # the ingestion beside the scoring program
        return Response(outputs.ingestion_log(server_context().files, _step(submission_id),
                                              request.args.get("stream", "stdout")),
                        mimetype="application/octet-stream")
    with server_context().db.read() as session:
        execution = outputs.log_execution(session, _step_in(session, submission_id))
    if execution is None:
        return Response(b"", mimetype="application/octet-stream")
    return execution_log(execution[0])


@endpoint(bp, "/submissions/<id:submission_id>/outputs", "GET", access=BENCH,
          summary="Files a step wrote to /app/output", query=STEP_QUERY)
def submission_outputs(submission_id: int) -> Any:
    return {"files": outputs.output_files(server_context().files, _step(submission_id))}


@endpoint(bp, "/submissions/<id:submission_id>/outputs/<path:path>", "GET", access=BENCH,
          summary="Download one output file of a step", query=STEP_QUERY)
def submission_output_file(submission_id: int, path: str) -> Any:
    stored = outputs.open_output(server_context().files, _step(submission_id), path)
    return send_stored(stored, name=Path(path).name)


@endpoint(bp, "/submissions/<id:submission_id>/detailed_results", "GET", access=BENCH,
          summary="The scoring step's detailed results page (sandboxed HTML)",
          query=STEP_QUERY)
def detailed_results(submission_id: int) -> Any:
    return detailed_results_response(server_context().files, _step(submission_id))


@endpoint(bp, "/submissions/<id:submission_id>/rerun", "POST", access=ORGANIZE,
          summary="Run a submission again (a new attempt; earlier ones are kept)")
def rerun_submission(submission_id: int) -> Any:
    principal = g.principal
    return submitting.rerun(server_context(), principal, submission_id,
                            lambda session, found: submitting.get(session, principal, found.id))


@endpoint(bp, "/phases/<id:phase_id>/rerun", "POST", access=ORGANIZE,
          summary="Run every submission of a phase again (those not running)")
def rerun_phase(phase_id: int) -> Any:
    return {"rerun": submitting.rerun_phase(server_context(), g.principal, phase_id)}


@endpoint(bp, "/submissions/<id:submission_id>/cancel", "POST", access=BENCH,
          summary="Cancel a running submission (its owner or organizers)")
def cancel_submission(submission_id: int) -> Any:
    with server_context().db.write() as session:
        found = submitting.cancel(session, g.principal, submission_id)
        return submitting.describe(session, g.principal, found)


@endpoint(bp, "/submissions/<id:submission_id>/attempts/<id:number>", "DELETE",
          access=ORGANIZE, summary="Delete a re-run (never the original attempt)")
def delete_attempt(submission_id: int, number: int) -> Any:
    with server_context().db.write() as session:
        found = submitting.delete_attempt(session, g.principal, submission_id, number)
        return submitting.describe(session, g.principal, found)


@endpoint(bp, "/submissions/<id:submission_id>", "DELETE", access=ORGANIZE,
          summary="Delete a submission with all its attempts")
def delete_submission(submission_id: int) -> Any:
    submitting.commit_delete(server_context(), g.principal, submission_id)
    return {"deleted": submission_id}


@endpoint(bp, "/submissions/<id:submission_id>/leaderboard", "PUT", access=BENCH,
          body=LeaderboardChoice,
          summary="Put a submission on the leaderboard or take it off (Add* rules)")
def choose_for_leaderboard(submission_id: int, body: LeaderboardChoice) -> Any:
    with server_context().db.write() as session:
        found = submitting.set_on_leaderboard(session, g.principal, submission_id, body.on)
        return submitting.describe(session, g.principal, found)


# -- leaderboards -----------------------------------------------------------------------


@endpoint(bp, "/phases/<id:phase_id>/leaderboards/<key>", "GET", access=BENCH,
          summary="A ranked page of a phase's leaderboard",
          query=(QueryParam("offset", "first rank to return, from 0", "integer"),
                 QueryParam("limit", "rows (default 50, at most 1000)", "integer")))
def leaderboard(phase_id: int, key: str) -> Any:
    offset = int_arg("offset", 0) or 0
    limit = min(int_arg("limit", 50, minimum=1) or 50, 1000)
    with server_context().db.read() as session:
        return leaderboards.phase_page(session, g.principal, phase_id, key, offset, limit)


@endpoint(bp, "/phases/<id:phase_id>/leaderboards/<key>/csv", "GET", access=BENCH,
          summary="The whole leaderboard as CSV")
def leaderboard_csv(phase_id: int, key: str) -> Any:
    with server_context().db.read() as session:
        name, text = leaderboards.csv_file(session, g.principal, phase_id, key)
    return csv_attachment(text, name)
