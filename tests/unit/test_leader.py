"""Leadership without a database: the file lock of single-host servers, stepping down
the moment a check fails, the freshness of ``is_leader``, and jobs abandoned when the
lead is lost."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from scitq_bench.server.leader import FileLeaderLock, Leadership
from scitq_bench.server.recruit.jobs import ABANDONED, JobControl, JobStopped
from tests.support.leadership import attempts
from tests.support.waiting import wait_until


class FakeLock:
    """A lock whose checks the test decides."""

    def __init__(self, holder: str = "h:1") -> None:
        self.holder = holder
        self.free = True
        self.held = False
        self.healthy = True
        self.released = 0
        self.beats = 0

    def try_acquire(self) -> bool:
        if not self.free:
            return False
        self.free, self.held = False, True
        return True

    def verify(self) -> bool:
        if not self.healthy:
            raise ConnectionError("server closed the connection unexpectedly")
        return self.held

    def beat(self) -> bool:
        self.beats += 1
        return self.verify()

    def take_over(self) -> str | None:
        return None

    def release(self) -> None:
        self.released += 1
        if self.held:
            self.free, self.held = True, False

    def current_holder(self) -> str | None:
        return None

    def close(self) -> None:
        self.release()


def test_one_flock_holder_then_the_next(tmp_path: Path) -> None:
    path = tmp_path / "leader.lock"
    first, second = FileLeaderLock(path, "host:1"), FileLeaderLock(path, "host:2")
    assert first.try_acquire() and not second.try_acquire()
    assert first.verify() and not second.verify()
    assert second.current_holder() == "host:1"
    first.release()
    assert second.try_acquire() and second.current_holder() == "host:2"
    assert not first.try_acquire()
    second.close()


def test_a_follower_takes_the_file_lock_within_a_second_of_its_release(tmp_path: Path) -> None:
    path = tmp_path / "leader.lock"
    leader = Leadership(FileLeaderLock(path, "host:1"), interval=0.2)
    follower = Leadership(FileLeaderLock(path, "host:2"), interval=0.2)
    stop = threading.Event()
    assert leader.try_lead()
    tries = attempts(follower)
    campaign = threading.Thread(target=follower.campaign, args=(stop,))
    campaign.start()
    wait_until(lambda: len(tries) >= 2, what="the follower tried twice")
    assert leader.is_leader() and not follower.is_leader()
    released = time.monotonic()
    leader.release()
    campaign.join(timeout=5)
    assert follower.is_leader() and time.monotonic() - released < 1
    stop.set()
    follower.close()
    leader.close()


def test_a_failed_check_steps_down_at_once_and_says_so() -> None:
    lock = FakeLock()
    changes: list[bool] = []
    leadership = Leadership(lock, on_change=changes.append)
    assert leadership.try_lead() and leadership.verify() and changes == [True]
    lock.healthy = False
    assert not leadership.verify()
    assert not leadership.is_leader() and leadership.ended.is_set()
    assert changes == [True, False] and lock.released == 1
    assert not leadership.beat()  # nothing to check once down
    lock.healthy = True
    assert leadership.try_lead() and not leadership.ended.is_set()


def test_is_leader_needs_a_recent_check() -> None:
    """A process frozen longer than a few beats does not count itself leader before it
    checked again."""
    leadership = Leadership(FakeLock(), interval=0.1)
    assert leadership.try_lead() and leadership.is_leader()
    time.sleep(0.4)  # frozen past a few beats
    assert not leadership.is_leader()
    assert leadership.verify() and leadership.is_leader()


def test_hold_returns_when_the_beat_fails() -> None:
    lock = FakeLock()
    leadership = Leadership(lock, interval=0.05)
    assert leadership.try_lead()
    stop = threading.Event()
    holding = threading.Thread(target=leadership.hold, args=(stop,))
    holding.start()
    wait_until(lambda: lock.beats >= 3, what="three beats")
    assert holding.is_alive()
    lock.held = False  # the session went, and its lock with it
    holding.join(timeout=2)
    assert not holding.is_alive() and not leadership.is_leader()


def test_a_job_stops_without_cleanup_once_its_process_no_longer_leads() -> None:
    leading = [True]
    control = JobControl(7, 60, lambda job_id: None, leading=lambda: leading[0])
    control.step = "wait for the instance to run"
    assert control.reason() is None and not control.abandoned()
    leading[0] = False
    assert not control.abandoned()  # asked at most once a second
    assert control.abandoned(at_once=True)
    with pytest.raises(JobStopped) as stopped:
        control.check()
    assert str(stopped.value) == f"{ABANDONED} in step 'wait for the instance to run'"
