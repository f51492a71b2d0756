"""The background loop that expires leases; runs in the server process, or in the
leader of the background processes (``server/background.py``), which asks before
each pass whether it still leads.

A lease expires when its worker stopped answering. But the server can stop listening
too: the process suspended (SIGSTOP, a paused VM), a long GC pause or swap storm, a
database that froze. Its workers' heartbeats then wait in the socket backlog and their
leases run out through no fault of theirs. So the reaper watches its own rhythm: a
pass that starts half a lease (and at least a second) later than due, on the monotonic
or the wall clock, whichever saw more (a resumed VM may only move the wall clock),
means the server was away, and every live lease gets a full lease from now before
anything is reaped. Only a worker that then stays silent for a whole lease loses its
executions."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from scitq_bench.server.db import Database
from scitq_bench.server.notify import WORK, Notifier
from scitq_bench.server.queue import scheduling
from scitq_bench.server.queue.models import utcnow

log = logging.getLogger(__name__)

# A pass may start this late before it counts as a stall: at least a second, and half
# a lease. Workers heartbeat at least every third of a lease, so a live lease always
# has two thirds of one left; a stall under half a lease expires none of them.
MIN_STALL = 1.0


@dataclass(frozen=True)
class Instant:
    """One reading of both clocks."""

    wall: datetime
    monotonic: float


def read_clocks() -> Instant:
    return Instant(wall=utcnow(), monotonic=time.monotonic())


class Reaper:
    def __init__(self, db: Database, lease_seconds: float, interval: float,
                 notifier: Notifier | None = None,
                 clock: Callable[[], Instant] = read_clocks,
                 leading: Callable[[], bool] | None = None) -> None:
        """``leading``: asked before each pass of ``run_forever``, which ends once it
        says no (this process lost its lead)."""
        self.db = db
        self.leading = leading
        self.lease_seconds = lease_seconds
        self.interval = interval
        self.notifier = notifier
        self.clock = clock
        self._last_pass: Instant | None = None
        self._quiet_until: datetime | None = None  # no silent-worker sweep before this
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def stall_seconds(self, now: Instant) -> float:
        """How much later than due this pass starts (0 when on time or the first)."""
        if self._last_pass is None:
            return 0.0
        elapsed = max(now.monotonic - self._last_pass.monotonic,
                      (now.wall - self._last_pass.wall).total_seconds())
        late = elapsed - self.interval
        return late if late > max(MIN_STALL, self.lease_seconds / 2) else 0.0

    def grant_grace(self, now: Instant | None = None) -> int:
        """Every live execution gets a full lease from ``now`` and no worker is called
        silent for one lease: at server start, and after the server's own stall."""
        now = now or self.clock()
        extended = scheduling.extend_leases(self.db, self.lease_seconds, now=now.wall)
        self._quiet_until = now.wall + timedelta(seconds=self.lease_seconds)
        return extended

    def run_once(self) -> dict[str, int]:
        now = self.clock()  # every decision of this pass is taken at this instant
        stall = self.stall_seconds(now)
        if stall:
            extended = self.grant_grace(now)
            log.warning("reaper: the server was unresponsive for %.1fs; %d live lease(s) "
                        "extended to a full lease before reaping", stall, extended)
        self._last_pass = now  # only once the grace is in place: a failed one is retried
        quiet = self._quiet_until is not None and now.wall < self._quiet_until
        result = scheduling.reap(self.db, self.lease_seconds, now=now.wall,
                                 sweep_silent=not quiet)
        if result["requeued"] and self.notifier is not None:
            self.notifier.notify(WORK)
        if any(result.values()):
            log.info("reaper: %s", result)
        return result

    def run_forever(self) -> None:
        while not self._stop.wait(self.interval):
            if self.leading is not None and not self.leading():
                return
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
