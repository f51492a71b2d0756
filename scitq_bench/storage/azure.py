"""Azure Blob Storage: ``azure://account/container/path``.

One ``ContainerClient`` per store, built from the first credential found (the store's
settings, then the SDK's environment variables, then DefaultAzureCredential) and shared
by every thread. Large files move as block blobs cut in ``chunk_mb`` parts, committed
only once every block arrived, so a failed upload leaves nothing behind. The SDK's own
messages are kept (first line, any URL query removed: it may hold a SAS signature).
"""

from __future__ import annotations

import io
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import (
    BlobClient,
    BlobProperties,
    ContainerClient,
    ExponentialRetry,
    StorageStreamDownloader,
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
from scitq_bench.storage.config import TransferTuning

T = TypeVar("T")
CONNECTION_STRING_VARIABLE = "AZURE_STORAGE_CONNECTION_STRING"
ACCOUNT_VARIABLE = "AZURE_STORAGE_ACCOUNT"
KEY_VARIABLE = "AZURE_STORAGE_KEY"
CONTAINER_NOT_FOUND = "ContainerNotFound"
INVALID_RANGE = "InvalidRange"
FOLDER_MARKER = "hdi_isfolder"  # metadata of a directory blob (hierarchical namespace)
# A query string in a URL ("...blob?sv=...&sig=...") or a secret written as name=value.
_QUERY = re.compile(r"(?<=[\w/.%-])\?[^\s'\"<>]*=[^\s'\"<>]*")
_SECRET_FIELD = re.compile(r"(?i)\b(AccountKey|SharedAccessSignature|sig)=[^;&\s'\"]*")
_SDK_WRAPPER = re.compile(r"^Operation returned an invalid status '(.*)'$")


class AzureStore(Store):
    """One container of one storage account; root is "account/container"."""

    scheme = "azure"

    def __init__(self, root: str, settings: dict[str, Any], tuning: TransferTuning) -> None:
        self.root = root
        self.account, _, self.container_name = root.partition("/")
        self._concurrency = tuning.concurrency
        self._secrets: list[str] = []
        try:
            self.container = self._client(settings, tuning)
        except ValueError as exc:  # a malformed connection string or endpoint, say
            raise StorageError(f"{self.location('')}: {self._clean(exc)} (check the settings "
                               f"of Azure account {self.account})") from None

    # -- the client ---------------------------------------------------------------------

    def _client(self, settings: dict[str, Any], tuning: TransferTuning) -> ContainerClient:
        """The container's client from the first credential found, in the documented
        order; transfers cut in ``chunk_mb`` parts, each request tried ``attempts``
        times in all (with a backoff shorter than the SDK's 15 s first wait)."""
        options: dict[str, Any] = {
            "max_single_put_size": tuning.chunk_bytes,
            "max_block_size": tuning.chunk_bytes,
            "max_single_get_size": tuning.chunk_bytes,
            "max_chunk_get_size": tuning.chunk_bytes,
            "retry_policy": ExponentialRetry(initial_backoff=2, increment_base=2,
                                             random_jitter_range=1,
                                             retry_total=tuning.attempts - 1),
        }
        connection_string = settings.get("connection_string") or self._environment_string()
        if connection_string:
            self._secrets += _connection_string_secrets(connection_string)
            return ContainerClient.from_connection_string(
                connection_string, self.container_name, **options)
        url = settings.get("endpoint") or f"https://{self.account}.blob.core.windows.net"
        key = settings.get("account_key") or self._environment_key()
        if key:
            self._secrets.append(key)
            return ContainerClient(url, self.container_name,
                                   credential=AzureNamedKeyCredential(self.account, key),
                                   **options)
        if settings.get("sas_token"):
            token = str(settings["sas_token"]).lstrip("?")
            self._secrets.append(token)
            return ContainerClient(url, self.container_name,
                                   credential=AzureSasCredential(token), **options)
        from azure.identity import DefaultAzureCredential
        return ContainerClient(url, self.container_name, credential=DefaultAzureCredential(),
                               **options)

    def _environment_string(self) -> str | None:
        """AZURE_STORAGE_CONNECTION_STRING, when it is this account's."""
        text = os.environ.get(CONNECTION_STRING_VARIABLE, "")
        fields = _connection_string_fields(text)
        return text if fields.get("accountname", "").lower() == self.account.lower() else None

    def _environment_key(self) -> str | None:
        """AZURE_STORAGE_KEY, unless AZURE_STORAGE_ACCOUNT says it is another account's."""
        account = os.environ.get(ACCOUNT_VARIABLE)
        if account and account.lower() != self.account.lower():
            return None
        return os.environ.get(KEY_VARIABLE) or None

    def _blob(self, key: str) -> BlobClient:
        return self.container.get_blob_client(key)

    # -- the operations -----------------------------------------------------------------

    def stat(self, key: str) -> Entry | None:
        if key == "" or key.endswith("/"):
            return None

        def properties() -> Entry | None:
            try:
                found = self._blob(key).get_blob_properties()
            except ResourceNotFoundError as exc:
                if _error_code(exc) == CONTAINER_NOT_FOUND:
                    raise
                return None
            return _entry(key, found)

        return self._call(key, properties)

    def list(self, prefix: str) -> Iterator[Entry]:
        blobs = self.container.list_blobs(name_starts_with=prefix or None, include=["metadata"])
        pages = iter(blobs)
        while True:
            found = self._call(prefix, lambda: next(pages, None))
            if found is None:
                return
            if found.name.endswith("/") or (found.metadata or {}).get(FOLDER_MARKER) == "true":
                continue
            yield _entry(found.name, found)

    def download(self, entry: Entry, target: Path, progress: Progress) -> None:
        hook = _ProgressHook(progress)
        conditions: dict[str, Any] = {}
        if entry.version:
            conditions = {"etag": f'"{entry.version}"',
                          "match_condition": MatchConditions.IfNotModified}

        def transfer() -> None:
            stream = self._blob(entry.key).download_blob(
                max_concurrency=self._concurrency, progress_hook=hook, **conditions)
            with open(target, "wb") as handle:
                stream.readinto(handle)

        self._call(entry.key, transfer, hook)

    def upload(self, source: Path, key: str, progress: Progress,
               sha256: str | None = None) -> None:
        hook = _ProgressHook(progress)
        size = source.stat().st_size

        def transfer() -> None:
            with open(source, "rb") as handle:
                self._blob(key).upload_blob(
                    handle, length=size, overwrite=True, max_concurrency=self._concurrency,
                    metadata={"sha256": sha256} if sha256 else None, progress_hook=hook)

        self._call(key, transfer, hook)

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        def put() -> bool:
            try:
                self._blob(key).upload_blob(data, length=len(data), overwrite=not if_absent)
            except ResourceExistsError:
                if if_absent:
                    return False
                raise
            return True

        return self._call(key, put)

    def read(self, key: str, start: int = 0, end: int | None = None) -> BinaryIO:
        if end is not None and end <= start:
            return io.BytesIO(b"")
        length = None if end is None else end - start

        def open_range() -> StorageStreamDownloader[bytes] | None:
            try:
                return self._blob(key).download_blob(offset=start, length=length,
                                                      max_concurrency=1)
            except HttpResponseError as exc:
                if _error_code(exc) == INVALID_RANGE:  # starts at or past the end
                    return None
                raise

        stream = self._call(key, open_range)
        if stream is None:
            return io.BytesIO(b"")
        chunks = stream.chunks()
        return io.BufferedReader(_ChunkReader(lambda: self._call(key, lambda: next(chunks, None))))

    def delete(self, key: str) -> None:
        def remove() -> None:
            try:
                self._blob(key).delete_blob()
            except ResourceNotFoundError as exc:
                if _error_code(exc) == CONTAINER_NOT_FOUND:
                    raise

        self._call(key, remove)

    def close(self) -> None:
        self.container.close()

    # -- errors -------------------------------------------------------------------------

    def _call(self, key: str, operation: Callable[[], T],
              hook: _ProgressHook | None = None) -> T:
        """Run ``operation``, raising what the progress callback raised as it is, and the
        SDK's errors as ``StorageError`` subclasses naming the URI."""
        try:
            return operation()
        except Exception as exc:
            if hook is not None and hook.error is not None:
                if exc is hook.error:
                    raise
                raise hook.error from None
            if not isinstance(exc, AzureError):
                raise
            kind, words = self._translate(exc)
            raise kind(f"{self.location(key)}: {words}") from None

    def _translate(self, exc: AzureError) -> tuple[type[StorageError], str]:
        words = self._clean(exc)
        status = getattr(exc, "status_code", None)
        if isinstance(exc, ResourceNotFoundError):
            return NotFoundError, words
        if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
            return AccessDenied, words
        if isinstance(exc, ResourceModifiedError):
            return StorageError, f"changed since it was listed: {words}"
        if isinstance(exc, (ServiceRequestError, ServiceResponseError, IncompleteReadError)):
            return TransientError, words
        if isinstance(exc, HttpResponseError) and status is not None and (
                status >= 500 or status in (408, 429)):
            return TransientError, words
        return StorageError, words

    def _clean(self, exc: Exception) -> str:
        """The SDK's message: its first line, without any URL query or secret."""
        text = str(getattr(exc, "message", None) or exc or type(exc).__name__)
        line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        line = _SDK_WRAPPER.sub(r"\1", line)
        line = _SECRET_FIELD.sub(r"\1=(hidden)", _QUERY.sub("", line))
        for secret in self._secrets:
            line = line.replace(secret, "(hidden)")
        return line


class _ProgressHook:
    """The SDK reports cumulative bytes, from several threads and not always in order;
    ``Progress`` takes increments. What the callback raises is kept, so that it reaches
    the caller as it is even where the SDK would wrap it."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._lock = threading.Lock()
        self._reported = 0
        self.error: BaseException | None = None

    def __call__(self, current: int, _total: int | None) -> None:
        if self.error is not None:
            raise self.error
        with self._lock:
            step = current - self._reported
            if step <= 0:
                return
            self._reported = current
        try:
            self._progress(step)
        except BaseException as exc:
            self.error = exc
            raise


class _ChunkReader(io.RawIOBase):
    """A raw stream over the chunks a download yields one at a time, so a large blob is
    never held whole in memory."""

    def __init__(self, next_chunk: Callable[[], bytes | None]) -> None:
        self._next_chunk = next_chunk
        self._pending = memoryview(b"")
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._done:
            chunk = self._next_chunk()
            if chunk is None:
                self._done = True
            else:
                self._pending = memoryview(chunk)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def close(self) -> None:
        self._pending, self._done = memoryview(b""), True
        super().close()


def _entry(key: str, found: BlobProperties) -> Entry:
    modified = found.last_modified.timestamp() if found.last_modified else None
    version = (found.etag or "").strip('"') or None
    return Entry(key, int(found.size or 0), version, modified,
                 (found.metadata or {}).get("sha256"))


def _error_code(exc: AzureError) -> str | None:
    code = getattr(exc, "error_code", None)
    return None if code is None else str(getattr(code, "value", code))


def _connection_string_fields(text: str) -> dict[str, str]:
    fields = (part.partition("=") for part in text.split(";") if "=" in part)
    return {name.strip().lower(): value.strip() for name, _, value in fields}


def _connection_string_secrets(text: str) -> list[str]:
    fields = _connection_string_fields(text)
    return [fields[name] for name in ("accountkey", "sharedaccesssignature") if fields.get(name)]
