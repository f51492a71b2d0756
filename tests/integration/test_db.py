"""The dialect-specific pieces of ``Database``, on both backends."""

from __future__ import annotations

from sqlalchemy import select

from scitq_bench.server.queue.models import Batch, Task


def test_insert_returning_ids_maps_each_row_to_its_id(db) -> None:
    count = 1207
    with db.write() as session:
        batch = Batch(name="ids")
        session.add(batch)
        session.flush()
        rows = [
            dict(batch_id=batch.id, command=f"cmd {i}", shell=False, inputs=[], resources=[],
                 retries_allowed=0, retries_used=0, losses=0, gpu=0, priority=0,
                 status="pending")
            for i in range(count)
        ]
        ids = db.insert_returning_ids(session, Task, rows)
    assert len(ids) == len(set(ids)) == count
    with db.read() as session:
        commands = dict(session.execute(select(Task.id, Task.command)).all())
    assert all(commands[task_id] == f"cmd {i}" for i, task_id in enumerate(ids))
