"""Claims run together when they arrive together (``server/joint_claims.py``): a lone
claim at once, the claims that queue meanwhile in one group, each answered with its
own; groups bounded in size and one claim per worker; an error is each member's
answer and the next group still runs; a claim left waiting too long gets Busy. Real
threads, as the API processes' greenlets would be under gevent's patching."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from scitq_bench.exceptions import Busy
from scitq_bench.server.joint_claims import JointClaims
from tests.support.stack import wait_until

Answer = tuple[list[dict[str, int]], str]


class Desk:
    """What ``JointClaims`` runs: records each group, answers each worker with its own
    id and count; holds a group while ``hold`` is clear; fails while ``fail`` is set,
    and the group numbered in ``fail_at`` (1 first) with what it holds."""

    def __init__(self) -> None:
        self.groups: list[dict[int, int]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.running = threading.Event()
        self.fail: BaseException | None = None
        self.fail_at: dict[int, BaseException] = {}

    def __call__(self, wanted: dict[int, int]) -> dict[int, Answer | Exception]:
        self.groups.append(dict(wanted))
        self.running.set()
        assert self.hold.wait(10)
        failure = self.fail_at.get(len(self.groups), self.fail)
        if failure is not None:
            raise failure
        return {w: ([{"worker": w, "count": n}], f"state of {w}") for w, n in wanted.items()}


class Caller:
    """A thread making one claim; its answer or its error once it is done."""

    def __init__(self, claims: JointClaims, worker_id: int, max_count: int = 1) -> None:
        self.answer: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(claims, worker_id, max_count),
                                       daemon=True)
        self.thread.start()

    def _run(self, claims: JointClaims, worker_id: int, max_count: int) -> None:
        try:
            self.answer = claims.claim(worker_id, max_count)
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            self.error = exc

    def result(self) -> Any:
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.answer


def held_group(claims: JointClaims, desk: Desk, worker_id: int = 1) -> Caller:
    """A claim whose group runs (alone) and is held until ``desk.hold`` is set."""
    desk.hold.clear()
    desk.running.clear()
    first = Caller(claims, worker_id)
    assert desk.running.wait(5)
    return first


def queued(claims: JointClaims, *worker_ids: int) -> list[Caller]:
    """Claims queued behind the running group, in this order."""
    callers = []
    for count, worker_id in enumerate(worker_ids, start=claims.waiting + 1):
        callers.append(Caller(claims, worker_id, max_count=worker_id * 10))
        wait_until(lambda: claims.waiting == count, timeout=5)  # noqa: B023 - waited here
    return callers


def test_a_lone_claim_runs_at_once_and_alone() -> None:
    desk = Desk()
    claims = JointClaims(desk, timeout=5)
    assert claims.claim(7, 3) == ([{"worker": 7, "count": 3}], "state of 7")
    assert claims.claim(8, 1) == ([{"worker": 8, "count": 1}], "state of 8")
    assert desk.groups == [{7: 3}, {8: 1}]
    assert claims.waiting == 0


def test_claims_queued_meanwhile_run_together_each_with_its_answer() -> None:
    desk = Desk()
    claims = JointClaims(desk, timeout=5)
    first = held_group(claims, desk)
    others = queued(claims, 2, 3, 4, 5)
    desk.hold.set()
    assert first.result() == ([{"worker": 1, "count": 1}], "state of 1")
    for caller, worker_id in zip(others, (2, 3, 4, 5), strict=True):
        assert caller.result() == ([{"worker": worker_id, "count": worker_id * 10}],
                                   f"state of {worker_id}")
    assert desk.groups == [{1: 1}, {2: 20, 3: 30, 4: 40, 5: 50}]
    assert claims.claim(6, 1)[1] == "state of 6"  # the desk is free again: alone, at once
    assert desk.groups[-1] == {6: 1}


def test_groups_are_bounded_and_hold_one_claim_per_worker() -> None:
    desk = Desk()
    claims = JointClaims(desk, timeout=5, largest=2)
    first = held_group(claims, desk)
    others = queued(claims, 2, 2, 3, 4, 5)  # worker 2 twice: its second claim waits
    desk.hold.set()
    first.result()
    assert [caller.result()[1] for caller in others] == [
        "state of 2", "state of 2", "state of 3", "state of 4", "state of 5"]
    assert desk.groups == [{1: 1}, {2: 20, 3: 30}, {2: 20, 4: 40}, {5: 50}]
    for at_once, largest in ((1, 0), (0, 1)):
        with pytest.raises(ValueError, match="one group of one worker"):
            JointClaims(desk, timeout=5, at_once=at_once, largest=largest)


def test_an_error_is_every_members_answer_and_the_next_group_runs() -> None:
    desk = Desk()
    claims = JointClaims(desk, timeout=5)
    first = held_group(claims, desk)
    others = queued(claims, 2, 3)
    desk.fail = Busy("the database is busy", retry_after=1.0)
    desk.hold.set()
    for caller in (first, *others):
        caller.result()
        assert isinstance(caller.error, Busy)
    desk.fail = None
    assert claims.claim(4, 1)[1] == "state of 4"
    assert desk.groups == [{1: 1}, {2: 20, 3: 30}, {4: 1}]


def test_an_interrupted_leader_gives_the_others_busy() -> None:
    desk = Desk()
    claims = JointClaims(desk, timeout=5)
    first = held_group(claims, desk)
    (second, third) = queued(claims, 2, 3)
    desk.fail_at[2] = KeyboardInterrupt()  # not an error of theirs: the leader's own end
    desk.hold.set()
    assert first.result()[1] == "state of 1"
    second.result()
    assert isinstance(second.error, KeyboardInterrupt)  # the leader: its own end
    third.result()
    assert isinstance(third.error, Busy) and "interrupted" in str(third.error)
    assert claims.claim(4, 1)[1] == "state of 4"


def test_a_claim_waiting_too_long_is_busy_and_leaves_the_queue() -> None:
    desk = Desk()
    claims = JointClaims(desk, timeout=0.3)
    first = held_group(claims, desk)
    (late,) = queued(claims, 2)
    late.result()
    assert isinstance(late.error, Busy) and "within 0.3 s" in str(late.error)
    assert claims.waiting == 0  # it left: no group runs it, none waits on it
    desk.hold.set()
    assert first.result()[1] == "state of 1"
    assert claims.claim(3, 1)[1] == "state of 3"
    assert desk.groups == [{1: 1}, {3: 1}]


def test_groups_run_side_by_side_up_to_at_once_then_queue() -> None:
    desk = Desk()
    claims = JointClaims(desk, timeout=5, at_once=2)
    desk.hold.clear()
    running = [Caller(claims, 1), Caller(claims, 2)]
    wait_until(lambda: len(desk.groups) == 2, timeout=5)  # both at once, each alone
    others = queued(claims, 3, 4)  # no room for a third group: they wait
    assert len(desk.groups) == 2
    desk.hold.set()
    for caller, worker_id in zip((*running, *others), (1, 2, 3, 4), strict=True):
        assert caller.result()[1] == f"state of {worker_id}"
    assert sorted(map(list, desk.groups[:2])) == [[1], [2]]
    # each group's end let the first waiting run what was queued then: together, or
    # each in the place of one of the two groups
    assert sorted(w for group in desk.groups[2:] for w in group) == [3, 4]
