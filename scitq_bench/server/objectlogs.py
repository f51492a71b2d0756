"""Execution logs in an object store that every server replica reaches: the object
``LogStorage``.

An object cannot be appended to, so a log is a folder of chunks, each an object
named after the offset it starts at:
``<prefix><id // 1000:06d>/<id>/<stream>/<offset:016d>`` (zero-padded: key order is
offset order). A chunk is only ever written at the log's end, with a conditional put
that fails when an object is already there: of two replicas appending at one offset,
one wins and the other learns the log grew, lists it again and writes what remains.
Chunks are never rewritten, so a reader sees a prefix of the final log. Each append
makes one object (one per ``PIECE`` bytes of it); nothing merges them.

Each process remembers the size it last saw of the logs it served, a lower bound of
their size as long as they are not deleted: the log grew past it exactly when a chunk
starts there. Deleted logs belong to deleted executions, which no request reaches.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import IO

from scitq_bench.exceptions import Conflict, InvalidInput, ScitqBenchError
from scitq_bench.server.storage import STREAMS, LogStorage
from scitq_bench.storage.base import NotFoundError, Store

CHUNK = 1 << 16  # bytes a read yields at a time
PIECE = 8 << 20  # bytes of an append held in memory and written as one chunk, at most
DIGITS = 16  # a chunk's name: its offset, zero-padded
REMEMBERED = 4096  # logs whose size this process remembers (the latest appended to)
ATTEMPTS = 100  # conditional writes one piece may lose before the append gives up
READ_AHEAD = 8  # chunks a read fetches at once
SMALL = 1 << 20  # bytes of a chunk fetched ahead, whole, at most (the worker ships 1 MiB)


@dataclass(frozen=True)
class Chunk:
    """The object ``key``, holding the log's bytes from ``offset``; ``start`` and
    ``end``: what of it is wanted (all of it unless cut)."""

    offset: int
    key: str
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def log_end(self) -> int:
        return self.offset + self.end

    def within(self, offset: int, stop: int | None) -> Chunk | None:
        """The part of this chunk in the log's [offset, stop); None when none is."""
        start = max(offset - self.offset, self.start)
        end = self.end if stop is None else min(stop - self.offset, self.end)
        return replace(self, start=start, end=end) if start < end else None


class ObjectLogStore(LogStorage):
    """Logs under ``prefix`` (a folder key: "" or ending with "/") of ``store``."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self._lock = threading.Lock()
        # the size each log had when this process last listed or appended to it: no
        # listing per append while the writer sends where it ended, nor per size()
        self._sizes: OrderedDict[tuple[int, str], int] = OrderedDict()

    def _folder(self, execution_id: int) -> str:
        return f"{self.prefix}{execution_id // 1000:06d}/{execution_id}/"

    def _stream(self, execution_id: int, stream: str) -> str:
        if stream not in STREAMS:
            raise InvalidInput(f"stream must be one of {', '.join(STREAMS)}, got {stream!r}")
        return f"{self._folder(execution_id)}{stream}/"

    def _chunks(self, execution_id: int, stream: str) -> Iterator[Chunk]:
        """The log's chunks in offset order, listed lazily; other objects (a file
        store's temporary names) are no chunks."""
        folder = self._stream(execution_id, stream)
        for entry in self.store.list(folder):
            name = entry.key[len(folder):]
            if len(name) == DIGITS and name.isdigit():
                yield Chunk(int(name), entry.key, 0, entry.size)

    def _listed_size(self, execution_id: int, stream: str) -> int:
        size = 0
        for chunk in self._chunks(execution_id, stream):
            size = chunk.log_end
        self._remember(execution_id, stream, size)
        return size

    def _remember(self, execution_id: int, stream: str, size: int) -> None:
        with self._lock:
            self._sizes[(execution_id, stream)] = size
            self._sizes.move_to_end((execution_id, stream))
            while len(self._sizes) > REMEMBERED:
                self._sizes.popitem(last=False)

    def size(self, execution_id: int, stream: str) -> int:
        """The end of the last chunk. Where this process knows an earlier end, no
        chunk starting there means the log still ends there: one look-up, not a
        listing of every chunk, for each poll of a live tail."""
        folder = self._stream(execution_id, stream)
        with self._lock:
            known = self._sizes.get((execution_id, stream))
        if known is not None and self.store.stat(f"{folder}{known:0{DIGITS}d}") is None:
            return known
        return self._listed_size(execution_id, stream)

    def append(self, execution_id: int, stream: str, offset: int, body: IO[bytes]) -> int:
        folder = self._stream(execution_id, stream)
        with self._lock:
            remembered = self._sizes.get((execution_id, stream))
        # a remembered size is trusted only where the writer says the log ends: it
        # learnt that end from a server, so the log reached it, and the conditional
        # write below fails if it went further
        size = remembered if remembered == offset else self._listed_size(execution_id, stream)
        if offset > size:
            raise gap(offset, size, stream)
        at = offset  # where the piece read next belongs
        while piece := read_piece(body, PIECE):
            size = self._write(folder, execution_id, stream, at, piece, size)
            at += len(piece)
        return size

    def _write(self, folder: str, execution_id: int, stream: str, at: int, piece: bytes,
               size: int) -> int:
        """Write what ``piece`` (whose first byte belongs at ``at``) adds to the log,
        which is believed ``size`` long; returns the log's new size."""
        for _ in range(ATTEMPTS):
            if at > size:  # the log lost bytes: deleted meanwhile
                raise gap(at, size, stream)
            if at + len(piece) <= size:  # written already (a retried append)
                return size
            key = f"{folder}{size:0{DIGITS}d}"
            if self.store.put_bytes(key, piece[size - at:], if_absent=True):
                self._remember(execution_id, stream, at + len(piece))
                return at + len(piece)
            size = self._listed_size(execution_id, stream)  # another writer got there
        raise ScitqBenchError(f"log {stream} of execution {execution_id}: {ATTEMPTS} writes "
                              "at its end were each taken by another writer")

    def read(self, execution_id: int, stream: str, offset: int = 0,
             limit: int | None = None) -> Iterator[bytes]:
        """As ``LogStorage.read``. A log is many small chunks: the next ``READ_AHEAD``
        of them are fetched at once, whole (``SMALL`` bytes at most each; a larger one
        streams when its turn comes), so reading a long log is not one round trip per
        chunk in a row."""
        stop = offset + limit if limit is not None and limit >= 0 else None
        pool = ThreadPoolExecutor(READ_AHEAD, thread_name_prefix="log-read")
        ahead: deque[tuple[Chunk, Future[bytes] | None]] = deque()
        try:
            for whole in self._chunks(execution_id, stream):
                if stop is not None and whole.offset >= stop:
                    break
                chunk = whole.within(offset, stop)
                if chunk is None:  # before the offset
                    continue
                fetch = pool.submit(self._fetch, chunk) if chunk.size <= SMALL else None
                ahead.append((chunk, fetch))
                if len(ahead) >= READ_AHEAD and not (yield from self._next(ahead)):
                    return
            while ahead and (yield from self._next(ahead)):
                pass
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _next(self, ahead: deque[tuple[Chunk, Future[bytes] | None]]
              ) -> Generator[bytes, None, bool]:
        """Yield the first chunk's bytes; False when it is gone (the log deleted)."""
        chunk, fetch = ahead.popleft()
        try:
            if fetch is not None:
                yield fetch.result()
                return True
            with self.store.read(chunk.key, chunk.start, chunk.end) as source:
                while data := source.read(CHUNK):
                    yield data
        except NotFoundError:
            return False
        return True

    def _fetch(self, chunk: Chunk) -> bytes:
        with self.store.read(chunk.key, chunk.start, chunk.end) as source:
            return source.read()

    def delete(self, execution_ids: Iterable[int]) -> None:
        for execution_id in execution_ids:
            with self._lock:
                for stream in STREAMS:
                    self._sizes.pop((execution_id, stream), None)
            for entry in list(self.store.list(self._folder(execution_id))):
                self.store.delete(entry.key)


def gap(offset: int, size: int, stream: str) -> Conflict:
    """The refusal of an append past the log's end, saying where to resend from."""
    return Conflict(f"log offset {offset} is past the end ({size}) of {stream}",
                    details={"expected_offset": size})


def read_piece(body: IO[bytes], limit: int) -> bytes:
    """The next ``limit`` bytes of ``body`` (fewer at its end), however few each read
    returns."""
    parts: list[bytes] = []
    left = limit
    while left > 0:
        data = body.read(min(CHUNK * 16, left))
        if not data:
            break
        parts.append(data)
        left -= len(data)
    return b"".join(parts)
