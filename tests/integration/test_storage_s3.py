"""The s3:// store against moto's S3 server over HTTP: boto3's own request and transfer
code, real multipart uploads, real 403s from a server that checks credentials."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from scitq_bench.storage.base import (
    AccessDenied,
    NotFoundError,
    StorageError,
    TransientError,
    file_sha256,
)
from scitq_bench.storage.config import StorageConfig, TransferTuning
from scitq_bench.storage.s3 import S3Store
from scitq_bench.storage.stores import Stores
from tests.support.objectstores import Processes, start_moto
from tests.support.postgres import free_port

MB = 1 << 20


class Tally:
    """A progress callback that adds up what it is told, from any thread."""

    def __init__(self) -> None:
        self.total = 0
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, amount: int) -> None:
        with self._lock:
            self.total += amount
            self.calls += 1


class DeadlinePassed(Exception):
    """What a worker's progress callback raises when a task's time is up."""


def store_for(bucket: str, **tuning: int) -> S3Store:
    return S3Store(bucket, {}, TransferTuning(**tuning))


def random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def s3_client() -> Any:
    return boto3.client("s3")  # the s3_bucket fixture's environment: moto and test keys


# -- round trips ----------------------------------------------------------------------------


def test_upload_stat_list_download_round_trip(s3_bucket: str, tmp_path: Path) -> None:
    store = store_for(s3_bucket)
    source = random_file(tmp_path / "reads.fastq", 300_000)
    digest = file_sha256(source)
    sent = Tally()
    store.upload(source, "run/reads.fastq", sent, sha256=digest)
    assert sent.total == 300_000

    entry = store.stat("run/reads.fastq")
    assert entry is not None
    assert (entry.key, entry.size, entry.sha256) == ("run/reads.fastq", 300_000, digest)
    head = s3_client().head_object(Bucket=s3_bucket, Key="run/reads.fastq")
    assert entry.version == head["ETag"].strip('"') and entry.version
    assert entry.modified == head["LastModified"].timestamp()

    listed = list(store.list("run/"))
    assert [(e.key, e.size, e.version, e.sha256) for e in listed] == [
        ("run/reads.fastq", 300_000, entry.version, None)]

    received = Tally()
    target = tmp_path / "copy.part"
    store.download(entry, target, received)
    assert target.read_bytes() == source.read_bytes()
    assert received.total == 300_000


def test_list_walks_every_depth_in_key_order_without_folder_markers(s3_bucket: str) -> None:
    client = s3_client()
    for key in ("data/b.txt", "data/a/2.txt", "data/a/1.txt", "data/", "data/a/",
                "database.txt", "other/c.txt"):
        client.put_object(Bucket=s3_bucket, Key=key, Body=key.encode())
    store = store_for(s3_bucket)
    assert [e.key for e in store.list("data/")] == ["data/a/1.txt", "data/a/2.txt",
                                                     "data/b.txt"]
    assert [e.key for e in store.list("data")] == ["data/a/1.txt", "data/a/2.txt",
                                                    "data/b.txt", "database.txt"]
    assert store.stat("data/") is None  # a folder is not a file
    assert list(store.list("nothing/")) == []


def test_a_large_file_moves_in_parts_with_progress(s3_bucket: str, tmp_path: Path) -> None:
    store = store_for(s3_bucket)  # 16 MB parts by default
    source = random_file(tmp_path / "big.bin", 40 * MB)
    sent = Tally()
    store.upload(source, "big.bin", sent, sha256=file_sha256(source))
    assert sent.total == 40 * MB and sent.calls > 3

    entry = store.stat("big.bin")
    assert entry is not None and entry.size == 40 * MB
    assert entry.version is not None and entry.version.endswith("-3")  # 16 + 16 + 8 MB
    received = Tally()
    target = tmp_path / "big.part"
    store.download(entry, target, received)
    assert received.total == 40 * MB
    assert file_sha256(target) == entry.sha256 == file_sha256(source)


@pytest.mark.parametrize("size", [1000, 12 * MB], ids=["single", "multipart"])
def test_a_download_of_an_object_replaced_since_its_stat_fails(s3_bucket: str, tmp_path: Path,
                                                                size: int) -> None:
    store = store_for(s3_bucket, chunk_mb=5)
    store.put_bytes("table.csv", os.urandom(size))
    entry = store.stat("table.csv")
    assert entry is not None
    store.put_bytes("table.csv", os.urandom(size))  # same size, other bytes
    target = tmp_path / "table.part"
    with pytest.raises(TransientError, match=r"^s3://.*/table\.csv: changed while being read"):
        store.download(entry, target, Tally())
    assert not target.exists()
    fresh = store.stat("table.csv")
    assert fresh is not None and fresh.version != entry.version
    store.download(fresh, target, Tally())
    assert hashlib.sha256(target.read_bytes()).hexdigest() == fresh.sha256


def test_put_bytes_if_absent_writes_only_once(s3_bucket: str) -> None:
    store = store_for(s3_bucket)
    assert store.put_bytes("manifest.json", b'{"n": 1}', if_absent=True) is True
    assert store.put_bytes("manifest.json", b'{"n": 2}', if_absent=True) is False
    with store.read("manifest.json") as stream:
        assert stream.read() == b'{"n": 1}'
    assert store.put_bytes("manifest.json", b'{"n": 3}') is True
    entry = store.stat("manifest.json")
    assert entry is not None and entry.sha256 == hashlib.sha256(b'{"n": 3}').hexdigest()


def test_read_gives_the_asked_byte_ranges(s3_bucket: str) -> None:
    store = store_for(s3_bucket)
    data = bytes(range(256)) * 40
    store.put_bytes("ranges.bin", data)
    cases = [(0, None), (100, 200), (10_000, None), (5, 6), (7, 7), (10_240, None),
             (20_000, None), (10_000, 20_000)]
    for start, end in cases:
        with store.read("ranges.bin", start, end) as stream:
            assert stream.read() == data[start:end], (start, end)
    with store.read("ranges.bin", 1000, 1100) as stream:  # small reads go through too
        assert stream.read(10) == data[1000:1010]
        assert stream.read() == data[1010:1100]


def test_delete_removes_and_ignores_a_missing_key(s3_bucket: str) -> None:
    store = store_for(s3_bucket)
    store.put_bytes("gone.txt", b"x")
    store.delete("gone.txt")
    assert store.stat("gone.txt") is None
    store.delete("gone.txt")


# -- what is missing --------------------------------------------------------------------------


def test_a_missing_key(s3_bucket: str, tmp_path: Path) -> None:
    store = store_for(s3_bucket)
    assert store.stat("absent.txt") is None
    from scitq_bench.storage.base import Entry

    with pytest.raises(NotFoundError, match=rf"^s3://{s3_bucket}/absent\.txt: "):
        store.download(Entry("absent.txt", 10, "0123"), tmp_path / "x.part", Tally())
    with pytest.raises(NotFoundError, match=rf"^s3://{s3_bucket}/absent\.txt: "):
        store.download(Entry("absent.txt", 10), tmp_path / "x.part", Tally())
    with pytest.raises(NotFoundError, match="NoSuchKey"):
        store.read("absent.txt")


def test_an_unknown_bucket_is_named(s3_bucket: str, tmp_path: Path) -> None:
    store = store_for("no-such-bucket-here")
    message = r"^s3://no-such-bucket-here/(k|dir/)?: bucket 'no-such-bucket-here' does not exist"
    for operation in (lambda: store.stat("k"), lambda: list(store.list("dir/")),
                      lambda: store.put_bytes("k", b"x"), lambda: store.read("k"),
                      lambda: store.upload(random_file(tmp_path / "f", 10), "k", Tally()),
                      lambda: store.delete("k")):
        with pytest.raises(NotFoundError, match=message):
            operation()


# -- credentials and settings -----------------------------------------------------------------


@pytest.fixture(scope="module")
def locked_s3() -> Iterator[dict[str, str]]:
    """A moto server of its own that checks credentials, with a bucket and a user who
    may do nothing: its endpoint, bucket, and the user's keys."""
    processes = Processes.create()
    try:
        endpoint = start_moto(processes, "moto-locked")
        free = urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"3",
                                      method="POST", headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(free, timeout=10).read()  # three requests before checks
        admin = {"endpoint_url": endpoint, "region_name": "us-east-1",
                 "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        boto3.client("s3", **admin).create_bucket(Bucket="locked-bucket")
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        yield {"endpoint_url": endpoint, "bucket": "locked-bucket",
               "access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}
    finally:
        processes.stop()


def locked_store(locked: dict[str, str], **override: str) -> S3Store:
    settings = {"endpoint_url": locked["endpoint_url"], "region": "us-east-1",
                "access_key_id": locked["access_key_id"],
                "secret_access_key": locked["secret_access_key"], **override}
    return S3Store(locked["bucket"], settings, TransferTuning(attempts=1))


def test_a_forbidden_request_is_access_denied(locked_s3: dict[str, str], tmp_path: Path) -> None:
    store = locked_store(locked_s3)
    errors = []
    for operation in (lambda: store.stat("k"), lambda: store.put_bytes("k", b"x"),
                      lambda: list(store.list("")), lambda: store.read("k"),
                      lambda: store.upload(random_file(tmp_path / "f", 10), "k", Tally())):
        with pytest.raises(AccessDenied, match=r"^s3://locked-bucket/(k)?: ") as caught:
            operation()
        errors.append(str(caught.value))
    assert "Access Denied (AccessDenied)" in errors[1]
    assert "Forbidden" in errors[0]  # a HEAD's 403 has no body
    for message in errors:
        assert locked_s3["secret_access_key"] not in message


def test_a_wrong_secret_is_access_denied_and_never_shown(locked_s3: dict[str, str]) -> None:
    wrong = "wrongSecretKeyValue/0123456789abcdefABCDEF"
    store = locked_store(locked_s3, secret_access_key=wrong)
    with pytest.raises(AccessDenied, match="SignatureDoesNotMatch") as caught:
        store.put_bytes("k", b"x")
    message = str(caught.value)
    assert wrong not in message and locked_s3["secret_access_key"] not in message
    unknown = locked_store(locked_s3, access_key_id="AKIAUNKNOWNKEY000000",
                           secret_access_key=wrong)
    with pytest.raises(AccessDenied, match="InvalidAccessKeyId") as caught:
        unknown.put_bytes("k", b"x")
    assert wrong not in str(caught.value)


def test_settings_give_the_endpoint_and_keys(s3_bucket: str, monkeypatch: pytest.MonkeyPatch,
                                             s3_endpoint: str) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    config = StorageConfig.from_mapping({"s3": {s3_bucket: {
        "endpoint_url": s3_endpoint, "access_key_id": "testing", "secret_access_key": "testing",
        "addressing_style": "path"}}})
    store, location = Stores(config).resolve(f"s3://{s3_bucket}/from/settings.txt")
    assert isinstance(store, S3Store) and location.key == "from/settings.txt"
    assert store.put_bytes(location.key, b"via settings")
    assert s3_client_at(s3_endpoint).get_object(
        Bucket=s3_bucket, Key="from/settings.txt")["Body"].read() == b"via settings"


def s3_client_at(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_an_unknown_profile_is_a_storage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    with pytest.raises(StorageError, match=r"^s3://some-bucket/: .*no-such-profile"):
        S3Store("some-bucket", {"profile": "no-such-profile"}, TransferTuning())


def test_stores_resolves_s3_uris_to_one_s3_store(s3_bucket: str) -> None:
    stores = Stores(StorageConfig())
    store, location = stores.resolve(f"s3://{s3_bucket}/x")
    assert isinstance(store, S3Store) and store.root == s3_bucket and location.key == "x"
    assert stores.resolve(f"s3://{s3_bucket}/y/z")[0] is store
    assert store.put_bytes("x", b"through Stores") and store.stat("x") is not None
    stores.close()


# -- failures worth retrying, and the caller's own ----------------------------------------------


def test_an_unreachable_endpoint_is_transient() -> None:
    settings = {"endpoint_url": f"http://127.0.0.1:{free_port()}", "region": "us-east-1",
                "access_key_id": "testing", "secret_access_key": "testing"}
    store = S3Store("some-bucket", settings, TransferTuning(attempts=1))
    with pytest.raises(TransientError, match=r"^s3://some-bucket/k: Could not connect"):
        store.stat("k")


@pytest.mark.parametrize("size", [MB, 12 * MB], ids=["single", "multipart"])
def test_an_upload_stops_with_the_progress_callbacks_own_exception(
        s3_bucket: str, tmp_path: Path, size: int) -> None:
    store = store_for(s3_bucket, chunk_mb=5, concurrency=3)
    source = random_file(tmp_path / "data.bin", size)
    deadline = DeadlinePassed("task time is up")
    calls = []

    def progress(amount: int) -> None:
        calls.append(amount)
        raise deadline

    sends = []
    for operation in ("PutObject", "UploadPart"):
        store.client.meta.events.register(f"before-send.s3.{operation}",
                                          lambda **_: sends.append(1))
    started = time.monotonic()
    with pytest.raises(DeadlinePassed) as caught:
        store.upload(source, "data.bin", progress)
    assert caught.value is deadline
    assert len(calls) == 1  # nothing is called once it raised
    assert len(sends) <= -(-size // (5 * MB))  # and no part is sent again
    assert time.monotonic() - started < 5
    assert store.stat("data.bin") is None  # whole or not at all
    assert s3_client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


@pytest.mark.parametrize("size", [MB, 12 * MB], ids=["single", "multipart"])
def test_a_download_stops_with_the_progress_callbacks_own_exception(
        s3_bucket: str, tmp_path: Path, size: int) -> None:
    store = store_for(s3_bucket, chunk_mb=5, concurrency=3)
    store.upload(random_file(tmp_path / "data.bin", size), "data.bin", Tally())
    entry = store.stat("data.bin")
    assert entry is not None
    deadline = DeadlinePassed("task time is up")
    calls = []

    def progress(amount: int) -> None:
        calls.append(amount)
        raise deadline

    with pytest.raises(DeadlinePassed) as caught:
        store.download(entry, tmp_path / "data.part", progress)
    assert caught.value is deadline and len(calls) == 1
    assert not (tmp_path / "data.part").exists()
