"""Claims that arrive together run together: one transaction for the claims waiting in
an API process.

When tasks are created for a thousand idle workers, their long polls wake at once, and
each claim was a transaction of its own (three statements, a commit, a turn at the
database): the last worker got its first task seconds after the first. When a thousand
tasks end together, their workers' reports that claim the next task come together too.
Here, a claim that finds fewer than ``at_once`` groups running goes at once (alone, it
runs the single call's own statements); the claims that arrive while they all run wait,
and when a group ends, the first of them runs them all in one transaction (``run``:
``scheduling.claim_jointly``, or ``workers.reports_and_claims``), at most ``largest``
workers at a time. That is group commit: the busier the process, the larger the
groups, and a lone claim pays nothing for it.

An error of a joint transaction (the database busy, no turn in time) is the answer of
every claim in it, as it would have been of each alone; ``run`` may also answer one
claim with an error of its own (a worker that is not registered), which is raised to
that claim alone. A claim whose group is not done within ``timeout`` is answered
``Busy``; whatever that group then hands its worker is not lost, it runs out with its
lease, as an answer lost on the network does.

The waits are on ``threading`` primitives: under gevent's monkey patching (the API
processes) they suspend the greenlet, not the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from scitq_bench.exceptions import Busy

RequestT = TypeVar("RequestT")
AnswerT = TypeVar("AnswerT")

LARGEST = 256  # workers in one joint transaction by default (its IN lists, its insert)


class _Claim(Generic[RequestT, AnswerT]):
    def __init__(self, worker_id: int, request: RequestT) -> None:
        self.worker_id = worker_id
        self.request = request
        # looked up now, not at import: gevent's patched Event once the process is patched
        self.done = threading.Event()
        self.leads = False  # done, and it is to run the next group
        self.answered = False
        self.answer: AnswerT | None = None
        self.error: BaseException | None = None

    def result(self) -> AnswerT:
        if self.error is not None:
            raise self.error
        if not self.answered:  # never: a group answers every claim in it
            raise RuntimeError(f"the joint claim left worker {self.worker_id} unanswered")
        return self.answer  # type: ignore[return-value]  # answered: an AnswerT


class JointClaims(Generic[RequestT, AnswerT]):
    """Runs the claims of this process in groups through ``run`` (worker id -> request
    in; worker id -> answer, or an error of that claim's own, out), ``at_once`` groups
    at most at a time."""

    def __init__(self, run: Callable[[dict[int, RequestT]], Mapping[int, AnswerT | Exception]],
                 *, timeout: float, at_once: int = 1, largest: int = LARGEST) -> None:
        if largest < 1 or at_once < 1:
            raise ValueError(f"joint claims need room for one group of one worker at least, "
                             f"not {at_once} of {largest}")
        self._run = run
        self.timeout = timeout
        self.at_once = at_once
        self.largest = largest
        self._lock = threading.Lock()
        self._queue: list[_Claim[RequestT, AnswerT]] = []
        self._running = 0  # groups running, each under its leader

    @property
    def waiting(self) -> int:
        """Claims queued for a group now."""
        with self._lock:
            return len(self._queue)

    def claim(self, worker_id: int, request: RequestT) -> AnswerT:
        """The worker's claim, run alone or with the others waiting here."""
        claim: _Claim[RequestT, AnswerT] = _Claim(worker_id, request)
        with self._lock:
            leads = self._running < self.at_once
            if leads:
                self._running += 1
            else:
                self._queue.append(claim)
        if not leads:
            self._wait(claim)
            if not claim.leads:
                return claim.result()
        self._lead(claim)
        return claim.result()

    def _wait(self, claim: _Claim[RequestT, AnswerT]) -> None:
        if claim.done.wait(self.timeout):
            return
        with self._lock:
            if claim.done.is_set():  # answered, or made a leader, as the wait ended
                return
            if claim in self._queue:  # no group took it yet: it simply leaves
                self._queue.remove(claim)
        raise Busy(f"this server process's claims did not reach worker {claim.worker_id}'s "
                   f"within {self.timeout:g} s", retry_after=1.0)

    def _lead(self, leader: _Claim[RequestT, AnswerT]) -> None:
        """Run the leader's claim with those waiting, then hand the lead on to the first
        claim left waiting, if any."""
        with self._lock:
            group = self._take_group(leader)
        try:
            answers = self._run({c.worker_id: c.request for c in group})
            for claim in group:
                answer = answers[claim.worker_id]
                if isinstance(answer, Exception):
                    claim.error = answer
                else:
                    claim.answer, claim.answered = answer, True
        except BaseException as exc:
            # an interruption of the leader (its greenlet killed) is not the others' own
            shared = exc if isinstance(exc, Exception) else Busy(
                "the joint claim this one was part of was interrupted", retry_after=1.0)
            for claim in group:
                claim.error = shared
            raise
        finally:
            with self._lock:
                if self._queue:  # the group's place goes to the first waiting
                    following = self._queue.pop(0)
                    following.leads = True
                    following.done.set()
                else:
                    self._running -= 1
            for claim in group:
                claim.done.set()

    def _take_group(self, leader: _Claim[RequestT, AnswerT]) -> list[_Claim[RequestT, AnswerT]]:
        """The leader's claim and up to ``largest`` - 1 off the queue, in arrival order,
        one per worker (a worker's second claim waits for a later group)."""
        group = [leader]
        workers = {leader.worker_id}
        left: list[_Claim[RequestT, AnswerT]] = []
        for claim in self._queue:
            if len(group) < self.largest and claim.worker_id not in workers:
                group.append(claim)
                workers.add(claim.worker_id)
            else:
                left.append(claim)
        self._queue = left
        return group
