"""The state machines of benchmark submissions, attempts and runs: the only module that
writes their statuses.

A run follows its queue tasks and ends once (finished with scores, failed or
cancelled); an attempt ends with its last run; a submission shows its newest attempt's
status, so it runs again on a re-run and, when a re-run is deleted, takes the status of
the attempt that is newest then. Every move is the guarded update of
``server/queue/transitions.py``: of two transactions ending the same run or attempt,
one wins and the other learns it moved nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from scitq_bench.server.bench.models import Attempt, Run, Submission
from scitq_bench.server.queue.transitions import Transitions, move_rows
from scitq_bench.states import AttemptStatus as A
from scitq_bench.states import RunStatus as R
from scitq_bench.states import SubmissionStatus as S

RUN_TRANSITIONS: Transitions[R] = {
    R.RUNNING: frozenset({R.FINISHED, R.FAILED, R.CANCELLED}),
    R.FINISHED: frozenset(),
    R.FAILED: frozenset(),
    R.CANCELLED: frozenset(),
}

ATTEMPT_TRANSITIONS: Transitions[A] = {
    A.RUNNING: frozenset({A.FINISHED, A.FAILED, A.CANCELLED}),
    A.FINISHED: frozenset(),
    A.FAILED: frozenset(),
    A.CANCELLED: frozenset(),
}

SUBMISSION_TRANSITIONS: Transitions[S] = {
    S.SUBMITTED: frozenset({S.RUNNING, S.CANCELLED}),  # cancelled: it has no attempt
    S.RUNNING: frozenset({S.FINISHED, S.FAILED, S.CANCELLED}),
    # a re-run; or a re-run deleted, which leaves the attempt before it newest
    S.FINISHED: frozenset({S.RUNNING, S.FAILED, S.CANCELLED}),
    S.FAILED: frozenset({S.RUNNING, S.FINISHED, S.CANCELLED}),
    S.CANCELLED: frozenset({S.RUNNING, S.FINISHED, S.FAILED}),
}


def move_run(session: Session, run_id: int, target: R,
             values: Mapping[str, Any] | None = None) -> bool:
    """End a running run (with ``values``); False when it had ended already."""
    return move_rows(session, Run, RUN_TRANSITIONS, target, [run_id], values=values) == 1


def move_attempt(session: Session, attempt_id: int, target: A,
                 values: Mapping[str, Any] | None = None) -> bool:
    """End a running attempt (with ``values``); False when it had ended already."""
    return move_rows(session, Attempt, ATTEMPT_TRANSITIONS, target, [attempt_id],
                     values=values) == 1


def move_submission(session: Session, submission_id: int, target: S) -> bool:
    """Move a submission if its status allows it; False when it did not move (already
    in ``target``, or a move the table refuses)."""
    return move_rows(session, Submission, SUBMISSION_TRANSITIONS, target,
                     [submission_id]) == 1
