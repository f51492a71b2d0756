"""The leader keeps the planner's statistics of the queue's tables fresh (PostgreSQL):
a table that changed by more than its share since its last ANALYZE is analyzed, and
then counts as fresh."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from scitq_bench.server import statistics
from tests.conftest import fresh_database
from tests.support.scheduling import make_tasks
from tests.support.waiting import wait_until


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """PostgreSQL only: planner statistics are its own."""
    with fresh_database("postgresql", tmp_path, request) as url:
        yield url


def analyzed_count(db: Any, table: str) -> int:
    with db.read() as session:
        return int(session.execute(text(
            "SELECT analyze_count + autoanalyze_count FROM pg_stat_user_tables "
            "WHERE relname = :t AND schemaname = current_schema()"), {"t": table}).scalar_one())


def test_a_table_changed_past_its_share_is_analyzed_then_fresh(db: Any) -> None:
    make_tasks(db, *({"command": f"echo {i}"} for i in range(statistics.MIN_CHANGES + 50)))
    wait_until(lambda: "task" in statistics.stale_tables(db), timeout=15,
               what="the task table's changes counted")
    before = analyzed_count(db, "task")
    assert "task" in statistics.refresh(db)
    assert analyzed_count(db, "task") == before + 1
    wait_until(lambda: "task" not in statistics.stale_tables(db), timeout=15,
               what="the task table counted fresh")


def test_small_changes_leave_the_statistics_alone(db: Any) -> None:
    make_tasks(db, *({"command": f"echo {i}"} for i in range(statistics.MIN_CHANGES + 50)))
    wait_until(lambda: "task" in statistics.stale_tables(db), timeout=15,
               what="the task table's changes counted")
    statistics.refresh(db)
    make_tasks(db, {"command": "one more"})
    assert "task" not in statistics.stale_tables(db)


def test_the_keeper_runs_while_leading_only(db: Any) -> None:
    leading = threading.Event()
    leading.set()
    make_tasks(db, *({"command": f"echo {i}"} for i in range(statistics.MIN_CHANGES + 50)))
    before = analyzed_count(db, "task")
    keeper = statistics.StatisticsKeeper(db, leading.is_set, interval=0.2)
    keeper.start()
    try:
        wait_until(lambda: analyzed_count(db, "task") > before, timeout=15,
                   what="the keeper's ANALYZE")
        leading.clear()  # lost the lead: the loop ends
        assert keeper._thread is not None
        keeper._thread.join(5)
        assert not keeper._thread.is_alive()
    finally:
        keeper.stop()
