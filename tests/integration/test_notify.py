"""Wake-ups: per key within a process, bounded waiters, and across processes through
PostgreSQL's LISTEN/NOTIFY."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from scitq_bench.exceptions import Busy
from scitq_bench.server.notify import (
    ANY_BATCH,
    WORK,
    Notifier,
    PostgresNotifier,
    _payloads,
    build_notifier,
    claim_key,
    work_keys,
    worker_key,
)
from tests.conftest import _drop_postgres_database, _fresh_postgres_database
from tests.support.waiting import wait_until


def waiting(notifier: Notifier, key: str, timeout: float = 5.0) -> tuple[threading.Thread, dict]:
    """A thread waiting on ``key``; the dict says whether and when it woke."""
    seen = notifier.version(key)
    outcome: dict = {}

    def wait() -> None:
        outcome["notified"] = notifier.wait(key, seen, timeout)
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread, outcome


def wait_for_waiters(notifier: Notifier, count: int) -> None:
    wait_until(lambda: notifier.waiting >= count, timeout=5, interval=0.01,
               what=f"{count} waiters")


def test_a_wake_up_reaches_only_its_key() -> None:
    notifier = Notifier(poll_interval=0.5)
    work, work_outcome = waiting(notifier, WORK)
    other, other_outcome = waiting(notifier, worker_key(7))
    wait_for_waiters(notifier, 2)
    notifier.notify(WORK)
    work.join(2)
    assert work_outcome == {"notified": True, "at": work_outcome["at"]}
    other.join(2)
    assert other_outcome["notified"] is False  # woke on the poll interval, not notified


def test_new_work_wakes_free_claims_and_its_batch_only_and_work_wakes_all() -> None:
    """A thousand idle workers bound to other batches must not all look at the
    database when tasks enter one batch."""
    notifier = Notifier(poll_interval=1)
    free = waiting(notifier, claim_key(None))
    same = waiting(notifier, claim_key(7))
    other = waiting(notifier, claim_key(8))
    wait_for_waiters(notifier, 3)
    notifier.notify(*work_keys([7, 7, None]))
    for thread, _ in (free, same, other):
        thread.join(2)
    assert [free[1]["notified"], same[1]["notified"], other[1]["notified"]] == [
        True, True, False]
    assert work_keys([7, None]) == (ANY_BATCH, claim_key(7))
    # WORK reaches every claim key, even one whose version was read but never waited on
    seen = notifier.version(claim_key(9))
    notifier.notify(WORK)
    assert notifier.wait(claim_key(9), seen, 1) is True
    assert notifier.version(worker_key(1)) == 0  # not a claim key


def test_a_notify_before_the_wait_is_not_lost() -> None:
    notifier = Notifier(poll_interval=5)
    seen = notifier.version(WORK)
    notifier.notify(WORK)
    began = time.monotonic()
    assert notifier.wait(WORK, seen, 5) is True
    assert time.monotonic() - began < 0.1


def test_waiters_past_the_bound_are_refused_busy() -> None:
    notifier = Notifier(poll_interval=5, max_waiters=2)
    threads = [waiting(notifier, WORK)[0] for _ in range(2)]
    wait_for_waiters(notifier, 2)
    with pytest.raises(Busy, match="already holds 2 waiting long polls") as refused:
        notifier.wait(WORK, notifier.version(WORK), 1)
    assert refused.value.retry_after_header == "2"
    notifier.notify(WORK)
    for thread in threads:
        thread.join(2)
    assert notifier.waiting == 0
    assert notifier.wait(WORK, notifier.version(WORK), 0.01) is False  # room again


def test_payloads_stay_under_what_postgres_takes() -> None:
    keys = tuple(worker_key(i) for i in range(3000))
    payloads = list(_payloads(keys + keys[:10]))
    assert all(len(p) < 8000 for p in payloads)
    assert [k for p in payloads for k in p.split(",")] == list(keys)  # once each, in order


def test_sqlite_keeps_wake_ups_in_the_process(tmp_path) -> None:
    notifier = build_notifier(f"sqlite:///{tmp_path / 'x.db'}")
    assert type(notifier) is Notifier


@pytest.fixture
def pg_database(postgres_url: str) -> Iterator[str]:
    url, handle = _fresh_postgres_database(postgres_url)
    yield url
    _drop_postgres_database(handle)


def listening(url: str) -> PostgresNotifier:
    notifier = build_notifier(url, poll_interval=30)
    assert isinstance(notifier, PostgresNotifier)
    notifier.start()
    assert notifier.listening.wait(10), "the listener did not connect"
    return notifier


def test_postgres_carries_a_wake_up_to_another_process_within_100_ms(pg_database: str) -> None:
    """Two notifiers stand for two processes (each has its own connections)."""
    sender, receiver = listening(pg_database), listening(pg_database)
    try:
        delays = []
        for _ in range(5):
            thread, outcome = waiting(receiver, worker_key(3), timeout=5)
            wait_for_waiters(receiver, 1)
            sent = time.monotonic()
            sender.notify(worker_key(3))
            thread.join(5)
            assert outcome["notified"] is True
            delays.append(outcome["at"] - sent)
        assert max(delays) < 0.1, delays
    finally:
        sender.close()
        receiver.close()


def test_a_listener_that_lost_its_connection_wakes_everyone_when_back(pg_database: str) -> None:
    """Wake-ups published while it was away are lost: on reconnecting it wakes every
    waiter so they look at the database again."""
    receiver = listening(pg_database)
    try:
        thread, outcome = waiting(receiver, WORK, timeout=20)
        wait_for_waiters(receiver, 1)
        receiver.listening.clear()
        engine = sa.create_engine(pg_database)
        with engine.connect() as connection:  # what a restarted database does to it
            connection.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'scitq-bench notify' AND query LIKE 'LISTEN%' "
                "AND datname = current_database()"))
        engine.dispose()
        thread.join(10)
        assert outcome.get("notified") is True
        assert receiver.listening.is_set()
    finally:
        receiver.close()
