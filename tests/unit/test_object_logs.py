"""Execution logs through ``LogStorage``, on the local directory and as chunk objects in
an object store (a file system through ``file://``, moto's S3 server, Azurite): the
same offset semantics on each, and replicas (several ``ObjectLogStore`` on one store)
appending at once never interleave, repeat or leave a gap."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from scitq_bench.exceptions import Conflict, InvalidInput
from scitq_bench.server import objectlogs
from scitq_bench.server.logstore import LocalLogStore
from scitq_bench.server.objectlogs import ObjectLogStore
from scitq_bench.server.storage import LogStorage
from scitq_bench.storage.base import Store
from scitq_bench.storage.config import StorageConfig
from scitq_bench.storage.stores import Stores
from tests.support.objectstores import storage_config_for

KINDS = ["local", "file", "s3", "azure"]
OBJECT_KINDS = KINDS[1:]


def object_root_of(kind: str, request: pytest.FixtureRequest,
                   tmp_path: Path) -> tuple[Store, str]:
    """(store, folder key) of a fresh object store of ``kind``: a folder on this file
    system, a bucket on moto's S3 server, or a container on Azurite."""
    if kind == "file":
        uri, config = f"file://{tmp_path}/bucket/scitq/", StorageConfig()
    elif kind == "s3":
        uri, config = f"s3://{request.getfixturevalue('s3_bucket')}/scitq/", StorageConfig()
    else:
        container = request.getfixturevalue("azure_container")
        uri, config = container.uri("scitq/"), storage_config_for(container)
    stores = Stores(config)
    request.addfinalizer(stores.close)
    store, location = stores.resolve(uri)
    return store, location.key


@pytest.fixture
def object_root(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Store, str]:
    return object_root_of(request.param, request, tmp_path)


def replicas(object_root: tuple[Store, str], count: int) -> list[ObjectLogStore]:
    """``count`` log stores on one object store, as ``count`` server replicas hold."""
    store, folder = object_root
    return [ObjectLogStore(store, folder + "logs/") for _ in range(count)]


@pytest.fixture(params=KINDS)
def logs(request: pytest.FixtureRequest, tmp_path: Path) -> LogStorage:
    if request.param == "local":
        return LocalLogStore(tmp_path / "logs")
    return replicas(object_root_of(request.param, request, tmp_path), 1)[0]


def test_logs_append_at_offsets_and_read_ranges(logs: LogStorage) -> None:
    assert logs.size(7, "stdout") == 0
    assert list(logs.read(7, "stdout")) == []
    assert logs.append(7, "stdout", 0, io.BytesIO(b"hello ")) == 6
    assert logs.append(7, "stdout", 3, io.BytesIO(b"lo world")) == 11  # overlap skipped
    assert logs.append(7, "stdout", 0, io.BytesIO(b"hello")) == 11  # a whole repeat
    with pytest.raises(Conflict) as gap:
        logs.append(7, "stdout", 20, io.BytesIO(b"late"))
    assert gap.value.details == {"expected_offset": 11}
    assert logs.size(7, "stdout") == 11
    assert b"".join(logs.read(7, "stdout")) == b"hello world"
    assert b"".join(logs.read(7, "stdout", 6, 3)) == b"wor"
    assert b"".join(logs.read(7, "stdout", 4, -1)) == b"o world"  # a negative limit: no limit
    assert b"".join(logs.read(7, "stdout", 20)) == b""
    assert logs.size(7, "stderr") == 0
    with pytest.raises(InvalidInput, match="stream must be one of"):
        logs.size(7, "journal")
    with pytest.raises(InvalidInput, match="stream must be one of"):
        logs.append(7, "journal", 0, io.BytesIO(b"x"))


def test_an_empty_append_writes_nothing_and_a_gap_is_still_refused(logs: LogStorage) -> None:
    assert logs.append(3, "stderr", 0, io.BytesIO(b"")) == 0
    assert logs.size(3, "stderr") == 0
    logs.append(3, "stderr", 0, io.BytesIO(b"abc"))
    assert logs.append(3, "stderr", 3, io.BytesIO(b"")) == 3
    with pytest.raises(Conflict) as gap:
        logs.append(3, "stderr", 4, io.BytesIO(b""))
    assert gap.value.details == {"expected_offset": 3}


def test_reads_cut_anywhere_across_appends(logs: LogStorage) -> None:
    parts = [b"a", b"bcd", b"efghij", b"k", b"lmnopqrstu"]
    offset = 0
    for part in parts:
        offset = logs.append(12, "stdout", offset, io.BytesIO(part))
    whole = b"".join(parts)
    for start in range(len(whole) + 1):
        for limit in (0, 1, 2, 5, 30, None):
            expected = whole[start:] if limit is None else whole[start:start + limit]
            assert b"".join(logs.read(12, "stdout", start, limit)) == expected, (start, limit)


def test_logs_are_deleted_per_execution(logs: LogStorage) -> None:
    for execution_id in (1, 2, 1001):
        for stream in ("stdout", "stderr"):
            logs.append(execution_id, stream, 0, io.BytesIO(b"x"))
    logs.delete([1, 3, 1001])
    assert (logs.size(1, "stdout"), logs.size(1, "stderr"), logs.size(1001, "stdout")) == (0, 0, 0)
    assert (logs.size(2, "stdout"), logs.size(2, "stderr")) == (1, 1)
    assert logs.append(1, "stdout", 0, io.BytesIO(b"again")) == 5  # a fresh log


@pytest.mark.parametrize("object_root", OBJECT_KINDS, indirect=True)
def test_each_append_is_one_chunk_named_after_its_offset(object_root) -> None:
    store, folder = object_root
    (logs,) = replicas(object_root, 1)
    logs.append(1234, "stdout", 0, io.BytesIO(b"hello "))
    logs.append(1234, "stdout", 3, io.BytesIO(b"lo world"))
    logs.append(1234, "stdout", 11, io.BytesIO(b""))
    keys = [entry.key.removeprefix(folder) for entry in store.list(folder)]
    assert keys == ["logs/000001/1234/stdout/0000000000000000",
                    "logs/000001/1234/stdout/0000000000000006"]
    assert store.read(folder + keys[1]).read() == b"world"


@pytest.mark.parametrize("object_root", OBJECT_KINDS, indirect=True)
def test_replicas_see_each_others_appends(object_root) -> None:
    """A retry may reach another replica than the first try, and a replica's own idea
    of a log's end may be stale: the conditional write finds out."""
    one, two = replicas(object_root, 2)
    assert one.append(5, "stdout", 0, io.BytesIO(b"first ")) == 6
    assert two.append(5, "stdout", 0, io.BytesIO(b"first ")) == 6  # the retry, elsewhere
    assert two.append(5, "stdout", 6, io.BytesIO(b"second ")) == 13
    # one still believes the log ends at 6: the same chunk retried there is skipped
    assert one.append(5, "stdout", 6, io.BytesIO(b"second ")) == 13
    assert one.append(5, "stdout", 13, io.BytesIO(b"third")) == 18
    with pytest.raises(Conflict) as gap:
        two.append(5, "stdout", 6 + 7 + 5 + 1, io.BytesIO(b"x"))
    assert gap.value.details == {"expected_offset": 18}
    assert b"".join(two.read(5, "stdout")) == b"first second third"
    one.delete([5])
    (three,) = replicas(object_root, 1)
    assert (one.size(5, "stdout"), three.size(5, "stdout")) == (0, 0)
    with pytest.raises(Conflict) as deleted:
        three.append(5, "stdout", 18, io.BytesIO(b"x"))
    assert deleted.value.details == {"expected_offset": 0}


@pytest.mark.parametrize("object_root", OBJECT_KINDS, indirect=True)
def test_an_append_larger_than_a_piece_is_several_chunks(object_root, monkeypatch) -> None:
    monkeypatch.setattr(objectlogs, "PIECE", 4)
    one, two = replicas(object_root, 2)
    assert one.append(9, "stdout", 0, io.BytesIO(b"0123456789")) == 10
    assert two.append(9, "stdout", 2, io.BytesIO(b"23456789abcdef")) == 16
    assert b"".join(one.read(9, "stdout")) == b"0123456789abcdef"
    assert b"".join(one.read(9, "stdout", 3, 9)) == b"3456789ab"
    store, folder = object_root
    offsets = [int(entry.key.rsplit("/", 1)[1]) for entry in store.list(folder)]
    assert offsets == [0, 4, 8, 10, 14]


@pytest.mark.parametrize("object_root", OBJECT_KINDS, indirect=True)
def test_a_tail_sees_what_another_replica_appends(object_root) -> None:
    """A replica remembering a log's end still sees it grow through another."""
    reader, writer = replicas(object_root, 2)
    assert reader.size(8, "stdout") == 0
    writer.append(8, "stdout", 0, io.BytesIO(b"one "))
    assert reader.size(8, "stdout") == 4
    writer.append(8, "stdout", 4, io.BytesIO(b"two"))
    assert reader.size(8, "stdout") == 7
    assert b"".join(reader.read(8, "stdout", 4)) == b"two"


@pytest.mark.parametrize("object_root", OBJECT_KINDS, indirect=True)
def test_a_long_log_reads_whole_and_in_ranges(object_root, monkeypatch) -> None:
    """More chunks than are fetched at once, some larger than what is fetched ahead."""
    monkeypatch.setattr(objectlogs, "SMALL", 20)
    (logs,) = replicas(object_root, 1)
    parts = [b"%03d%s|" % (n, b"y" * (n % 7 * 5)) for n in range(40)]
    offset = 0
    for part in parts:
        offset = logs.append(4, "stderr", offset, io.BytesIO(part))
    whole = b"".join(parts)
    assert b"".join(logs.read(4, "stderr")) == whole
    assert b"".join(logs.read(4, "stderr", 101, 333)) == whole[101:434]
    assert b"".join(logs.read(4, "stderr", len(whole) - 3)) == whole[-3:]


def ship(logs: LogStorage, chunks: list[bytes], start: threading.Barrier) -> None:
    """One replica receiving every append of the worker, which sends each where its
    previous one ended (the log may be longer already: others wrote it)."""
    start.wait(30)
    offset = 0
    for chunk in chunks:
        assert logs.append(77, "stdout", offset, io.BytesIO(chunk)) >= offset + len(chunk)
        offset += len(chunk)


@pytest.mark.parametrize("object_root", OBJECT_KINDS, indirect=True)
def test_replicas_appending_the_same_log_at_once(object_root) -> None:
    """Every append reaches several replicas at once (as when a worker's retry lands
    on another replica while the first is still writing): the log holds each byte
    once, in order."""
    chunks = [b"line %04d %s\n" % (n, b"x" * (n % 13)) for n in range(60)]
    writers = replicas(object_root, 3)
    start = threading.Barrier(len(writers))
    threads = [threading.Thread(target=ship, args=(logs, chunks, start)) for logs in writers]
    failures: list[BaseException] = []
    run_all(threads, failures.append)
    assert failures == []
    assert b"".join(writers[0].read(77, "stdout")) == b"".join(chunks)
    assert writers[1].size(77, "stdout") == len(b"".join(chunks))


def run_all(threads: list[threading.Thread], failed: Callable[[BaseException], None]) -> None:
    """Start and join ``threads``, passing what any of them raised to ``failed``."""
    def hook(args: threading.ExceptHookArgs) -> None:
        failed(args.exc_value or RuntimeError("thread failed"))

    previous, threading.excepthook = threading.excepthook, hook
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        threading.excepthook = previous
