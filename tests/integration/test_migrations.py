"""The migration chain must build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from scitq_bench.server.migrate import upgrade
from scitq_bench.server.tables import metadata


def test_migrations_match_models(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)  # idempotent: a second run changes nothing
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_the_claim_index_serves_claims_in_order_without_sorting(database_url: str) -> None:
    """Claims read pending tasks by priority (highest first), then oldest: the index must
    be in that order, or every claim sorts the whole pending part of a batch."""
    upgrade(database_url)
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                definition = connection.execute(text(
                    "SELECT sql FROM sqlite_master WHERE name = 'ix_task_claim'")).scalar_one()
                plan = " ".join(str(row[-1]) for row in connection.execute(text(
                    "EXPLAIN QUERY PLAN SELECT id FROM task WHERE status = 'pending' AND "
                    "batch_id = 1 ORDER BY priority DESC, id LIMIT 32")))
                assert "ix_task_claim" in plan and "B-TREE" not in plan, plan
            else:
                definition = connection.execute(text(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_task_claim'")).scalar_one()
        assert "priority DESC, id)" in definition, definition
    finally:
        engine.dispose()


def _upgrade_in_a_process(url: str) -> None:
    upgrade(url)


def test_replicas_starting_together_migrate_one_after_the_other(postgres_url: str) -> None:
    """Three processes migrate one fresh PostgreSQL database at once (replicas starting
    together): each succeeds; without the migration lock two fail on duplicate types."""
    import multiprocessing

    from tests.conftest import _drop_postgres_database, _fresh_postgres_database

    url, handle = _fresh_postgres_database(postgres_url)
    try:
        spawn = multiprocessing.get_context("spawn")
        processes = [spawn.Process(target=_upgrade_in_a_process, args=(url,)) for _ in range(3)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(120)
        assert [p.exitcode for p in processes] == [0, 0, 0]
        engine = create_engine(url)
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        engine.dispose()
        assert len(versions) == 1
    finally:
        _drop_postgres_database(handle)
