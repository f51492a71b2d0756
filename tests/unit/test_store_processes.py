"""The local stores shared by several server processes (real OS processes here), as
replicas share one directory: log appends never interleave nor repeat, a file write
is seen whole or not at all."""

from __future__ import annotations

import io
import multiprocessing
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scitq_bench.exceptions import NotFound
from scitq_bench.server.filestore import LocalFileStore
from scitq_bench.server.logstore import LocalLogStore

EXECUTION, STREAM = 42, "stdout"
CHUNKS = 2000  # appends per process: enough for two to meet mid-append
PROCESSES = 2
FILE = "shared/result.bin"
WRITES = 40
DEADLINE = 60.0  # seconds the processes may take, all together


def log_chunks() -> list[bytes]:
    """The log one worker ships: numbered lines in chunks of many sizes, some larger
    than one read of the store (64 KiB), so an append takes several writes."""
    rng = random.Random(7)
    chunks, line = [], 0
    for number in range(CHUNKS):
        lines = []
        for _ in range(3000 if number % 100 == 0 else rng.choice((1, 1, 1, 5, 20, 300))):
            lines.append(b"line %06d %s\n" % (line, b"x" * (line % 50)))
            line += 1
        chunks.append(b"".join(lines))
    return chunks


def ship_log(root: str, start: Any) -> None:
    """One server process receiving every append of the worker: as when a retry of
    each request reaches another replica while the first one is still writing."""
    logs, offset = LocalLogStore(Path(root)), 0
    start.wait(DEADLINE)
    for chunk in log_chunks():
        logs.append(EXECUTION, STREAM, offset, io.BytesIO(chunk))
        offset += len(chunk)


def version(writer: int, number: int) -> bytes:
    """A whole file one writer stores: its mark repeated, sizes differing per write."""
    return bytes([writer * 100 + number % 100]) * ((number % 7 + 1) * 150_000)


def is_version(data: bytes) -> bool:
    """Whether ``data`` is one whole write of one writer (WRITES < 100)."""
    return bool(data) and data == version(data[0] // 100, data[0] % 100)


def write_files(root: str, writer: int, start: Any) -> None:
    files = LocalFileStore(Path(root))
    start.wait(DEADLINE)
    for number in range(WRITES):
        files.write(FILE, io.BytesIO(version(writer, number)))


def run_while_reading(targets: list[tuple[Callable[..., None], tuple[Any, ...]]],
                      read: Callable[[], None]) -> int:
    """Run the targets in their own processes, released together once all are up, and
    ``read`` while they run and once after; every process must succeed. Returns how
    many reads overlapped the processes."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(targets))  # referenced until the processes are joined
    processes = [context.Process(target=target, args=(*args, start))
                 for target, args in targets]
    for process in processes:
        process.start()
    overlapped, give_up = 0, time.monotonic() + DEADLINE
    while any(p.is_alive() for p in processes) and time.monotonic() < give_up:
        read()
        overlapped += 1
        time.sleep(0.001)  # leave the writers a core of their own
    for process in processes:
        process.join(max(0.0, give_up - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
    assert [p.exitcode for p in processes] == [0] * len(processes)
    read()
    return overlapped


def test_appends_from_two_processes_neither_interleave_nor_repeat(tmp_path: Path) -> None:
    expected = b"".join(log_chunks())
    logs = LocalLogStore(tmp_path / "logs")

    def read() -> None:
        seen = b"".join(logs.read(EXECUTION, STREAM))
        assert expected.startswith(seen), "a reader saw bytes the log will not hold"

    run_while_reading([(ship_log, (str(tmp_path / "logs"),))] * PROCESSES, read)
    assert logs.size(EXECUTION, STREAM) == len(expected)
    assert b"".join(logs.read(EXECUTION, STREAM)) == expected


def test_writes_from_two_processes_are_read_whole(tmp_path: Path) -> None:
    root = tmp_path / "store"
    files = LocalFileStore(root)

    def read() -> None:
        try:
            with files.open(FILE) as stored:
                data = stored.stream.read()
        except NotFound:  # not written yet
            return
        assert len(data) == stored.size and is_version(data), "a reader saw a partial file"

    run_while_reading([(write_files, (str(root), w)) for w in range(1, PROCESSES + 1)], read)
    with files.open(FILE) as final:
        assert final.stream.read() in {version(w, WRITES - 1) for w in range(1, PROCESSES + 1)}
    assert [(f["path"], f["size"]) for f in files.list()] == [(FILE, final.size)]
    assert [p.name for p in (root / "shared").iterdir()] == ["result.bin"]  # no leftovers
