"""A submission attempt as queue tasks, and scores back from them.

Each task of the phase becomes a run: a prediction task when the submission is code
(the task's ingestion program runs the participant's code) or an image (it runs in
the participant's image), then a scoring task that depends on it, in the phase's
batch, so retries, leases, live logs, signals and recruiters all apply. Both tasks see
the Codabench layout (``/app/program``, ``/app/input/ref``, ...), built from inputs
placed with ``|mv:``; reference data only ever reaches the scoring task.

Runs follow their tasks through ``refresh_runs``, which ``server/wiring.py`` registers
with ``transitions.on_final``: when a scoring task succeeds, the scores its execution
reported are completed with the computed columns of every leaderboard and land on the
run, then on the attempt and the submission.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from scitq_bench.bench import placeholders, ranking
from scitq_bench.exceptions import Conflict, InvalidInput
from scitq_bench.server.bench import transitions as bench_transitions
from scitq_bench.server.bench.boards import board_columns, phase_tasks, sync_entries
from scitq_bench.server.bench.models import (
    Attempt,
    Benchmark,
    BenchTask,
    Leaderboard,
    LeaderboardColumn,
    Phase,
    Run,
    Submission,
)
from scitq_bench.server.db import Database
from scitq_bench.server.prepared import hot
from scitq_bench.server.queue import tasks as queue
from scitq_bench.server.queue import transitions
from scitq_bench.server.queue.models import Execution, Task, utcnow
from scitq_bench.server.schemas import TaskCreate
from scitq_bench.states import (
    FINAL_TASK_VALUES,
    LIVE_TASK_STATUSES,
    AttemptStatus,
    ExecutionStatus,
    RunStatus,
    SubmissionStatus,
    TaskStatus,
)
from scitq_bench.states import Signal as SignalKind

# tasks of a cancelled attempt that a stop signal ends, when they have a live execution
SIGNALLED_TASK_STATUSES = LIVE_TASK_STATUSES | {TaskStatus.PAUSED}
DETAILED_RESULTS = "detailed_results.html"


def phase_batch(benchmark: Benchmark, phase: Phase) -> str:
    return f"bench-{benchmark.key}-{phase.index}"


def start_attempt(db: Database, session: Session, submission: Submission) -> Attempt:
    """A new attempt of ``submission`` with its runs and their queue tasks: the
    submission runs (guarded: of two re-runs at once, one starts, the other is
    refused)."""
    phase = session.get(Phase, submission.phase_id)
    benchmark = session.get(Benchmark, submission.benchmark_id)
    assert phase is not None and benchmark is not None
    if not bench_transitions.move_submission(session, submission.id, SubmissionStatus.RUNNING):
        raise Conflict(f"submission {submission.id} is {submission.status}; cancel it "
                       "before it runs again")
    submission.attempts += 1
    attempt = Attempt(submission_id=submission.id, number=submission.attempts,
                      status=AttemptStatus.RUNNING.value)
    session.add(attempt)
    session.flush()
    keys = score_keys(session, benchmark.id)
    for position, task in enumerate(phase_tasks(session, phase.id)):
        run = Run(attempt_id=attempt.id, bench_task_id=task.id, position=position,
                  status=RunStatus.RUNNING.value)
        session.add(run)
        session.flush()
        prediction = _prediction_spec(benchmark, phase, task, submission, run)
        if prediction is not None:
            (created,) = queue.create_tasks(db, session, [prediction])
            run.prediction_task_id = created.id
        scoring = _scoring_spec(benchmark, phase, task, submission, run, keys,
                                run.prediction_task_id)
        (created,) = queue.create_tasks(db, session, [scoring])
        run.scoring_task_id = created.id
    session.flush()
    return attempt


def score_keys(session: Session, benchmark_id: int) -> list[str]:
    """Keys a scoring program may write: every column that is not computed."""
    return sorted(set(session.scalars(
        select(LeaderboardColumn.key).join(Leaderboard)
        .where(Leaderboard.benchmark_id == benchmark_id,
               LeaderboardColumn.computation.is_(None)))))


def _store(path: str, action: str) -> str:
    return f"server://{path}|unzip|mv:{action}"


def _common(benchmark: Benchmark, phase: Phase, task: BenchTask, name: str) -> dict[str, Any]:
    return {
        "name": name, "batch": phase.batch, "layout": "codabench", "shell": True,
        "run_timeout": float(phase.execution_time_limit), "gpu": task.gpu,
        "container": None if benchmark.run_on_host else (task.image or benchmark.docker_image),
        "host_environment": benchmark.host_environment if benchmark.run_on_host else None,
    }


def _prediction_spec(benchmark: Benchmark, phase: Phase, task: BenchTask,
                     submission: Submission, run: Run) -> TaskCreate | None:
    """The step that turns code into predictions; None for a result submission. When
    the ingestion runs only during scoring, this step runs the submission's own command,
    or copies a code submission without one to its output as its results."""
    if submission.kind == "result":
        return None
    spec = _common(benchmark, phase, task, f"submission {submission.id} run {run.id} prediction")
    inputs = []
    if task.input_data:
        inputs.append(_store(task.input_data, "input_data"))
    if submission.kind == "code":
        assert submission.file is not None
        inputs.append(_store(submission.file, "ingested_program"))
    if task.ingestion_program and not task.ingestion_only_during_scoring:
        inputs += [_store(task.ingestion_program, "program"),
                   _store(task.ingestion_program, "ingestion_program")]
        command = placeholders.substitute(task.ingestion_command or "", "ingestion")
    elif task.ingestion_only_during_scoring and not submission.command \
            and submission.kind == "code":
        command = COPY_SUBMISSION
    else:
        if task.ingestion_only_during_scoring and submission.file is not None:
            inputs.append(_store(submission.file, "program"))
        command = submission_command(submission)
    if submission.kind == "image":
        spec["container"] = submission.image
    spec.update(command=never_empty(command), inputs=inputs,
                output=f"server://runs/{run.id}/prediction/")
    return TaskCreate(**spec)


# A prediction step that wrote nothing leaves this file, so that the scoring step still
# fetches a folder; the scoring step removes it before its program runs (an empty res/).
EMPTY_MARK = ".no-predictions"
COPY_SUBMISSION = "cp -R /app/ingested_program/. /app/output/"


def never_empty(command: str) -> str:
    """``command``, then, its exit status kept, ``EMPTY_MARK`` left in /app/output when
    it wrote nothing there (a command that ends the shell itself with ``exit`` skips
    this)."""
    return (f"{command}\nstatus=$?\n"
            f'[ -n "$(ls -A /app/output)" ] || : > /app/output/{EMPTY_MARK}\n'
            "exit $status")


def submission_command(submission: Submission) -> str:
    """The command a code or image submission runs itself when the task has no
    ingestion program (its own metadata command, with the placeholders of a
    prediction step)."""
    if not submission.command:
        raise InvalidInput(
            f"submission {submission.id}: the task has no ingestion program, so the "
            "submission must say what to run (a metadata file with a command, or command)")
    return placeholders.substitute(submission.command, "ingestion")


def _scoring_spec(benchmark: Benchmark, phase: Phase, task: BenchTask, submission: Submission,
                  run: Run, keys: Sequence[str], prediction_id: int | None) -> TaskCreate:
    spec = _common(benchmark, phase, task, f"submission {submission.id} run {run.id} scoring")
    inputs = [_store(task.scoring_program, "program")]
    if task.reference_data:
        inputs.append(_store(task.reference_data, "input/ref"))
    together = task.ingestion_only_during_scoring and task.ingestion_program is not None
    places = ["input/res", "ingested_program"] if together else ["input/res"]
    for place in places:
        if prediction_id is None:
            assert submission.file is not None
            inputs.append(_store(submission.file, place))
        else:
            inputs.append(f"server://runs/{run.id}/prediction/|mv:{place}")
    command = placeholders.substitute(task.scoring_command, "scoring")
    if together:
        assert task.ingestion_program is not None
        inputs.append(_store(task.ingestion_program, "ingestion_program"))
        if task.input_data:
            inputs.append(_store(task.input_data, "input_data"))
        command = launcher(command, ingestion_command(task.ingestion_command or ""))
    if prediction_id is not None:
        command = clear_marks(command, places)
    spec.update(
        command=command, inputs=inputs,
        output=f"server://runs/{run.id}/scoring/", score_keys=list(keys),
        requires=[prediction_id] if prediction_id is not None else [],
    )
    return TaskCreate(**spec)


def clear_marks(command: str, places: Sequence[str]) -> str:
    """``command`` after removing the empty prediction mark from where the prediction
    step's output was placed."""
    paths = " ".join(f"/app/{place}/{EMPTY_MARK}" for place in places)
    return f"rm -f {paths}\n{command}"


# -- ingestion only during scoring -----------------------------------------------------
# The scoring step of such a task runs the scoring program and the ingestion program at
# once, in one execution, so both see the same /app/output, /app/shared, /app/input and
# /app/input_data. The ingestion program sits in /app/ingestion_program (its working
# folder), the submission in /app/ingested_program; its stdout and stderr go to
# INGESTION_LOGS in /app/output, which the step uploads with its output.

INGESTION_LOGS = ".ingestion"
INGESTION_PATHS = {**placeholders.REPLACEMENTS["ingestion"],
                   "program": "/app/ingestion_program",
                   "ingestion_program": "/app/ingestion_program"}
_PLACEHOLDER = re.compile(
    r"\$(" + "|".join(sorted(INGESTION_PATHS, key=len, reverse=True)) + r")\b")


def ingestion_command(command: str) -> str:
    """The ingestion's command with the placeholders of an ingestion that runs beside
    the scoring program ($program and $ingestion_program: /app/ingestion_program)."""
    return _PLACEHOLDER.sub(lambda match: INGESTION_PATHS[match.group(1)], command)


def launcher(scoring: str, ingestion: str) -> str:
    """A /bin/sh script that starts the ingestion in the background (its logs to files),
    runs the scoring program, waits for both, says on stderr which failed, and exits
    with the scoring program's status, else the ingestion's."""
    logs = f"/app/output/{INGESTION_LOGS}"
    return "\n".join([
        f"mkdir -p {logs}",
        f"(cd /app/ingestion_program && exec sh -c {shlex.quote(ingestion)}) "
        f">{logs}/stdout.txt 2>{logs}/stderr.txt &",
        "ingestion=$!",
        f"sh -c {shlex.quote(scoring)}",
        "scored=$?",
        "wait $ingestion",
        "ingested=$?",
        '[ $scored -eq 0 ] || echo "scoring program failed (exit code $scored)" >&2',
        '[ $ingested -eq 0 ] || echo "ingestion program failed (exit code $ingested)" >&2',
        '[ $scored -ne 0 ] && exit $scored',
        "exit $ingested",
    ])


# -- following the tasks ---------------------------------------------------------------


# Built once and asked in Core: every task that ends asks it, and most tasks belong to
# no run (the ORM's query of the same rows cost a tenth of a worker's report).
_run = Run.__table__
_RUNS_OF_TASKS = hot(select(_run.c.id).where(
    _run.c.status == RunStatus.RUNNING.value,
    or_(_run.c.scoring_task_id.in_(bindparam("tasks", expanding=True)),
        _run.c.prediction_task_id.in_(bindparam("tasks", expanding=True)))))


def refresh_runs(session: Session, task_ids: list[int]) -> None:
    """Runs whose prediction or scoring task is among ``task_ids`` catch up with them."""
    run_ids = session.connection().execute(_RUNS_OF_TASKS, {"tasks": task_ids}).scalars().all()
    if not run_ids:
        return
    runs = session.scalars(select(Run).where(Run.id.in_(run_ids)).order_by(Run.id)).all()
    statuses = dict(session.execute(select(Task.id, Task.status).where(Task.id.in_(
        [i for r in runs for i in (r.prediction_task_id, r.scoring_task_id) if i]))).all())
    attempts = set()
    for run in runs:
        if _refresh_run(session, run, statuses):
            attempts.add(run.attempt_id)
    for attempt_id in attempts:
        refresh_attempt(session, attempt_id)


def _refresh_run(session: Session, run: Run, statuses: dict[int, str]) -> bool:
    """Move ``run`` to a final status if its tasks say so; True when it moved (False
    too when another transaction ended it first)."""
    prediction = statuses.get(run.prediction_task_id or -1)
    scoring = statuses.get(run.scoring_task_id or -1)
    if TaskStatus.CANCELLED in (prediction, scoring):
        target, values = RunStatus.CANCELLED, {"error": "cancelled"}
    elif prediction == TaskStatus.FAILED:
        target, values = RunStatus.FAILED, {
            "error": _failure(session, "prediction", run.prediction_task_id)}
    elif scoring == TaskStatus.FAILED:
        target, values = RunStatus.FAILED, {
            "error": _failure(session, "scoring", run.scoring_task_id)}
    elif scoring == TaskStatus.SUCCEEDED:
        target, values = RunStatus.FINISHED, _scores(session, run)
    else:
        return False
    return bench_transitions.move_run(session, run.id, target, values)


def _failure(session: Session, step: str, task_id: int | None) -> str:
    """Why a step failed, as its task says (timed out, exit code N, the worker's
    reason such as input_fetch_failed)."""
    task = session.get(Task, task_id) if task_id else None
    reason = task.status_reason if task is not None else None
    return f"the {step} step (task {task_id}) failed" + (f": {reason}" if reason else "")


def _scores(session: Session, run: Run) -> dict[str, Any]:
    """What a run finishes with: the scores its scoring execution reported, completed
    with the computed columns of every leaderboard, and its detailed results page."""
    execution = session.scalars(
        select(Execution).where(Execution.task_id == run.scoring_task_id,
                                Execution.status == ExecutionStatus.SUCCEEDED.value)
        .order_by(Execution.id.desc()).limit(1)).first()
    raw = (execution.scores if execution is not None else None) or {}
    task = session.get(BenchTask, run.bench_task_id)
    assert task is not None
    values: dict[str, Any] = {"error": None, "scores": {
        board: ranking.compute_columns(columns, raw)
        for board, columns in board_columns(session, task.benchmark_id).items()}}
    files = (execution.output_files if execution is not None else None) or []
    html = [f for f in files if f == DETAILED_RESULTS] or [f for f in files if f.endswith(".html")]
    if html:
        values["detailed_results"] = f"runs/{run.id}/scoring/{html[0]}"
    return values


def refresh_attempt(session: Session, attempt_id: int) -> None:
    """An attempt ends with its last run: finished when every run has scores, failed
    (or cancelled) otherwise. The submission then shows its newest finished attempt.
    An attempt that another transaction ended first is left as it ended.

    The attempt's row is locked first (PostgreSQL): of two transactions ending its last
    two runs at once, the second waits, then reads the first one's run as ended, where
    each would otherwise see the other's run still running and leave the attempt so."""
    attempt = session.get(Attempt, attempt_id, with_for_update=True)
    assert attempt is not None
    runs = list(session.scalars(select(Run).where(Run.attempt_id == attempt_id)
                                .order_by(Run.position)
                                .execution_options(populate_existing=True)))
    if any(r.status == RunStatus.RUNNING for r in runs):
        return
    values: dict[str, Any] = {"finished_at": utcnow()}
    if all(r.status == RunStatus.FINISHED for r in runs):
        target = AttemptStatus.FINISHED
        values.update(error=None, scores=_attempt_scores(runs))
    else:
        worst = next(r for r in runs if r.status != RunStatus.FINISHED)
        target = AttemptStatus.CANCELLED if worst.status == RunStatus.CANCELLED \
            else AttemptStatus.FAILED
        values.update(error=worst.error)
    if not bench_transitions.move_attempt(session, attempt_id, target, values):
        return
    refresh_submission(session, attempt.submission_id)


def _attempt_scores(runs: Sequence[Run]) -> dict[str, Any]:
    """{board: {task position: {column: value}}}: one column group per task."""
    scores: dict[str, dict[str, Any]] = {}
    for run in runs:
        for board, values in (run.scores or {}).items():
            scores.setdefault(board, {})[str(run.position)] = values
    return scores


def refresh_submission(session: Session, submission_id: int) -> None:
    """The submission's status is its newest attempt's; its scores (what leaderboards
    rank) are those of its newest finished attempt, kept while a re-run goes on."""
    submission = session.get(Submission, submission_id)
    if submission is None:
        return
    attempts = list(session.scalars(select(Attempt).where(
        Attempt.submission_id == submission_id).order_by(Attempt.number.desc())))
    target = SubmissionStatus(attempts[0].status) if attempts else SubmissionStatus.CANCELLED
    bench_transitions.move_submission(session, submission_id, target)  # none if there already
    finished = next((a for a in attempts if a.status == AttemptStatus.FINISHED), None)
    submission.scores = finished.scores if finished is not None else None
    submission.scored_attempt = finished.number if finished is not None else None
    session.flush()
    sync_entries(session, submission)


def cancel_attempt(session: Session, attempt: Attempt) -> list[int]:
    """Cancel what has not finished: queued tasks at once, running ones by a stop
    signal to their worker. Returns the task ids touched."""
    runs = list(session.scalars(select(Run).where(Run.attempt_id == attempt.id)))
    ids = [i for r in runs for i in (r.prediction_task_id, r.scoring_task_id) if i]
    live = dict(session.execute(select(Task.id, Task.status).where(
        Task.id.in_(ids), Task.status.notin_(sorted(FINAL_TASK_VALUES)))).all())
    for task_id, status in live.items():
        if status in SIGNALLED_TASK_STATUSES and \
                queue.live_execution(session, task_id) is not None:
            queue.signal_task(session, task_id, SignalKind.STOP)
        else:
            transitions.move_tasks(session, [task_id], TaskStatus.CANCELLED,
                                   reason="submission cancelled")
    return list(live)


def runs_of(session: Session, attempt_ids: Sequence[int]) -> list[Run]:
    return list(session.scalars(select(Run).where(Run.attempt_id.in_(attempt_ids))
                                .order_by(Run.attempt_id, Run.position)))


def detach_tasks(session: Session, attempt_id: int) -> list[int]:
    """The queue tasks of an attempt (to delete with it)."""
    runs = runs_of(session, [attempt_id])
    session.execute(update(Run).where(Run.attempt_id == attempt_id)
                    .values(prediction_task_id=None, scoring_task_id=None))
    return [i for r in runs for i in (r.prediction_task_id, r.scoring_task_id) if i]
