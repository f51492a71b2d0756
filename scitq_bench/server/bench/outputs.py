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
from scitq_bench.server.bench.models import Attempt, Phase
from scitq_bench.server.bench.runs import runs_of
from scitq_bench.server.queue.models import Task
from scitq_bench.server.queue.tasks import latest_execution
from scitq_bench.server.storage import FileStorage, StoredFile
from scitq_bench.states import FINAL_EXECUTION_VALUES, FINAL_TASK_VALUES

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
    """The files the step wrote to /app/output, named as ``open_output`` takes them;
    refused when the phase hides them from this reader."""
    step.check_output_visible()
    prefix = step.output_prefix
    return [{"path": f["path"].removeprefix(prefix + "/"), "size": f["size"]}
            for f in files.list(prefix)]


def open_output(files: FileStorage, step: Step, path: str) -> StoredFile:
    """One output file of the step (the caller closes it, or a response does)."""
    step.check_output_visible()
    return files.open(f"{step.output_prefix}/{path}")
