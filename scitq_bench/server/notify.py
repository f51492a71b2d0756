"""Wake-ups for long polls and background loops: "work may be available", "signals
for worker N", "a recruitment job waits".

A version counter per key avoids lost wake-ups: a waiter reads the version before
looking at the database and sleeps only if nothing changed since. Waiters of one key
share a condition of their own, so a wake-up for one worker does not stir the
thousands of others waiting.

Across processes and hosts the wake-ups travel through PostgreSQL's ``LISTEN/NOTIFY``
(:class:`PostgresNotifier`): ``notify`` publishes the keys on one channel, and every
process listening on it wakes its own waiters. A process that lost its listening
connection wakes every waiter once it is back (what it missed is unknown), and waiters
also wake on a short poll interval as a safety net. SQLite is the embedded
single-process default: wake-ups stay in the process, and other processes (a separate
background process) are seen within the poll interval.

A long poll costs a waiter here, not a thread; ``max_waiters`` bounds them per process:
one more is refused with :class:`~scitq_bench.exceptions.Busy` (503, ``Retry-After``).
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy.engine import make_url

from scitq_bench.exceptions import Busy

log = logging.getLogger(__name__)

# Claim waiters wait on the key of the work they may take: a worker bound to a batch on
# that batch's key, any other on ANY_BATCH. New tasks wake their batch's key and
# ANY_BATCH (``work_keys``); WORK wakes every claim waiter, for changes whose batches
# are not known (a lease reaped, a worker resumed).
WORK = "work:*"
ANY_BATCH = "work:any"
JOBS = "jobs"
CHANNEL = "scitq_bench"
EVERYTHING = "*"  # every waiter looks again
PAYLOAD_MAX = 7000  # bytes; PostgreSQL refuses a NOTIFY payload of 8000 or more
DEFAULT_MAX_WAITERS = 20_000
SQLITE_POLL, POSTGRES_POLL = 2.0, 15.0  # seconds between safety-net looks


def worker_key(worker_id: int) -> str:
    return f"worker:{worker_id}"


def claim_key(batch_id: int | None) -> str:
    """The key a claim waits on: its worker's batch, or ANY_BATCH for a free worker."""
    return ANY_BATCH if batch_id is None else f"work:batch:{batch_id}"


def work_keys(batch_ids: Iterable[int | None]) -> tuple[str, ...]:
    """The keys new work in ``batch_ids`` wakes: free workers and those batches'."""
    return (ANY_BATCH, *sorted({claim_key(b) for b in batch_ids if b is not None}))


class _Key:
    """One key's version and the condition its waiters sleep on."""

    __slots__ = ("version", "condition")

    def __init__(self, lock: threading.Lock) -> None:
        self.version = 0
        self.condition = threading.Condition(lock)


class Notifier:
    """In-process wake-ups; :class:`PostgresNotifier` adds the other processes."""

    def __init__(self, poll_interval: float = 2.0,
                 max_waiters: int = DEFAULT_MAX_WAITERS) -> None:
        self.poll_interval = poll_interval
        self.max_waiters = max_waiters
        self._lock = threading.Lock()
        # keys by namespace ("work", "worker", "jobs"): a wildcard names a namespace,
        # and waking every claim must not walk every worker's key
        self._spaces: dict[str, dict[str, _Key]] = {}
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Long polls waiting in this process now."""
        return self._waiting

    def _key(self, key: str) -> _Key:
        """The key's record, made on first use and kept (one per batch and per worker):
        a wildcard must reach a key whose version a waiter has read."""
        space = self._spaces.setdefault(key.partition(":")[0], {})
        found = space.get(key)
        if found is None:
            found = space[key] = _Key(self._lock)
        return found

    def version(self, key: str) -> int:
        with self._lock:
            return self._key(key).version

    def notify(self, *keys: str) -> None:
        """Wake the waiters of ``keys`` (in every process, where the notifier reaches
        them)."""
        self.wake(*keys)

    def wake(self, *keys: str) -> None:
        """Wake this process's waiters of ``keys`` (``EVERYTHING``: all of them)."""
        with self._lock:
            woken: dict[str, _Key] = {}
            for key in keys:
                woken.update(self._matching(key))
            for found in woken.values():
                found.version += 1
                found.condition.notify_all()

    def _matching(self, key: str) -> dict[str, _Key]:
        """The records ``key`` names: ``*`` every one, ``space:*`` a namespace's."""
        if key == EVERYTHING:
            return {k: v for space in self._spaces.values() for k, v in space.items()}
        if key.endswith(":*"):
            return self._spaces.get(key[:-2], {})
        return {key: self._key(key)}

    def wait(self, key: str, seen: int, timeout: float) -> bool:
        """Sleep until ``key`` moves past ``seen`` or the poll interval/timeout passes.
        True if notified; ``Busy`` when this process already holds ``max_waiters``."""
        deadline = time.monotonic() + min(timeout, self.poll_interval)
        with self._lock:
            if self._waiting >= self.max_waiters:
                raise Busy(f"this server process already holds {self.max_waiters} waiting "
                           "long polls; try again shortly", retry_after=2.0)
            found = self._key(key)
            self._waiting += 1
            try:
                while found.version == seen:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    found.condition.wait(remaining)
                return True
            finally:
                self._waiting -= 1

    def start(self) -> None:
        """Begin receiving other processes' wake-ups (nothing to do in-process)."""

    def close(self) -> None:
        """Stop receiving other processes' wake-ups."""


class PostgresNotifier(Notifier):
    """Wake-ups shared by every process and host on one PostgreSQL database.

    ``notify`` wakes local waiters at once and publishes the keys with ``pg_notify``
    on its own autocommit connection; a listener thread (a greenlet under gevent)
    holds a ``LISTEN`` connection and wakes local waiters for what others publish.
    Publishing is best effort: a failure is logged and waiters still wake on their
    poll interval."""

    def __init__(self, database_url: str, poll_interval: float = 2.0,
                 max_waiters: int = DEFAULT_MAX_WAITERS) -> None:
        super().__init__(poll_interval, max_waiters)
        self._dsn = _libpq_dsn(database_url)
        self._publisher: Any = None
        self._publish_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()  # set while the LISTEN connection is up

    def notify(self, *keys: str) -> None:
        self.wake(*keys)
        self.publish(*keys)

    def publish(self, *keys: str) -> None:
        for payload in _payloads(keys):
            try:
                with self._publish_lock:
                    if self._publisher is None or self._publisher.closed:
                        self._publisher = _connect(self._dsn)
                    with self._publisher.cursor() as cursor:
                        cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            except Exception as exc:  # noqa: BLE001 - waiters still poll
                log.warning("could not publish a wake-up (%s); other processes will "
                            "see it within %.1f s", str(exc).strip(), self.poll_interval)
                self._drop_publisher()

    def _drop_publisher(self) -> None:
        with self._publish_lock:
            publisher, self._publisher = self._publisher, None
        if publisher is not None:
            try:
                publisher.close()
            except Exception:  # noqa: BLE001 - it is gone either way
                pass

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._listen_forever,
                                            name="notify-listener", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._drop_publisher()

    def _listen_forever(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            try:
                self._listen()
                delay = 0.1
            except Exception as exc:  # noqa: BLE001 - reconnect and carry on
                self.listening.clear()
                log.warning("wake-up listener lost its connection (%s); reconnecting",
                            str(exc).strip())
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _listen(self) -> None:
        connection = _connect(self._dsn)
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"LISTEN {CHANNEL}")  # a constant identifier, not input
            self.listening.set()
            self.wake(EVERYTHING)  # what was published while nobody listened is lost
            while not self._stop.is_set():
                readable, _, _ = select.select([connection], [], [], 1.0)
                if not readable:
                    continue
                connection.poll()
                keys: set[str] = set()
                while connection.notifies:
                    keys.update(connection.notifies.pop(0).payload.split(","))
                if keys:
                    self.wake(*keys)
        finally:
            self.listening.clear()
            connection.close()


def build_notifier(database_url: str, *, poll_interval: float | None = None,
                   max_waiters: int = DEFAULT_MAX_WAITERS) -> Notifier:
    """The notifier for a database: shared through PostgreSQL, in-process on SQLite.
    Call ``start()`` to receive other processes' wake-ups, ``close()`` at the end.

    The safety-net poll: on SQLite every 2 s (the background process cannot wake the
    API process); on PostgreSQL every 15 s, for a wake-up whose publishing failed (a
    lost listening connection already wakes everyone): a thousand idle long polls
    looking at the database every 2 s would cost more than the work they wait for."""
    if make_url(database_url).get_backend_name() == "postgresql":
        return PostgresNotifier(database_url, poll_interval or POSTGRES_POLL, max_waiters)
    return Notifier(poll_interval or SQLITE_POLL, max_waiters)


def _payloads(keys: tuple[str, ...]) -> Iterator[str]:
    """Keys joined by commas into payloads PostgreSQL accepts."""
    batch: list[str] = []
    size = 0
    for key in dict.fromkeys(keys):
        if batch and size + len(key) + 1 > PAYLOAD_MAX:
            yield ",".join(batch)
            batch, size = [], 0
        batch.append(key)
        size += len(key) + 1
    if batch:
        yield ",".join(batch)


def _libpq_dsn(database_url: str) -> str:
    """The libpq connection string of a SQLAlchemy URL (driver name dropped)."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _connect(dsn: str) -> Any:
    import psycopg2

    connection = psycopg2.connect(dsn, application_name="scitq-bench notify")
    connection.autocommit = True
    return connection
