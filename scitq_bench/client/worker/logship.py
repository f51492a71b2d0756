"""Task logs: an on-disk buffer per stream, shipped to the server incrementally.

The command writes straight into the file (no pipe, no copy through Python, so memory
stays flat however much it prints); the file is opened with O_APPEND so the size cap
can be enforced by truncating it from here while the command keeps writing. What is
shipped is read back from disk, so logs survive a server outage and go out when it
returns.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from scitq_bench.client.api import Client
from scitq_bench.exceptions import Conflict, Forbidden, NotFound

STREAMS = ("stdout", "stderr")
CHUNK = 1 << 20  # the server accepts any size; 1 MiB keeps requests and memory small
MARKER = b"\n[log truncated]\n"
DEFAULT_CAP = 1 << 30


class LogFile:
    """One stream of one execution: what the command wrote, how much is shipped."""

    def __init__(self, path: Path, stream: str, cap: int = DEFAULT_CAP) -> None:
        self.path = path
        self.stream = stream
        self.cap = cap
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC,
                          0o644)
        self.shipped = 0
        self.limit: int | None = None  # once capped: the file never grows past this
        self.dead = False  # the server no longer takes this log

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def enforce_cap(self) -> int:
        """Keep the file at most ``cap`` bytes plus the truncation marker; return the size
        that may be shipped."""
        size = self.size()
        if self.limit is None:
            if size <= self.cap:
                return size
            self._write_marker()
            size = self.size()
        assert self.limit is not None
        if size > self.limit:
            os.ftruncate(self.fd, self.limit)
        return min(size, self.limit)

    def _write_marker(self) -> None:
        # our fd appends (O_APPEND ignores offsets on Linux), so write through another
        fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.pwrite(fd, MARKER, self.cap)
            self.limit = self.cap + len(MARKER)
            os.ftruncate(fd, self.limit)
        finally:
            os.close(fd)

    def ship(self, client: Client, execution_id: int, max_bytes: int | None = None,
             retry_for: float | None = None) -> bool:
        """Send what is new, ``max_bytes`` at most; True when nothing is left.
        ServerUnreachable propagates: the caller decides how long to insist."""
        if self.dead:
            return True
        end = self.enforce_cap()
        sent = 0
        while self.shipped < end and (max_bytes is None or sent < max_bytes):
            data = os.pread(self.fd, min(CHUNK, end - self.shipped), self.shipped)
            if not data:
                break
            try:
                client.log_append(execution_id, self.stream, self.shipped, data,
                                  retry_for=retry_for)
            except Conflict as exc:
                expected = (exc.details or {}).get("expected_offset") \
                    if isinstance(exc.details, dict) else None
                if expected is None:
                    self.dead = True  # e.g. the execution lost its worker
                    return True
                self.shipped = int(expected)
                continue
            except (NotFound, Forbidden):
                self.dead = True  # deleted, or handed to another worker
                return True
            self.shipped += len(data)
            sent += len(data)
        return self.shipped >= end

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class ExecutionLogs:
    """stdout and stderr of one execution. The periodic shipper and the final flush
    share one lock so they never send the same offset twice."""

    def __init__(self, directory: Path, cap: int = DEFAULT_CAP) -> None:
        self.lock = threading.Lock()
        self.files: dict[str, LogFile] = {}
        try:
            for stream in STREAMS:
                self.files[stream] = LogFile(directory / f"{stream}.log", stream, cap)
        except BaseException:
            self.close()
            raise

    @property
    def stdout_fd(self) -> int:
        return self.files["stdout"].fd

    @property
    def stderr_fd(self) -> int:
        return self.files["stderr"].fd

    def enforce_caps(self) -> None:
        if not self.lock.acquire(blocking=False):
            return  # being flushed, which enforces the cap itself
        try:
            for log in self.files.values():
                if log.fd >= 0:
                    log.enforce_cap()
        finally:
            self.lock.release()

    def ship(self, client: Client, execution_id: int, *, max_bytes: int | None = None,
             retry_for: float | None = None, blocking: bool = True) -> bool:
        """Ship both streams; True when both are fully shipped. Non-blocking callers
        skip an execution that is being flushed."""
        if not self.lock.acquire(blocking=blocking):
            return False
        try:
            done = True
            for log in self.files.values():
                if log.fd >= 0:
                    done = log.ship(client, execution_id, max_bytes, retry_for) and done
            return done
        finally:
            self.lock.release()

    def close(self) -> None:
        """Close under the lock: the shipper thread may be reading these descriptors."""
        with self.lock:
            for log in self.files.values():
                log.close()
