"""``file://``: a local (or mounted) file system, keys being absolute paths without
their leading "/". Writes go to a temporary name in the target's folder and are
renamed into place, as on every other store."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from scitq_bench.storage.base import (
    AccessDenied,
    Entry,
    NotFoundError,
    Progress,
    StorageError,
    Store,
)
from scitq_bench.storage.streams import bounded

CHUNK = 1 << 20


class LocalStore(Store):
    scheme = "file"

    def _path(self, key: str) -> Path:
        return Path("/" + key)

    def stat(self, key: str) -> Entry | None:
        try:
            info = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._error(key, exc) from None
        if not os.path.isfile(self._path(key)):
            return None
        return Entry(key, info.st_size, f"{info.st_mtime_ns:x}-{info.st_size:x}",
                     info.st_mtime)

    def list(self, prefix: str) -> Iterator[Entry]:
        path = self._path(prefix)
        folder = path if prefix.endswith("/") or path.is_dir() else path.parent
        if not folder.is_dir():
            return
        found: list[Entry] = []
        for directory, _, names in os.walk(folder):
            for name in names:
                if name.startswith(".") and ".part-" in name:
                    continue  # an upload in progress (ours, see upload): not a file yet
                key = os.path.join(directory, name).lstrip("/")
                if key.startswith(prefix.lstrip("/")) and os.path.isfile("/" + key):
                    entry = self.stat(key)
                    if entry is not None:
                        found.append(entry)
        yield from sorted(found, key=lambda entry: entry.key)

    def download(self, entry: Entry, target: Path, progress: Progress) -> None:
        try:
            with open(self._path(entry.key), "rb") as source, open(target, "wb") as out:
                _copy(source, out, progress)
        except _CallbackFailed as failed:
            raise failed.error from None
        except OSError as exc:
            raise self._error(entry.key, exc) from None

    def upload(self, source: Path, key: str, progress: Progress,
               sha256: str | None = None) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.part-")
            try:
                with open(source, "rb") as handle, os.fdopen(fd, "wb") as out:
                    _copy(handle, out, progress)
                shutil.copymode(source, temporary)
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except _CallbackFailed as failed:
            raise failed.error from None
        except OSError as exc:
            raise self._error(key, exc) from None

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.part-")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            if not if_absent:
                os.replace(temporary, target)
                return True
            try:
                os.link(temporary, target)  # fails if the name exists: an atomic create
            except FileExistsError:
                return False
            finally:
                os.unlink(temporary)
            return True
        except OSError as exc:
            raise self._error(key, exc) from None

    def read(self, key: str, start: int = 0, end: int | None = None) -> BinaryIO:
        try:
            handle = open(self._path(key), "rb")
        except OSError as exc:
            raise self._error(key, exc) from None
        handle.seek(start)
        if end is None:
            return handle
        return bounded(handle, max(0, end - start))

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except IsADirectoryError:
            raise StorageError(f"{self.location(key)}: is a folder") from None
        except OSError as exc:
            raise self._error(key, exc) from None

    def _error(self, key: str, exc: OSError) -> StorageError:
        where = self.location(key)
        reason = exc.strerror or str(exc)
        if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
            return NotFoundError(f"{where}: no such file or directory")
        if isinstance(exc, PermissionError):
            return AccessDenied(f"{where}: {reason}")
        return StorageError(f"{where}: {reason}")


class _CallbackFailed(Exception):
    """What the caller's progress callback raised, kept apart from the file system's
    own errors (a ``TimeoutError`` from a deadline is an ``OSError`` too)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _copy(source: BinaryIO, out: BinaryIO, progress: Progress) -> None:
    while chunk := source.read(CHUNK):
        out.write(chunk)
        try:
            progress(len(chunk))
        except Exception as exc:
            raise _CallbackFailed(exc) from exc
