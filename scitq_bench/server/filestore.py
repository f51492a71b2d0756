"""The server's own file store behind ``server://`` URIs, so the embedded setup needs
no cloud storage. Writes land in a temporary file renamed into place: a reader never
sees half a file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from scitq_bench.exceptions import InvalidInput, NotFound

CHUNK = 1 << 16
NAME_MAX, PATH_MAX = 255, 1024  # what file systems take (a name), and a sane bound


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def resolve(self, relative: str) -> Path:
        """Map a store path to disk, refusing anything that escapes the store."""
        clean = relative.strip("/")
        if "\x00" in clean:  # no file name holds one; the OS call would raise
            raise InvalidInput(f"invalid store path {relative!r}: NUL characters are not allowed")
        parts = clean.split("/")
        if not clean or any(part in ("", ".", "..") for part in parts):
            raise InvalidInput(f"invalid store path {relative!r}")
        if any(len(part.encode()) > NAME_MAX for part in parts) or len(clean) > PATH_MAX:
            raise InvalidInput(f"invalid store path {relative[:80]!r}...: names hold at most "
                               f"{NAME_MAX} bytes, paths {PATH_MAX} characters")
        path = (self.root / clean).resolve()
        if self.root not in path.parents:
            raise InvalidInput(f"invalid store path {relative!r}")
        return path

    def write(self, relative: str, body: BinaryIO,
              check: Callable[[Path], None] | None = None) -> int:
        """Store ``body`` at ``relative``; returns its size. ``check`` sees the whole
        file before it is renamed into place: if it raises, nothing is stored (not even
        the folder this write made)."""
        path = self.resolve(relative)
        made = not path.parent.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        size = 0
        try:
            with os.fdopen(fd, "wb") as handle:
                while chunk := body.read(CHUNK):
                    handle.write(chunk)
                    size += len(chunk)
            if check is not None:
                check(Path(temporary))
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            if made:
                with contextlib.suppress(OSError):  # another writer may use it by now
                    path.parent.rmdir()
            raise
        return size

    def discard(self, *relatives: str) -> None:
        """Remove stored files if they are there: cleaning up after a failed or undone
        operation, where a missing file or an odd path is no reason to fail."""
        for relative in relatives:
            try:
                self.resolve(relative).unlink(missing_ok=True)
            except (OSError, InvalidInput):
                pass

    def open(self, relative: str) -> Path:
        path = self.resolve(relative)
        if not path.is_file():
            raise NotFound(f"no file at server://{relative.strip('/')}")
        return path

    def list(self, prefix: str = "") -> list[dict]:
        base = self.resolve(prefix) if prefix.strip("/") else self.root
        if base.is_file():
            files = [base]
        elif base.is_dir():
            files = sorted(p for p in base.rglob("*") if p.is_file() and not p.name.startswith(".upload-"))
        else:
            return []
        return [
            {"path": str(p.relative_to(self.root)), "size": p.stat().st_size} for p in files
        ]
