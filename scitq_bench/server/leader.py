"""Leadership: one process, among every server process and replica sharing the
database, runs the background loops (the lease reaper, recruitment).

PostgreSQL: a session-level advisory lock held on one dedicated connection (not from
the pool) for as long as the process leads. A process that dies loses its session and
the lock with it; a follower, trying every second, takes over within about a second.
A frozen process (SIGSTOP, a paused VM) keeps its session and its lock, so the leader
beats every second in the ``leader`` table (its host:pid, the backend holding the
lock); a follower that finds the beat older than ``stale_after`` seconds (a lease)
ends the holder's sessions (``pg_terminate_backend``) and takes the lock. Beats are
dated by the database's clock: the hosts' clocks may disagree. Loops verify the lock's
connection before each pass (``Leadership.verify``), so a leader that resumes learns it
was replaced before it acts, and steps down.

SQLite (one host): ``flock`` on ``<data_dir>/leader.lock``, which the kernel drops when
the process dies. A frozen leader there is not taken over: it keeps the lock until it
resumes or dies.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import (
    DateTime,
    Integer,
    String,
    and_,
    column,
    create_engine,
    extract,
    func,
    or_,
    select,
    table,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.pool import NullPool

from scitq_bench.server.db import error_reason
from scitq_bench.server.queue.models import Base

log = logging.getLogger(__name__)

# PostgreSQL advisory locks are (namespace, key) pairs of int4: ours share a namespace
NAMESPACE = 0x5C17B
LEADER_KEY = 1  # held by the leader's session
PLAN_KEY = 2  # held by a recruitment plan's transaction
MIGRATION_KEY = 3  # held by a schema migration's transaction
ROLE = "background"  # the leader table's row for the background loops
RETAKE = 2.0  # seconds to wait for a terminated holder's lock to go


class Leader(Base):
    """Who leads the background loops, and when it last said so (PostgreSQL)."""

    __tablename__ = "leader"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))  # host:pid
    backend_pid: Mapped[int | None] = mapped_column(Integer)  # the session holding the lock
    elected_at: Mapped[datetime] = mapped_column(DateTime)
    beat_at: Mapped[datetime] = mapped_column(DateTime)  # UTC, the database's clock


def process_name() -> str:
    """This process, for other processes and for people: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def application_name(holder: str) -> str:
    """What a process's PostgreSQL sessions are called (PostgreSQL keeps 63 bytes)."""
    return f"scitq-bench {holder}"[:63]


def named_url(url: str, holder: str) -> str:
    """``url`` whose PostgreSQL sessions carry ``holder``'s name: a follower taking over
    from a frozen leader ends all of them, and with them the locks and transactions the
    frozen process holds."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    named = parsed.update_query_dict({"application_name": application_name(holder)})
    return named.render_as_string(hide_password=False)


def exclusive_plan(session: Session) -> None:
    """Hold the recruitment plan's lock until the transaction ends, so two processes
    never plan at once, even for the moment a resumed leader takes to notice it was
    replaced (PostgreSQL; SQLite's writers take turns already)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(NAMESPACE, PLAN_KEY)))


class LeaderLock(Protocol):
    """The mutual exclusion behind a ``Leadership``, one per database kind."""

    holder: str

    def try_acquire(self) -> bool:
        """Take the lock if it is free."""

    def verify(self) -> bool:
        """Whether the lock is still held."""

    def beat(self) -> bool:
        """Say that the holder is alive; whether the lock is still held."""

    def take_over(self) -> str | None:
        """End a holder that stopped beating; who it was, or None when none was ended."""

    def release(self) -> None:
        """Give the lock up (and the connection holding it)."""

    def current_holder(self) -> str | None:
        """Who holds the lock, as far as is known."""

    def close(self) -> None:
        """Release, and free what the lock holds."""


_locks = table("pg_locks", column("pid"), column("locktype"), column("database"),
               column("classid"), column("objid"), column("objsubid"), column("granted"))
_activity = table("pg_stat_activity", column("pid"), column("datname"),
                  column("application_name"), column("state"))
_databases = table("pg_database", column("oid"), column("datname"))


def _utc_now() -> Any:
    """The database's clock, as the naive UTC every date column holds."""
    return func.timezone("UTC", func.clock_timestamp())


class PostgresLeaderLock:
    """A session-level advisory lock on a connection of its own, with a heartbeat row.

    The connection's keepalives and ``tcp_user_timeout`` bound how long a statement can
    hang on a dead network: the holder then fails its beat and steps down, about when a
    follower ends its session."""

    def __init__(self, url: str, holder: str, stale_after: float, *, name: str = ROLE,
                 key: int = LEADER_KEY) -> None:
        self.holder, self.stale_after, self.name, self.key = holder, stale_after, name, key
        bound = max(1.0, stale_after)
        self._engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT",
                                     connect_args={
                                         "application_name": application_name(holder),
                                         "connect_timeout": max(2, int(bound)),
                                         "keepalives": 1, "keepalives_idle": max(1, int(bound / 2)),
                                         "keepalives_interval": 1, "keepalives_count": 3,
                                         "tcp_user_timeout": int(bound * 1000)})
        self._connection: Connection | None = None
        self._backend: int | None = None
        self._unrecorded: dict[int, float] = {}  # a holder seen without its row: since

    def _connect(self) -> Connection:
        if self._connection is None:
            self._connection = self._engine.connect()
        return self._connection

    def try_acquire(self) -> bool:
        connection = self._connect()
        if not connection.scalar(select(func.pg_try_advisory_lock(NAMESPACE, self.key))):
            return False
        now = _utc_now()
        record = pg_insert(Leader).values(name=self.name, holder=self.holder,
                                          backend_pid=func.pg_backend_pid(),
                                          elected_at=now, beat_at=now)
        self._backend = connection.scalar(record.on_conflict_do_update(
            index_elements=[Leader.name],
            set_={"holder": record.excluded.holder, "backend_pid": record.excluded.backend_pid,
                  "elected_at": record.excluded.elected_at, "beat_at": record.excluded.beat_at})
            .returning(Leader.backend_pid))
        return True

    def verify(self) -> bool:
        if self._connection is None or self._backend is None:
            return False
        return self._connection.scalar(select(func.pg_backend_pid())) == self._backend

    def beat(self) -> bool:
        if self._connection is None:
            return False
        beaten = self._connection.execute(
            update(Leader).where(Leader.name == self.name,
                                 Leader.backend_pid == func.pg_backend_pid())
            .values(beat_at=_utc_now()))
        return beaten.rowcount == 1

    def _holder_backend(self, connection: Connection) -> int | None:
        """The session holding the lock now (pg_locks), if any."""
        here = select(_databases.c.oid).where(
            _databases.c.datname == func.current_database()).scalar_subquery()
        return connection.scalar(select(_locks.c.pid).where(
            _locks.c.locktype == "advisory", _locks.c.database == here,
            _locks.c.classid == NAMESPACE, _locks.c.objid == self.key,
            _locks.c.objsubid == 2, _locks.c.granted.is_(True)))

    def _stale(self, connection: Connection, backend: int) -> tuple[bool, str | None]:
        """(whether the holder stopped beating, its name when its row says it)."""
        row = connection.execute(select(
            Leader.holder, Leader.backend_pid,
            extract("epoch", _utc_now() - Leader.beat_at).label("age"))
            .where(Leader.name == self.name)).first()
        if row is not None and row.backend_pid == backend:
            self._unrecorded.clear()
            return float(row.age) > self.stale_after, row.holder
        # a holder that has not written its row yet: give it a lease to do so
        first = self._unrecorded.setdefault(backend, time.monotonic())
        return time.monotonic() - first > self.stale_after, None

    def take_over(self) -> str | None:
        connection = self._connect()
        backend = self._holder_backend(connection)
        if backend is None:
            return None
        stale, holder = self._stale(connection, backend)
        if not stale:
            return None
        mine = [_activity.c.pid == backend]
        if holder is not None:  # and the transactions it froze in, holding their locks
            mine.append(and_(_activity.c.application_name == application_name(holder),
                             _activity.c.state.like("idle in transaction%")))
        connection.execute(select(func.pg_terminate_backend(_activity.c.pid)).where(
            _activity.c.datname == func.current_database(), or_(*mine),
            _activity.c.pid != func.pg_backend_pid()))
        return holder or f"backend {backend}"

    def release(self) -> None:
        connection, self._connection, self._backend = self._connection, None, None
        if connection is None:
            return
        try:
            connection.close()  # the session ends, and its lock with it
        except Exception as exc:  # noqa: BLE001 - a connection already broken
            log.debug("closing the leader's connection: %s", exc)

    def current_holder(self) -> str | None:
        with self._engine.connect() as connection:
            return connection.scalar(select(Leader.holder).where(Leader.name == self.name))

    def close(self) -> None:
        self.release()
        self._engine.dispose()


class FileLeaderLock:
    """``flock`` on a file: one host (SQLite). The holder's name is written in it."""

    def __init__(self, path: Path, holder: str) -> None:
        self.path, self.holder = path, holder
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.holder}\n".encode())
        self._fd = fd
        return True

    def verify(self) -> bool:
        return self._fd is not None

    def beat(self) -> bool:
        return self.verify()

    def take_over(self) -> str | None:
        return None  # the kernel frees the lock of a dead process; a frozen one keeps it

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def current_holder(self) -> str | None:
        try:
            return self.path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def close(self) -> None:
        self.release()


def build_lock(database_url: str, data_dir: Path, stale_after: float,
               holder: str | None = None) -> LeaderLock:
    """The lock fitting the database: advisory on PostgreSQL, a file lock on SQLite."""
    holder = holder or process_name()
    if make_url(database_url).get_backend_name() == "postgresql":
        return PostgresLeaderLock(database_url, holder, stale_after)
    return FileLeaderLock(data_dir / "leader.lock", holder)


class Leadership:
    """Campaigns for the lock, holds it with a beat every ``interval`` seconds, and
    steps down the moment a check fails. Loops call ``verify()`` before each pass;
    ``ended`` is set while no term runs (from the moment one ends)."""

    def __init__(self, lock: LeaderLock, *, interval: float = 1.0,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self.lock, self.interval, self.on_change = lock, interval, on_change
        self.ended = threading.Event()
        self.ended.set()  # no term yet
        self._mutex = threading.Lock()  # one user of the lock's connection at a time
        self._confirmed = (0.0, 0.0)  # monotonic and wall time of the last good check

    @property
    def holder(self) -> str:
        return self.lock.holder

    @property
    def _leading(self) -> bool:
        return not self.ended.is_set()

    def is_leader(self) -> bool:
        """Leading, as confirmed within the last few beats on both clocks: a process
        that was frozen does not count itself leader until it checked again."""
        if not self._leading:
            return False
        monotonic, wall = self._confirmed
        fresh = 3 * self.interval
        return time.monotonic() - monotonic < fresh and time.time() - wall < fresh

    def try_lead(self) -> bool:
        """One attempt: the lock if it is free, else end a holder that stopped beating
        and take its lock."""
        with self._mutex:
            if self._leading:
                return True
            try:
                won = self.lock.try_acquire() or self._take_over()
            except Exception as exc:  # noqa: BLE001 - the database is away: try again later
                log.warning("leadership: could not campaign: %s", error_reason(exc))
                self.lock.release()
                return False
            if won:
                self._elected()
            return won

    def _take_over(self) -> bool:
        ended = self.lock.take_over()
        if ended is None:
            return False
        log.warning("leadership: %s stopped beating for over a lease: its sessions were "
                    "ended, taking over", ended)
        deadline = time.monotonic() + RETAKE
        while time.monotonic() < deadline:
            if self.lock.try_acquire():
                return True
            time.sleep(0.05)
        return False

    def _elected(self) -> None:
        self._confirmed = (time.monotonic(), time.time())
        self.ended.clear()
        log.info("leadership: %s leads the background loops", self.holder)
        if self.on_change is not None:
            self.on_change(True)

    def campaign(self, stop: threading.Event) -> bool:
        """Try every ``interval`` until elected (True) or ``stop`` is set (False)."""
        said = False
        while not stop.is_set():
            if self.try_lead():
                return True
            if not said:
                said = True
                log.info("leadership: %s stands by (%s leads)", self.holder,
                         self._current_holder())
            stop.wait(self.interval)
        return False

    def _current_holder(self) -> str:
        try:
            return self.lock.current_holder() or "another process"
        except Exception:  # noqa: BLE001 - only for the log
            return "another process"

    def verify(self) -> bool:
        """Still leading? Asked of the database itself, so a leader that resumes from a
        freeze learns here that it was replaced, and steps down."""
        return self._check(self.lock.verify, "its lock's connection is gone")

    def beat(self) -> bool:
        return self._check(self.lock.beat, "its beat failed")

    def _check(self, probe: Callable[[], bool], failure: str) -> bool:
        with self._mutex:
            if not self._leading:
                return False
            why = failure
            try:
                if probe():
                    self._confirmed = (time.monotonic(), time.time())
                    return True
            except Exception as exc:  # noqa: BLE001 - a dead connection: the lock is gone
                why = f"{failure}: {error_reason(exc)}"
            self._step_down(why)
            return False

    def hold(self, stop: threading.Event) -> None:
        """Beat every ``interval`` until leadership is lost or ``stop`` is set."""
        while not stop.is_set():
            if self.ended.wait(self.interval) or stop.is_set():
                return
            self.beat()

    def _step_down(self, why: str | None) -> None:
        self.ended.set()
        self.lock.release()
        if why is not None:
            log.warning("leadership: %s stepped down: %s", self.holder, why)
        else:
            log.info("leadership: %s released the lead", self.holder)
        if self.on_change is not None:
            self.on_change(False)

    def release(self) -> None:
        """Step down now: a follower takes the lock within its next try."""
        with self._mutex:
            if self._leading:
                self._step_down(None)
            else:
                self.lock.release()

    def close(self) -> None:
        self.release()
        self.lock.close()
