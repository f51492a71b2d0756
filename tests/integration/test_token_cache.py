"""The token cache of the API: tokens checked again together, revocation still bounded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import delete, event

from scitq_bench.exceptions import Unauthorized
from scitq_bench.server import auth, context
from scitq_bench.server.queue.models import ApiToken
from tests.support.waiting import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(context.time, "monotonic", fake)
    return fake


@contextmanager
def lookups(ctx: Any) -> Iterator[list[str]]:
    """Token queries sent meanwhile."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "api_token" in statement:
            seen.append(statement)

    event.listen(ctx.db.reader, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(ctx.db.reader, "before_cursor_execute", record)


def tokens(ctx: Any, count: int) -> list[str]:
    with ctx.db.write() as session:
        return [auth.issue_token(session, auth.ENROLL, name=f"t{i}") for i in range(count)]


def test_tokens_due_together_are_checked_in_one_query(app: Any, clock: Clock) -> None:
    ctx = app.extensions[context.EXTENSION]
    headers = [f"Bearer {t}" for t in tokens(ctx, 5)]
    for i, header in enumerate(headers):  # cached at different times
        clock.now += 0.3 * i
        ctx.authenticate(header)
    clock.now += context.TOKEN_CACHE_SECONDS
    with lookups(ctx) as sent:
        for header in headers:
            assert ctx.authenticate(header).role == auth.ENROLL
    assert len(sent) == 1


def test_a_revoked_token_is_refused_within_the_cache_period(app: Any, clock: Clock) -> None:
    ctx = app.extensions[context.EXTENSION]
    kept, revoked = (f"Bearer {t}" for t in tokens(ctx, 2))
    ctx.authenticate(kept)
    ctx.authenticate(revoked)
    with ctx.db.write() as session:  # revoked by another process: this one is not told
        session.execute(delete(ApiToken).where(
            ApiToken.token_hash == auth.bearer_hash(revoked)))
    ctx.authenticate(revoked)  # still cached
    clock.now += context.TOKEN_CACHE_SECONDS / 2 + 0.1
    ctx.authenticate(kept)  # cached: no check of the others either
    clock.now += context.TOKEN_CACHE_SECONDS / 2
    with pytest.raises(Unauthorized, match="invalid token"):
        ctx.authenticate(revoked)
    assert ctx.authenticate(kept).role == auth.ENROLL


def test_headers_without_a_bearer_token_are_refused_before_any_query(app: Any) -> None:
    ctx = app.extensions[context.EXTENSION]
    with lookups(ctx) as sent, pytest.raises(Unauthorized, match="missing bearer token"):
        ctx.authenticate("Basic abc")
    with pytest.raises(Unauthorized, match="invalid token"):
        ctx.authenticate("Bearer nope")
    assert sent == []


def test_requests_missing_the_cache_together_share_one_query(app: Any) -> None:
    """A fleet's requests arriving while a token query runs wait for it, and the next
    query checks all their tokens at once: two queries for twenty new tokens, not
    twenty (the first query is slowed down so the others pile up behind it)."""
    import threading

    ctx = app.extensions[context.EXTENSION]
    headers = [f"Bearer {t}" for t in tokens(ctx, 20)]
    first_query_runs = threading.Event()

    def slow_first(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "api_token" in statement and not first_query_runs.is_set():
            first_query_runs.set()
            threading.Event().wait(0.3)

    event.listen(ctx.db.reader, "before_cursor_execute", slow_first)
    roles: list[str] = []
    try:
        with lookups(ctx) as sent:
            first = threading.Thread(target=lambda: roles.append(ctx.authenticate(headers[0]).role))
            first.start()
            assert first_query_runs.wait(5)
            others = [threading.Thread(target=lambda h=h: roles.append(ctx.authenticate(h).role))
                      for h in headers[1:]]
            for thread in others:
                thread.start()
            for thread in [first, *others]:
                thread.join(10)
    finally:
        event.remove(ctx.db.reader, "before_cursor_execute", slow_first)
    assert roles == [auth.ENROLL] * 20
    assert len(sent) == 2


def test_an_unknown_token_is_refused_from_the_cache_within_the_period(app: Any,
                                                                     clock: Clock) -> None:
    ctx = app.extensions[context.EXTENSION]
    with lookups(ctx) as sent:
        for _ in range(3):
            with pytest.raises(Unauthorized, match="invalid token"):
                ctx.authenticate("Bearer forged")
        assert len(sent) == 1
        clock.now += context.TOKEN_CACHE_SECONDS
        with pytest.raises(Unauthorized, match="invalid token"):
            ctx.authenticate("Bearer forged")
        assert len(sent) == 2


def test_forgetting_one_workers_tokens_keeps_the_others_cached(app: Any, clock: Clock) -> None:
    """A worker registering again revokes its old tokens: only those leave the cache."""
    ctx = app.extensions[context.EXTENSION]
    with ctx.db.write() as session:
        from scitq_bench.server.queue.models import Worker

        workers = [Worker(name=f"w{i}") for i in range(2)]
        session.add_all(workers)
        session.flush()
        ids = [w.id for w in workers]
        headers = [f"Bearer {auth.issue_token(session, auth.WORKER, worker_id=i, name=f'w{i}')}"
                   for i in ids]
    for header in headers:
        ctx.authenticate(header)
    ctx.forget_tokens(ids[0])
    with lookups(ctx) as sent:
        assert ctx.authenticate(headers[1]).worker_id == ids[1]
        assert sent == []
        assert ctx.authenticate(headers[0]).worker_id == ids[0]
        assert len(sent) == 1


def test_a_failed_check_does_not_refuse_the_tokens_that_waited_for_it(
        app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database busy during the check that others wait for: its caller gets the
    error (a 503), and the waiters' tokens, taken off the wanted list by it, are
    checked again by the next query, never refused as invalid."""
    import threading

    from scitq_bench.exceptions import Busy

    ctx = app.extensions[context.EXTENSION]
    headers = [f"Bearer {t}" for t in tokens(ctx, 10)]
    real = auth.principals_for_hashes
    calls: list[int] = []

    def busy_first(session: Any, hashes: Any) -> Any:
        calls.append(len(list(hashes)))
        if len(calls) == 1:
            raise Busy("the database is busy; try again shortly")
        return real(session, hashes)

    monkeypatch.setattr(auth, "principals_for_hashes", busy_first)
    outcomes: list[str] = []

    def authenticate(header: str) -> None:
        try:
            outcomes.append(ctx.authenticate(header).role)
        except Exception as exc:  # noqa: BLE001 - the outcome is what is asserted
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=authenticate, args=(h,)) for h in headers]
    with ctx._check_lock:  # every request asks, then queues for the one check
        for thread in threads:
            thread.start()
        wait_until(lambda: len(ctx._wanted) == len(headers), what="all ten waiting")
    for thread in threads:
        thread.join(10)
    assert calls[0] == 10  # the failed check had taken every waiting token
    assert sorted(outcomes) == sorted(["Busy"] + [auth.ENROLL] * 9)
