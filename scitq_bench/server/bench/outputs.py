"""What a submission's steps left behind: logs, output files, detailed results, and
who may read them (the phase may hide outputs from participants). The API and the GUI
both name a step the same way: attempt number, run position, prediction or scoring."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scitq_bench.exceptions import Forbidden, InvalidInput, NotFound
from scitq_bench.server.auth import Principal
from scitq_bench.server.bench.access import manages, visible_submission
from scitq_bench.server.bench.models import Attempt, BenchTask, Phase, Submission
from scitq_bench.server.bench.runs import EMPTY_MARK, INGESTION_LOGS, runs_of
from scitq_bench.server.queue.models import Task
from scitq_bench.server.queue.tasks import latest_execution
from scitq_bench.server.storage import FileStorage, StoredFile
from scitq_bench.states import (
    FINAL_EXECUTION_VALUES,
    FINAL_TASK_VALUES,
    TaskStatus,
)

STEPS = ("prediction", "scoring")


@dataclass(frozen=True)
class Step:
    """One step of one run of a submission; plain values, usable once the session is
    gone."""

    submission_id: int
    run_id: int
    detailed_results: str | None
    task_id: int | None
    step: str
    phase_name: str
    hidden: Mapping[str, bool]  # hidden_outputs for this reader

    def check_output_visible(self, step: str | None = None) -> None:
        step = step or self.step
        if self.hidden[step]:
            raise Forbidden(f"phase {self.phase_name!r} hides the {step} output")

    def check_logs_visible(self) -> None:
        if self.hidden["logs"]:
            raise Forbidden(f"phase {self.phase_name!r} hides the output of submissions")

    @property
    def output_prefix(self) -> str:
        """Where the step's /app/output went in the file store."""
        return f"runs/{self.run_id}/{self.step}"


def hidden_outputs(phase: Phase, organizer: bool) -> dict[str, bool]:
    """What of a submission's output the phase hides from this reader: the logs, and
    each step's files. Organizers see everything."""
    return {"logs": phase.hide_output and not organizer,
            "prediction": phase.hide_prediction_output and not organizer,
            "scoring": phase.hide_score_output and not organizer}


def find_step(session: Session, principal: Principal, submission_id: int, *,
              attempt: int | None = None, run: int = 0, step: str = "scoring") -> Step:
    """The step named by attempt number (default: the latest), run position and step,
    of a submission ``principal`` may see."""
    if step not in STEPS:
        raise InvalidInput(f"step: {step!r} is not prediction or scoring")
    submission, benchmark, phase = visible_submission(session, principal, submission_id)
    number = attempt or submission.attempts
    found = session.scalars(select(Attempt).where(
        Attempt.submission_id == submission.id, Attempt.number == number)).first()
    if found is None:
        raise NotFound(f"submission {submission_id} has no attempt {number}")
    row = next((r for r in runs_of(session, [found.id]) if r.position == run), None)
    if row is None:
        raise NotFound(f"attempt {number} has no run {run}")
    return Step(
        submission_id=submission.id, run_id=row.id, detailed_results=row.detailed_results,
        task_id=row.prediction_task_id if step == "prediction" else row.scoring_task_id,
        step=step, phase_name=phase.name,
        hidden=hidden_outputs(phase, manages(principal, benchmark)))


def log_execution(session: Session, step: Step) -> tuple[int, str] | None:
    """(id, status) of the step's latest execution, whose log is the step's log; None
    while it has not started. Refused when the phase hides logs from this reader."""
    step.check_logs_visible()
    if step.task_id is None:
        raise NotFound("this step did not run (a result submission has no prediction)")
    latest = latest_execution(session, step.task_id)
    return (latest.id, latest.status) if latest is not None else None


def detailed_results_path(step: Step) -> str:
    """The file store path of the run's detailed results page (participants' HTML, to
    serve only through ``web.detailed_results_response``)."""
    step.check_output_visible("scoring")
    if not step.detailed_results:
        raise NotFound("this run has no detailed results")
    return step.detailed_results


def log_tail(session: Session, step: Step) -> tuple[tuple[int, bool] | None, bool]:
    """What a live tail of the step's log reads: (id, ended) of its latest execution
    (None while it has not started), and whether more may come (its task is not over,
    a retry may follow)."""
    execution = log_execution(session, step)
    task_status = session.scalar(select(Task.status).where(Task.id == step.task_id))
    reading = (execution[0], execution[1] in FINAL_EXECUTION_VALUES) if execution else None
    return reading, task_status not in FINAL_TASK_VALUES


def output_files(files: FileStorage, step: Step) -> list[dict[str, Any]]:
    """The files the step wrote to /app/output, named as ``open_output`` takes them
    (without the ingestion's logs, served as logs, nor the empty prediction mark); refused when the phase hides them
    from this reader."""
    step.check_output_visible()
    prefix = step.output_prefix
    found = [(f["path"].removeprefix(prefix + "/"), f["size"]) for f in files.list(prefix)]
    return [{"path": path, "size": size} for path, size in found
            if not path.startswith(INGESTION_LOGS + "/") and path != EMPTY_MARK]


LOG_STREAMS = ("stdout", "stderr")


def ingestion_log(files: FileStorage, step: Step, stream: str) -> bytes:
    """What the ingestion program printed during a scoring step that ran it (ingestion
    only during scoring); empty while the step runs or when it ran no ingestion.
    Refused when the phase hides logs from this reader."""
    step.check_logs_visible()
    if stream not in LOG_STREAMS:
        raise InvalidInput(f"stream: {stream!r} is not stdout or stderr")
    if step.step != "scoring":
        raise InvalidInput("only a scoring step runs the ingestion program beside it")
    try:
        with files.open(f"{step.output_prefix}/{INGESTION_LOGS}/{stream}.txt") as stored:
            return stored.stream.read()
    except NotFound:
        return b""


# -- what the steps are doing ---------------------------------------------------------

QUEUED_TASKS = frozenset({TaskStatus.WAITING.value, TaskStatus.PENDING.value,
                          TaskStatus.ASSIGNED.value})


def step_state(task_status: str | None) -> str:
    """A step as a participant reads it: queued, running, succeeded, failed, cancelled
    or paused (``progress`` adds ``not run``)."""
    if task_status is None or task_status in QUEUED_TASKS:
        return "queued"
    if task_status == TaskStatus.ACCEPTED.value:
        return "running"
    return task_status


def progress(session: Session, submission_id: int) -> dict[str, Any]:
    """The steps of the submission's latest attempt with their state and, once one
    failed, its reason (timed out, exit code N, input_fetch_failed...), whether a
    scoring step runs the ingestion program beside it (``with_ingestion``). The
    submission's own status (``queued`` while no step started) is ``submission_dict``'s.
    Only the submission's own tasks are read (the caller checked that the reader may
    see it)."""
    submission = session.get(Submission, submission_id)
    if submission is None:
        raise NotFound(f"no submission {submission_id}")
    attempt = session.scalars(select(Attempt).where(
        Attempt.submission_id == submission_id).order_by(Attempt.number.desc()).limit(1)).first()
    runs = runs_of(session, [attempt.id]) if attempt is not None else []
    ids = [i for r in runs for i in (r.prediction_task_id, r.scoring_task_id) if i]
    tasks = {t.id: t for t in session.scalars(select(Task).where(Task.id.in_(ids)))} \
        if ids else {}
    together = set(session.scalars(select(BenchTask.id).where(
        BenchTask.id.in_([r.bench_task_id for r in runs]),
        BenchTask.ingestion_only_during_scoring.is_(True),
        BenchTask.ingestion_program.is_not(None)))) if runs else set()
    steps = []
    for run in runs:
        for name, task_id in (("prediction", run.prediction_task_id),
                              ("scoring", run.scoring_task_id)):
            if task_id is None:
                continue
            task = tasks.get(task_id)
            state = step_state(task.status if task is not None else None)
            latest = latest_execution(session, task_id)
            if latest is None and state in ("failed", "cancelled"):
                state = "not run"  # its prediction step failed or it was cancelled first
            steps.append({
                "run": run.position, "step": name, "task": task_id, "state": state,
                "reason": task.status_reason if task is not None and state == "failed"
                else None,
                "exit_code": latest.return_code if latest is not None else None,
                "with_ingestion": name == "scoring" and run.bench_task_id in together,
            })
    return {"steps": steps}


def open_output(files: FileStorage, step: Step, path: str) -> StoredFile:
    """One output file of the step (the caller closes it, or a response does)."""
    step.check_output_visible()
    return files.open(f"{step.output_prefix}/{path}")
