"""What the API views share: database, stores, notifier, settings, token cache."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import current_app

from scitq_bench.exceptions import Unauthorized
from scitq_bench.server import auth
from scitq_bench.server.db import Database
from scitq_bench.server.joint_claims import JointClaims
from scitq_bench.server.notify import Notifier
from scitq_bench.server.schemas import ExecutionEvent, Heartbeat
from scitq_bench.server.storage import FileStorage, LogStorage
from scitq_bench.server.turns import Turns
from scitq_bench.settings import ServerSettings

if TYPE_CHECKING:
    from scitq_bench.server.queue.scheduling import WorkerState

EXTENSION = "scitq_bench"
TOKEN_CACHE_SECONDS = 5.0
MAX_CACHED_TOKENS = 10_000
REVALIDATE_AT_ONCE = 500  # token hashes per revalidating query
MAX_REMEMBERED_WORKERS = 100_000  # workers whose batch a process remembers

# a claim's answer: its executions, and its worker as the claim read it (None: unknown)
ClaimAnswer = tuple[list[dict[str, Any]], "WorkerState | None"]
ReportCall = tuple[list[ExecutionEvent], int]  # a report's events, and how many to claim


@dataclass(frozen=True)
class _Cached:
    until: float  # monotonic time after which the token is checked again
    token_hash: str
    principal: auth.Principal


@dataclass(frozen=True)
class JointCalls:
    """The worker calls an API process runs in groups (``server.joint_claims``)."""

    claims: JointClaims[int, ClaimAnswer]
    reports: JointClaims[ReportCall, dict[str, Any]]  # reports that claim
    records: JointClaims[ReportCall, dict[str, Any]]  # reports that claim nothing
    beats: JointClaims[Heartbeat, dict[str, Any]]  # heartbeats


@dataclass
class ServerContext:
    settings: ServerSettings
    db: Database
    logs: LogStorage
    files: FileStorage
    notifier: Notifier
    turns: Turns  # the worker protocol's turns at the database
    _tokens: dict[str, _Cached] = field(default_factory=dict)
    _refused: dict[str, float] = field(default_factory=dict)  # header -> checked at
    _wanted: dict[str, str] = field(default_factory=dict)  # header -> hash, to check next
    _tokens_lock: threading.Lock = field(default_factory=threading.Lock)
    # one token query at a time per process: requests that miss the cache together
    # wait for it, and the one that runs it checks all their tokens at once
    _check_lock: threading.Lock = field(default_factory=threading.Lock)
    # worker id -> the batch its last claim here saw it bound to (None: free)
    _worker_batches: dict[int, int | None] = field(default_factory=dict)
    # the claims and reports, run together when they come together (``app.joint_calls``,
    # once the context is built: they take its turns)
    joint: JointCalls = field(init=False)

    def authenticate(self, header: str | None) -> auth.Principal:
        """Token lookups are cached for a few seconds: the hot worker paths would
        otherwise pay one query per request. A revoked token is refused here at most
        ``TOKEN_CACHE_SECONDS`` after its revocation (at once when this process revoked
        it). The lookup that checks a token again also checks every cached token due
        within the next half period, and every token other requests are waiting to have
        checked: a fleet of workers costs one query per period, not one per token, and
        a thousand requests missing the cache at once cost one query, not a thousand."""
        key = header or ""
        known = self._known(key, time.monotonic())
        if known is not None:
            return known
        token_hash = auth.bearer_hash(header)  # no bearer token: refused before any query
        with self._tokens_lock:
            self._wanted[key] = token_hash
        with self._check_lock:
            now = time.monotonic()
            known = self._known(key, now)  # checked meanwhile by another request
            if known is None:
                # ours too, whatever happened to the check it waited for (one that
                # failed, the database busy, took our token off the wanted list)
                self._check(now, {key: token_hash})
                known = self._known(key, now)
        if known is None:
            raise Unauthorized("invalid token")
        return known

    def _known(self, key: str, now: float) -> auth.Principal | None:
        """The cached principal of ``key``; raises if it was refused this period."""
        with self._tokens_lock:
            cached = self._tokens.get(key)
            refused = self._refused.get(key)
        if cached is not None and cached.until > now:
            return cached.principal
        if refused is not None and now - refused < TOKEN_CACHE_SECONDS:
            raise Unauthorized("invalid token")
        return None

    def _check(self, now: float, own: dict[str, str]) -> None:
        """One query for ``own`` token, those other requests asked for and the cached
        ones due soon."""
        with self._tokens_lock:
            checked = {**self._due(now + TOKEN_CACHE_SECONDS / 2), **self._wanted, **own}
            self._wanted.clear()
        with self.db.read() as session:
            found = auth.principals_for_hashes(session, checked.values())
        until = now + TOKEN_CACHE_SECONDS
        with self._tokens_lock:
            if len(self._tokens) >= MAX_CACHED_TOKENS:
                self._tokens.clear()
            if len(self._refused) >= MAX_CACHED_TOKENS:
                self._refused.clear()
            for key, hashed in checked.items():
                if hashed in found:
                    self._tokens[key] = _Cached(until, hashed, found[hashed])
                    self._refused.pop(key, None)
                else:  # revoked meanwhile, or never issued
                    self._tokens.pop(key, None)
                    self._refused[key] = now

    def _due(self, before: float) -> dict[str, str]:
        """Cached tokens to check again by ``before`` (key: their header), a batch;
        called with ``_tokens_lock`` held."""
        due = [(key, entry.token_hash) for key, entry in self._tokens.items()
               if entry.until <= before]
        return dict(due[:REVALIDATE_AT_ONCE])

    def forget_tokens(self, worker_id: int | None = None) -> None:
        """Drop cached tokens after a revocation in this process: those of one worker,
        or all of them."""
        with self._tokens_lock:
            if worker_id is None:
                self._tokens.clear()
            else:
                self._tokens = {key: entry for key, entry in self._tokens.items()
                                if entry.principal.worker_id != worker_id}

    def worker_batch(self, worker_id: int,
                     read: Callable[[Database, int], int | None]) -> int | None:
        """The batch a worker was bound to at its last claim in this process, else as
        ``read`` finds it now. It may be out of date: the claim that follows reads it
        again, in its own transaction, and the long poll corrects its key."""
        if worker_id in self._worker_batches:
            return self._worker_batches[worker_id]
        return read(self.db, worker_id)

    def remember_batch(self, worker_id: int, batch_id: int | None) -> None:
        if len(self._worker_batches) >= MAX_REMEMBERED_WORKERS:
            self._worker_batches.clear()
        self._worker_batches[worker_id] = batch_id


def server_context() -> ServerContext:
    return current_app.extensions[EXTENSION]
