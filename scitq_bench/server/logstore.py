"""Execution logs as append-only files under one directory, one per stream, never
rewritten: the local ``LogStorage``.

An advisory lock (``flock``) per file keeps concurrent writers, threads or processes,
from interleaving: under it the writer reads the size and appends, so the offset check
and the write are one step. Several hosts may share the directory on a file system
whose locks reach every host (NFSv4, or NFSv3 with its lock daemon).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from scitq_bench.exceptions import Conflict, InvalidInput
from scitq_bench.server.storage import STREAMS, LogStorage

CHUNK = 1 << 16


class LocalLogStore(LogStorage):
    """Logs at ``<root>/<id // 1000>/<id>/<stream>``: a thousand executions a folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, execution_id: int) -> Path:
        return self.root / f"{execution_id // 1000:06d}" / str(execution_id)

    def _path(self, execution_id: int, stream: str) -> Path:
        if stream not in STREAMS:
            raise InvalidInput(f"stream must be one of {', '.join(STREAMS)}, got {stream!r}")
        return self._dir(execution_id) / stream

    def size(self, execution_id: int, stream: str) -> int:
        try:
            return self._path(execution_id, stream).stat().st_size
        except FileNotFoundError:
            return 0

    def append(self, execution_id: int, stream: str, offset: int, body: IO[bytes]) -> int:
        path = self._path(execution_id, stream)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                size = os.fstat(handle.fileno()).st_size
                if offset > size:
                    raise Conflict(
                        f"log offset {offset} is past the end ({size}) of {stream}",
                        details={"expected_offset": size},
                    )
                skip = size - offset
                while True:
                    chunk = body.read(CHUNK)
                    if not chunk:
                        break
                    if skip:
                        dropped = min(skip, len(chunk))
                        chunk, skip = chunk[dropped:], skip - dropped
                    handle.write(chunk)
                handle.flush()
                return os.fstat(handle.fileno()).st_size
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read(self, execution_id: int, stream: str, offset: int = 0,
             limit: int | None = None) -> Iterator[bytes]:
        path = self._path(execution_id, stream)
        try:
            handle = open(path, "rb")
        except FileNotFoundError:  # never written, or deleted
            return
        remaining = limit if limit is not None and limit >= 0 else None
        with handle:
            handle.seek(offset)
            while remaining is None or remaining > 0:
                chunk = handle.read(CHUNK if remaining is None else min(CHUNK, remaining))
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def delete(self, execution_ids: Iterable[int]) -> None:
        for execution_id in execution_ids:
            shutil.rmtree(self._dir(execution_id), ignore_errors=True)
