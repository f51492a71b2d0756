"""Whether the workers that are up can run a benchmark's steps, and why a submission
waits: said on the benchmark's page and in its API answer before a submission waits
in silence for a worker that is not there. The rules are the queue's
(``queue.waiting``): the steps' needs (an image unless the benchmark runs on the
workers' hosts, the task's GPUs) against what the workers reported."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scitq_bench.server.bench.models import Attempt, Benchmark, BenchTask, Phase, Run
from scitq_bench.server.queue.models import Batch, Task
from scitq_bench.server.queue.waiting import Needs, blocker, up_workers, why_waiting_many


def step_needs(benchmark: Benchmark, task: BenchTask,
               batches: frozenset[int] | None = None) -> Needs:
    """What a worker needs to run the steps of ``task`` (``runs._common``): a
    container engine unless the benchmark runs on the hosts, the task's GPUs."""
    image = None if benchmark.run_on_host else (task.image or benchmark.docker_image)
    return Needs(container=bool(image), gpu=task.gpu or 0, batches=batches)


def _phase_batches(session: Session, benchmark_id: int) -> frozenset[int] | None:
    """The queue batches of the benchmark's phases that exist yet; None when none
    does (a worker bound to a batch then counts as able)."""
    names = list(session.scalars(select(Phase.batch).where(Phase.benchmark_id == benchmark_id)))
    ids = frozenset(session.scalars(select(Batch.id).where(Batch.name.in_(names)))) \
        if names else frozenset()
    return ids or None


def warnings(session: Session, benchmark: Benchmark) -> list[dict[str, Any]]:
    """One warning per task of the benchmark whose steps no worker that is up can run:
    {task, name, reason} ("no worker with a container engine is up"). Empty when
    every task can run now."""
    tasks = list(session.scalars(select(BenchTask).where(
        BenchTask.benchmark_id == benchmark.id).order_by(BenchTask.index)))
    if not tasks:
        return []
    workers = up_workers(session)
    batches = _phase_batches(session, benchmark.id)
    found = []
    for task in tasks:
        reason = blocker(step_needs(benchmark, task, batches), workers)
        if reason is not None:
            found.append({"task": task.index, "name": task.name, "reason": reason})
    return found


def readiness(session: Session, benchmark: Benchmark) -> dict[str, Any]:
    """The benchmark API's ``readiness``: ``ready`` when every task's steps can be run
    by a worker that is up now, else the ``warnings`` saying why not."""
    found = warnings(session, benchmark)
    return {"ready": not found, "warnings": found}


def submission_waiting(session: Session, submission_id: int) -> str | None:
    """Why a submission's newest attempt is queued and not running: the reason of its
    first queued step no worker that is up can take ("queued: no worker with a
    container engine is up"); None when it is not waiting for a worker."""
    attempt_id = session.scalar(select(Attempt.id).where(
        Attempt.submission_id == submission_id).order_by(Attempt.number.desc()).limit(1))
    if attempt_id is None:
        return None
    runs = list(session.scalars(select(Run).where(Run.attempt_id == attempt_id)
                                .order_by(Run.position)))
    ids = [i for r in runs for i in (r.prediction_task_id, r.scoring_task_id) if i]
    if not ids:
        return None
    tasks = list(session.scalars(select(Task).where(Task.id.in_(ids))))
    reasons = why_waiting_many(session, tasks)
    for task_id in ids:
        if task_id in reasons:
            return f"queued: {reasons[task_id]}"
    return None
