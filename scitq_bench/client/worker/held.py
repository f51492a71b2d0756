"""What the worker holds: an execution from claim until the server took its final
event, and the gate that lets at most ``concurrency`` of them run at once."""

from __future__ import annotations

import bisect
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scitq_bench.client.worker.executor import Supervised
from scitq_bench.client.worker.gpus import Gpu, GpuPool
from scitq_bench.client.worker.logship import ExecutionLogs
from scitq_bench.states import ExecutionStatus

log = logging.getLogger("scitq_bench.worker")

# why an execution is abandoned; the first reason sticks, except that a drop wins
CANCELLED = ExecutionStatus.CANCELLED.value  # a stop or kill signal (reported as such)
STOPPING = "stopping"  # the worker itself is stopping
DROP = "drop"  # the server no longer knows it: discard silently


@dataclass(eq=False)
class Held:
    payload: dict[str, Any]
    directory: Path
    place: int = 0  # rank in claim order: run slots are granted in this order
    lock: threading.Lock = field(default_factory=threading.Lock)
    reason: str | None = None
    process: Supervised | None = None
    logs: ExecutionLogs | None = None

    @property
    def id(self) -> int:
        return int(self.payload["execution_id"])

    @property
    def abandoned(self) -> bool:
        return self.reason is not None

    def abandon(self, reason: str) -> None:
        """Call with ``lock`` held."""
        if self.reason is None or reason == DROP:
            self.reason = reason

    def live_process(self) -> Supervised | None:
        process = self.process
        return process if process is not None and not process.exited else None


@dataclass(frozen=True)
class Slot:
    """A run slot, with the GPUs that come with it (exactly those, nobody else's)."""

    gpus: tuple[Gpu, ...] = ()


@dataclass(eq=False)
class _Waiter:
    place: int
    wakeup: threading.Condition  # on the gate's lock: only this waiter is woken


class RunGate:
    """Run slots, granted in claim order, each with the GPUs its execution asked for;
    the limit follows the worker's concurrency. The first in line waits until enough
    GPUs are free, and those behind it wait too, so a task needing many GPUs is not
    starved by smaller ones. The line is ordered by claim order (``place``), not by
    arrival: an execution whose download finished late still goes before one claimed
    after it. Executions with nothing to fetch are announced at claim time (``expect``):
    until such an execution reaches the gate (or is ``forget``-ten), nobody claimed after
    it is granted a slot, whichever thread the system happens to run first. Waiters give
    up as soon as their execution is abandoned (``wake`` re-checks).

    Only the head of the line can be granted a slot, so only the head is woken when a
    slot frees up: a busy worker holds dozens of waiting executions, and waking them all
    at every task's end costs more CPU (context switches, lock hand-offs) than running a
    short task."""

    def __init__(self, limit: int, gpus: GpuPool | None = None) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._running = 0
        self._line: list[_Waiter] = []
        self._expected: set[int] = set()  # places announced, not arrived yet
        self._arrivals = itertools.count()
        self._gpus = gpus or GpuPool([])

    def acquire(self, abandoned: Callable[[], bool], gpus: int = 0,
                place: int | None = None) -> Slot | None:
        """A slot, or None once abandoned. ``gpus`` is a count, or -1 for all of them;
        more than the worker has raises ValueError (it could never run). ``place`` is the
        execution's rank in claim order; without it, arrival order."""
        if not self._gpus.fits(gpus):
            raise ValueError(f"needs {'all' if gpus < 0 else gpus} GPU(s), this worker has "
                             f"{self._gpus.total}")
        with self._lock:
            waiter = _Waiter(next(self._arrivals) if place is None else place,
                             threading.Condition(self._lock))
            self._expected.discard(waiter.place)
            bisect.insort(self._line, waiter, key=lambda queued: queued.place)
            try:
                while True:
                    if abandoned():
                        return None
                    if self._line[0] is waiter and self._running < self._limit \
                            and not self._expected_before(waiter.place):
                        granted = self._gpus.take(gpus)
                        if granted is not None:
                            self._running += 1
                            return Slot(tuple(granted))
                    waiter.wakeup.wait()
            finally:
                self._line.remove(waiter)
                self._wake_head()  # the next in line may go now (or is the new head)

    def release(self, slot: Slot | None = None) -> None:
        with self._lock:
            self._running -= 1
            if slot is not None and slot.gpus:
                self._gpus.give_back(list(slot.gpus))
            self._wake_head()

    def set_limit(self, limit: int) -> None:
        with self._lock:
            if limit != self._limit:
                self._limit = limit
                self._wake_head()

    def expect(self, places: list[int]) -> None:
        """These executions come straight to the gate: keep their turn."""
        with self._lock:
            self._expected.update(places)

    def forget(self, place: int) -> None:
        """This execution will not come (it ended before its turn); idempotent."""
        with self._lock:
            if place in self._expected:
                self._expected.discard(place)
                self._wake_head()

    def _expected_before(self, place: int) -> bool:
        """Call with ``_lock`` held."""
        return bool(self._expected) and min(self._expected) < place

    def wake(self) -> None:
        """Every waiter re-checks whether its execution was abandoned."""
        with self._lock:
            for waiter in self._line:
                waiter.wakeup.notify()

    def _wake_head(self) -> None:
        """Call with ``_lock`` held."""
        if self._line:
            self._line[0].wakeup.notify()

    @property
    def running(self) -> int:
        with self._lock:
            return self._running

    @property
    def waiting(self) -> int:
        """Executions in line for a slot."""
        with self._lock:
            return len(self._line)


class ThreadPool:
    """Daemon threads reused from one execution to the next: starting a thread costs
    about as much as a short task itself. Idle threads end after ``idle_timeout``."""

    def __init__(self, name: str, idle_timeout: float = 30.0) -> None:
        self._name = name
        self._idle_timeout = idle_timeout
        self._jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]]] = \
            queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a job that no queued job has reserved
        self._count = 0

    def submit(self, function: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            spawn = self._idle == 0
            if spawn:
                self._count += 1
                name = f"{self._name}-{self._count}"
            else:
                self._idle -= 1
        self._jobs.put((function, args))
        if spawn:
            threading.Thread(target=self._loop, name=name, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                function, args = self._jobs.get(timeout=self._idle_timeout)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # more idle threads than queued jobs: leave
                        self._idle -= 1
                        return
                continue  # a job was just queued for us
            try:
                function(*args)
            except Exception:  # keep the thread alive, but say it
                log.exception("unexpected error in %s", threading.current_thread().name)
            with self._lock:
                self._idle += 1
