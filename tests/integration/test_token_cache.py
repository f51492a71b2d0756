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
