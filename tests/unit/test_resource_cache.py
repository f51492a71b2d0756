"""The worker's resource cache on a real disk, fetching file:// resources with the
worker's own transfer code: eviction by last use within its bound, entries in use
kept (in this process and in another one), one fetch per entry, versions, restarts,
and the execution's own resource folder made of links. Then the progress lines a
transfer writes to the execution's log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest

from scitq_bench.client.worker import transfer
from scitq_bench.client.worker.cache import (
    CachedResource,
    ResourceCache,
    link_tree,
    seal,
)
from scitq_bench.client.worker.progress import TransferProgress, shown
from scitq_bench.client.worker.transfer import Deadline, TransferError
from scitq_bench.client.worker.workdir import ExecutionDirs
from scitq_bench.storage.base import Progress
from scitq_bench.storage.config import StorageConfig
from scitq_bench.storage.stores import Stores
from tests.support.waiting import wait_until

MB = 1 << 20


class Source:
    """The worker's fetch and version check (``transfer``) on file:// URIs, counting
    the fetches; ``gate``, when set, holds each fetch until it opens; ``broken``
    makes the next fetches fail, ``unreachable`` the version checks."""

    def __init__(self) -> None:
        self.stores = Stores(StorageConfig(), server=None)
        self.fetched: list[str] = []
        self.gate: threading.Event | None = None
        self.broken = 0
        self.unreachable = False
        self._lock = threading.Lock()

    def fetch(self, uri: str, destination: Path, deadline: Deadline,
              progress: Progress | None) -> None:
        with self._lock:
            self.fetched.append(uri)
            broken, self.broken = self.broken > 0, max(0, self.broken - 1)
        if self.gate is not None:
            while not self.gate.wait(0.02):
                deadline.check()
        if broken:
            raise TransferError(f"{uri}: the store said no")
        transfer.fetch(None, uri, destination, deadline,  # type: ignore[arg-type]
                       stores=self.stores, progress=progress)

    def version(self, uri: str, deadline: Deadline) -> str | None:
        if self.unreachable:
            raise TransferError(f"{uri}: connection refused")
        return transfer.resource_version(None, uri, deadline,  # type: ignore[arg-type]
                                         stores=self.stores)

    def cache(self, root: Path, max_bytes: int) -> ResourceCache:
        return ResourceCache(root, max_bytes, self.fetch, self.version)


def _file(path: Path, size: int, fill: bytes = b"x") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(fill * size)
    return f"file://{path}"


def _entries(root: Path) -> set[str]:
    """The URIs the cache holds, from its entries' metadata."""
    return {json.loads((entry / "meta.json").read_text())["uri"]
            for entry in (root / "entries").iterdir()}


def _bytes(root: Path) -> int:
    return sum(json.loads((entry / "meta.json").read_text())["bytes"]
               for entry in (root / "entries").iterdir())


def _use(cache: ResourceCache, uri: str) -> CachedResource:
    return cache.acquire(uri, Deadline(10))


def test_least_recently_used_entries_go_first_within_the_bound(tmp_path: Path) -> None:
    source = Source()
    cache = source.cache(tmp_path / "cache", 3 * MB)
    a, b, c, d = (_file(tmp_path / "src" / name, MB) for name in "abcd")
    for uri in (a, b, c):
        cache.release([_use(cache, uri)])
    cache.release([_use(cache, a)])  # a is now used more recently than b and c
    assert _entries(tmp_path / "cache") == {a, b, c}
    cache.release([_use(cache, d)])
    assert _entries(tmp_path / "cache") == {a, c, d}  # b, the least recently used, went
    cache.release([_use(cache, b)])
    assert _entries(tmp_path / "cache") == {a, d, b}
    assert _bytes(tmp_path / "cache") <= 3 * MB
    assert source.fetched == [a, b, c, d, b]


def test_entries_in_use_are_never_evicted(tmp_path: Path) -> None:
    source = Source()
    cache = source.cache(tmp_path / "cache", 0)  # kept only while used
    a, b = _file(tmp_path / "a.bin", MB), _file(tmp_path / "b.bin", MB)
    held_a = _use(cache, a)
    held_b = _use(cache, b)  # over the bound: nothing unused to evict
    assert _entries(tmp_path / "cache") == {a, b}
    assert (held_a.data / "a.bin").read_bytes() == b"x" * MB
    cache.release([held_a])
    assert _entries(tmp_path / "cache") == {b}
    again = _use(cache, b)  # pinned twice: one release keeps it
    cache.release([held_b])
    assert _entries(tmp_path / "cache") == {b}
    cache.release([again])
    assert _entries(tmp_path / "cache") == set()
    assert list((tmp_path / "cache" / "trash").iterdir()) == []


def test_an_entry_another_process_uses_is_not_evicted(tmp_path: Path) -> None:
    """A second worker process sharing the folder pins an entry (its shared lock):
    this one's eviction leaves it until that process lets it go."""
    uri = _file(tmp_path / "shared.bin", MB)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from scitq_bench.client.worker.transfer import Deadline
        from tests.unit.test_resource_cache import Source
        cache = Source().cache(Path({str(tmp_path / 'cache')!r}), 0)
        resource = cache.acquire({uri!r}, Deadline(10))
        print("pinned", flush=True)
        sys.stdin.readline()
        cache.release([resource])
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "pinned"
        cache = Source().cache(tmp_path / "cache", 0)
        cache.trim()
        assert _entries(tmp_path / "cache") == {uri}
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(10) == 0
    finally:
        child.kill()
    cache.trim()
    assert _entries(tmp_path / "cache") == set()


def test_concurrent_uses_of_one_uri_fetch_it_once(tmp_path: Path) -> None:
    source = Source()
    source.gate = threading.Event()
    cache = source.cache(tmp_path / "cache", 10 * MB)
    uri = _file(tmp_path / "ref.bin", MB)
    got: list[CachedResource] = []
    threads = [threading.Thread(target=lambda: got.append(_use(cache, uri))) for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: source.fetched, what="the first fetch")
    source.gate.set()
    for thread in threads:
        thread.join(10)
    assert source.fetched == [uri]
    assert len(got) == 4 and len({resource.data for resource in got}) == 1
    assert cache.pinned() == {got[0].key}
    cache.release(got)
    assert cache.pinned() == set()


def test_a_failed_fetch_is_forgotten_and_tried_again(tmp_path: Path) -> None:
    source = Source()
    source.broken = 1
    cache = source.cache(tmp_path / "cache", 10 * MB)
    uri = _file(tmp_path / "ref.bin", 1000)
    with pytest.raises(TransferError, match="the store said no"):
        _use(cache, uri)
    assert _entries(tmp_path / "cache") == set()
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []  # nothing partial kept
    resource = _use(cache, uri)
    assert (resource.data / "ref.bin").stat().st_size == 1000
    assert source.fetched == [uri, uri]


def test_a_failed_fetch_waited_for_is_tried_by_the_waiter(tmp_path: Path) -> None:
    source = Source()
    source.broken, source.gate = 1, threading.Event()
    cache = source.cache(tmp_path / "cache", 10 * MB)
    uri = _file(tmp_path / "ref.bin", 1000)
    outcomes: list[object] = []

    def use() -> None:
        try:
            outcomes.append(_use(cache, uri))
        except TransferError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=use) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_until(lambda: source.fetched, what="the first fetch")
    source.gate.set()
    for thread in threads:
        thread.join(10)
    assert sorted(type(outcome).__name__ for outcome in outcomes) == \
        ["CachedResource", "TransferError"]
    assert source.fetched == [uri, uri]


def test_a_changed_resource_is_fetched_again_and_the_old_copy_evicted(tmp_path: Path) -> None:
    source = Source()
    cache = source.cache(tmp_path / "cache", 10 * MB)
    uri = _file(tmp_path / "ref.txt", 10, b"1")
    cache.release([_use(cache, uri)])
    cache.release([_use(cache, uri)])
    assert source.fetched == [uri]
    _file(tmp_path / "ref.txt", 11, b"2")  # another size and time: another version
    fresh = _use(cache, uri)
    assert (fresh.data / "ref.txt").read_bytes() == b"2" * 11
    assert source.fetched == [uri, uri]
    assert len(list((tmp_path / "cache" / "entries").iterdir())) == 1


def test_a_version_check_that_fails_fails_the_use(tmp_path: Path) -> None:
    """The cached copy may be stale: it is not used when the store cannot say."""
    source = Source()
    cache = source.cache(tmp_path / "cache", 10 * MB)
    uri = _file(tmp_path / "ref.txt", 10)
    cache.release([_use(cache, uri)])
    source.unreachable = True
    with pytest.raises(TransferError, match="connection refused"):
        _use(cache, uri)


def test_entries_outlive_the_process_unless_unversioned(tmp_path: Path) -> None:
    source = Source()
    uri = _file(tmp_path / "tree" / "a.txt", 10)
    folder = f"file://{tmp_path / 'tree'}/"
    first = source.cache(tmp_path / "cache", 10 * MB)
    first.release([_use(first, uri), _use(first, folder)])
    first.close()
    restarted = source.cache(tmp_path / "cache", 10 * MB)
    resource = _use(restarted, folder)
    assert (resource.data / "a.txt").read_text() == "x" * 10
    restarted.release([resource, _use(restarted, uri)])
    assert source.fetched == [uri, folder]  # nothing fetched again

    smaller = source.cache(tmp_path / "cache", 5)  # a restart with a lower bound
    assert _entries(tmp_path / "cache") == set() and smaller.pinned() == set()

    unversioned = Source()
    unversioned.version = lambda uri, deadline: None  # type: ignore[method-assign]
    once = unversioned.cache(tmp_path / "plain", 10 * MB)
    once.release([_use(once, uri)])
    once.release([_use(once, uri)])  # the same process: kept
    again = unversioned.cache(tmp_path / "plain", 10 * MB)
    again.release([_use(again, uri)])  # a new process: fetched again
    assert unversioned.fetched == [uri, uri]


def test_a_fetch_a_dead_process_left_is_cleaned_at_start(tmp_path: Path) -> None:
    source = Source()
    cache = source.cache(tmp_path / "cache", 10 * MB)
    leftover = tmp_path / "cache" / "tmp" / "abc-def.1234" / "data"
    leftover.mkdir(parents=True)
    (leftover / "partial").write_text("half")
    leftover.chmod(0o555)
    cache.close()
    source.cache(tmp_path / "cache", 10 * MB)
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []


def test_cache_files_are_read_only_and_actions_applied(tmp_path: Path) -> None:
    archive = tmp_path / "tool.tar.gz"
    script = tmp_path / "run.sh"
    script.write_text("echo hi\n")
    script.chmod(0o755)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(script, arcname="tool/bin/run.sh")
    source = Source()
    cache = source.cache(tmp_path / "cache", 10 * MB)
    resource = _use(cache, f"file://{archive}|untar")
    assert sorted(p.relative_to(resource.data).as_posix() for p in resource.data.rglob("*")) \
        == ["tool", "tool/bin", "tool/bin/run.sh"]
    modes = {p.name: p.stat().st_mode & 0o777 for p in [resource.data, *resource.data.rglob("*")]}
    assert modes == {"data": 0o555, "tool": 0o555, "bin": 0o555, "run.sh": 0o555}
    plain = _use(cache, _file(tmp_path / "ref.txt", 3))
    assert (plain.data / "ref.txt").stat().st_mode & 0o777 == 0o444


def test_an_execution_folder_links_its_resources_in_order(tmp_path: Path) -> None:
    """Later resources replace an earlier one's files; folders merge; files are hard
    links to the cache's; a link is made again, never followed."""
    first, second = tmp_path / "first", tmp_path / "second"
    (first / "ref").mkdir(parents=True)
    (first / "ref" / "genome.fa").write_text("old")
    (first / "ref" / "index").write_text("idx")
    (first / "tool").write_text("a file, replaced by a folder")
    (first / "link").symlink_to("ref/genome.fa")
    (second / "ref").mkdir(parents=True)
    (second / "ref" / "genome.fa").write_text("new")
    (second / "tool").mkdir()
    (second / "tool" / "run").write_text("run")
    destination = tmp_path / "execution" / "resource"
    link_tree(first, destination)
    link_tree(second, destination)
    listing = sorted(p.relative_to(destination).as_posix() for p in destination.rglob("*"))
    assert listing == ["link", "ref", "ref/genome.fa", "ref/index", "tool", "tool/run"]
    assert (destination / "ref" / "genome.fa").read_text() == "new"
    assert os.path.samefile(destination / "ref" / "genome.fa", second / "ref" / "genome.fa")
    assert os.path.samefile(destination / "ref" / "index", first / "ref" / "index")
    assert os.readlink(destination / "link") == "ref/genome.fa"


def test_links_fall_back_to_copies_across_file_systems(tmp_path: Path) -> None:
    """A cache on another file system than the executions (here /dev/shm, a tmpfs)."""
    if not os.path.isdir("/dev/shm") or \
            os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system (/dev/shm) beside the test folder")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        source = Path(other)
        (source / "ref.txt").write_text("data")
        (source / "ref.txt").chmod(0o444)
        link_tree(source, tmp_path / "execution")
        copied = tmp_path / "execution" / "ref.txt"
        assert copied.read_text() == "data" and not os.path.samefile(copied, source / "ref.txt")
        assert copied.stat().st_mode & 0o777 == 0o444


def test_a_released_execution_folder_is_recycled_without_its_resources(tmp_path: Path
                                                                        ) -> None:
    cached = tmp_path / "cache"
    (cached / "ref").mkdir(parents=True)
    (cached / "ref" / "genome.fa").write_text("ACGT")
    seal(cached)
    dirs = ExecutionDirs(tmp_path / "executions")
    dirs.reset()
    first = dirs.create(1)
    link_tree(cached, first / "resource")
    (first / "resource" / "ref").chmod(0o555)  # a task may lock its own copy
    dirs.release(first)
    second = dirs.create(2)
    assert not first.exists() and list((second / "resource").iterdir()) == []
    assert (cached / "ref" / "genome.fa").read_text() == "ACGT"  # the cache's copy stays


def test_uris_are_shown_without_secrets() -> None:
    assert shown("https://user:pw@h.example/a/b.tgz?sig=SECRET|untar") == \
        "https://h.example/a/b.tgz|untar"
    assert shown("s3://bucket/key") == "s3://bucket/key"


def _log(tmp_path: Path) -> tuple[int, Path]:
    path = tmp_path / "stderr.log"
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), path


def test_progress_lines_with_the_total_and_no_secret(tmp_path: Path) -> None:
    fd, path = _log(tmp_path)
    progress = TransferProgress(fd, "fetch", "https://u:pw@h.example/x.bin?sig=S|untar",
                                interval=0, total=lambda: 3 * MB)
    progress(MB)  # the first line asks for the total, on a thread of its own
    wait_until(lambda: progress.total, what="the total")
    progress(MB)
    progress.finish(ok=True)
    os.close(fd)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("[scitq-bench] fetching https://h.example/x.bin|untar: "
                               "1.0 MiB, ") and lines[0].endswith(" MB/s")
    assert lines[1].startswith("[scitq-bench] fetching https://h.example/x.bin|untar: "
                               "2.0 MiB of 3.0 MiB, ")
    assert lines[2].startswith("[scitq-bench] fetched https://h.example/x.bin|untar: "
                               "2.0 MiB in ") and lines[2].endswith(" s")
    assert len(lines) == 3 and "pw" not in path.read_text() and "sig" not in path.read_text()


def test_a_transfer_shorter_than_the_interval_writes_nothing(tmp_path: Path) -> None:
    fd, path = _log(tmp_path)
    asked: list[int] = []

    def total() -> int:
        asked.append(1)
        return 5 * MB

    progress = TransferProgress(fd, "upload", "s3://b/out/", interval=60, total=total)
    for _ in range(5):
        progress(MB)
    progress.finish(ok=False)
    os.close(fd)
    assert path.read_text() == "" and asked == []

