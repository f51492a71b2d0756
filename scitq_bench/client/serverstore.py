"""``server://`` as a ``Store``: the server's own file store reached through its API
with this client's token, so ``scitq-bench files`` and scripts copy to and from it
like any other store. What the token may reach is the server's decision (admins: all
of it; a worker: what its live executions name)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from scitq_bench.client.api import Client
from scitq_bench.exceptions import (
    Forbidden,
    NotFound,
    ScitqBenchError,
    ServerUnreachable,
    Unauthorized,
)
from scitq_bench.storage.base import (
    AccessDenied,
    Entry,
    NotFoundError,
    Progress,
    StorageError,
    Store,
    TransientError,
)
from scitq_bench.storage.streams import bounded

CHUNK = 1 << 20


class ServerStore(Store):
    scheme = "server"

    def __init__(self, client: Client) -> None:
        self.client = client

    def stat(self, key: str) -> Entry | None:
        if not key.strip("/") or key.endswith("/"):
            return None
        with self._errors(key):
            listed = self.client.file_list(key)
        return next((_entry(item) for item in listed if item["path"] == key), None)

    def list(self, prefix: str) -> Iterator[Entry]:
        with self._errors(prefix):
            listed = self.client.file_list(prefix.rstrip("/"))
        for item in sorted(listed, key=lambda item: str(item["path"])):
            if str(item["path"]).startswith(prefix):
                yield _entry(item)

    def download(self, entry: Entry, target: Path, progress: Progress) -> None:
        with self._errors(entry.key):
            response = self.client.request("GET", f"/files/{entry.key}", stream=True)
            with response, open(target, "wb") as handle:
                for chunk in response.iter_content(CHUNK):
                    handle.write(chunk)
                    progress(len(chunk))

    def upload(self, source: Path, key: str, progress: Progress,
               sha256: str | None = None) -> None:
        with self._errors(key), open(source, "rb") as handle:
            self.client.file_put(key, cast(IO[bytes], _Counting(handle, progress)))

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        """``if_absent`` is checked, then written: the server's API has no atomic
        create, so two writers racing may both write (the last one wins whole)."""
        if if_absent and self.stat(key) is not None:
            return False
        with self._errors(key):
            self.client.file_put(key, data)
        return True

    def read(self, key: str, start: int = 0, end: int | None = None) -> BinaryIO:
        with self._errors(key):
            response = self.client.request("GET", f"/files/{key}", stream=True)
        response.raw.decode_content = True
        stream = cast(BinaryIO, response.raw)
        if start:
            stream.read(start)
        return stream if end is None else bounded(stream, max(0, end - start))

    def delete(self, key: str) -> None:
        with self._errors(key), contextlib.suppress(NotFound):
            self.client.file_delete(key)

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        where = self.location(key)
        try:
            yield
        except NotFound as exc:
            raise NotFoundError(f"{where}: {exc}") from None
        except (Forbidden, Unauthorized) as exc:
            raise AccessDenied(f"{where}: {exc}") from None
        except ServerUnreachable as exc:
            raise TransientError(f"{where}: {exc}") from None
        except ScitqBenchError as exc:
            raise StorageError(f"{where}: {exc}") from None


def _entry(item: dict[str, Any]) -> Entry:
    return Entry(str(item["path"]), int(item["size"]), item.get("etag"), item.get("modified"))


class _Counting:
    """A file whose reads report progress (requests streams the upload from it)."""

    def __init__(self, handle: IO[bytes], progress: Progress) -> None:
        self.handle = handle
        self.progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.progress(len(data))
        return data

    def __len__(self) -> int:
        return os.fstat(self.handle.fileno()).st_size - self.handle.tell()
