"""The Azure store against Azurite's blob service, through the SDK's real requests:
round trips with the SHA-256 kept as metadata, block uploads and parallel downloads of
a large file, conditional writes, ranged reads, and errors that name the URI and never
a secret."""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureSasCredential
from azure.storage.blob import ContainerClient, ContainerSasPermissions, generate_container_sas

from scitq_bench.storage.azure import AzureStore
from scitq_bench.storage.base import (
    AccessDenied,
    Entry,
    NotFoundError,
    StorageError,
    Store,
    TransientError,
    file_sha256,
)
from scitq_bench.storage.config import StorageConfig, TransferTuning
from scitq_bench.storage.locations import Location
from scitq_bench.storage.stores import Stores
from tests.support.objectstores import AzureContainer

MB = 1 << 20
LARGE = 24 * MB
CHUNK_MB = 4

OpenStore = Callable[..., tuple[Store, Location]]


# -- helpers --------------------------------------------------------------------------------


def fields(connection_string: str) -> dict[str, str]:
    pairs = (part.partition("=") for part in connection_string.split(";") if "=" in part)
    return {name: value for name, _, value in pairs}


@pytest.fixture
def open_store(azure_container: AzureContainer) -> Iterator[OpenStore]:
    """Opens a store the way the worker does (settings, then ``Stores.resolve``);
    connection string settings unless told otherwise."""
    opened: list[Stores] = []

    def open_(path: str = "", settings: dict[str, Any] | None = None,
              transfer: dict[str, int] | None = None,
              container: str | None = None) -> tuple[Store, Location]:
        if settings is None:
            settings = {"connection_string": azure_container.connection_string}
        data: dict[str, Any] = {"azure": {azure_container.account: settings}}
        if transfer:
            data["transfer"] = transfer
        stores = Stores(StorageConfig.from_mapping(data))
        opened.append(stores)
        name = container or azure_container.container
        return stores.resolve(f"azure://{azure_container.account}/{name}/{path}")

    yield open_
    for stores in opened:
        stores.close()


class Recorder:
    """A thread-safe progress callback that keeps every increment and its thread."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.threads: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self, step: int) -> None:
        with self._lock:
            self.steps.append(step)
            self.threads.add(threading.get_ident())


def read_all(store: Store, key: str, start: int = 0, end: int | None = None,
             size: int = 1 << 16) -> bytes:
    parts = []
    with store.read(key, start, end) as stream:
        while part := stream.read(size):
            parts.append(part)
    return b"".join(parts)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- round trips ----------------------------------------------------------------------------


def test_round_trip_keeps_sha256_and_lists_in_key_order(
        tmp_path: Path, open_store: OpenStore, azure_container: AzureContainer) -> None:
    store, location = open_store("data/")
    assert isinstance(store, AzureStore)
    assert location.key == "data/"
    contents = {"data/b.txt": b"bee" * 1000, "data/a.txt": b"a", "data/sub/c.bin": b"\0\1" * 77,
                "other.txt": b"not under data/"}
    sums = {}
    before = time.time()
    for key, content in contents.items():
        source = tmp_path / key.replace("/", "_")
        source.write_bytes(content)
        sums[key] = file_sha256(source)
        recorder = Recorder()
        store.upload(source, key, recorder, sha256=sums[key])
        assert sum(recorder.steps) == len(content)
    assert store.put_bytes("data/folder/", b"")  # a folder marker, not a file

    entry = store.stat("data/b.txt")
    assert entry is not None
    assert (entry.key, entry.size, entry.sha256) == ("data/b.txt", 3000, sums["data/b.txt"])
    assert entry.version and '"' not in entry.version
    assert entry.modified is not None and abs(entry.modified - before) < 120
    assert store.location(entry.key).uri() == \
        f"azure://devstoreaccount1/{azure_container.container}/data/b.txt"

    listed = list(store.list("data/"))
    assert [item.key for item in listed] == ["data/a.txt", "data/b.txt", "data/sub/c.bin"]
    assert [item.sha256 for item in listed] == [sums[item.key] for item in listed]
    assert [item.size for item in listed] == [len(contents[item.key]) for item in listed]
    assert listed[1].version == entry.version
    assert [item.key for item in store.list("data/s")] == ["data/sub/c.bin"]
    assert [item.key for item in store.list("")][-1] == "other.txt"
    assert list(store.list("nothing/")) == []

    target = tmp_path / "downloaded"
    recorder = Recorder()
    store.download(entry, target, recorder)
    assert target.read_bytes() == contents["data/b.txt"]
    assert sum(recorder.steps) == 3000

    unsummed = tmp_path / "plain"
    unsummed.write_bytes(b"no sum")
    store.upload(unsummed, "data/plain", Recorder())
    plain = store.stat("data/plain")
    assert plain is not None and plain.sha256 is None and plain.size == 6
    assert store.stat("data/") is None

    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    store.upload(empty, "data/empty", Recorder(), sha256=file_sha256(empty))
    empty_entry = store.stat("data/empty")
    assert empty_entry is not None and empty_entry.size == 0
    store.download(empty_entry, tmp_path / "empty-copy", Recorder())
    assert (tmp_path / "empty-copy").read_bytes() == b""


@pytest.mark.parametrize("chunk_mb", [CHUNK_MB, 8])  # the SDK buffers blocks under 4 MiB+1
def test_large_file_moves_in_blocks_and_parallel_ranges(
        tmp_path: Path, open_store: OpenStore, azure_container: AzureContainer,
        chunk_mb: int) -> None:
    store, _ = open_store(transfer={"chunk_mb": chunk_mb, "concurrency": 4})
    source = tmp_path / "large.bin"
    source.write_bytes(os.urandom(LARGE))
    digest = file_sha256(source)

    recorder = Recorder()
    store.upload(source, "big/large.bin", recorder, sha256=digest)
    assert sum(recorder.steps) == LARGE
    assert len(recorder.steps) >= LARGE // (chunk_mb * MB)
    blob = ContainerClient.from_connection_string(
        azure_container.connection_string, azure_container.container).get_blob_client(
        "big/large.bin")
    committed, uncommitted = blob.get_block_list("all")
    assert [block.size for block in committed] == [chunk_mb * MB] * (LARGE // (chunk_mb * MB))
    assert uncommitted == []

    entry = store.stat("big/large.bin")
    assert entry is not None and entry.size == LARGE and entry.sha256 == digest
    target = tmp_path / "copy.bin"
    recorder = Recorder()
    store.download(entry, target, recorder)
    assert file_sha256(target) == digest
    assert sum(recorder.steps) == LARGE
    assert len(recorder.threads) > 1  # chunks fetched by several threads

    data = source.read_bytes()
    assert read_all(store, "big/large.bin", 1, LARGE - 1, size=MB + 3) == data[1:LARGE - 1]
    with store.read("big/large.bin", 5 * MB) as stream:
        assert stream.read(10) == data[5 * MB:5 * MB + 10]


def test_failed_upload_leaves_nothing_and_callback_errors_propagate(
        tmp_path: Path, open_store: OpenStore) -> None:
    store, _ = open_store(transfer={"chunk_mb": CHUNK_MB, "concurrency": 2})
    source = tmp_path / "large.bin"
    source.write_bytes(os.urandom(LARGE))

    class Stop(Exception):
        pass

    stop = Stop("enough")

    def refuse(_: int) -> None:
        raise stop

    with pytest.raises(Stop) as raised:
        store.upload(source, "half.bin", refuse)
    assert raised.value is stop
    assert store.stat("half.bin") is None
    assert list(store.list("")) == []

    store.upload(source, "whole.bin", Recorder())
    entry = store.stat("whole.bin")
    assert entry is not None
    with pytest.raises(Stop) as raised:
        store.download(entry, tmp_path / "partial", refuse)
    assert raised.value is stop


# -- writes, reads and deletes --------------------------------------------------------------


def test_put_bytes_if_absent_writes_once(open_store: OpenStore) -> None:
    store, _ = open_store()
    assert store.put_bytes("lock", b"first", if_absent=True) is True
    assert store.put_bytes("lock", b"second", if_absent=True) is False
    assert read_all(store, "lock") == b"first"
    assert store.put_bytes("lock", b"third") is True
    assert read_all(store, "lock") == b"third"


def test_read_ranges(open_store: OpenStore) -> None:
    store, _ = open_store()
    data = bytes(range(256)) * 4
    assert store.put_bytes("ranges.bin", data)
    assert read_all(store, "ranges.bin") == data
    assert read_all(store, "ranges.bin", 100, 200) == data[100:200]
    assert read_all(store, "ranges.bin", 1000) == data[1000:]
    assert read_all(store, "ranges.bin", 1000, 5000) == data[1000:]
    assert read_all(store, "ranges.bin", 50, 50) == b""
    assert read_all(store, "ranges.bin", 1024) == b""
    assert store.put_bytes("empty", b"")
    assert read_all(store, "empty") == b""


def test_delete_removes_and_ignores_missing(open_store: OpenStore) -> None:
    store, _ = open_store()
    assert store.put_bytes("gone", b"x")
    store.delete("gone")
    assert store.stat("gone") is None
    store.delete("gone")


def test_download_of_a_changed_blob_fails(tmp_path: Path, open_store: OpenStore) -> None:
    store, _ = open_store()
    assert store.put_bytes("moving", b"version one")
    entry = store.stat("moving")
    assert entry is not None
    assert store.put_bytes("moving", b"version two, longer")
    with pytest.raises(StorageError, match="changed since it was listed") as raised:
        store.download(entry, tmp_path / "out", Recorder())
    assert not isinstance(raised.value, (NotFoundError, TransientError))
    assert "/moving" in str(raised.value)


# -- errors ---------------------------------------------------------------------------------


def test_unknown_container_is_not_found_and_named(
        tmp_path: Path, open_store: OpenStore) -> None:
    missing = f"nosuch{uuid.uuid4().hex[:12]}"
    store, _ = open_store(container=missing)
    where = f"azure://devstoreaccount1/{missing}"
    source = tmp_path / "f"
    source.write_bytes(b"data")
    operations: dict[str, Callable[[], Any]] = {
        "stat": lambda: store.stat("x"),
        "list": lambda: list(store.list("")),
        "download": lambda: store.download(Entry("x", 4), tmp_path / "t", Recorder()),
        "upload": lambda: store.upload(source, "x", Recorder()),
        "put_bytes": lambda: store.put_bytes("x", b"data", if_absent=True),
        "read": lambda: store.read("x"),
        "delete": lambda: store.delete("x"),
    }
    for name, operation in operations.items():
        with pytest.raises(NotFoundError) as raised:
            operation()
        message = str(raised.value)
        assert message.startswith(where + "/"), (name, message)
        assert "container does not exist" in message, (name, message)
        assert "\n" not in message


def test_missing_blob(tmp_path: Path, open_store: OpenStore,
                      azure_container: AzureContainer) -> None:
    store, _ = open_store()
    assert store.stat("absent.txt") is None
    target = tmp_path / "t"
    with pytest.raises(NotFoundError) as raised:
        store.download(Entry("absent.txt", 3), target, Recorder())
    assert str(raised.value).startswith(
        f"azure://devstoreaccount1/{azure_container.container}/absent.txt: ")
    assert "blob does not exist" in str(raised.value)
    assert not target.exists()
    with pytest.raises(NotFoundError):
        store.read("absent.txt")


def test_wrong_account_key_is_access_denied_without_the_key(
        open_store: OpenStore, azure_container: AzureContainer) -> None:
    real = fields(azure_container.connection_string)
    wrong = base64.b64encode(hashlib.sha512(b"not the key").digest()).decode()
    forms = {
        "connection string": {"connection_string": azure_container.connection_string.replace(
            real["AccountKey"], wrong)},
        "account key": {"account_key": wrong, "endpoint": real["BlobEndpoint"]},
    }
    for form, settings in forms.items():
        store, _ = open_store(settings=settings)
        operations: list[Callable[[Store], Any]] = [
            lambda s: s.stat("x"), lambda s: s.put_bytes("x", b"1"), lambda s: list(s.list(""))]
        for operation in operations:
            with pytest.raises(AccessDenied) as raised:
                operation(store)
            shown = "".join(traceback.format_exception(raised.value))
            assert str(raised.value).startswith(
                f"azure://devstoreaccount1/{azure_container.container}/"), form
            for secret in (wrong, real["AccountKey"], wrong[:20]):
                assert secret not in shown, form


def test_account_key_and_endpoint_settings(open_store: OpenStore,
                                           azure_container: AzureContainer) -> None:
    real = fields(azure_container.connection_string)
    store, _ = open_store(settings={"account_key": real["AccountKey"],
                                    "endpoint": real["BlobEndpoint"]})
    assert store.put_bytes("keyed/one", b"by key", if_absent=True)
    entry = store.stat("keyed/one")
    assert entry is not None and entry.size == 6
    assert [item.key for item in store.list("keyed/")] == ["keyed/one"]
    assert read_all(store, "keyed/one", 3) == b"key"
    store.delete("keyed/one")
    assert store.stat("keyed/one") is None


def test_environment_connection_string_serves_its_account(
        open_store: OpenStore, azure_container: AzureContainer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azure_container.connection_string)
    monkeypatch.delenv("AZURE_STORAGE_KEY", raising=False)
    store, _ = open_store(settings={})
    assert store.put_bytes("from-env", b"environment")
    assert read_all(store, "from-env") == b"environment"


def test_sas_token_reads_and_its_signature_never_shows(
        open_store: OpenStore, azure_container: AzureContainer) -> None:
    real = fields(azure_container.connection_string)
    writer, _ = open_store()
    assert writer.put_bytes("shared.txt", b"readable")
    token = generate_container_sas(
        azure_container.account, azure_container.container, account_key=real["AccountKey"],
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
    signature = dict(part.split("=", 1) for part in token.split("&"))["sig"]
    store, _ = open_store(settings={"sas_token": token, "endpoint": real["BlobEndpoint"]})
    entry = store.stat("shared.txt")
    assert entry is not None and entry.size == 8
    assert read_all(store, "shared.txt") == b"readable"
    with pytest.raises(AccessDenied) as raised:
        store.put_bytes("shared.txt", b"overwritten")
    shown = "".join(traceback.format_exception(raised.value))
    assert signature not in shown and "sig=" not in shown
    assert read_all(writer, "shared.txt") == b"readable"


def test_unreachable_endpoint_is_transient(open_store: OpenStore,
                                           azure_container: AzureContainer) -> None:
    real = fields(azure_container.connection_string)
    endpoint = f"http://127.0.0.1:{closed_port()}/devstoreaccount1"
    store, _ = open_store(settings={"account_key": real["AccountKey"], "endpoint": endpoint},
                          transfer={"attempts": 1})
    with pytest.raises(TransientError) as raised:
        store.stat("x")
    assert str(raised.value).startswith(
        f"azure://devstoreaccount1/{azure_container.container}/x: ")
    assert real["AccountKey"] not in "".join(traceback.format_exception(raised.value))


def test_credentials_are_taken_in_order(open_store: OpenStore, azure_container: AzureContainer,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.identity import DefaultAzureCredential

    for variable in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY",
                     "AZURE_STORAGE_ACCOUNT"):
        monkeypatch.delenv(variable, raising=False)
    real = fields(azure_container.connection_string)
    root = f"{azure_container.account}/{azure_container.container}"
    https = {"endpoint": "https://127.0.0.1:1/devstoreaccount1"}

    def credential(settings: dict[str, Any]) -> Any:
        return AzureStore(root, settings, TransferTuning()).container.credential

    assert isinstance(credential(https), DefaultAzureCredential)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                       f"AccountName=someoneelse;AccountKey={real['AccountKey']}")
    assert isinstance(credential(https), DefaultAzureCredential)  # another account's
    monkeypatch.setenv("AZURE_STORAGE_KEY", real["AccountKey"])
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", "someoneelse")
    assert isinstance(credential(https), DefaultAzureCredential)  # another account's
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT")
    store, _ = open_store(settings={"endpoint": real["BlobEndpoint"]})  # the key from the env
    assert store.put_bytes("env-key", b"keyed")
    assert read_all(store, "env-key") == b"keyed"

    monkeypatch.delenv("AZURE_STORAGE_KEY")
    assert isinstance(credential({"sas_token": "sv=1&sig=x", **https}), AzureSasCredential)
    with pytest.raises(StorageError) as raised:  # a token over plain HTTP
        open_store(settings={"endpoint": real["BlobEndpoint"]})
    assert str(raised.value).startswith(f"azure://{root}/: ")
    with pytest.raises(StorageError) as raised:
        open_store(settings={"connection_string": "AccountKey=SECRETKEY"})
    assert str(raised.value).startswith(f"azure://{root}/: ")
    assert "SECRETKEY" not in str(raised.value)


class _FailingBlobService(http.server.BaseHTTPRequestHandler):
    """Answers every request as a failing blob service whose message quotes a signed URL
    and the account key back (as some of Azure's copy and proxy errors quote URLs)."""

    message = ""

    def do_HEAD(self) -> None:
        self._fail()

    def do_GET(self) -> None:
        self._fail()

    def _fail(self) -> None:
        body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>InternalError</Code>'
                f"<Message>{self.message}</Message></Error>").encode()
        self.send_response(500)
        self.send_header("x-ms-error-code", "InternalError")
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        return None


def test_messages_hide_signed_urls_and_keys(open_store: OpenStore,
                                            azure_container: AzureContainer) -> None:
    key = fields(azure_container.connection_string)["AccountKey"]
    _FailingBlobService.message = (
        "Could not reach https://other.blob.core.windows.net/c/b.txt?sv=2024-01-01&amp;"
        f"sp=r&amp;sig=SIGNATURE123 with {key}")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FailingBlobService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/devstoreaccount1"
        store, _ = open_store(settings={"account_key": key, "endpoint": endpoint},
                              transfer={"attempts": 1})
        with pytest.raises(TransientError) as raised:
            store.read("b.txt")
    finally:
        server.shutdown()
        server.server_close()
    message = str(raised.value)
    assert message.startswith(f"azure://devstoreaccount1/{azure_container.container}/b.txt: "
                              "Could not reach https://other.blob.core.windows.net/c/b.txt ")
    shown = "".join(traceback.format_exception(raised.value))
    assert "SIGNATURE123" not in shown and "sig=" not in shown and key not in shown
