"""Alembic environment: the URL comes from the config built in ``migrate.py``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, func, pool, select

from scitq_bench.server.leader import MIGRATION_KEY, NAMESPACE
from scitq_bench.server.tables import metadata

config = context.config
target_metadata = metadata


def database_url() -> str:
    """The URL ``migrate.py`` put in the config (always set there)."""
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic: sqlalchemy.url is not set")
    return url


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True, compare_type=True)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":  # replicas starting together
                # migrate one after the other: the second finds the work done
                connection.execute(select(func.pg_advisory_xact_lock(NAMESPACE, MIGRATION_KEY)))
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
