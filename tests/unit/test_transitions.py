"""The state machine tables: every allowed and every refused transition."""

from __future__ import annotations

import itertools

import pytest

from scitq_bench.exceptions import IllegalTransition
from scitq_bench.server.queue.transitions import (
    EXECUTION_TRANSITIONS,
    TASK_TRANSITIONS,
    WORKER_TRANSITIONS,
    check_task_transition,
    task_sources,
)
from scitq_bench.states import FINAL_EXECUTION_STATUSES
from scitq_bench.states import ExecutionStatus as E
from scitq_bench.states import TaskStatus as T

EXPECTED_TASK = {
    (T.WAITING, T.PENDING), (T.WAITING, T.FAILED), (T.WAITING, T.PAUSED),
    (T.WAITING, T.CANCELLED),
    (T.PENDING, T.ASSIGNED), (T.PENDING, T.WAITING), (T.PENDING, T.PAUSED),
    (T.PENDING, T.CANCELLED),
    (T.ASSIGNED, T.ACCEPTED), (T.ASSIGNED, T.RUNNING), (T.ASSIGNED, T.PENDING),
    (T.ASSIGNED, T.FAILED), (T.ASSIGNED, T.SUCCEEDED), (T.ASSIGNED, T.PAUSED),
    (T.ASSIGNED, T.CANCELLED),
    (T.ACCEPTED, T.RUNNING), (T.ACCEPTED, T.PENDING), (T.ACCEPTED, T.FAILED),
    (T.ACCEPTED, T.PAUSED), (T.ACCEPTED, T.CANCELLED),
    (T.RUNNING, T.SUCCEEDED), (T.RUNNING, T.FAILED), (T.RUNNING, T.PENDING),
    (T.RUNNING, T.PAUSED), (T.RUNNING, T.CANCELLED),
    (T.PAUSED, T.PENDING), (T.PAUSED, T.WAITING), (T.PAUSED, T.RUNNING),
    (T.PAUSED, T.CANCELLED),
    (T.SUCCEEDED, T.PENDING), (T.SUCCEEDED, T.WAITING),
    (T.FAILED, T.PENDING), (T.FAILED, T.WAITING),
    (T.CANCELLED, T.PENDING), (T.CANCELLED, T.WAITING),
}


@pytest.mark.parametrize("source,target", list(itertools.product(T, T)))
def test_task_transition_table(source: T, target: T) -> None:
    allowed = (source, target) in EXPECTED_TASK
    assert (target in TASK_TRANSITIONS[source]) is allowed
    if allowed:
        check_task_transition(source.value, target, 1)
    else:
        with pytest.raises(IllegalTransition) as raised:
            check_task_transition(source.value, target, 7)
        assert "task 7 is " + source.value in str(raised.value)


def test_every_status_has_a_row() -> None:
    assert set(TASK_TRANSITIONS) == set(T)
    assert set(EXECUTION_TRANSITIONS) == set(E)


@pytest.mark.parametrize("status", sorted(FINAL_EXECUTION_STATUSES))
def test_final_executions_never_move(status: E) -> None:
    assert EXECUTION_TRANSITIONS[status] == frozenset()


def test_running_execution_cannot_go_back() -> None:
    assert E.PENDING not in EXECUTION_TRANSITIONS[E.RUNNING]
    assert E.ACCEPTED not in EXECUTION_TRANSITIONS[E.RUNNING]
    assert E.SUCCEEDED not in EXECUTION_TRANSITIONS[E.PENDING]  # must run first


def test_sources_are_the_inverse_of_the_table() -> None:
    assert set(task_sources(T.ASSIGNED)) == {T.PENDING.value}
    assert set(task_sources(T.SUCCEEDED)) == {T.ASSIGNED.value, T.RUNNING.value}


def test_worker_statuses_all_present() -> None:
    from scitq_bench.states import WorkerStatus

    assert set(WORKER_TRANSITIONS) == set(WorkerStatus)
