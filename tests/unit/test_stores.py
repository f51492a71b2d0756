"""The local log and file stores, through the interfaces the server uses: streams and
sizes out, never a local path. The file store's contract, shared with the object
stores, is tested on every kind in ``test_object_files``; here what only the local
store promises (an open file keeps its bytes)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from scitq_bench.exceptions import Conflict, InvalidInput
from scitq_bench.server.filestore import LocalFileStore
from scitq_bench.server.logstore import LocalLogStore
from scitq_bench.server.storage import FileStorage, LogStorage, build_stores
from scitq_bench.settings import ServerSettings


@pytest.fixture
def files(tmp_path: Path) -> FileStorage:
    return LocalFileStore(tmp_path / "store")


@pytest.fixture
def logs(tmp_path: Path) -> LogStorage:
    return LocalLogStore(tmp_path / "logs")


def test_an_open_file_keeps_its_bytes_when_replaced(files: FileStorage) -> None:
    files.write("a.txt", io.BytesIO(b"old"))
    with files.open("a.txt") as before:
        files.write("a.txt", io.BytesIO(b"newer"))
        assert (before.size, before.stream.read()) == (3, b"old")
    with files.open("a.txt") as after:
        assert (after.size, after.stream.read()) == (5, b"newer")
        assert after.etag != before.etag


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
