"""The one place that knows SQLite from PostgreSQL.

SQLite: WAL journal, foreign keys on, and every write transaction opened with
``BEGIN IMMEDIATE`` so writers queue on the lock instead of failing on upgrade; reads
use a second engine with plain deferred transactions so they never wait on writers.
PostgreSQL: one pooled engine; claims lock rows with ``FOR UPDATE SKIP LOCKED``.

Busy databases: waiting is bounded by ``busy_timeout`` seconds. SQLite writers of one
process take turns on an in-process lock first (a queue the OS wakes in turn, where
SQLite's own busy handler polls and can starve a writer for ever), then take the write
lock at the start of the transaction, before the caller's code runs, waiting at most
what is left of the bound for other processes. Whatever still finds the database busy
(the bound is spent, the pool is empty, PostgreSQL gave up a serialization or a
deadlock) leaves as :class:`~scitq_bench.exceptions.Busy`: the API answers 503 with
``Retry-After`` and the client tries again, instead of a 500.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Insert, Select, Table, create_engine, event, insert, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from scitq_bench.exceptions import Busy, InvalidInput
from scitq_bench.server import prepared

if TYPE_CHECKING:
    from typing_extensions import Unpack

# a select of any columns, returned as it came (locking changes no column)
SelectT = TypeVar("SelectT", bound="Select[Unpack[tuple[Any, ...]]]")

DEFAULT_BUSY_TIMEOUT = 10.0  # seconds a request may wait for the database
DEFAULT_POOL_SIZE = 20  # PostgreSQL connections per process

# SQLSTATEs PostgreSQL uses for "not now, try again": serialization_failure,
# deadlock_detected, too_many_connections, lock_not_available, cannot_connect_now
POSTGRES_BUSY_STATES = frozenset({"40001", "40P01", "53300", "55P03", "57P03"})
SQLITE_BUSY_TEXTS = ("database is locked", "database table is locked", "database is busy")


class Database:
    """Owns the engines and sessions; everything else asks it for a session."""

    def __init__(self, url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
                 pool_size: int = DEFAULT_POOL_SIZE, prepare: bool = True) -> None:
        """``busy_timeout``: seconds a transaction may wait for the database (for the
        write lock, or a pooled connection) before it fails with ``Busy``.
        ``pool_size``: PostgreSQL connections this process holds at most, whatever the
        number of requests waiting for one (a fixed pool: no connection churn).
        ``prepare``: PostgreSQL prepares the statements each connection repeats
        (``server.prepared``); off behind a transaction pooler."""
        if busy_timeout <= 0:
            raise InvalidInput(f"busy_timeout must be positive, got {busy_timeout!r}",
                               field="busy_timeout")
        try:
            parsed = make_url(url)
        except Exception as exc:  # sqlalchemy raises ArgumentError with a vague text
            raise InvalidInput(f"invalid database URL {url!r}: {exc}") from None
        self.url = url
        self.busy_timeout = busy_timeout
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        # SQLite: this process's writers take turns here before asking for the file lock
        self._writer_turn = threading.Lock()
        self._deadline = threading.local()  # when the current thread's wait must end
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.writer = _sqlite_engine(url, "BEGIN IMMEDIATE", busy_timeout, self._wait_left)
            self.reader = _sqlite_engine(url, "BEGIN", busy_timeout)
        else:
            # no ping at each checkout (a round trip per request): a connection the
            # database dropped (restarted, killed) fails its request, which is answered
            # 503 with Retry-After (``busy_error``), and SQLAlchemy then replaces every
            # connection of the pool that is older than the failure
            self.writer = create_engine(
                url, pool_size=pool_size, max_overflow=0, pool_pre_ping=False,
                pool_timeout=busy_timeout, future=True, connect_args=_connect_args(parsed),
            )
            if prepare:
                prepared.install(self.writer)
            self.reader = self.writer
        self._write_sessions = sessionmaker(self.writer, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.reader, expire_on_commit=False)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any error; ``Busy``
        if the database stays busy longer than ``busy_timeout``."""
        with self._turn():
            session = self._write_sessions()
            try:
                with _busy_as_domain_error(self.busy_timeout):
                    if self.is_sqlite:
                        session.connection()  # BEGIN IMMEDIATE now, before any work
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
            with _busy_as_domain_error(self.busy_timeout):
                yield session
        finally:
            session.rollback()
            session.close()

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """SQLite: wait (bounded) for this process's previous writers to finish; what
        is left of the bound is the wait allowed for the file lock that follows."""
        if not self.is_sqlite:
            yield
            return
        self._deadline.at = time.monotonic() + self.busy_timeout
        try:
            if not self._writer_turn.acquire(timeout=self.busy_timeout):
                raise _busy(self.busy_timeout, "other writers held it")
            try:
                yield
            finally:
                self._writer_turn.release()
        finally:
            self._deadline.at = None

    def _wait_left(self) -> float:
        """Seconds the current thread's write may still wait for SQLite's lock."""
        deadline = getattr(self._deadline, "at", None)
        if deadline is None:
            return self.busy_timeout
        return max(0.0, deadline - time.monotonic())

    def lock_rows(self, statement: SelectT, *of: Any) -> SelectT:
        """Make a claim query skip rows other transactions hold (PostgreSQL only).

        On SQLite the ``BEGIN IMMEDIATE`` write lock already serialises claimers.
        """
        if self.is_sqlite:
            return statement
        return statement.with_for_update(skip_locked=True, of=of or None)

    def lock_for_update(self, statement: SelectT, *of: Any) -> SelectT:
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
        that path runs one statement per row, so several rows take a plain executemany;
        write transactions hold the database lock (BEGIN IMMEDIATE), so the new rowids
        are consecutive and end at ``last_insert_rowid()``."""
        if not rows:
            return []
        if len(rows) == 1:  # the usual case (a claim's refill): one statement anywhere
            return [session.connection().execute(
                _insert_one(model.__table__), rows[0]).scalar_one()]
        if not self.is_sqlite:  # Core, not the ORM's bulk path: a fifth of the time
            table = model.__table__
            return list(session.execute(
                insert(table).returning(table.c.id, sort_by_parameter_order=True), rows
            ).scalars().all())
        session.execute(insert(model), rows)
        last = session.execute(text("SELECT last_insert_rowid()")).scalar_one()
        return list(range(last - len(rows) + 1, last + 1))

    def dispose(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


@functools.cache
def _insert_one(table: Table) -> Insert:
    """One row into ``table``, its id returned: built once per table, since building it
    and adapting its result's description to a new statement object cost about as much
    as running it (a Core statement: no flush is due, as with ``Session.execute``)."""
    return prepared.hot(insert(table).returning(table.c.id))


def error_reason(exc: BaseException) -> str:
    """One line saying why a database call failed: the driver's own words when there
    are any (SQLAlchemy wraps them in its statement and a link), else the error's kind."""
    text_ = str(getattr(exc, "orig", None) or exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__


def busy_error(exc: BaseException, waited: float | None = None) -> Busy | None:
    """``Busy`` if ``exc`` means "the database cannot serve this now, try again"
    (SQLite locked, PostgreSQL serialization failure, deadlock, too many connections,
    no pooled connection in time, a pooled connection the database dropped); None for
    any other error."""
    if isinstance(exc, Busy):
        return exc
    if isinstance(exc, sa_exc.TimeoutError):
        return _busy(waited, "no database connection was free")
    if not isinstance(exc, sa_exc.DBAPIError):
        return None
    if exc.connection_invalidated:  # the database dropped it: the pool reconnects
        return _busy(None, f"the connection to it was lost: {error_reason(exc)}")
    original = exc.orig
    state = getattr(original, "pgcode", None) or getattr(original, "sqlstate", None)
    text_ = str(original).lower()
    if state in POSTGRES_BUSY_STATES or "too many clients" in text_:
        return _busy(waited, error_reason(exc))
    if isinstance(exc, sa_exc.OperationalError) and any(t in text_ for t in SQLITE_BUSY_TEXTS):
        return _busy(waited, str(original))
    return None


def _busy(waited: float | None, cause: str) -> Busy:
    during = f" after waiting {waited:g} s" if waited else ""
    return Busy(f"the database is busy ({cause}){during}; try again shortly")


@contextmanager
def _busy_as_domain_error(waited: float) -> Iterator[None]:
    """Turn the database's "busy" errors raised inside into ``Busy``."""
    try:
        yield
    except (sa_exc.DBAPIError, sa_exc.TimeoutError) as exc:
        busy = busy_error(exc, waited)
        if busy is None:
            raise
        raise busy from exc


def _connect_args(url: URL) -> dict[str, Any]:
    """psycopg2 (the default driver): each transaction's BEGIN goes with its first
    statement (``server.lazybegin``), a round trip saved per transaction."""
    if url.get_driver_name() != "psycopg2":
        return {}
    from scitq_bench.server.lazybegin import LazyBeginConnection

    return {"connection_factory": LazyBeginConnection}


def _sqlite_engine(url: str, begin: str, busy_timeout: float,
                   wait_left: Callable[[], float] | None = None) -> Engine:
    """An engine whose transactions start with ``begin`` and wait for SQLite's lock
    ``busy_timeout`` seconds, or only what ``wait_left`` says is left of the caller's
    bound (writers, whose bound began before their turn on the in-process lock)."""
    connected_ms = int(busy_timeout * 1000)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": busy_timeout},
        pool_size=20,
        max_overflow=40,
        pool_timeout=busy_timeout,
        future=True,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        # Take transaction control away from pysqlite so we can choose BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
        record.info["busy_timeout_ms"] = connected_ms  # what "timeout" above set

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if wait_left is not None:
            # whole tenths of a second: a writer that got its turn at once keeps the
            # value of the last one, and the PRAGMA is a statement per change only
            wait_ms = round(wait_left() * 10) * 100
            if connection.info.get("busy_timeout_ms") != wait_ms:
                # a PRAGMA takes no bound parameter; the value is an int we computed
                connection.exec_driver_sql(f"PRAGMA busy_timeout={wait_ms}")
                connection.info["busy_timeout_ms"] = wait_ms
        connection.exec_driver_sql(begin)

    return engine
