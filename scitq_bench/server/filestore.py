"""The server's own file store behind ``server://`` URIs, in one local directory, so
the embedded setup needs no cloud storage: the local ``FileStorage``.

Writes land in a hidden temporary file in the store's root, renamed into place (one
file system: the rename is atomic): a reader, in this process or another, never sees
half a file, and of two writers of one path the last rename wins whole. An open file
keeps the bytes it had when opened. Several hosts may share the directory (one file
system mounted at the same path on each).
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from scitq_bench.exceptions import InvalidInput, NotFound
from scitq_bench.server.storage import FileStorage, StoredEntry, StoredFile

CHUNK = 1 << 16
NAME_MAX, PATH_MAX = 255, 1024  # what file systems take (a name), and a sane bound
TEMPORARY = ".upload-"  # temporary files' prefix: never listed


def clean_store_path(relative: str) -> str:
    """``relative`` without its outer "/", checked as every store takes paths: no
    empty, "." or ".." part, no NUL, no name over 255 bytes, no path over 1,024
    characters (``InvalidInput`` naming it)."""
    clean = relative.strip("/")
    if "\x00" in clean:  # no file name holds one; the OS call would raise
        raise InvalidInput(f"invalid store path {relative!r}: NUL characters are not allowed")
    parts = clean.split("/")
    if not clean or any(part in ("", ".", "..") for part in parts):
        raise InvalidInput(f"invalid store path {relative!r}")
    if any(len(part.encode()) > NAME_MAX for part in parts) or len(clean) > PATH_MAX:
        raise InvalidInput(f"invalid store path {relative[:80]!r}...: names hold at most "
                           f"{NAME_MAX} bytes, paths {PATH_MAX} characters")
    return clean


def local_etag(info: os.stat_result) -> str:
    """A local file's tag: it changes whenever the file is written (a write renames a
    new file into place: a new inode), the same in a listing and a download."""
    return f"{info.st_mtime_ns:x}-{info.st_size:x}-{info.st_ino:x}"


class LocalFileStore(FileStorage):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _resolve(self, relative: str) -> Path:
        """Map a store path to disk, refusing anything that escapes the store."""
        path = (self.root / clean_store_path(relative)).resolve()
        if self.root not in path.parents:  # a link inside the store pointing out of it
            raise InvalidInput(f"invalid store path {relative!r}")
        return path

    def write(self, relative: str, body: IO[bytes],
              check: Callable[[Path], None] | None = None) -> int:
        """As ``FileStorage.write``. The target's folder is made only once the upload
        passed ``check``: a refused write leaves no folder, and no writer ever removes
        one that another is writing into."""
        path = self._resolve(relative)
        self.root.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.root, prefix=TEMPORARY)
        size = 0
        try:
            with os.fdopen(fd, "wb") as handle:
                while chunk := body.read(CHUNK):
                    handle.write(chunk)
                    size += len(chunk)
            if check is not None:
                check(Path(temporary))
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return size

    def discard(self, *relatives: str) -> None:
        for relative in relatives:
            try:
                self._resolve(relative).unlink(missing_ok=True)
            except (OSError, InvalidInput):
                pass

    def delete(self, relative: str) -> None:
        path = self._resolve(relative)
        missing = NotFound(f"no file at server://{relative.strip('/')}")
        if not path.is_file():
            raise missing
        try:
            path.unlink()
        except FileNotFoundError:  # deleted meanwhile
            raise missing from None

    def open(self, relative: str) -> StoredFile:
        path = self._resolve(relative)
        clean = relative.strip("/")
        missing = NotFound(f"no file at server://{clean}")
        if not path.is_file():  # never open a folder, a pipe or a device
            raise missing
        try:
            stream = path.open("rb")
        except FileNotFoundError:  # discarded since
            raise missing from None
        info = os.fstat(stream.fileno())
        return StoredFile(path=clean, size=info.st_size, modified=info.st_mtime,
                          etag=local_etag(info), stream=stream)

    def list(self, prefix: str = "") -> list[StoredEntry]:
        base = self._resolve(prefix) if prefix.strip("/") else self.root
        found = [base] if base.is_file() else sorted(base.rglob("*")) if base.is_dir() else []
        entries: list[StoredEntry] = []
        for path in found:
            if path.name.startswith(TEMPORARY):
                continue
            try:
                info = path.stat()
            except FileNotFoundError:  # discarded or renamed since
                continue
            if stat.S_ISREG(info.st_mode):
                entries.append({"path": str(path.relative_to(self.root)), "size": info.st_size,
                                "modified": info.st_mtime, "etag": local_etag(info)})
        return entries

