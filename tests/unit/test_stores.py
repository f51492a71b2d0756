"""The local log and file stores, through the interfaces the server uses: streams and
sizes out, never a local path; a missing file is NotFound naming its server:// path."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from scitq_bench.exceptions import Conflict, InvalidInput, NotFound
from scitq_bench.server.filestore import LocalFileStore
from scitq_bench.server.logstore import LocalLogStore
from scitq_bench.server.storage import FileStorage, LogStorage, StoredFile, build_stores
from scitq_bench.settings import ServerSettings


@pytest.fixture
def files(tmp_path: Path) -> FileStorage:
    return LocalFileStore(tmp_path / "store")


@pytest.fixture
def logs(tmp_path: Path) -> LogStorage:
    return LocalLogStore(tmp_path / "logs")


def test_a_stored_file_opens_as_a_stream_with_its_size(files: FileStorage) -> None:
    assert files.write("/runs/1/out.txt/", io.BytesIO(b"hello\n")) == 6
    with files.open("runs/1/out.txt") as stored:
        assert isinstance(stored, StoredFile)
        assert (stored.path, stored.size) == ("runs/1/out.txt", 6)
        assert stored.stream.read() == b"hello\n"
        assert stored.etag and stored.modified > 0
    assert stored.stream.closed


def test_an_open_file_keeps_its_bytes_when_replaced(files: FileStorage) -> None:
    files.write("a.txt", io.BytesIO(b"old"))
    with files.open("a.txt") as before:
        files.write("a.txt", io.BytesIO(b"newer"))
        assert (before.size, before.stream.read()) == (3, b"old")
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
    with pytest.raises(InvalidInput, match="invalid store path"):
        files.write(path, io.BytesIO(b"x"))
    with pytest.raises(InvalidInput, match="invalid store path"):
        files.open(path)


def test_listing_gives_paths_and_sizes_sorted(files: FileStorage) -> None:
    for path, body in (("b/2.txt", b"22"), ("a/1.txt", b"1"), ("b/sub/3.txt", b"333")):
        files.write(path, io.BytesIO(body))
    def listed(prefix: str = "") -> list[tuple[str, int]]:
        return [(f["path"], f["size"]) for f in files.list(prefix)]

    assert listed() == [("a/1.txt", 1), ("b/2.txt", 2), ("b/sub/3.txt", 3)]
    assert listed("/b/") == [("b/2.txt", 2), ("b/sub/3.txt", 3)]
    assert listed("a/1.txt") == [("a/1.txt", 1)]
    assert files.list("nothing/here") == []


def test_a_refused_write_stores_nothing(files: FileStorage, tmp_path: Path) -> None:
    seen: list[bytes] = []

    def refuse(copy: Path) -> None:
        seen.append(copy.read_bytes())
        raise InvalidInput("not a zip")

    with pytest.raises(InvalidInput, match="not a zip"):
        files.write("subs/1/s.zip", io.BytesIO(b"payload"), check=refuse)
    assert seen == [b"payload"]
    assert files.list() == []
    assert not (tmp_path / "store" / "subs" / "1").exists()  # not even its folder


def test_discard_removes_what_is_there_and_ignores_the_rest(files: FileStorage) -> None:
    files.write("a/1", io.BytesIO(b"1"))
    files.write("a/2", io.BytesIO(b"2"))
    files.discard("a/1", "a/missing", "../../outside", "")
    assert [(f["path"], f["size"]) for f in files.list()] == [("a/2", 1)]


def test_logs_append_at_offsets_and_read_ranges(logs: LogStorage) -> None:
    assert logs.size(7, "stdout") == 0
    assert list(logs.read(7, "stdout")) == []
    assert logs.append(7, "stdout", 0, io.BytesIO(b"hello ")) == 6
    assert logs.append(7, "stdout", 3, io.BytesIO(b"lo world")) == 11  # overlap skipped
    with pytest.raises(Conflict) as gap:
        logs.append(7, "stdout", 20, io.BytesIO(b"late"))
    assert gap.value.details == {"expected_offset": 11}
    assert b"".join(logs.read(7, "stdout")) == b"hello world"
    assert b"".join(logs.read(7, "stdout", 6, 3)) == b"wor"
    assert b"".join(logs.read(7, "stdout", 20)) == b""
    assert logs.size(7, "stderr") == 0
    with pytest.raises(InvalidInput, match="stream must be one of"):
        logs.size(7, "journal")


def test_logs_are_deleted_per_execution(logs: LogStorage) -> None:
    for execution_id in (1, 2):
        for stream in ("stdout", "stderr"):
            logs.append(execution_id, stream, 0, io.BytesIO(b"x"))
    logs.delete([1, 3])
    assert (logs.size(1, "stdout"), logs.size(1, "stderr")) == (0, 0)
    assert (logs.size(2, "stdout"), logs.size(2, "stderr")) == (1, 1)


def test_build_stores_uses_the_settings_directories(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "data", database_url="sqlite://",
                              log_root=tmp_path / "shared" / "logs",
                              store_root=tmp_path / "shared" / "store")
    logs, files = build_stores(settings)
    logs.append(1, "stdout", 0, io.BytesIO(b"log"))
    files.write("a.txt", io.BytesIO(b"file"))
    assert (tmp_path / "shared" / "logs" / "000000" / "1" / "stdout").read_bytes() == b"log"
    assert (tmp_path / "shared" / "store" / "a.txt").read_bytes() == b"file"
    assert not (tmp_path / "data").exists()
