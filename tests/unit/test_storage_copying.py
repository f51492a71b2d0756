"""``storage.copying`` on real file systems: what a URI names (a file, a folder, rsync's
trailing-slash convention), downloads checked and renamed into place, uploads whose
manifest goes last, a corrupted file caught by the manifest after its retries, and no
temporary file left behind, whatever happened.

The object-store side runs on ``FolderStore``: a directory served under the s3 scheme
(so copying treats it as an object store and writes a manifest), recording the order of
its writes. Its reads and writes are the local store's own."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from scitq_bench.storage import copying
from scitq_bench.storage.base import (
    ChecksumMismatch,
    Entry,
    NotFoundError,
    Progress,
    StorageError,
    Store,
)
from scitq_bench.storage.config import StorageConfig, TransferTuning
from scitq_bench.storage.local import LocalStore
from scitq_bench.storage.locations import MANIFEST, Location, parse_location
from scitq_bench.storage.stores import Stores

BUCKET = "bucket"


class Cancelled(Exception):
    """What a caller's ``check`` raises to stop a transfer."""


class FolderStore(LocalStore):
    """``directory`` served as the bucket ``s3://bucket``; ``log`` holds ("upload" |
    "put" | "download", key) in the order they happened; ``failing`` keys refuse
    uploads."""

    def __init__(self, directory: Path) -> None:
        self.scheme, self.root = "s3", BUCKET
        self.directory = directory
        self.log: list[tuple[str, str]] = []
        self.failing: set[str] = set()
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.directory / key

    def _record(self, what: str, key: str) -> None:
        with self._lock:
            self.log.append((what, key))

    def list(self, prefix: str) -> Iterator[Entry]:
        found = []
        for folder, _, names in os.walk(self.directory):
            for name in names:
                key = (Path(folder) / name).relative_to(self.directory).as_posix()
                entry = self.stat(key) if key.startswith(prefix) else None
                if entry is not None:
                    found.append(entry)
        yield from sorted(found, key=lambda entry: entry.key)

    def download(self, entry: Entry, target: Path, progress: Progress) -> None:
        self._record("download", entry.key)
        super().download(entry, target, progress)

    def upload(self, source: Path, key: str, progress: Progress,
               sha256: str | None = None) -> None:
        if key in self.failing:
            raise StorageError(f"{self.location(key)}: refused")
        super().upload(source, key, progress, sha256)
        self._record("upload", key)

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        written = super().put_bytes(key, data, if_absent=if_absent)
        self._record("put", key)
        return written


class BucketStores(Stores):
    """The real stores, with s3://bucket served by one ``FolderStore``."""

    def __init__(self, bucket: FolderStore, attempts: int = 2) -> None:
        super().__init__(StorageConfig(transfer=TransferTuning(concurrency=4,
                                                               attempts=attempts)))
        self.bucket = bucket

    def store(self, location: Location) -> Store:
        return self.bucket if location.scheme == "s3" else super().store(location)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """data/ with a.txt, sub/b.txt and sub/deeper/c.bin."""
    root = tmp_path / "data"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha\n")
    (root / "sub" / "b.txt").write_bytes(b"bravo bravo\n")
    (root / "sub" / "deeper" / "c.bin").write_bytes(bytes(range(256)) * 40)
    return root


@pytest.fixture
def stores() -> Iterator[Stores]:
    opened = Stores(StorageConfig())
    yield opened
    opened.close()


@pytest.fixture
def bucket(tmp_path: Path) -> FolderStore:
    (tmp_path / "bucket").mkdir()
    return FolderStore(tmp_path / "bucket")


def uri(path: Path, folder: bool = False) -> str:
    return f"file://{path}" + ("/" if folder else "")


def files_under(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


def leftovers(*roots: Path) -> list[Path]:
    """Temporary names a transfer would have used (``.NAME.part-XXXX``)."""
    return [path for root in roots for path in root.rglob("*") if ".part-" in path.name]


# -- what a URI names ------------------------------------------------------------------


def test_a_file_names_itself(tree: Path) -> None:
    location = parse_location(uri(tree / "a.txt"))
    source, entries = copying.resolve_source(LocalStore(), location)
    assert source == location and not source.is_folder
    assert [(entry.key, entry.size) for entry in entries] == [(location.key, 6)]


@pytest.mark.parametrize("slash", [True, False])
def test_a_folder_names_its_files_at_every_depth(tree: Path, slash: bool) -> None:
    source, entries = copying.resolve_source(LocalStore(), parse_location(uri(tree, slash)))
    assert source.is_folder and source.key == str(tree).lstrip("/") + "/"
    assert [copying.relative_path(source, entry) for entry in entries] == [
        "a.txt", "sub/b.txt", "sub/deeper/c.bin"]


def test_a_missing_name_is_not_found_naming_its_uri(tree: Path) -> None:
    with pytest.raises(NotFoundError, match=f"file://{tree}/nothing: no such file or folder"):
        copying.resolve_source(LocalStore(), parse_location(uri(tree / "nothing")))


# -- downloading -------------------------------------------------------------------------


def test_a_folder_with_a_trailing_slash_arrives_as_its_contents(
        tree: Path, tmp_path: Path, stores: Stores) -> None:
    moved = copying.download(stores, uri(tree, folder=True), tmp_path / "out")
    assert files_under(tmp_path / "out") == files_under(tree)
    assert moved.copied == ["a.txt", "sub/b.txt", "sub/deeper/c.bin"]
    assert moved.size == 6 + 12 + 10240


def test_a_folder_without_a_trailing_slash_arrives_as_itself(
        tree: Path, tmp_path: Path, stores: Stores) -> None:
    moved = copying.download(stores, uri(tree), tmp_path / "out")
    assert files_under(tmp_path / "out" / "data") == files_under(tree)
    assert sorted(os.listdir(tmp_path / "out")) == ["data"]
    assert moved.copied == ["data/a.txt", "data/sub/b.txt", "data/sub/deeper/c.bin"]


def test_a_file_arrives_under_its_name_and_progress_counts_its_bytes(
        tree: Path, tmp_path: Path, stores: Stores) -> None:
    told: list[int] = []
    moved = copying.download(stores, uri(tree / "sub" / "b.txt"), tmp_path / "out",
                             progress=told.append)
    assert (tmp_path / "out" / "b.txt").read_bytes() == b"bravo bravo\n"
    assert (moved.copied, moved.size, sum(told)) == (["b.txt"], 12, 12)
    assert leftovers(tmp_path / "out") == []


def test_a_download_replaces_a_file_only_once_it_arrived_whole(
        tree: Path, tmp_path: Path, stores: Stores) -> None:
    target = tmp_path / "out" / "a.txt"
    target.parent.mkdir()
    target.write_bytes(b"previous")
    copying.download(stores, uri(tree / "a.txt"), tmp_path / "out")
    assert target.read_bytes() == b"alpha\n"


def test_a_check_that_raises_mid_file_stops_the_download_and_leaves_nothing(
        tree: Path, tmp_path: Path) -> None:
    calls = 0

    def check() -> None:  # called before the folder, each file, each try and each chunk
        nonlocal calls
        calls += 1
        if calls == 4:  # the first chunk of a.txt, written to its temporary name
            raise Cancelled()

    one_at_a_time = Stores(StorageConfig(transfer=TransferTuning(concurrency=1)))
    with pytest.raises(Cancelled):
        copying.download(one_at_a_time, uri(tree, folder=True), tmp_path / "out",
                         check=check)
    assert calls == 4
    assert files_under(tmp_path / "out") == {}


# -- uploading -----------------------------------------------------------------------------


def test_an_upload_to_a_file_system_sends_every_file_and_no_manifest(
        tree: Path, tmp_path: Path, stores: Stores) -> None:
    moved = copying.upload(stores, tree, uri(tmp_path / "copy", folder=True))
    assert moved.copied == ["a.txt", "sub/b.txt", "sub/deeper/c.bin"]
    assert files_under(tmp_path / "copy") == files_under(tree)
    assert leftovers(tmp_path / "copy") == []


def test_an_empty_folder_uploads_nothing_not_even_a_manifest(
        tmp_path: Path, bucket: FolderStore) -> None:
    (tmp_path / "empty").mkdir()
    moved = copying.upload(BucketStores(bucket), tmp_path / "empty", "s3://bucket/run/")
    assert (moved.copied, bucket.log) == ([], [])


def test_the_manifest_goes_last_and_lists_every_file_with_its_sha256(
        tree: Path, bucket: FolderStore) -> None:
    copying.upload(BucketStores(bucket), tree, "s3://bucket/run/")
    assert bucket.log[-1] == ("put", f"run/{MANIFEST}")
    assert sorted(key for what, key in bucket.log[:-1] if what == "upload") == [
        "run/a.txt", "run/sub/b.txt", "run/sub/deeper/c.bin"]
    manifest = json.loads((bucket.directory / "run" / MANIFEST).read_bytes())
    assert manifest["files"] == [
        {"path": relative, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for relative, data in files_under(tree).items()]


def test_a_failed_upload_writes_no_manifest(tree: Path, bucket: FolderStore) -> None:
    bucket.failing.add("run/sub/b.txt")
    with pytest.raises(StorageError, match="s3://bucket/run/sub/b.txt: refused"):
        copying.upload(BucketStores(bucket), tree, "s3://bucket/run/")
    assert not (bucket.directory / "run" / MANIFEST).exists()
    assert ("put", f"run/{MANIFEST}") not in bucket.log


def test_a_folder_with_a_manifest_downloads_checked_without_the_manifest(
        tree: Path, tmp_path: Path, bucket: FolderStore) -> None:
    stores = BucketStores(bucket)
    copying.upload(stores, tree, "s3://bucket/run/")
    moved = copying.download(stores, "s3://bucket/run/", tmp_path / "out")
    assert files_under(tmp_path / "out") == files_under(tree)  # no manifest among them
    assert MANIFEST not in " ".join(moved.copied)


def test_a_corrupted_file_is_caught_by_the_manifest_after_its_retries(
        tree: Path, tmp_path: Path, bucket: FolderStore) -> None:
    stores = BucketStores(bucket, attempts=3)
    copying.upload(stores, tree, "s3://bucket/run/")
    (bucket.directory / "run" / "sub" / "b.txt").write_bytes(b"BRAVO BRAVO\n")  # same size
    bucket.log.clear()
    told: list[int] = []
    with pytest.raises(ChecksumMismatch, match=r"s3://bucket/run/sub/b\.txt: .*SHA-256"):
        copying.download(stores, "s3://bucket/run/", tmp_path / "out", progress=told.append)
    assert [key for what, key in bucket.log if key == "run/sub/b.txt"] == ["run/sub/b.txt"] * 3
    assert not (tmp_path / "out" / "sub" / "b.txt").exists()
    assert leftovers(tmp_path / "out") == []
    delivered = sum(len(data) for relative, data in files_under(tmp_path / "out").items())
    assert sum(told) == delivered  # the failed tries took their bytes back


def test_a_manifest_that_cannot_be_read_fails_the_download_naming_it(
        tree: Path, tmp_path: Path, bucket: FolderStore) -> None:
    stores = BucketStores(bucket)
    copying.upload(stores, tree, "s3://bucket/run/")
    (bucket.directory / "run" / MANIFEST).write_bytes(b"{not json")
    with pytest.raises(StorageError, match=f"s3://bucket/run/{MANIFEST}: not a readable"):
        copying.download(stores, "s3://bucket/run/", tmp_path / "out")


def test_a_file_the_store_shrank_since_its_listing_is_refused(
        tree: Path, tmp_path: Path, stores: Stores) -> None:
    store = LocalStore()
    entry = store.stat(str(tree / "a.txt").lstrip("/"))
    assert entry is not None
    (tree / "a.txt").write_bytes(b"a\n")
    with pytest.raises(ChecksumMismatch, match="2 bytes arrived, the store holds 6"):
        copying.download_file(store, entry, tmp_path / "a.txt", attempts=1)
    assert not (tmp_path / "a.txt").exists() and leftovers(tmp_path) == []


def test_a_listing_path_leaving_the_target_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="unsafe path"):
        copying.inside(tmp_path, "../escape")
    assert copying.inside(tmp_path, "a/b") == tmp_path / "a" / "b"
