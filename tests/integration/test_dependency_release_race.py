"""Two prerequisites of one task succeeding at the same moment, in two transactions:
the task is released (pending) once both committed, never left waiting."""

from __future__ import annotations

import threading

from sqlalchemy import update

from scitq_bench.server.queue.models import Requirement, Task
from scitq_bench.server.queue.tasks import get_or_create_batch, release_dependents
from scitq_bench.states import TaskStatus as T


def _succeed_and_release(session, task_id: int) -> list[int]:  # type: ignore[no-untyped-def]
    session.execute(update(Task).where(Task.id == task_id).values(status=T.SUCCEEDED.value))
    return release_dependents(session, task_id)


def test_a_task_whose_prerequisites_succeed_at_once_is_released(db) -> None:
    with db.write() as session:
        batch = get_or_create_batch(session, "race")
        session.flush()
        first, second, after = (Task(batch_id=batch.id, command="true", status=status)
                                for status in (T.RUNNING.value, T.RUNNING.value,
                                               T.WAITING.value))
        session.add_all([first, second, after])
        session.flush()
        session.add_all([Requirement(task_id=after.id, prerequisite_id=first.id),
                         Requirement(task_id=after.id, prerequisite_id=second.id)])
        ids = first.id, second.id, after.id
    released: list[list[int]] = []
    first_done, other_started = threading.Event(), threading.Event()

    def other() -> None:
        other_started.set()
        first_done.wait(10)
        with db.write() as other_session:
            released.append(_succeed_and_release(other_session, ids[1]))

    thread = threading.Thread(target=other)
    thread.start()
    other_started.wait(10)
    with db.write() as session:
        released.append(_succeed_and_release(session, ids[0]))
        first_done.set()  # the other transaction runs while this one is still open
        thread.join(0.5)
    thread.join(10)
    assert not thread.is_alive()
    with db.read() as session:
        assert session.get(Task, ids[2]).status == T.PENDING.value
    assert sorted(len(r) for r in released) == [0, 1]  # released once, by the later one
