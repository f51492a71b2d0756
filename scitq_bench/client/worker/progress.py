"""A transfer's progress, written as lines into the execution's stderr log, so its
user follows a long download or upload live like the command's own output."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from scitq_bench.hostprobe import GB
from scitq_bench.storage.locations import redact

log = logging.getLogger("scitq_bench.worker")

PROGRESS_INTERVAL = 2.0  # seconds between two progress lines of one transfer


class TransferProgress:
    """A transfer's progress as lines in the execution's stderr log, for its user to
    follow live: ``[scitq-bench] fetching s3://b/k: 512.0 MiB of 1.0 GiB, 48 MB/s`` at
    most every ``interval`` seconds, then ``fetched s3://b/k: 1.0 GiB in 12.3 s``. A
    transfer shorter than ``interval`` writes nothing (the hot path of short tasks stays
    silent). The total comes from ``total``, asked only once a transfer lasts, on a
    thread of its own (listing a large folder takes a while): the lines say "of ..."
    once it is known. URIs are shown without query or credentials. Thread-safe: a
    store moves several files at once."""

    VERBS = {"fetch": ("fetching", "fetched"), "upload": ("uploading", "uploaded")}

    def __init__(self, fd: int, verb: str, uri: str, interval: float = PROGRESS_INTERVAL,
                 total: Callable[[], int] | None = None) -> None:
        self.fd = fd
        self.doing, self.done = self.VERBS[verb]
        self.uri = shown(uri)
        self.interval = interval
        self.total: int | None = None
        self._total_of = total
        self.moved = 0
        self.lines = 0
        self.began = self._last_at = time.monotonic()
        self._last_moved = 0
        self._lock = threading.Lock()

    def __call__(self, count: int) -> None:
        with self._lock:
            self.moved += count  # negative when a failed try starts again
            now = time.monotonic()
            if now - self._last_at < self.interval:
                return
            rate = (self.moved - self._last_moved) / max(now - self._last_at, 1e-6)
            self._last_at, self._last_moved = now, self.moved
            of = f" of {size_text(self.total)}" if self.total else ""
            self._write(f"{self.doing} {self.uri}: {size_text(self.moved)}{of}, "
                        f"{max(rate, 0) / 1e6:.0f} MB/s")
            if self._total_of is not None:  # for the next lines
                threading.Thread(target=self._learn_total, args=(self._total_of,),
                                 name="transfer-total", daemon=True).start()
                self._total_of = None

    def _learn_total(self, total: Callable[[], int]) -> None:
        try:
            self.total = total()
        except Exception as exc:  # noqa: BLE001 - a total is a courtesy: lines go on without
            log.debug("no total for %s: %s", self.uri, exc)

    def finish(self, ok: bool) -> None:
        with self._lock:
            if not self.lines:
                return
            took = time.monotonic() - self.began
            self._write(f"{self.done} {self.uri}: {size_text(self.moved)} in {took:.1f} s"
                        if ok else f"{self.doing} {self.uri} failed after {took:.1f} s")

    def _write(self, text: str) -> None:
        self.lines += 1
        try:
            os.write(self.fd, f"[scitq-bench] {text}\n".encode())
        except OSError:
            pass  # the log is closed (the execution was dropped): nobody reads it


def local_size(root: Path) -> int:
    return sum(os.path.getsize(os.path.join(directory, name))
               for directory, _, files in os.walk(root) for name in files
               if not os.path.islink(os.path.join(directory, name)))


def size_text(count: int) -> str:
    for unit, scale in (("GiB", GB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(count) >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"



def shown(uri: str) -> str:
    """A data URI fit for logs: its location without query or credentials, and its
    actions."""
    location, _, actions = uri.partition("|")
    return redact(location) + (f"|{actions}" if actions else "")
