"""What every store offers, and the errors they raise.

A ``Store`` serves one root (a bucket, an Azure container, an FTP host, a file system,
the server's store) and is addressed by keys: "/"-separated paths without a leading
"/". Implementations translate their SDK's errors into ``StorageError`` subclasses whose
message names the URI and carries the store's own words, so a failed task says which
data failed and why.
"""

from __future__ import annotations

import hashlib
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from scitq_bench.storage.locations import Location

Progress = Callable[[int], None]  # called with each increment of bytes moved; thread-safe
HASH_CHUNK = 1 << 22
T = TypeVar("T")


def no_progress(_: int) -> None:
    return None


class StorageError(Exception):
    """A store refused or failed an operation; the message names the URI."""


class NotFoundError(StorageError):
    """No such object, folder, bucket, container or host path."""


class AccessDenied(StorageError):
    """The credentials the worker has do not allow this."""


class Unsupported(StorageError):
    """The store cannot do this (writing over http, say)."""


class TransientError(StorageError):
    """A failure worth trying again (a dropped connection, a busy store)."""


class ChecksumMismatch(TransientError):
    """The bytes that arrived are not those the store or the manifest describes."""


@dataclass(frozen=True)
class Entry:
    """A file in a store. ``version`` changes whenever its content does (an ETag, or
    modification time and size); ``sha256`` is known when the writer recorded it."""

    key: str
    size: int
    version: str | None = None
    modified: float | None = None  # seconds since the epoch
    sha256: str | None = None


class Store(ABC):
    """One root of one scheme. Methods take keys; ``location(key)`` gives the URI."""

    scheme: str
    root: str = ""

    def location(self, key: str) -> Location:
        return Location(self.scheme, self.root, key)

    @abstractmethod
    def stat(self, key: str) -> Entry | None:
        """The file at ``key``; None when there is none (a folder is not a file)."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[Entry]:
        """Every file whose key starts with ``prefix`` (a folder's key ends with "/"),
        at any depth, in key order."""

    @abstractmethod
    def download(self, entry: Entry, target: Path, progress: Progress) -> None:
        """Write the file's bytes to ``target`` (a temporary name the caller renames
        once it checked them)."""

    @abstractmethod
    def upload(self, source: Path, key: str, progress: Progress,
               sha256: str | None = None) -> None:
        """Store the local file ``source`` at ``key``, whole or not at all; ``sha256``,
        when given, is kept with it where the store keeps metadata."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        """Store ``data`` at ``key``; with ``if_absent``, only if nothing is there yet
        (atomically where the store allows it), returning False when something was."""

    @abstractmethod
    def read(self, key: str, start: int = 0, end: int | None = None) -> BinaryIO:
        """A stream of the file's bytes from ``start`` to ``end`` (excluded; None: the
        end). The caller closes it."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the file; a missing one is no error."""

    def refuse_writes(self, key: str) -> None:
        """Raise ``Unsupported`` when this store cannot be written to (http), before
        anything is read or moved; writable stores accept."""
        return None

    def close(self) -> None:
        """Release connections (FTP keeps one open)."""
        return None


def with_retries(operation: Callable[[], T], what: str, attempts: int = 4,
                 first_delay: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``operation``, trying again on ``TransientError`` with exponential backoff
    and jitter; the last error is raised as it is."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except TransientError:
            if attempt == attempts:
                raise
        sleep(delay * (0.5 + random.random()))
        delay *= 2
    raise AssertionError(what)  # the loop returns or raises


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a local file, read in large chunks (hashlib releases the
    interpreter lock on them, so hashing overlaps other threads' transfers)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
