"""The files behind server:// URIs through ``FileStorage``, on the local directory and
in an object store (a file system through ``file://``, moto's S3 server, Azurite): the
same paths, listings, tags and errors on each, and downloads through the real Flask
view code answering ``Range`` requests from ranged reads of the store."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from flask import Flask

from scitq_bench.exceptions import InvalidInput, NotFound
from scitq_bench.server.downloads import send_stored
from scitq_bench.server.filestore import LocalFileStore
from scitq_bench.server.objectfiles import ObjectFileStore
from scitq_bench.server.storage import FileStorage, StoredFile, build_stores
from scitq_bench.settings import ServerSettings
from scitq_bench.storage.base import Store
from tests.unit.test_object_logs import KINDS, OBJECT_KINDS, object_root_of

BODY = bytes(range(256)) * 1000  # 256,000 bytes, each position telling where it is


class CountedReads:
    """A store whose ranged reads are recorded: (key, start, end) of each."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reads: list[tuple[str, int, int | None]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def read(self, key: str, start: int = 0, end: int | None = None) -> BinaryIO:
        self.reads.append((key, start, end))
        return self.store.read(key, start, end)


@pytest.fixture(params=KINDS)
def files(request: pytest.FixtureRequest, tmp_path: Path) -> FileStorage:
    if request.param == "local":
        return LocalFileStore(tmp_path / "store")
    store, folder = object_root_of(request.param, request, tmp_path)
    return ObjectFileStore(store, folder + "files/", spool_dir=tmp_path / "spool")


@pytest.fixture
def object_files(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectFileStore:
    store, folder = object_root_of(request.param, request, tmp_path)
    counted = CountedReads(store)
    return ObjectFileStore(counted, folder + "files/",  # type: ignore[arg-type]
                           spool_dir=tmp_path / "spool")


def test_a_stored_file_opens_as_a_stream_with_its_size(files: FileStorage) -> None:
    assert files.write("/runs/1/out.txt/", io.BytesIO(b"hello\n")) == 6
    with files.open("runs/1/out.txt") as stored:
        assert isinstance(stored, StoredFile)
        assert (stored.path, stored.size) == ("runs/1/out.txt", 6)
        assert stored.stream.read() == b"hello\n"
        assert stored.etag and '"' not in stored.etag and stored.modified > 0
    assert stored.stream.closed


def test_a_replaced_file_gets_a_new_tag(files: FileStorage) -> None:
    files.write("a.txt", io.BytesIO(b"old"))
    with files.open("a.txt") as before:
        pass
    files.write("a.txt", io.BytesIO(b"newer"))
    with files.open("a.txt") as after:
        assert (after.size, after.stream.read()) == (5, b"newer")
    assert after.etag != before.etag


def test_a_missing_file_is_not_found_naming_its_path(files: FileStorage) -> None:
    with pytest.raises(NotFound, match=r"no file at server://runs/9/missing\.txt$"):
        files.open("/runs/9/missing.txt")
    files.write("runs/9/x", io.BytesIO(b"x"))
    with pytest.raises(NotFound, match=r"server://runs/9$"):  # a folder is no file
        files.open("runs/9")


@pytest.mark.parametrize("path", ["", "/", "a/../../etc/passwd", "a//b", "./a", "a\x00b",
                                  "x" * 256, "a/" * 600])
def test_paths_out_of_the_store_are_refused(files: FileStorage, path: str) -> None:
    for call in (lambda: files.write(path, io.BytesIO(b"x")), lambda: files.open(path),
                 lambda: files.delete(path)):
        with pytest.raises(InvalidInput, match="invalid store path"):
            call()


def test_listing_gives_paths_sizes_dates_and_tags_sorted(files: FileStorage) -> None:
    for path, body in (("b/2.txt", b"22"), ("a/1.txt", b"1"), ("b/sub/3.txt", b"333"),
                       ("bc/4.txt", b"4444")):
        files.write(path, io.BytesIO(body))
    listed = files.list()
    assert [(f["path"], f["size"]) for f in listed] == [
        ("a/1.txt", 1), ("b/2.txt", 2), ("b/sub/3.txt", 3), ("bc/4.txt", 4)]
    for entry in listed:
        with files.open(entry["path"]) as stored:
            assert (entry["etag"], entry["modified"]) == (stored.etag, stored.modified)
    assert [f["path"] for f in files.list("/b/")] == ["b/2.txt", "b/sub/3.txt"]  # not bc/
    assert [f["path"] for f in files.list("b/2.txt")] == ["b/2.txt"]
    assert [f["path"] for f in files.list("b/2")] == []  # a prefix of a name is no folder
    assert files.list("nothing/here") == []
    with pytest.raises(InvalidInput, match="invalid store path"):
        files.list("a/../..")


def test_a_refused_write_stores_nothing(files: FileStorage, tmp_path: Path) -> None:
    seen: list[bytes] = []

    def refuse(copy: Path) -> None:
        seen.append(copy.read_bytes())
        raise InvalidInput("not a zip")

    with pytest.raises(InvalidInput, match="not a zip"):
        files.write("subs/1/s.zip", io.BytesIO(b"payload"), check=refuse)
    assert seen == [b"payload"]
    assert files.list() == []
    assert not any((tmp_path / "spool").glob("*"))  # no upload left spooled
    assert not (tmp_path / "store" / "subs" / "1").exists()  # nor its folder, on disk


def test_discard_removes_what_is_there_and_ignores_the_rest(files: FileStorage) -> None:
    files.write("a/1", io.BytesIO(b"1"))
    files.write("a/2", io.BytesIO(b"2"))
    files.discard("a/1", "a/missing", "../../outside", "")
    assert [(f["path"], f["size"]) for f in files.list()] == [("a/2", 1)]


def test_delete_removes_a_file_and_names_a_missing_one(files: FileStorage) -> None:
    files.write("a/1", io.BytesIO(b"1"))
    files.write("a/10", io.BytesIO(b"10"))
    files.delete("/a/1")
    assert [f["path"] for f in files.list()] == ["a/10"]
    with pytest.raises(NotFound, match=r"^no file at server://a/1$"):
        files.delete("a/1")
    with pytest.raises(NotFound, match=r"^no file at server://a$"):  # a folder is no file
        files.delete("a")
    assert [f["path"] for f in files.list()] == ["a/10"]


def download_app(files: FileStorage) -> Flask:
    app = Flask(__name__)
    app.add_url_rule("/f/<path:path>", "get", lambda path: send_stored(files.open(path)))
    return app


def test_downloads_answer_ranges_and_conditions(files: FileStorage) -> None:
    files.write("big.bin", io.BytesIO(BODY))
    client = download_app(files).test_client()
    whole = client.get("/f/big.bin")
    assert (whole.status_code, whole.data) == (200, BODY)
    assert whole.headers["Accept-Ranges"] == "bytes"
    part = client.get("/f/big.bin", headers={"Range": "bytes=100000-100009"})
    assert (part.status_code, part.data) == (206, BODY[100000:100010])
    assert part.headers["Content-Range"] == f"bytes 100000-100009/{len(BODY)}"
    tail = client.get("/f/big.bin", headers={"Range": "bytes=-7"})
    assert (tail.status_code, tail.data) == (206, BODY[-7:])
    assert client.get("/f/big.bin", headers={"Range": f"bytes={len(BODY)}-"}).status_code == 416
    unchanged = client.get("/f/big.bin", headers={"If-None-Match": whole.headers["ETag"]})
    assert unchanged.status_code == 304


@pytest.mark.parametrize("object_files", OBJECT_KINDS, indirect=True)
def test_a_range_is_fetched_alone(object_files: ObjectFileStore) -> None:
    """The stream reads the object from where it was sought to, and only up to the
    file's size: a range answer fetches nothing before its start."""
    object_files.write("big.bin", io.BytesIO(BODY))
    counted: CountedReads = object_files.store  # type: ignore[assignment]
    client = download_app(object_files).test_client()
    part = client.get("/f/big.bin", headers={"Range": "bytes=200000-200099"})
    assert part.data == BODY[200000:200100]
    key = object_files.prefix + "big.bin"
    assert counted.reads == [(key, 200000, len(BODY))]
    with object_files.open("big.bin") as stored:
        stored.stream.seek(-10, io.SEEK_END)
        assert stored.stream.read() == BODY[-10:]
        stored.stream.seek(5)
        assert stored.stream.read(3) == BODY[5:8]
        assert stored.stream.tell() == 8


@pytest.mark.parametrize("object_files", OBJECT_KINDS, indirect=True)
def test_a_file_cut_short_while_read_is_an_error(object_files: ObjectFileStore) -> None:
    object_files.write("a.bin", io.BytesIO(BODY))
    with object_files.open("a.bin") as stored:
        object_files.write("a.bin", io.BytesIO(b"short"))
        with pytest.raises(OSError, match=r"server://a\.bin ended at byte 5 of 256000"):
            stored.stream.read()


@pytest.mark.parametrize("object_files", OBJECT_KINDS, indirect=True)
def test_files_are_objects_under_the_files_folder(object_files: ObjectFileStore) -> None:
    object_files.write("runs/1/out.txt", io.BytesIO(b"out"))
    store = object_files.store
    entry = store.stat(object_files.prefix + "runs/1/out.txt")
    assert entry is not None and entry.size == 3
    assert object_files.prefix.endswith("scitq/files/")


def test_build_stores_with_a_store_url_writes_no_local_directory(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "data", database_url="sqlite://",
                              store_url=f"file://{tmp_path}/shared/prefix/")
    logs, files = build_stores(settings)
    logs.append(1, "stdout", 0, io.BytesIO(b"log"))
    files.write("a.txt", io.BytesIO(b"file"))
    shared = tmp_path / "shared" / "prefix"
    assert (shared / "logs" / "000000" / "1" / "stdout" / ("0" * 16)).read_bytes() == b"log"
    assert (shared / "files" / "a.txt").read_bytes() == b"file"
    assert not (tmp_path / "data" / "logs").exists()
    assert not (tmp_path / "data" / "store").exists()
    assert list((tmp_path / "data" / "spool").iterdir()) == []


