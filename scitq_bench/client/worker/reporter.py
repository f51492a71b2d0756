"""Execution events on their way to the server.

One thread sends them; while a report is in flight new events pile up and go together
in the next one, so an idle worker reports at once and a busy one in batches. Events
are dated with ``time.monotonic`` and sent with their age, so the server dates them on
its own clock. Nothing is dropped while the server is unreachable: events wait and are
retried with backoff, in order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scitq_bench.exceptions import Forbidden, InvalidInput, ScitqBenchError, Unauthorized
from scitq_bench.states import ExecutionStatus

log = logging.getLogger("scitq_bench.worker")

ACCEPTED = ExecutionStatus.ACCEPTED.value
RUNNING = ExecutionStatus.RUNNING.value
NOT_FINAL = (ACCEPTED, RUNNING)
MAX_BATCH = 1000
MAX_ERROR = 9000  # the server takes 10,000 characters


@dataclass
class Event:
    execution_id: int
    status: str
    at: float = field(default_factory=time.monotonic)
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.status not in NOT_FINAL

    def body(self, now: float) -> dict[str, Any]:
        body: dict[str, Any] = {"execution_id": self.execution_id, "status": self.status}
        body.update(self.fields)
        error = body.get("error")
        if isinstance(error, str) and len(error) > MAX_ERROR:
            body["error"] = error[:MAX_ERROR] + "..."
        body["age"] = round(max(0.0, now - self.at), 3)
        return body


Send = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
Results = Callable[[list[tuple[Event, dict[str, Any]]]], None]


class Reporter:
    """``send`` posts events and returns the server's per-event results; ``on_results``
    gets each report's events with their results, all at once (so the agent frees all
    the slots of a report together); ``on_fatal`` hears that the server no longer
    accepts this worker (its token was revoked)."""

    def __init__(self, send: Send, on_results: Results,
                 on_fatal: Callable[[ScitqBenchError], None], *, linger: float = 0.05,
                 max_batch: int = MAX_BATCH, max_backoff: float = 10.0) -> None:
        self._send = send
        self._on_results = on_results
        self._on_fatal = on_fatal
        self._max_batch = max_batch
        self._max_backoff = max_backoff
        # Executions claimed whose final event is not queued yet: while some are open,
        # events wait up to ``linger`` s for company, so the short tasks of a busy
        # worker share reports (the server's cost is mostly per request). Once none is
        # open, as when an idle worker's single task ends, events go at once.
        self._linger = linger
        self._open: set[int] = set()
        self.enough_finals = 0  # this many waiting final events go at once (0: off)
        self._cond = threading.Condition()
        self._queue: deque[Event] = deque()
        self._in_flight = 0
        self._finals = 0  # final events queued or in flight
        self._in_flight_finals = 0
        self._closing = False
        self._abandoned = False

    def expect(self, execution_ids: list[int]) -> None:
        """These executions were just claimed: their events are coming."""
        with self._cond:
            self._open.update(execution_ids)

    def put(self, event: Event) -> None:
        with self._cond:
            was_empty = not self._queue
            self._queue.append(event)
            if event.final:
                self._open.discard(event.execution_id)
                self._finals += 1
            else:
                self._open.add(event.execution_id)
            # Wake the sender only when this event can change its decision: while it
            # lingers for company, it wakes up on its own when the oldest event is due
            # (one wake-up per task on a busy worker costs more than the task).
            if was_empty or not self._open or self._enough_finals():
                self._cond.notify_all()

    def _enough_finals(self) -> bool:
        """Call with ``_cond`` held."""
        return 0 < self.enough_finals <= self._finals - self._in_flight_finals

    def purge(self, execution_id: int) -> None:
        """Forget the waiting events of an execution the worker dropped."""
        with self._cond:
            self._open.discard(execution_id)
            kept = [e for e in self._queue if e.execution_id != execution_id]
            self._finals -= sum(e.final for e in self._queue) - sum(e.final for e in kept)
            self._queue = deque(kept)
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._in_flight

    def finals_pending(self) -> int:
        """Final events not yet answered: slots about to be freed."""
        with self._cond:
            return self._finals

    def close(self) -> None:
        """Send what is waiting, then end ``run``."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def abandon(self) -> None:
        """End ``run`` now, whatever is waiting."""
        with self._cond:
            self._abandoned = True
            self._cond.notify_all()

    def run(self) -> None:
        backoff, resume_at = 0.1, 0.0
        while True:
            batch = self._next_batch(resume_at)
            if batch is None:
                return
            try:
                results = self._send([e.body(time.monotonic()) for e in batch])
            except (Unauthorized, Forbidden) as exc:
                self._on_fatal(exc)
                return
            except InvalidInput as exc:  # malformed events would be refused forever
                log.error("the server refused a report of %d event(s): %s", len(batch), exc)
                results = [{"execution_id": e.execution_id, "ok": False, "error": str(exc)}
                           for e in batch]
            except ScitqBenchError as exc:
                log.warning("cannot report %d event(s), retrying in %.1f s: %s",
                            len(batch), backoff, exc)
                with self._cond:
                    self._queue.extendleft(reversed(batch))
                    self._in_flight = self._in_flight_finals = 0
                resume_at = time.monotonic() + backoff
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = 0.1
            with self._cond:
                self._finals -= self._in_flight_finals
                self._in_flight = self._in_flight_finals = 0
            try:
                self._on_results(list(zip(batch, results, strict=False)))
            except Exception:  # a bug there must not stop the reports
                log.exception("handling the results of a report")

    def _next_batch(self, resume_at: float) -> list[Event] | None:
        """Wait for events worth sending now; None when ``run`` should end."""
        with self._cond:
            while True:
                if self._abandoned or (self._closing and not self._queue):
                    return None
                if not self._queue:
                    self._cond.wait()
                    continue
                now = time.monotonic()
                if now < resume_at:  # backing off after a failure
                    self._cond.wait(resume_at - now)
                    continue
                send_at = self._queue[0].at + self._linger
                if (self._open and not self._closing and not self._enough_finals()
                        and now < send_at):
                    self._cond.wait(send_at - now)
                    continue
                batch = _without_implied_running([
                    self._queue.popleft()
                    for _ in range(min(self._max_batch, len(self._queue)))
                ])
                # By stage: every execution goes accepted -> running -> final, so this
                # keeps each one's order (the server applies a report's events in order).
                batch.sort(key=_stage)
                self._in_flight = len(batch)
                self._in_flight_finals = sum(e.final for e in batch)
                return batch


def _without_implied_running(batch: list[Event]) -> list[Event]:
    """A final event with a duration tells the server the command ran: the
    ``running`` event of the same execution in the same report adds nothing."""
    ran = {e.execution_id for e in batch if e.final and "duration" in e.fields}
    return [e for e in batch if not (e.status == RUNNING and e.execution_id in ran)]


def _stage(event: Event) -> int:
    return NOT_FINAL.index(event.status) if event.status in NOT_FINAL else len(NOT_FINAL)
