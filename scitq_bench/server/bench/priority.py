"""A benchmark's priority: its organizer sets it within the bounds the admin gives
(settings ``bench_priority_min`` / ``bench_priority_max``), and it becomes the priority
of the queue batches its steps run in, so claims serve one benchmark's submissions
before another's."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from scitq_bench.exceptions import InvalidInput
from scitq_bench.server.bench.models import Benchmark, Phase
from scitq_bench.server.queue.tasks import get_or_create_batch
from scitq_bench.server.schemas import Strict


def check_bounds(value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InvalidInput(f"priority: {value} is outside the bounds this server allows "
                           f"({low} to {high})", field="priority")
    return value


def set_priority(session: Session, benchmark: Benchmark, value: int | None, low: int,
                 high: int) -> dict[str, Any]:
    """Set (None: clear, back to 0) the benchmark's priority and that of its phases'
    batches, made now when no submission made them yet. Returns {priority, batches}."""
    if value is not None:
        check_bounds(value, low, high)
    benchmark.priority = value
    names = list(session.scalars(select(Phase.batch).where(
        Phase.benchmark_id == benchmark.id).order_by(Phase.index)))
    for name in names:
        get_or_create_batch(session, name).priority = value or 0
    session.flush()
    return {"priority": value, "batches": names, "bounds": [low, high]}



class PriorityChoice(Strict):
    priority: int | None = Field(
        description="the priority of the benchmark's batches, within the server's bounds "
        "(bench_priority_min to bench_priority_max); null: back to 0")
