"""Schema migrations with Alembic, driven from code (no alembic.ini to find)."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))  # no database read


def head_revisions() -> frozenset[str]:
    """The schema revisions this code migrates to (they ship with the code)."""
    return frozenset(_scripts().get_heads())


def is_known_revision(revision: str) -> bool:
    """True if this code has a migration of that revision (so it can migrate from it)."""
    return revision in {script.revision for script in _scripts().walk_revisions()}


def current_revisions(connection: Connection) -> frozenset[str]:
    """The revisions the database behind ``connection`` is at (empty: never migrated)."""
    return frozenset(MigrationContext.configure(connection).get_current_heads())
