"""The database's part of a backup and of a restore: one class per dialect, so the
archive code never asks which database it is on.

A dump is consistent while the server keeps writing, and comes with the schema
revision and each table's row count *of that very copy*, which a restore checks it
loaded:

- SQLite: sqlite3's online backup API copies every page in one step, under one read
  transaction (in WAL mode the server's writers carry on meanwhile). A restore writes
  the file beside its target and renames it into place last.
- PostgreSQL: a REPEATABLE READ transaction exports its snapshot, the counts are read
  in it, and ``pg_dump --snapshot`` dumps that same state (custom format). A restore
  runs ``pg_restore`` into the empty target database in one transaction.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic.migration import MigrationContext
from sqlalchemy import Connection, Engine, MetaData, create_engine, func, inspect, select, table
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from scitq_bench.exceptions import InvalidInput, ScitqBenchError
from scitq_bench.server import pgtools

SQLITE_BUSY_SECONDS = 30.0  # how long the copy waits for a writer holding the file


@dataclass(frozen=True)
class Dump:
    """A database copied to a file, and what it holds."""

    path: Path
    revision: str
    tables: dict[str, int]
    # more for the manifest: on PostgreSQL the pg_dump and server versions
    details: dict[str, str] = field(default_factory=dict)


@contextmanager
def _engine(url: str) -> Iterator[Engine]:
    """An engine for one command's few statements: no pool, nothing left open after."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def snapshot_facts(connection: Connection) -> tuple[str | None, dict[str, int]]:
    """The Alembic revision and each table's row count, as ``connection`` sees them."""
    names = sorted(inspect(connection).get_table_names())
    counts = {name: connection.execute(select(func.count()).select_from(table(name)))
              .scalar_one() for name in names}
    return _revision(connection), counts


def describe(url: str) -> tuple[str | None, dict[str, int]]:
    """``snapshot_facts`` of the database at ``url``."""
    with _engine(url) as engine, engine.connect() as connection:
        return snapshot_facts(connection)


def revision(url: str) -> str | None:
    """The Alembic revision of the database at ``url``, without counting its rows."""
    with _engine(url) as engine, engine.connect() as connection:
        return _revision(connection)


def _revision_or_refuse(revision: str | None, where: str) -> str:
    if revision is None:
        raise ScitqBenchError(f"{where} holds no scitq-bench schema: nothing to back up "
                              "(see `scitq-bench server init`)")
    return revision


class DatabaseCopy(ABC):
    """Dumps one database for a backup, or loads a dump into it for a restore."""

    dialect: str
    member: str  # the database's file name inside the archive
    folder: Path | None = None  # where a restore writes the database, if a folder

    def __init__(self, url: str) -> None:
        self.url = url
        self.label = make_url(url).render_as_string(hide_password=True)

    @abstractmethod
    def dump(self, work_dir: Path) -> Dump:
        """Copy the database into a file under ``work_dir``."""

    @abstractmethod
    def in_the_way(self) -> str | None:
        """What keeps a restore from writing here (None: nothing, it is fresh)."""

    @abstractmethod
    def stage(self, work_dir: Path) -> Path:
        """Where a restore writes the archive's database file."""

    @abstractmethod
    def load(self, staged: Path, recorded: Mapping[str, Any]) -> str:
        """Make a database of the staged file (``recorded``: the manifest's
        ``database``); returns the URL it can be read and migrated at (on SQLite not
        yet the target's own: see ``commit``)."""

    @abstractmethod
    def commit(self) -> None:
        """Put the loaded database in place."""

    @abstractmethod
    def discard(self) -> None:
        """Undo what ``stage`` and ``load`` did."""


class SqliteCopy(DatabaseCopy):
    dialect = "sqlite"
    member = "scitq_bench.sqlite3"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        name = make_url(url).database
        if not name or name == ":memory:":
            raise InvalidInput(f"{url}: an in-memory database cannot be backed up or restored")
        self.path = Path(name).absolute()
        self.folder = self.path.parent
        self.staging: Path | None = None
        self.staged: Path | None = None

    def dump(self, work_dir: Path) -> Dump:
        if not self.path.is_file():
            raise ScitqBenchError(f"no SQLite database at {self.path}: nothing to back up")
        copy = work_dir / self.member
        source = sqlite3.connect(f"{self.path.as_uri()}?mode=rw", uri=True,
                                 timeout=SQLITE_BUSY_SECONDS)
        with closing(source), closing(sqlite3.connect(copy)) as target:
            source.backup(target)  # every page in one step: one consistent instant
        revision, tables = describe(f"sqlite:///{copy}")
        return Dump(copy, _revision_or_refuse(revision, str(self.path)), tables)

    def in_the_way(self) -> str | None:
        present = [path for path in (self.path, Path(f"{self.path}-wal"),
                                     Path(f"{self.path}-journal")) if path.exists()]
        return f"the SQLite database {present[0]} exists" if present else None

    def stage(self, work_dir: Path) -> Path:
        """Beside the target (its folder exists), on its file system: the rename into
        place is atomic."""
        self.staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.restore-",
                                             dir=self.path.parent))
        return self.staging / self.member

    def load(self, staged: Path, recorded: Mapping[str, Any]) -> str:
        self.staged = staged
        return f"sqlite:///{staged}"

    def commit(self) -> None:
        if self.staged is None:
            raise ScitqBenchError("the archive holds no database")
        if self.path.exists():  # made since the restore began: leave it be
            raise ScitqBenchError(f"the SQLite database {self.path} appeared during the "
                                  "restore")
        os.replace(self.staged, self.path)
        self.discard()

    def discard(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None


class PostgresCopy(DatabaseCopy):
    dialect = "postgresql"
    member = "scitq_bench.pgdump"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.loaded = False

    def dump(self, work_dir: Path) -> Dump:
        copy = work_dir / self.member
        with _engine(self.url) as engine, \
                engine.connect().execution_options(isolation_level="REPEATABLE READ") \
                as connection, connection.begin():
            snapshot = connection.execute(select(func.pg_export_snapshot())).scalar_one()
            found, tables = snapshot_facts(connection)
            revision = _revision_or_refuse(found, self.label)  # refused before pg_dump runs
            server = _server_version(connection)
            program = pgtools.find_program("pg_dump", server, "the PostgreSQL server")
            target = pgtools.libpq_target(self.url)
            # the snapshot lives as long as this transaction: pg_dump runs inside it
            pgtools.run_program(program, [
                "--format=custom", f"--file={copy}", f"--snapshot={snapshot}",
                f"--dbname={target.conninfo}"], target, "pg_dump")
        return Dump(copy, revision, tables, {"pg_dump": program.version, "server": server})

    def in_the_way(self) -> str | None:
        with _engine(self.url) as engine, engine.connect() as connection:
            inspector = inspect(connection)
            default = inspector.default_schema_name
            found = [name if schema == default else f"{schema}.{name}"
                     for schema in inspector.get_schema_names()
                     if schema != "information_schema"
                     for name in inspector.get_table_names(schema)]
        if not found:
            return None
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        return (f"the PostgreSQL database {self.label} holds tables "
                f"({', '.join(sorted(found)[:5])}{more})")

    def stage(self, work_dir: Path) -> Path:
        return work_dir / self.member

    def load(self, staged: Path, recorded: Mapping[str, Any]) -> str:
        made_by = str(recorded.get("pg_dump") or "0")
        program = pgtools.find_program("pg_restore", made_by, "the pg_dump that wrote the backup")
        target = pgtools.libpq_target(self.url)
        self.loaded = True
        pgtools.run_program(program, [
            "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
            f"--dbname={target.conninfo}", str(staged)], target, "pg_restore")
        return self.url

    def commit(self) -> None:
        """Nothing to move: ``pg_restore`` loaded the target itself."""

    def discard(self) -> None:
        """Drop the tables the restore made (the database held none before)."""
        if not self.loaded:
            return
        with _engine(self.url) as engine, engine.begin() as connection:
            tables = MetaData()
            tables.reflect(connection)
            tables.drop_all(connection)
        self.loaded = False


def _server_version(connection: Connection) -> str:
    info = connection.dialect.server_version_info or ()
    return ".".join(str(part) for part in info)


def for_url(url: str) -> DatabaseCopy:
    """The copier for ``url``'s dialect."""
    try:
        backend = make_url(url).get_backend_name()
    except Exception as exc:  # sqlalchemy's ArgumentError says little
        raise InvalidInput(f"invalid database URL {url!r}: {exc}") from None
    if backend == "sqlite":
        return SqliteCopy(url)
    if backend == "postgresql":
        return PostgresCopy(url)
    raise InvalidInput(f"cannot back up or restore a {backend} database")
