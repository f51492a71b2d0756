"""The state machines of jobs, submissions, attempts and runs, and the guarded move
they share: every allowed and every refused transition, an illegal move that moves
nothing, objects of the session that read what was written, and two writers of which
one wins (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import itertools
import threading
from enum import Enum
from typing import Any

import pytest

from scitq_bench.server.bench.transitions import (
    ATTEMPT_TRANSITIONS,
    RUN_TRANSITIONS,
    SUBMISSION_TRANSITIONS,
)
from scitq_bench.server.db import Database
from scitq_bench.server.queue.transitions import Transitions, sources
from scitq_bench.server.recruit.models import Job
from scitq_bench.server.recruit.transitions import JOB_TRANSITIONS, move_job
from scitq_bench.states import AttemptStatus as A
from scitq_bench.states import JobStatus as J
from scitq_bench.states import RunStatus as R
from scitq_bench.states import SubmissionStatus as S

EXPECTED: list[tuple[Transitions[Any], set[tuple[Any, Any]]]] = [
    (JOB_TRANSITIONS, {
        (J.PENDING, J.RUNNING), (J.PENDING, J.CANCELLED),
        (J.RUNNING, J.SUCCEEDED), (J.RUNNING, J.FAILED), (J.RUNNING, J.CANCELLED),
        (J.RUNNING, J.PENDING),  # a destroy interrupted by its server's stop runs again
        (J.FAILED, J.PENDING),  # a retry
    }),
    (RUN_TRANSITIONS, {(R.RUNNING, R.FINISHED), (R.RUNNING, R.FAILED),
                       (R.RUNNING, R.CANCELLED)}),
    (ATTEMPT_TRANSITIONS, {(A.RUNNING, A.FINISHED), (A.RUNNING, A.FAILED),
                           (A.RUNNING, A.CANCELLED)}),
    (SUBMISSION_TRANSITIONS, {
        (S.SUBMITTED, S.RUNNING), (S.SUBMITTED, S.CANCELLED),
        *((S.RUNNING, end) for end in (S.FINISHED, S.FAILED, S.CANCELLED)),
        *((end, S.RUNNING) for end in (S.FINISHED, S.FAILED, S.CANCELLED)),
        *((a, b) for a, b in itertools.permutations((S.FINISHED, S.FAILED, S.CANCELLED), 2)),
    }),
]


def _vocabulary(table: Transitions[Any]) -> type[Enum]:
    return type(next(iter(table)))


@pytest.mark.parametrize(("table", "expected"), EXPECTED,
                         ids=["job", "run", "attempt", "submission"])
def test_transition_table(table: Transitions[Any], expected: set[tuple[Any, Any]]) -> None:
    vocabulary = _vocabulary(table)
    assert set(table) == set(vocabulary), "every status has a row"
    allowed = {(a, b) for a, targets in table.items() for b in targets}
    assert allowed == expected
    assert all(a != b for a, b in allowed), "no move to the same status"
    for target in vocabulary:
        assert set(sources(table, target)) == {a.value for a, b in expected if b == target}


def test_final_jobs_never_move() -> None:
    assert not JOB_TRANSITIONS[J.SUCCEEDED] and not JOB_TRANSITIONS[J.CANCELLED]


def test_sources_keep_only_from() -> None:
    assert sources(JOB_TRANSITIONS, J.PENDING) == ("failed", "running")
    assert sources(JOB_TRANSITIONS, J.PENDING, [J.FAILED]) == ("failed",)
    assert sources(JOB_TRANSITIONS, J.PENDING, [J.SUCCEEDED]) == ()


def _job(db: Database, status: J) -> int:
    with db.write() as session:
        job = Job(kind="deploy", status=status.value, arguments={})
        session.add(job)
        session.flush()
        return job.id


def test_an_illegal_move_moves_nothing(db: Database) -> None:
    job_id = _job(db, J.SUCCEEDED)
    with db.write() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert not move_job(session, job_id, J.RUNNING, values={"error": "no"})
        assert not move_job(session, job_id, J.PENDING)  # a retry of a job that succeeded
        assert (job.status, job.error) == ("succeeded", None)
    with db.read() as session:
        assert session.get(Job, job_id).status == "succeeded"  # type: ignore[union-attr]


def test_objects_of_the_session_read_the_move(db: Database) -> None:
    job_id = _job(db, J.FAILED)
    with db.write() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "failed"
        before = job.modified_at
        assert move_job(session, job_id, J.PENDING, only_from=[J.FAILED],
                        values={"attempts": Job.attempts + 1})
        assert (job.status, job.attempts) == ("pending", 1)
        assert job.modified_at >= before


def test_only_from_narrows_the_sources(db: Database) -> None:
    job_id = _job(db, J.RUNNING)
    with db.write() as session:
        assert not move_job(session, job_id, J.PENDING, only_from=[J.FAILED])
        assert session.get(Job, job_id).status == "running"  # type: ignore[union-attr]


def test_of_two_writers_one_wins(db: Database) -> None:
    """Two transactions retry the same failed job at once: the second one's guarded
    update waits for the first to commit, then finds the job pending and moves
    nothing (a read-check-write would let both pass their check)."""
    job_id = _job(db, J.FAILED)
    moved_first = threading.Event()
    results: dict[str, bool] = {}

    def retry(name: str, hold: threading.Event | None) -> None:
        with db.write() as session:
            results[name] = move_job(session, job_id, J.PENDING, only_from=[J.FAILED])
            if hold is not None:
                moved_first.set()
                hold.wait(0.5)  # the other writer meanwhile reaches its update

    release = threading.Event()
    first = threading.Thread(target=retry, args=("first", release))
    first.start()
    assert moved_first.wait(10)
    second = threading.Thread(target=retry, args=("second", None))
    second.start()
    release.wait(0.3)
    release.set()
    first.join(10)
    second.join(10)
    assert results == {"first": True, "second": False}
    with db.read() as session:
        assert session.get(Job, job_id).status == "pending"  # type: ignore[union-attr]
