"""The background loop that expires leases; runs in the server process or alone
(``scitq-bench server scheduler``)."""

from __future__ import annotations

import logging
import threading

from scitq_bench.server import scheduling
from scitq_bench.server.bench import runs as _bench_runs  # noqa: F401 - runs follow tasks
from scitq_bench.server.db import Database
from scitq_bench.server.notify import WORK, Notifier

log = logging.getLogger(__name__)


class Reaper:
    def __init__(self, db: Database, lease_seconds: float, interval: float,
                 notifier: Notifier | None = None) -> None:
        self.db = db
        self.lease_seconds = lease_seconds
        self.interval = interval
        self.notifier = notifier
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> dict[str, int]:
        result = scheduling.reap(self.db, self.lease_seconds)
        if result["requeued"] and self.notifier is not None:
            self.notifier.notify(WORK)
        if any(result.values()):
            log.info("reaper: %s", result)
        return result

    def run_forever(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:  # keep reaping through transient database errors
                log.exception("reaper pass failed")

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="reaper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
