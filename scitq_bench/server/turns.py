"""Turns at the database for the worker protocol, the calls that hand out work first.

When a thousand tasks end together, each of their workers sends a report that claims its
next task, then, once that task starts, a report of it running; heartbeats come on top.
Served in arrival order, the reports of running tasks and the heartbeats took their
share of the API's time in that burst while workers sat idle waiting for their next
task. Here an API process runs at most ``slots`` of these calls' transactions at once
(by default 8 of its 20 pooled connections: the rest stay free for admins' calls), and a
call that finds them all taken waits its turn: the calls that hand out work first, the
others yielding to them for up to ``bookkeeping_yield`` seconds (a deadline: a
heartbeat's turn comes at most that much later than in arrival order; the server gives a
sixth of the lease, so the leases it renews are never starved). A call with no turn
within ``timeout`` is answered 503 with ``Retry-After``, as one that finds the database
busy is.

The waits are on ``threading`` primitives: under gevent's monkey patching (the API
processes) they suspend the greenlet, not the process.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from scitq_bench.exceptions import Busy


class Counting(Protocol):
    """What counts the waiters (a Prometheus gauge)."""

    def inc(self) -> None: ...

    def dec(self) -> None: ...


class _Waiter:
    def __init__(self) -> None:
        # looked up now, not when this module was imported: gevent's patched Event
        # once the process is patched
        self.given = threading.Event()
        self.abandoned = False  # its wait timed out: a turn must not go to it


class Turns:
    """At most ``slots`` holders at once; when all are taken, the waiter whose
    deadline (arrival, plus ``bookkeeping_yield`` for a call that hands out no work)
    comes first goes next. ``waiting`` counts the waiters."""

    def __init__(self, slots: int, timeout: float, *, bookkeeping_yield: float = 5.0,
                 waiting: Counting | None = None) -> None:
        if slots < 1:
            raise ValueError(f"turns need at least one slot, not {slots}")
        self.slots = slots
        self.timeout = timeout
        self.bookkeeping_yield = bookkeeping_yield
        self._counting = waiting
        self._free = slots
        self._lock = threading.Lock()
        self._waiting: list[tuple[float, int, _Waiter]] = []
        self._arrivals = itertools.count()

    @contextmanager
    def take(self, *, hands_out_work: bool) -> Iterator[None]:
        """Hold a turn for the block. ``hands_out_work``: a claim, or a report that
        claims (its worker idles until answered); otherwise bookkeeping (a report that
        claims nothing, a heartbeat), which later work may pass."""
        self._acquire(0.0 if hands_out_work else self.bookkeeping_yield)
        try:
            yield
        finally:
            self._release()

    @property
    def waiting(self) -> int:
        """Calls waiting for a turn now (those that gave up not counted)."""
        with self._lock:
            return sum(1 for _, _, waiter in self._waiting if not waiter.abandoned)

    def _acquire(self, yield_for: float) -> None:
        with self._lock:
            if self._free > 0:  # none waits then: a turn that frees goes to a waiter
                self._free -= 1
                return
            waiter = _Waiter()
            deadline = time.monotonic() + yield_for
            heapq.heappush(self._waiting, (deadline, next(self._arrivals), waiter))
        if self._counting is not None:
            self._counting.inc()
        try:
            given = waiter.given.wait(self.timeout)
        finally:
            if self._counting is not None:
                self._counting.dec()
        if given:
            return
        with self._lock:
            if waiter.given.is_set():  # given as the wait ended: it is ours
                return
            waiter.abandoned = True  # left in the heap; skipped when its turn comes
        raise Busy(f"this server process is running {self.slots} worker calls and had "
                   f"no turn for this one within {self.timeout:g} s", retry_after=1.0)

    def _release(self) -> None:
        with self._lock:
            while self._waiting:
                _, _, waiter = heapq.heappop(self._waiting)
                if not waiter.abandoned:
                    waiter.given.set()  # the turn passes on: ``_free`` stays as it is
                    return
            self._free += 1
