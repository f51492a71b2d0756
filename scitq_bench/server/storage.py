"""The two stores the server keeps outside its database, as interfaces: execution logs
(``LogStorage``) and the files behind ``server://`` URIs (``FileStorage``).

Views, the domain and the GUI only ever see these: store paths and execution ids go in,
byte streams come out, never a local path. So every server process and replica can
share one store: the local directories (``logstore.LocalLogStore``,
``filestore.LocalFileStore``) or, with ``store_url`` set, an S3 bucket or an Azure
container (``objectlogs.ObjectLogStore``, ``objectfiles.ObjectFileStore``), without a
view changing. ``build_stores`` picks the implementation from the settings.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, BinaryIO, TypedDict

if TYPE_CHECKING:
    from scitq_bench.settings import ServerSettings

STREAMS = ("stdout", "stderr")
log = logging.getLogger(__name__)


class StoredEntry(TypedDict):
    """A listed file, as the API answers it. ``etag`` is the tag a download of it
    carries (its ETag header): it changes whenever the file is replaced, so a cache
    can keep it as the file's version."""

    path: str
    size: int
    modified: float  # seconds since the epoch
    etag: str


@dataclass
class StoredFile:
    """A stored file opened for reading, with what a download needs to answer range
    and conditional requests. Size, date and tag describe the very bytes ``stream``
    reads (taken when it was opened), even if the file is replaced meanwhile. The
    caller closes it (a response closes it once sent)."""

    path: str  # its store path, without "server://"
    size: int
    modified: float  # seconds since the epoch
    etag: str
    stream: BinaryIO

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> StoredFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


class LogStorage(ABC):
    """Append-only logs, one per execution and stream (``STREAMS``).

    An append carries the offset the writer believes is the end: a repeated chunk (a
    retry after a lost answer) is skipped where it overlaps, and a gap is refused
    (``Conflict`` with ``details={"expected_offset": size}``) so the writer resends from
    there. Appends from any number of processes never interleave, and a byte once
    written never changes: a reader sees a prefix of the final log."""

    @abstractmethod
    def size(self, execution_id: int, stream: str) -> int:
        """Bytes in the log so far; 0 for a log never written."""

    @abstractmethod
    def append(self, execution_id: int, stream: str, offset: int, body: IO[bytes]) -> int:
        """Write ``body`` at ``offset``, read in chunks; returns the new size."""

    @abstractmethod
    def read(self, execution_id: int, stream: str, offset: int = 0,
             limit: int | None = None) -> Iterator[bytes]:
        """Chunks of the log from ``offset``, ``limit`` bytes at most (None: to the
        end); nothing for a log never written. Never the whole log in memory."""

    @abstractmethod
    def delete(self, execution_ids: Iterable[int]) -> None:
        """Remove every stream of these executions; missing logs are no error."""


class FileStorage(ABC):
    """Files under store paths ("a/b/c", the path of ``server://a/b/c``).

    A write replaces the file whole: a reader, in this process or another, gets the old
    bytes or the new ones, never a mix. A path with empty, "." or ".." parts, a NUL, a
    name over 255 bytes or a path over 1,024 characters is refused (``InvalidInput``)."""

    @abstractmethod
    def write(self, path: str, body: IO[bytes],
              check: Callable[[Path], None] | None = None) -> int:
        """Store ``body`` (read in chunks) at ``path``; returns its size. ``check`` is
        given a local, temporary copy of the whole upload before it takes its place: if
        it raises, nothing is stored."""

    @abstractmethod
    def open(self, path: str) -> StoredFile:
        """The file opened for reading; ``NotFound`` naming ``server://path`` when
        there is none."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[StoredEntry]:
        """The files at or under ``prefix`` ("" is the whole store), sorted by path;
        none when nothing is there."""

    @abstractmethod
    def delete(self, path: str) -> None:
        """Remove the file; ``NotFound`` naming ``server://path`` when there is none."""

    @abstractmethod
    def discard(self, *paths: str) -> None:
        """Remove these files if they are there: cleaning up after a failed or undone
        operation, where a missing file or an odd path is no reason to fail."""


def build_stores(settings: ServerSettings) -> tuple[LogStorage, FileStorage]:
    """The stores these settings name: local directories (``log_dir`` and
    ``store_dir``, which replicas share by mounting one file system at the same path),
    or, with ``store_url``, one object store every replica reaches (logs under its
    ``logs/``, files under its ``files/``), its SDK imported only then."""
    if settings.store_url is None:
        from scitq_bench.server.filestore import LocalFileStore
        from scitq_bench.server.logstore import LocalLogStore

        return LocalLogStore(settings.log_dir), LocalFileStore(settings.store_dir)
    from scitq_bench.server.objectfiles import ObjectFileStore
    from scitq_bench.server.objectlogs import ObjectLogStore
    from scitq_bench.storage.stores import Stores

    store, location = Stores(settings.storage).resolve(settings.store_url, "store_url")
    prefix = location.as_folder().key
    log.info("execution logs and stored files in %s (store_url)", location.redacted())
    return (ObjectLogStore(store, prefix + "logs/"),
            ObjectFileStore(store, prefix + "files/", spool_dir=settings.data_dir / "spool"))
