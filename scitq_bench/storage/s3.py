"""``s3://bucket/key``: Amazon S3 and S3-compatible stores (MinIO, OVH, Ceph...) through
boto3.

Credentials, region and endpoint come from boto3's own configuration (environment,
``~/.aws``, instance role; ``AWS_ENDPOINT_URL``) unless the storage settings give them
for the bucket. Large files move in parts of the tuning's chunk size, several at a time,
through boto3's transfer manager; a download asks for the version it was given
(If-Match on every part), so an object replaced meanwhile fails instead of mixing two
versions. The ``sha256`` of an upload is kept in the object's metadata.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from boto3.s3.transfer import ProgressCallbackInvoker, TransferConfig, create_transfer_manager
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from s3transfer.exceptions import (
    RetriesExceededError,
    S3DownloadFailedError,
    S3ValidationError,
)
from s3transfer.subscribers import BaseSubscriber

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

SPARE_CONNECTIONS = 4  # beyond the transfer's: a stat or a list while parts move
READ_CHUNK = 1 << 20  # a small download's writes and progress steps
SHA256 = "sha256"  # the metadata entry (x-amz-meta-sha256)
NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NotFound", "404"}
DENIED = {"AccessDenied", "Forbidden", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch",
          "AllAccessDisabled", "AccountProblem", "ExpiredToken", "InvalidToken",
          "TokenRefreshRequired"}
BUSY = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
        "TooManyRequestsException", "RequestTimeout", "RequestTimeoutException",
        "InternalError", "ServiceUnavailable", "OperationAborted", "PriorRequestNotComplete"}
CONDITION_FAILED = {"PreconditionFailed", "ConditionalRequestConflict"}
SDK_ERRORS = (ClientError, BotoCoreError, RetriesExceededError, S3DownloadFailedError,
              S3ValidationError)


class S3Store(Store):
    """One bucket. The client is built once and shared by every thread."""

    scheme = "s3"

    def __init__(self, root: str, settings: dict[str, Any], tuning: TransferTuning) -> None:
        self.root = root
        self._secrets = [str(settings[name]) for name in ("secret_access_key", "session_token")
                         if settings.get(name)]
        self._bucket_seen = False
        style = settings.get("addressing_style")
        config = Config(retries={"mode": "standard", "max_attempts": tuning.attempts},
                        max_pool_connections=tuning.concurrency + SPARE_CONNECTIONS,
                        s3={"addressing_style": style} if style else None)
        try:
            session = boto3.Session(
                profile_name=settings.get("profile"), region_name=settings.get("region"),
                aws_access_key_id=settings.get("access_key_id"),
                aws_secret_access_key=settings.get("secret_access_key"),
                aws_session_token=settings.get("session_token"))
            self.client = session.client("s3", endpoint_url=settings.get("endpoint_url"),
                                         config=config)
        except (BotoCoreError, ValueError) as exc:
            raise StorageError(f"{self.location('')}: {self._scrub(str(exc))}") from exc
        self.client.meta.events.register_first("needs-retry.s3", _no_retry_after_progress_failure)
        self.transfer = TransferConfig(
            multipart_threshold=tuning.chunk_bytes, multipart_chunksize=tuning.chunk_bytes,
            max_concurrency=tuning.concurrency, num_download_attempts=tuning.attempts,
            use_threads=True)

    # -- reading ----------------------------------------------------------------------------

    def stat(self, key: str) -> Entry | None:
        if not key or key.endswith("/"):
            return None  # a folder is not a file
        try:
            head = self.client.head_object(Bucket=self.root, Key=key)
        except SDK_ERRORS as exc:
            if _status(exc) == 404:
                self._check_bucket(key)
                return None
            if _status(exc) == 403:  # a HEAD's answer has no body to say more
                raise AccessDenied(f"{self.location(key)}: Forbidden (403; S3 answers so "
                                   "for a missing object too without s3:ListBucket)") from exc
            raise self._error(exc, key) from exc
        self._bucket_seen = True
        return Entry(key, head["ContentLength"], _etag(head["ETag"]),
                     head["LastModified"].timestamp(), head.get("Metadata", {}).get(SHA256))

    def _check_bucket(self, key: str) -> None:
        """A HEAD's 404 does not say whether the key or the bucket is missing: ask the
        bucket once, so a mistyped bucket is an error rather than "no such file"."""
        if self._bucket_seen:
            return
        try:
            self.client.head_bucket(Bucket=self.root)
        except SDK_ERRORS as exc:
            if _status(exc) == 404:
                raise NotFoundError(f"{self.location(key)}: bucket {self.root!r} does not "
                                    "exist (NoSuchBucket)") from exc
            if _status(exc) != 403:  # the bucket may allow reading objects, not itself
                raise self._error(exc, key) from exc
        self._bucket_seen = True

    def list(self, prefix: str) -> Iterator[Entry]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.root,
                                                                      Prefix=prefix)
        try:
            for page in pages:  # S3 lists in key order (UTF-8 bytes: str order)
                for item in page.get("Contents", []):
                    if not item["Key"].endswith("/"):  # a console's "folder" marker
                        yield Entry(item["Key"], item["Size"], _etag(item["ETag"]),
                                    item["LastModified"].timestamp())
        except SDK_ERRORS as exc:
            raise self._error(exc, prefix) from exc
        self._bucket_seen = True

    def download(self, entry: Entry, target: Path, progress: Progress) -> None:
        if entry.size < self.transfer.multipart_threshold:
            self._download_whole(entry, target, progress)
            return
        known = _KnownObject(entry.size, entry.version) if entry.version is not None else None
        subscribers = (known,) if known else ()
        self._transfer(entry.key, progress, subscribers, lambda manager, subscribed: (
            manager.download(self.root, entry.key, str(target), subscribers=subscribed)))

    def _download_whole(self, entry: Entry, target: Path, progress: Progress) -> None:
        """One GET (the transfer manager's would not ask for the version it was given)."""
        arguments = {"Bucket": self.root, "Key": entry.key}
        if entry.version is not None:
            arguments["IfMatch"] = f'"{entry.version}"'
        try:
            with open(target, "wb") as output:
                body = self.client.get_object(**arguments)["Body"]
                with body:
                    for chunk in body.iter_chunks(READ_CHUNK):
                        output.write(chunk)
                        progress(len(chunk))
        except SDK_ERRORS as exc:
            target.unlink(missing_ok=True)
            if _status(exc) == 404:
                self._check_bucket(entry.key)
            raise self._error(exc, entry.key) from exc
        except BaseException:
            target.unlink(missing_ok=True)
            raise

    def read(self, key: str, start: int = 0, end: int | None = None) -> BinaryIO:
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"{self.location(key)}: invalid byte range {start}-{end}")
        if end == start:
            return io.BytesIO()
        arguments = {"Bucket": self.root, "Key": key}
        if start or end is not None:
            arguments["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            response = self.client.get_object(**arguments)
        except SDK_ERRORS as exc:
            if _code(exc) == "InvalidRange" or _status(exc) == 416:
                return io.BytesIO()  # the range starts at or beyond the end
            raise self._error(exc, key) from exc
        return io.BufferedReader(_Body(response["Body"], self, key))

    # -- writing ----------------------------------------------------------------------------

    def upload(self, source: Path, key: str, progress: Progress,
               sha256: str | None = None) -> None:
        extra = {"Metadata": {SHA256: sha256}} if sha256 else {}
        self._transfer(key, progress, (), lambda manager, subscribed: (
            manager.upload(str(source), self.root, key, extra, subscribed)))

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        arguments: dict[str, Any] = {"Bucket": self.root, "Key": key, "Body": data,
                                     "Metadata": {SHA256: hashlib.sha256(data).hexdigest()}}
        if if_absent:
            arguments["IfNoneMatch"] = "*"
        try:
            self.client.put_object(**arguments)
        except SDK_ERRORS as exc:
            if if_absent and (_code(exc) in CONDITION_FAILED or _status(exc) == 412):
                return False
            raise self._error(exc, key) from exc
        return True

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.root, Key=key)
        except SDK_ERRORS as exc:
            raise self._error(exc, key) from exc

    def close(self) -> None:
        self.client.close()

    # -- transfers and errors ---------------------------------------------------------------

    def _transfer(self, key: str, progress: Progress, subscribers: tuple[Any, ...],
                  start: Callable[[Any, Any], Any]) -> None:
        """Run one transfer manager's transfer; what ``progress`` raised (a deadline, say)
        comes out as it was, whatever the threads and the SDK did with it on the way."""
        guard = _Guard(progress)
        try:
            with create_transfer_manager(self.client, self.transfer) as manager:
                start(manager, [*subscribers, ProgressCallbackInvoker(guard)]).result()
        except (_ProgressFailed, *SDK_ERRORS) as exc:
            if guard.failure is None:
                if _status(exc) == 404:  # the transfer manager's HEAD
                    self._check_bucket(key)
                raise self._error(exc, key) from exc
        if guard.failure is not None:
            raise guard.failure

    def _error(self, exc: BaseException, key: str) -> StorageError:
        """The store's error for an SDK exception, naming the URI and giving the store's
        own words (never a credential)."""
        where = self.location(key).redacted()
        if isinstance(exc, ClientError):
            code, status = _code(exc), _status(exc)
            text = exc.response.get("Error", {}).get("Message") or _STATUS_TEXT.get(status or 0, "")
            said = self._scrub(f"{text} ({code})" if text and text != code else code)
            if code == "NoSuchBucket":
                return NotFoundError(f"{where}: bucket {self.root!r} does not exist ({code})")
            if code in NOT_FOUND or status == 404:
                return NotFoundError(f"{where}: {said}")
            if code in DENIED or status == 403:
                return AccessDenied(f"{where}: {said}")
            if code in CONDITION_FAILED or status == 412:
                return TransientError(f"{where}: changed while being read: {said}")
            if code in BUSY or status in (429, 503) or (status or 0) >= 500:
                return TransientError(f"{where}: {said}")
            return StorageError(f"{where}: {said}")
        said = self._scrub(str(exc))
        if isinstance(exc, S3DownloadFailedError):  # a part's If-Match failed
            return TransientError(f"{where}: changed while being read: {said}")
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError,
                            CredentialRetrievalError)):
            return AccessDenied(f"{where}: {said}")
        if isinstance(exc, SSLError):
            return StorageError(f"{where}: {said}")
        if isinstance(exc, (BotoConnectionError, HTTPClientError, IncompleteReadError,
                            RetriesExceededError)):
            return TransientError(f"{where}: {said}")
        return StorageError(f"{where}: {said}")

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


_STATUS_TEXT = {403: "Forbidden", 404: "Not Found", 412: "Precondition Failed"}


def _code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None


def _etag(value: str) -> str:
    return value.strip('"')


class _ProgressFailed(Exception):
    """Carries what the caller's progress callback raised through the SDK's threads."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


class _Guard:
    """The caller's progress callback, remembering what it raised; once it raised, every
    later call fails at once, so the transfer's other parts stop too."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self.failure: BaseException | None = None

    def __call__(self, amount: int) -> None:
        if self.failure is not None:
            raise _ProgressFailed(self.failure)
        try:
            self._progress(amount)
        except BaseException as exc:
            self.failure = exc
            raise _ProgressFailed(exc) from exc


def _no_retry_after_progress_failure(caught_exception: BaseException | None = None,
                                     **_: Any) -> None:
    """An upload calls progress while botocore sends the body, and botocore wraps what
    it raised as a connection error it would retry: stop there instead."""
    cause = getattr(caught_exception, "kwargs", {}).get("error")
    if isinstance(cause, _ProgressFailed):
        raise cause


class _KnownObject(BaseSubscriber):
    """Gives the transfer manager the size and ETag the caller saw: no HEAD of its own,
    and If-Match on each part."""

    def __init__(self, size: int, version: str) -> None:
        self._size = size
        self._version = version

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self._size)
        future.meta.provide_object_etag(f'"{self._version}"')


class _Body(io.RawIOBase):
    """A GetObject body whose read errors are the store's."""

    def __init__(self, body: Any, store: S3Store, key: str) -> None:
        self._body = body
        self._store = store
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._body.read(len(buffer))
        except SDK_ERRORS as exc:
            raise self._store._error(exc, self._key) from exc
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()
