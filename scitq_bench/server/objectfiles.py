"""The files behind ``server://`` URIs in an object store (an S3 bucket, an Azure
container, or a shared mount through ``file://``) that every server replica reaches:
the object ``FileStorage``.

A file lives at ``<prefix><store path>``. A write spools the upload to a local
temporary file (the ``check`` needs it whole, and an object store's upload is whole or
nothing), then uploads it: a reader, on any replica, gets the old object or the new
one. A download reads the object by ranges from where its stream stands, so a
``Range`` request fetches only what it answers. Its size and tag are those the object
had when opened; an object replaced between that and the read is cut at that size (a
shorter one is an error): the store's read takes no version to hold it to.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, BinaryIO

from scitq_bench.exceptions import InvalidInput, NotFound
from scitq_bench.server.filestore import TEMPORARY, clean_store_path
from scitq_bench.server.storage import FileStorage, StoredEntry, StoredFile
from scitq_bench.storage.base import Entry, StorageError, Store, file_sha256, no_progress

CHUNK = 1 << 20  # bytes spooled, and read from the store, at a time


class ObjectFileStore(FileStorage):
    """Files under ``prefix`` (a folder key: "" or ending with "/") of ``store``; uploads
    are spooled in ``spool_dir`` (local to this process, made when first needed)."""

    def __init__(self, store: Store, prefix: str, *, spool_dir: Path) -> None:
        self.store = store
        self.prefix = prefix
        self.spool_dir = spool_dir

    def _key(self, path: str) -> tuple[str, str]:
        clean = clean_store_path(path)
        return clean, self.prefix + clean

    def write(self, path: str, body: IO[bytes],
              check: Callable[[Path], None] | None = None) -> int:
        _, key = self._key(path)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        fd, spooled = tempfile.mkstemp(dir=self.spool_dir, prefix=TEMPORARY)
        copy, size = Path(spooled), 0
        try:
            with os.fdopen(fd, "wb") as handle:
                while chunk := body.read(CHUNK):
                    handle.write(chunk)
                    size += len(chunk)
            if check is not None:
                check(copy)
            self.store.upload(copy, key, no_progress, sha256=file_sha256(copy))
        finally:
            copy.unlink(missing_ok=True)
        return size

    def open(self, path: str) -> StoredFile:
        clean, key = self._key(path)
        entry = self.store.stat(key)
        if entry is None:
            raise NotFound(f"no file at server://{clean}")
        reader = RangeReader(self.store, key, entry.size, f"server://{clean}")
        return StoredFile(path=clean, size=entry.size, modified=entry.modified or 0.0,
                          etag=etag(entry), stream=io.BufferedReader(reader, CHUNK))

    def list(self, prefix: str = "") -> list[StoredEntry]:
        clean = prefix.strip("/") and clean_store_path(prefix)
        if not clean:
            found = list(self.store.list(self.prefix))
        else:  # the file itself, and what lies under it as a folder: never "a/bc" for "a/b"
            itself = self.store.stat(self.prefix + clean)
            found = [*([itself] if itself else []), *self.store.list(f"{self.prefix}{clean}/")]
        entries: list[StoredEntry] = [
            {"path": entry.key.removeprefix(self.prefix), "size": entry.size,
             "modified": entry.modified or 0.0, "etag": etag(entry)}
            for entry in found if not entry.key.endswith("/")]  # no folder markers
        return sorted(entries, key=lambda entry: entry["path"])

    def delete(self, path: str) -> None:
        clean, key = self._key(path)
        if self.store.stat(key) is None:
            raise NotFound(f"no file at server://{clean}")
        self.store.delete(key)

    def discard(self, *paths: str) -> None:
        for path in paths:
            try:
                self.store.delete(self._key(path)[1])
            except (InvalidInput, StorageError):
                pass


def etag(entry: Entry) -> str:
    """The object's version as an HTTP entity tag (which holds no double quote, S3's
    ETags come quoted), the same in a listing and a download."""
    if entry.version:
        return entry.version.replace('"', "")
    return f"{int((entry.modified or 0) * 1e9):x}-{entry.size:x}"


class RangeReader(io.RawIOBase):
    """A stored object's first ``size`` bytes as a seekable raw stream: the first read
    after a seek opens a ranged read of the store from there to ``size``, and reads
    on from it, so seeking costs nothing and a ``Range`` answer fetches only its bytes.
    An object that ends early (replaced by a shorter one meanwhile) is an error naming
    ``uri``, never a short file taken for whole."""

    def __init__(self, store: Store, key: str, size: int, uri: str) -> None:
        self.store, self.key, self.size, self.uri = store, key, size, uri
        self.position = 0
        self._source: BinaryIO | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"{self.uri}: cannot seek to {base + offset}")
        if base + offset != self.position:
            self._drop()
            self.position = base + offset
        return self.position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self.size - self.position)
        if wanted <= 0:
            return 0
        if self._source is None:
            self._source = self.store.read(self.key, self.position, self.size)
        data = self._source.read(wanted)
        if not data:
            raise OSError(f"{self.uri} ended at byte {self.position} of {self.size}: "
                          "it was replaced or deleted while being read")
        memoryview(buffer)[: len(data)] = data
        self.position += len(data)
        return len(data)

    def _drop(self) -> None:
        if self._source is not None:
            source, self._source = self._source, None
            source.close()

    def close(self) -> None:
        if not self.closed:
            self._drop()
        super().close()
