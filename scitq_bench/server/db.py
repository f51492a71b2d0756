"""The one place that knows SQLite from PostgreSQL.

SQLite: WAL journal, foreign keys on, and every write transaction opened with
``BEGIN IMMEDIATE`` so writers queue on the lock instead of failing on upgrade; reads
use a second engine with plain deferred transactions so they never wait on writers.
PostgreSQL: one pooled engine; claims lock rows with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Select, create_engine, event, insert, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from scitq_bench.exceptions import InvalidInput

SQLITE_BUSY_TIMEOUT_MS = 30_000


class Database:
    """Owns the engines and sessions; everything else asks it for a session."""

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except Exception as exc:  # sqlalchemy raises ArgumentError with a vague text
            raise InvalidInput(f"invalid database URL {url!r}: {exc}") from None
        self.url = url
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.writer = _sqlite_engine(url, begin="BEGIN IMMEDIATE")
            self.reader = _sqlite_engine(url, begin="BEGIN")
        else:
            self.writer = create_engine(
                url, pool_size=10, max_overflow=30, pool_pre_ping=True, future=True
            )
            self.reader = self.writer
        self._write_sessions = sessionmaker(self.writer, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.reader, expire_on_commit=False)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any error."""
        session = self._write_sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def read(self) -> Iterator[Session]:
        session = self._read_sessions()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    def lock_rows(self, statement: Select[Any], *of: Any) -> Select[Any]:
        """Make a claim query skip rows other transactions hold (PostgreSQL only).

        On SQLite the ``BEGIN IMMEDIATE`` write lock already serialises claimers.
        """
        if self.is_sqlite:
            return statement
        return statement.with_for_update(skip_locked=True, of=of or None)

    def lock_for_update(self, statement: Select[Any], *of: Any) -> Select[Any]:
        """Lock the selected rows until commit (PostgreSQL); SQLite's write lock
        already excludes other writers."""
        if self.is_sqlite:
            return statement
        return statement.with_for_update(of=of or None)

    def insert_returning_ids(
        self, session: Session, model: Any, rows: list[dict[str, Any]]
    ) -> list[int]:
        """Insert ``rows`` (same keys each) and return their ids in order.

        PostgreSQL: SQLAlchemy's batched INSERT ... RETURNING keeps the order. SQLite:
        that path runs one statement per row, so we use a plain executemany instead;
        write transactions hold the database lock (BEGIN IMMEDIATE), so the new rowids
        are consecutive and end at ``last_insert_rowid()``."""
        if not rows:
            return []
        if not self.is_sqlite:
            return list(session.scalars(
                insert(model).returning(model.id, sort_by_parameter_order=True), rows
            ).all())
        session.execute(insert(model), rows)
        last = session.execute(text("SELECT last_insert_rowid()")).scalar_one()
        return list(range(last - len(rows) + 1, last + 1))

    def dispose(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


def _sqlite_engine(url: str, begin: str) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=20,
        max_overflow=40,
        future=True,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so we can choose BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine
