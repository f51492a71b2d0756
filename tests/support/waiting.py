"""Waiting for a condition instead of sleeping a fixed time: a test goes on as soon as
what it waits for happened, and fails with a clear message when it never does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
               what: str = "condition") -> T:
    """Poll ``condition`` every ``interval`` seconds until it is truthy (its value is
    returned); fail after ``timeout`` seconds, having asked it once more at the end."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
