"""Turns at the database: a bounded number of holders, work first, no starvation, a
bounded wait (``server/turns.py``). Real threads, as the API processes' greenlets
would be under gevent's patching."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from scitq_bench.exceptions import Busy
from scitq_bench.server.turns import Turns
from tests.support.stack import wait_until


class Tally:
    """A gauge as Prometheus's: what ``Turns`` counts its waiters with."""

    def __init__(self) -> None:
        self.value = 0
        self.highest = 0

    def inc(self) -> None:
        self.value += 1
        self.highest = max(self.highest, self.value)

    def dec(self) -> None:
        self.value -= 1


def queue_up(turns: Turns, order: list[str], name: str, work: bool) -> threading.Thread:
    """A thread waiting for a turn, which notes ``name`` once it has it; returned once
    it is waiting."""
    waiting = turns.waiting

    def run() -> None:
        with turns.take(hands_out_work=work):
            order.append(name)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(lambda: turns.waiting == waiting + 1, timeout=5)
    return thread


def held(turns: Turns) -> tuple[threading.Event, threading.Thread]:
    """A thread holding one turn until the event is set."""
    release, holding = threading.Event(), threading.Event()

    def run() -> None:
        with turns.take(hands_out_work=True):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert holding.wait(5)
    return release, thread


def run_together(call: Callable[[int], None], count: int) -> None:
    """``call(0)`` to ``call(count - 1)``, each in a thread of its own, all at once."""
    threads = [threading.Thread(target=call, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)


def test_no_more_holders_at_once_than_slots() -> None:
    turns = Turns(3, timeout=10)
    inside, most = 0, 0
    lock = threading.Lock()

    def call() -> None:
        nonlocal inside, most
        with turns.take(hands_out_work=False):
            with lock:
                inside += 1
                most = max(most, inside)
            time.sleep(0.01)
            with lock:
                inside -= 1

    run_together(lambda _number: call(), 24)
    assert most == 3
    assert inside == 0
    assert turns.waiting == 0
    holders = [held(turns) for _ in range(3)]  # every slot came back
    for release, thread in holders:
        release.set()
        thread.join(5)


def test_a_call_that_hands_out_work_passes_bookkeeping_that_came_before_it() -> None:
    turns = Turns(1, timeout=10)
    release, holder = held(turns)
    order: list[str] = []
    threads = [queue_up(turns, order, "heartbeat", work=False),
               queue_up(turns, order, "running report", work=False),
               queue_up(turns, order, "report+claim", work=True),
               queue_up(turns, order, "claim", work=True)]
    release.set()
    for thread in (holder, *threads):
        thread.join(5)
    # work first, each kind in its order of arrival
    assert order == ["report+claim", "claim", "heartbeat", "running report"]


def test_bookkeeping_is_passed_for_its_yield_at_most() -> None:
    patient = 0.2
    turns = Turns(1, timeout=10, bookkeeping_yield=patient)
    release, holder = held(turns)
    order: list[str] = []
    first = queue_up(turns, order, "heartbeat", work=False)
    time.sleep(patient + 0.1)  # its deadline is past: later work no longer passes it
    second = queue_up(turns, order, "claim", work=True)
    release.set()
    for thread in (holder, first, second):
        thread.join(5)
    assert order == ["heartbeat", "claim"]


def test_a_call_without_a_turn_in_time_is_busy_and_its_turn_is_not_lost() -> None:
    tally = Tally()
    turns = Turns(1, timeout=0.2, waiting=tally)
    release, holder = held(turns)
    began = time.monotonic()
    with pytest.raises(Busy) as refused:
        with turns.take(hands_out_work=True):
            pytest.fail("no turn was free")
    assert time.monotonic() - began >= 0.18
    assert refused.value.retry_after_header == "1"
    assert "1 worker calls" in str(refused.value)
    assert (tally.value, tally.highest) == (0, 1)
    assert turns.waiting == 0  # the one that gave up no longer counts
    release.set()
    holder.join(5)
    # the freed turn went back to the pool, not to the caller that left
    order: list[str] = []
    with turns.take(hands_out_work=False):
        order.append("next")
    assert order == ["next"]


@pytest.mark.parametrize("slots", [0, -1])
def test_turns_need_a_slot(slots: int) -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        Turns(slots, timeout=1)


def test_many_waiters_each_get_one_turn() -> None:
    turns = Turns(2, timeout=10)
    served: list[int] = []
    lock = threading.Lock()

    def call(number: int) -> None:
        with turns.take(hands_out_work=number % 2 == 0):
            with lock:
                served.append(number)

    run_together(call, 200)
    assert sorted(served) == list(range(200))
