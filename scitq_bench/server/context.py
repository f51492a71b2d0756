"""What the API views share: database, stores, notifier, settings, token cache."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from flask import current_app

from scitq_bench.exceptions import Unauthorized
from scitq_bench.server import auth
from scitq_bench.server.db import Database
from scitq_bench.server.notify import Notifier
from scitq_bench.server.storage import FileStorage, LogStorage
from scitq_bench.settings import ServerSettings

EXTENSION = "scitq_bench"
TOKEN_CACHE_SECONDS = 5.0
MAX_CACHED_TOKENS = 10_000
REVALIDATE_AT_ONCE = 500  # token hashes per revalidating query


@dataclass(frozen=True)
class _Cached:
    until: float  # monotonic time after which the token is checked again
    token_hash: str
    principal: auth.Principal


@dataclass
class ServerContext:
    settings: ServerSettings
    db: Database
    logs: LogStorage
    files: FileStorage
    notifier: Notifier
    _tokens: dict[str, _Cached] = field(default_factory=dict)
    _tokens_lock: threading.Lock = field(default_factory=threading.Lock)

    def authenticate(self, header: str | None) -> auth.Principal:
        """Token lookups are cached for a few seconds: the hot worker paths would
        otherwise pay one query per request. A revoked token is refused here at most
        ``TOKEN_CACHE_SECONDS`` after its revocation (at once when this process revoked
        it). The lookup that checks a token again also checks every cached token due
        within the next half period, so the tokens of a fleet of workers are checked
        together, one query per period, rather than one query per token."""
        now = time.monotonic()
        with self._tokens_lock:
            cached = self._tokens.get(header or "")
        if cached and cached.until > now:
            return cached.principal
        token_hash = auth.bearer_hash(header)
        checked = {**self._due(now + TOKEN_CACHE_SECONDS / 2), header or "": token_hash}
        with self.db.read() as session:
            found = auth.principals_for_hashes(session, checked.values())
        until = now + TOKEN_CACHE_SECONDS
        with self._tokens_lock:
            if len(self._tokens) >= MAX_CACHED_TOKENS:
                self._tokens.clear()
            for key, hashed in checked.items():
                if hashed in found:
                    self._tokens[key] = _Cached(until, hashed, found[hashed])
                else:  # revoked meanwhile, or never issued
                    self._tokens.pop(key, None)
        if token_hash not in found:
            raise Unauthorized("invalid token")
        return found[token_hash]

    def _due(self, before: float) -> dict[str, str]:
        """Cached tokens to check again by ``before`` (key: their header), a batch."""
        with self._tokens_lock:
            due = [(key, entry.token_hash) for key, entry in self._tokens.items()
                   if entry.until <= before]
        return dict(due[:REVALIDATE_AT_ONCE])

    def forget_tokens(self) -> None:
        with self._tokens_lock:
            self._tokens.clear()


def server_context() -> ServerContext:
    return current_app.extensions[EXTENSION]
