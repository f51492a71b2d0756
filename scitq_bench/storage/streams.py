"""Readable streams stores hand out: a bounded view of another stream."""

from __future__ import annotations

import io
from typing import BinaryIO


class Bounded(io.RawIOBase):
    """At most ``limit`` bytes of ``inner``, which it closes when closed."""

    def __init__(self, inner: BinaryIO, limit: int) -> None:
        self.inner = inner
        self.left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.left <= 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), self.left)]
        data = self.inner.read(len(view))
        view[: len(data)] = data
        self.left -= len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.inner.close()
        super().close()


def bounded(inner: BinaryIO, limit: int) -> BinaryIO:
    """``inner`` cut after ``limit`` bytes, buffered (a ``BinaryIO`` like any file)."""
    return io.BufferedReader(Bounded(inner, limit))
