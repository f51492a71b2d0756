"""What the report's shortcuts rely on in the state machine."""

from __future__ import annotations

from scitq_bench.server.queue.transitions import TASK_TRANSITIONS
from scitq_bench.states import TaskStatus as T


def test_an_assigned_task_may_go_wherever_an_accepted_one_may() -> None:
    """A report that brings a task past accepted skips that step (one statement less):
    the moves after it must all be open to an assigned task."""
    assert TASK_TRANSITIONS[T.ACCEPTED] <= TASK_TRANSITIONS[T.ASSIGNED] | {T.ACCEPTED}
