"""In-process wake-ups for long polls: "work may be available", "signals for worker N".

A version counter per key avoids lost wake-ups: a waiter reads the version before
looking at the database and sleeps only if nothing changed since. Other processes
(the standalone scheduler, other gunicorn workers) cannot notify, so waiters also wake
on a short poll interval as a safety net.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

WORK = "work"


def worker_key(worker_id: int) -> str:
    return f"worker:{worker_id}"


class Notifier:
    def __init__(self, poll_interval: float = 2.0) -> None:
        self.poll_interval = poll_interval
        self._condition = threading.Condition()
        self._versions: dict[str, int] = defaultdict(int)

    def version(self, key: str) -> int:
        with self._condition:
            return self._versions[key]

    def notify(self, *keys: str) -> None:
        with self._condition:
            for key in keys:
                self._versions[key] += 1
            self._condition.notify_all()

    def wait(self, key: str, seen: int, timeout: float) -> bool:
        """Sleep until ``key`` moves past ``seen`` or the poll interval/timeout passes.
        True if notified."""
        deadline = time.monotonic() + min(timeout, self.poll_interval)
        with self._condition:
            while self._versions[key] == seen:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
            return True
