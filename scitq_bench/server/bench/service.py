"""Deleting a benchmark: its rows, its submissions' queue tasks, and (by the caller,
after the commit) its files."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from scitq_bench.server import tasks as queue
from scitq_bench.server.bench.models import (
    Attempt,
    Benchmark,
    BenchTask,
    Phase,
    Run,
    Submission,
)


def delete_benchmark(session: Session, benchmark: Benchmark) -> list[str]:
    """Delete the benchmark and every queue task of its submissions; return the file
    store paths to remove once the transaction committed."""
    task_ids = [i for row in session.execute(
        select(Run.prediction_task_id, Run.scoring_task_id).join(Attempt)
        .join(Submission).where(Submission.benchmark_id == benchmark.id)).all()
        for i in row if i]
    for task_id in reversed(task_ids):  # scoring before prediction: nothing re-queues
        queue.delete_task(session, task_id)
    stored = [p for row in session.execute(select(
        BenchTask.scoring_program, BenchTask.ingestion_program, BenchTask.input_data,
        BenchTask.reference_data).where(BenchTask.benchmark_id == benchmark.id)).all()
        for p in row if p]
    stored += [p for row in session.execute(select(Phase.starting_kit, Phase.public_data)
                                            .where(Phase.benchmark_id == benchmark.id)).all()
               for p in row if p]
    stored += [p for p in session.scalars(select(Submission.file).where(
        Submission.benchmark_id == benchmark.id)) if p]
    session.delete(benchmark)
    session.flush()
    return stored
