"""Claims that arrive together run together: one transaction for the claims waiting in
an API process.

When tasks are created for a thousand idle workers, their long polls wake at once, and
each claim was a transaction of its own (three statements, a commit, a turn at the
database): the last worker got its first task seconds after the first. Here, a claim
that finds no other running goes at once, alone (the single claim's own statements);
the claims that arrive while one runs wait for it to end, and the first of them then
runs them all in one transaction (``run``: ``scheduling.claim_jointly``), at most
``largest`` workers at a time. That is group commit: the busier the process, the larger
the groups, and a lone claim pays nothing for it.

An error of a joint transaction (the database busy, no turn in time) is the answer of
every claim in it, as it would have been of each alone. A claim whose group is not done
within ``timeout`` is answered ``Busy``; whatever that group then hands its worker is
not lost, it runs out with its lease, as an answer lost on the network does.

The waits are on ``threading`` primitives: under gevent's monkey patching (the API
processes) they suspend the greenlet, not the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from scitq_bench.exceptions import Busy

Answer = tuple[list[dict[str, Any]], Any]  # the executions, the worker as read
Run = Callable[[dict[int, int]], dict[int, Answer]]

LARGEST = 256  # workers in one joint transaction (its IN lists, its insert)


class _Claim:
    def __init__(self, worker_id: int, max_count: int) -> None:
        self.worker_id = worker_id
        self.max_count = max_count
        # looked up now, not at import: gevent's patched Event once the process is patched
        self.done = threading.Event()
        self.leads = False  # done, and it is to run the next group
        self.answer: Answer | None = None
        self.error: BaseException | None = None

    def result(self) -> Answer:
        if self.error is not None:
            raise self.error
        if self.answer is None:  # never: a group answers every claim in it
            raise RuntimeError(f"the joint claim left worker {self.worker_id} unanswered")
        return self.answer


class JointClaims:
    """Runs the claims of this process in groups through ``run`` (worker id ->
    ``max_count`` in, worker id -> answer out), one group at a time."""

    def __init__(self, run: Run, *, timeout: float, largest: int = LARGEST) -> None:
        if largest < 1:
            raise ValueError(f"a joint claim needs room for one worker at least, not {largest}")
        self._run = run
        self.timeout = timeout
        self.largest = largest
        self._lock = threading.Lock()
        self._queue: list[_Claim] = []
        self._running = False

    @property
    def waiting(self) -> int:
        """Claims queued for a group now."""
        with self._lock:
            return len(self._queue)

    def claim(self, worker_id: int, max_count: int) -> Answer:
        """The worker's claim, run alone or with the others waiting here."""
        claim = _Claim(worker_id, max_count)
        with self._lock:
            self._queue.append(claim)
            leads = not self._running
            self._running = True
        if not leads:
            self._wait(claim)
            if not claim.leads:
                return claim.result()
        self._lead()
        return claim.result()

    def _wait(self, claim: _Claim) -> None:
        if claim.done.wait(self.timeout):
            return
        with self._lock:
            if claim.done.is_set():  # answered, or made the leader, as the wait ended
                return
            if claim in self._queue:  # no group took it yet: it simply leaves
                self._queue.remove(claim)
        raise Busy(f"this server process's claims did not reach worker {claim.worker_id}'s "
                   f"within {self.timeout:g} s", retry_after=1.0)

    def _lead(self) -> None:
        """Run the group at the head of the queue (the leader's own claim first), then
        hand the lead to the first claim left waiting, if any."""
        with self._lock:
            group = self._take_group()
        try:
            answers = self._run({c.worker_id: c.max_count for c in group})
            for claim in group:
                claim.answer = answers[claim.worker_id]
        except BaseException as exc:
            # an interruption of the leader (its greenlet killed) is not the others' own
            shared = exc if isinstance(exc, Exception) else Busy(
                "the joint claim this one was part of was interrupted", retry_after=1.0)
            for claim in group:
                claim.error = shared
            raise
        finally:
            with self._lock:
                if self._queue:
                    following = self._queue[0]
                    following.leads = True
                    following.done.set()
                else:
                    self._running = False
            for claim in group:
                claim.done.set()

    def _take_group(self) -> list[_Claim]:
        """Up to ``largest`` claims off the queue, in arrival order, one per worker (a
        worker's second claim waits for the next group)."""
        group: list[_Claim] = []
        workers: set[int] = set()
        left: list[_Claim] = []
        for claim in self._queue:
            if len(group) < self.largest and claim.worker_id not in workers:
                group.append(claim)
                workers.add(claim.worker_id)
            else:
                left.append(claim)
        self._queue = left
        return group
