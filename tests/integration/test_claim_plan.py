"""The claim's plan on PostgreSQL reads a few rows of the claim index and looks the
picked tasks up by id, whether the planner has no statistics (a database never
analyzed), statistics that lag behind the queue (a batch of thousands of tasks created
after the last ANALYZE: they say that no task is pending) or fresh ones (they say that
most tasks are, and a scan of the table looks as cheap as the index to find one)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text, update

from scitq_bench.server.db import Database
from scitq_bench.server.queue.models import Task
from scitq_bench.server.setup import init_server
from scitq_bench.settings import ServerSettings
from tests.conftest import fresh_database
from tests.support.scheduling import claim, make_tasks, make_worker

PENDING = 3000


@pytest.fixture
def db(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Database]:
    with fresh_database("postgresql", tmp_path, request) as url:
        init_server(ServerSettings(data_dir=tmp_path / "data", database_url=url))
        database = Database(url)
        try:
            yield database
        finally:
            database.dispose()


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


@pytest.mark.parametrize("statistics", ["none", "lagging", "fresh"])
def test_a_claim_reads_a_few_rows(db: Database, statistics: str) -> None:
    old = make_tasks(db, *[{"command": "true", "batch": "old"}] * 500)
    with db.write() as session:  # a finished batch, then the statistics are taken
        session.execute(update(Task).where(Task.id.in_(old)).values(status="succeeded"))
        if statistics != "none":  # none: a database never analyzed
            session.execute(text("ANALYZE"))
    make_tasks(db, *[{"command": "true", "batch": "new"}] * PENDING)
    if statistics == "fresh":
        with db.write() as session:
            session.execute(text("ANALYZE"))
    worker = make_worker(db, concurrency=4)
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith("WITH picked"):
            seen.append((statement, parameters))

    event.listen(db.writer, "before_cursor_execute", record)
    try:
        assert len(claim(db, worker, 1)) == 1
    finally:
        event.remove(db.writer, "before_cursor_execute", record)
    statement, parameters = seen[-1]
    with db.writer.connect() as connection:  # the claim once more, measured, undone
        cursor = connection.connection.dbapi_connection.cursor()
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
        (plan,) = cursor.fetchone()[0]
        connection.rollback()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    # rows each node read: those it passed on and those its filter dropped, every loop
    read = [(n["Node Type"], n.get("Index Name"),
             (n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * n["Actual Loops"])
            for n in plan_nodes(plan["Plan"])]
    assert max(rows for *_node, rows in read) < 50, read  # not the 3,500 tasks
    # the picked tasks are looked up by id, not along the claim index's pending entries
    lookups = [n.get("Index Name") for n in plan_nodes(plan["Plan"])
               if "picked.id" in n.get("Index Cond", "")]
    assert lookups == ["task_pkey"], lookups
