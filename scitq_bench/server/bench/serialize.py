"""Benchmark objects as JSON, showing each token only what it may see: participants
never get the file store paths of programs or data, hidden leaderboards or hidden
columns."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scitq_bench.container_options import GPU_ALL
from scitq_bench.server.auth import Principal
from scitq_bench.server.bench.access import manages
from scitq_bench.server.bench.models import (
    Account,
    Attempt,
    Benchmark,
    BenchTask,
    Leaderboard,
    LeaderboardColumn,
    Phase,
    PhaseTask,
    Submission,
)
from scitq_bench.server.bench.outputs import step_state
from scitq_bench.server.bench.runs import runs_of
from scitq_bench.server.queue.costs import tasks_cost
from scitq_bench.server.queue.models import Task
from scitq_bench.server.serialize import iso
from scitq_bench.states import SubmissionStatus


def phase_dict(phase: Phase, task_ids: list[int]) -> dict[str, Any]:
    return {
        "id": phase.id, "index": phase.index, "name": phase.name,
        "description": phase.description, "start": iso(phase.start), "end": iso(phase.end),
        "max_submissions": phase.max_submissions,
        "max_submissions_per_day": phase.max_submissions_per_day,
        "max_submission_mb": phase.max_submission_mb,
        "execution_time_limit": phase.execution_time_limit,
        "hide_output": phase.hide_output, "hide_prediction_output": phase.hide_prediction_output,
        "hide_score_output": phase.hide_score_output,
        "accepts_only_result_submissions": phase.accepts_only_result_submissions,
        "batch": phase.batch, "tasks": task_ids,
    }


def benchmark_dict(session: Session, principal: Principal, benchmark: Benchmark) -> dict[str, Any]:
    organizer = manages(principal, benchmark)
    phases = list(session.scalars(select(Phase).where(Phase.benchmark_id == benchmark.id)
                                  .order_by(Phase.index)))
    links = session.execute(select(PhaseTask.phase_id, BenchTask.index)
                            .join(BenchTask, BenchTask.id == PhaseTask.bench_task_id)
                            .where(BenchTask.benchmark_id == benchmark.id)
                            .order_by(PhaseTask.position)).all()
    tasks = list(session.scalars(select(BenchTask).where(BenchTask.benchmark_id == benchmark.id)
                                 .order_by(BenchTask.index)))
    boards = [b for b in session.scalars(select(Leaderboard).where(
        Leaderboard.benchmark_id == benchmark.id).order_by(Leaderboard.index))
        if organizer or not b.hidden]
    owner = session.get(Account, benchmark.owner_id) if benchmark.owner_id else None
    return {
        "id": benchmark.id, "key": benchmark.key, "title": benchmark.title,
        "description": benchmark.description, "owner": owner.name if owner else None,
        "visibility": benchmark.visibility, "docker_image": benchmark.docker_image,
        "run_on_host": benchmark.run_on_host, "host_environment": benchmark.host_environment,
        "priority": benchmark.priority, "pages": benchmark.pages, "terms": benchmark.terms,
        "enable_detailed_results": benchmark.enable_detailed_results,
        "created_at": iso(benchmark.created_at), "manage": organizer,
        "phases": [phase_dict(p, [i for pid, i in links if pid == p.id]) for p in phases],
        "tasks": [_task_dict(t, organizer or benchmark.make_programs_available) for t in tasks],
        "leaderboards": [_board_dict(session, b, organizer) for b in boards],
    }


def _task_dict(task: BenchTask, show_programs: bool) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": task.id, "index": task.index, "name": task.name, "description": task.description,
        "has_ingestion": task.ingestion_program is not None,
        "gpu": "all" if task.gpu == GPU_ALL else task.gpu, "image": task.image,
    }
    if show_programs:
        answer.update(scoring_command=task.scoring_command,
                      ingestion_command=task.ingestion_command)
    return answer


def _board_dict(session: Session, board: Leaderboard, organizer: bool) -> dict[str, Any]:
    columns = session.scalars(select(LeaderboardColumn).where(
        LeaderboardColumn.leaderboard_id == board.id).order_by(LeaderboardColumn.index))
    return {
        "key": board.key, "title": board.title, "hidden": board.hidden,
        "submission_rule": board.submission_rule, "primary_index": board.primary_index,
        "columns": [{"key": c.key, "title": c.title, "index": c.index, "sorting": c.sorting,
                     "computation": c.computation,
                     "computation_indexes": c.computation_indexes, "precision": c.precision,
                     "hidden": c.hidden} for c in columns if organizer or not c.hidden],
    }


def queued_among(session: Session, submission_ids: list[int]) -> set[int]:
    """The running submissions among these whose latest attempt has no step started
    yet: "queued" to their readers (a worker may be missing; ``readiness`` says why).
    Three queries whatever the number of submissions."""
    if not submission_ids:
        return set()
    latest = dict(session.execute(
        select(Attempt.submission_id, func.max(Attempt.id))
        .join(Submission, Submission.id == Attempt.submission_id)
        .where(Attempt.submission_id.in_(submission_ids),
               Submission.status == SubmissionStatus.RUNNING.value)
        .group_by(Attempt.submission_id)).all())
    runs = runs_of(session, list(latest.values()))
    task_ids = [i for r in runs for i in (r.prediction_task_id, r.scoring_task_id) if i]
    statuses = dict(session.execute(select(Task.id, Task.status)
                                    .where(Task.id.in_(task_ids))).all()) if task_ids else {}
    started = {r.attempt_id for r in runs
               for i in (r.prediction_task_id, r.scoring_task_id)
               if i and step_state(statuses.get(i)) != "queued"}
    stepped = {r.attempt_id for r in runs if r.prediction_task_id or r.scoring_task_id}
    return {submission for submission, attempt in latest.items()
            if attempt in stepped and attempt not in started}


def submission_dict(session: Session, principal: Principal, submission: Submission,
                    benchmark: Benchmark | None, phase: Phase | None,
                    brief: bool = False, queued: set[int] | None = None) -> dict[str, Any]:
    """The submission as its readers see it; ``queued``: the ids ``queued_among`` gave
    (asked here when not given)."""
    owner = session.get(Account, submission.owner_id) if submission.owner_id else None
    answer: dict[str, Any] = {
        "id": submission.id, "benchmark_id": submission.benchmark_id,
        "phase_id": submission.phase_id, "owner": owner.name if owner else None,
        "kind": submission.kind, "kind_note": submission.kind_note,
        "key": submission.key, "name": submission.name, "status": submission.status,
        "image": submission.image, "size_bytes": submission.size_bytes,
        "attempts": submission.attempts, "scored_attempt": submission.scored_attempt,
        "scores": submission.scores, "on_leaderboard": submission.on_leaderboard,
        "created_at": iso(submission.created_at),
    }
    if queued is None:
        queued = queued_among(session, [submission.id])
    if submission.id in queued:
        answer["status"] = "queued"
    if brief:
        return answer
    attempts = list(session.scalars(select(Attempt).where(
        Attempt.submission_id == submission.id).order_by(Attempt.number)))
    runs = runs_of(session, [a.id for a in attempts])
    ids = [i for r in runs for i in (r.prediction_task_id, r.scoring_task_id) if i]
    statuses = dict(session.execute(select(Task.id, Task.status).where(Task.id.in_(ids))).all()) \
        if ids else {}
    answer["cost"] = round(tasks_cost(session, ids), 6)
    answer["attempts_detail"] = [{
        "number": a.number, "status": a.status, "error": a.error, "scores": a.scores,
        "created_at": iso(a.created_at), "finished_at": iso(a.finished_at),
        "runs": [{
            "position": r.position, "status": r.status, "error": r.error, "scores": r.scores,
            "detailed_results": bool(r.detailed_results),
            "prediction_task": _step(r.prediction_task_id, statuses),
            "scoring_task": _step(r.scoring_task_id, statuses),
        } for r in runs if r.attempt_id == a.id],
    } for a in attempts]
    return answer


def _step(task_id: int | None, statuses: dict[int, str]) -> dict[str, Any] | None:
    if task_id is None:
        return None
    return {"id": task_id, "status": statuses.get(task_id)}
