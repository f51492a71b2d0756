"""What the API views share: database, stores, notifier, settings, token cache."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from flask import current_app

from scitq_bench.server import auth
from scitq_bench.server.db import Database
from scitq_bench.server.filestore import FileStore
from scitq_bench.server.logstore import LogStore
from scitq_bench.server.notify import Notifier
from scitq_bench.settings import ServerSettings

EXTENSION = "scitq_bench"
TOKEN_CACHE_SECONDS = 5.0


@dataclass
class ServerContext:
    settings: ServerSettings
    db: Database
    logs: LogStore
    files: FileStore
    notifier: Notifier
    _tokens: dict[str, tuple[float, auth.Principal]] = field(default_factory=dict)
    _tokens_lock: threading.Lock = field(default_factory=threading.Lock)

    def authenticate(self, header: str | None) -> auth.Principal:
        """Token lookups are cached for a few seconds: the hot worker paths would
        otherwise pay one query per request."""
        now = time.monotonic()
        with self._tokens_lock:
            cached = self._tokens.get(header or "")
        if cached and cached[0] > now:
            return cached[1]
        with self.db.read() as session:
            principal = auth.authenticate(session, header)
        with self._tokens_lock:
            if len(self._tokens) > 10_000:
                self._tokens.clear()
            self._tokens[header or ""] = (now + TOKEN_CACHE_SECONDS, principal)
        return principal

    def forget_tokens(self) -> None:
        with self._tokens_lock:
            self._tokens.clear()


def server_context() -> ServerContext:
    return current_app.extensions[EXTENSION]
