"""``http(s)://``: read-only. A URL names one file (a folder has no listing here);
its version is the server's ETag, else its Last-Modified date."""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import BinaryIO, cast

import requests

from scitq_bench.storage.base import (
    AccessDenied,
    Entry,
    NotFoundError,
    Progress,
    StorageError,
    Store,
    TransientError,
    Unsupported,
)
from scitq_bench.storage.locations import Location

CONNECT_TIMEOUT, READ_TIMEOUT = 15.0, 60.0
CHUNK = 1 << 20


class HttpStore(Store):
    def __init__(self, scheme: str, root: str, query: str = "") -> None:
        self.scheme = scheme
        self.root = root
        self.query = query
        self.session = requests.Session()

    def location(self, key: str) -> Location:
        return Location(self.scheme, self.root, key, self.query)

    def _url(self, key: str) -> str:
        return self.location(key).uri()

    def stat(self, key: str) -> Entry | None:
        try:
            response = self.session.head(self._url(key), allow_redirects=True,
                                         timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        except requests.RequestException as exc:
            raise TransientError(f"{self.location(key)}: {exc}") from None
        if response.status_code in (404, 410):
            return None
        if response.status_code in (405, 501):  # no HEAD: learn nothing, fetch anyway
            return Entry(key, -1)
        self._check(key, response)
        size = int(response.headers.get("Content-Length") or -1)
        modified = response.headers.get("Last-Modified")
        version = response.headers.get("ETag") or modified
        return Entry(key, size, version.strip('"') if version else None,
                     parsedate_to_datetime(modified).timestamp() if modified else None)

    def list(self, prefix: str) -> Iterator[Entry]:
        if prefix.endswith("/") or not prefix:
            raise Unsupported(f"{self.location(prefix)}: http(s) cannot list a folder; name a file")
        entry = self.stat(prefix)
        if entry is not None:
            yield entry

    def download(self, entry: Entry, target: Path, progress: Progress) -> None:
        try:
            with self.session.get(self._url(entry.key), stream=True,
                                  timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)) as response:
                self._check(entry.key, response)
                with open(target, "wb") as out:
                    for chunk in response.iter_content(CHUNK):
                        out.write(chunk)
                        progress(len(chunk))
        except requests.RequestException as exc:
            raise TransientError(f"{self.location(entry.key)}: {exc}") from None

    def read(self, key: str, start: int = 0, end: int | None = None) -> BinaryIO:
        headers = {}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            response = self.session.get(self._url(key), stream=True, headers=headers,
                                        timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        except requests.RequestException as exc:
            raise TransientError(f"{self.location(key)}: {exc}") from None
        self._check(key, response)
        response.raw.decode_content = True
        return cast(BinaryIO, response.raw)

    def refuse_writes(self, key: str) -> None:
        raise Unsupported(f"{self.location(key)}: http(s) is read-only here; write to "
                          "s3://, azure://, ftp://, file:// or server://")

    def upload(self, source: Path, key: str, progress: Progress,
               sha256: str | None = None) -> None:
        self.refuse_writes(key)

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        self.refuse_writes(key)
        return False

    def delete(self, key: str) -> None:
        self.refuse_writes(key)

    def close(self) -> None:
        self.session.close()

    def _check(self, key: str, response: requests.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        message = f"{self.location(key)}: HTTP {status} {response.reason}"
        if status in (404, 410):
            raise NotFoundError(message)
        if status in (401, 403):
            raise AccessDenied(message)
        if status in (408, 429) or status >= 500:
            raise TransientError(message)
        raise StorageError(message)
