"""The state machine of recruitment jobs: the only module that writes a job's status.

A job is queued pending, runs once the leader's runner takes it, and ends succeeded,
failed or cancelled; a failed job may be retried (pending again), and a running job
whose process stopped is failed or, for a destroy, queued again. Every move is the
guarded update of ``server/queue/transitions.py``: of two writers (a job's thread
ending it, a user cancelling it), one wins and the other learns it moved nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from scitq_bench.server.queue.transitions import Transitions, move_rows
from scitq_bench.server.recruit.models import Job
from scitq_bench.states import JobStatus as J

JOB_TRANSITIONS: Transitions[J] = {
    J.PENDING: frozenset({J.RUNNING, J.CANCELLED}),
    J.RUNNING: frozenset({J.SUCCEEDED, J.FAILED, J.CANCELLED, J.PENDING}),
    J.FAILED: frozenset({J.PENDING}),
    J.SUCCEEDED: frozenset(),
    J.CANCELLED: frozenset(),
}


def move_job(session: Session, job_id: int, target: J, *, only_from: Iterable[J] | None = None,
             values: Mapping[str, Any] | None = None) -> bool:
    """Move the job to ``target`` (with ``values``) if its status allows it (and is one
    of ``only_from``); False when it did not move: gone, or in another status."""
    return move_rows(session, Job, JOB_TRANSITIONS, target, [job_id], only_from=only_from,
                     values=values) == 1
