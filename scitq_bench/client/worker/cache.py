"""The worker's resource cache: each resource fetched once, kept on disk across
restarts, and linked into the executions that name it.

Layout of the cache folder (``<work_dir>/cache`` unless ``--cache-dir`` says)::

    entries/<key>/meta.json   what the entry holds: URI (credential-free), version, bytes
    entries/<key>/used        its modification time is the entry's last use
    entries/<key>/data/       the fetched tree, read-only (files 0444, folders 0555)
    locks/<key>.lock          flock: shared while an execution uses the entry,
                              exclusive while it is fetched or evicted
    tmp/<key>.<random>/       an entry being fetched, renamed into entries/ when whole
    trash/                    evicted entries being deleted

An entry's key digests the URI (actions included) and the version the store gave
(``transfer.resource_version``): a changed resource is a new entry, and the old one
is evicted as soon as nobody uses it. A store that gives no version makes entries
valid for this process only: a new process fetches them again. The version costs
one cheap request per resource and execution; when the store cannot answer it, the
execution fails like a failed download, never silently served a copy that may be
stale.

An entry appears whole or not at all (fetched into ``tmp/`` with its metadata, then
renamed), so a crash never leaves a partial entry. The cache holds at most
``max_bytes``: after a fetch, and after a release when it was over, the entries used
least recently are evicted, never one in use (pinned in this process, or locked by
another worker process sharing the folder). With ``max_bytes`` 0 an entry lives only
while executions use it.

Executions see copies made of hard links (``link_tree``), so an execution cannot see
another's resources, and evicting an entry never pulls data from under a running
task. Cache files are read-only, so a task's write fails instead of changing the
cache; containers and the sandbox mount the resources read-only too, but a task run
as a plain process is the worker's own user and could change modes back: process
tasks are not isolated from the worker's host.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from scitq_bench.client.worker.progress import shown, size_text
from scitq_bench.client.worker.transfer import Deadline, TransferError
from scitq_bench.client.worker.workdir import remove_tree
from scitq_bench.storage.base import Progress

log = logging.getLogger("scitq_bench.worker")

POLL = 0.05  # seconds between tries of a lock held by another worker process
FILE_MODE, DIR_MODE = 0o444, 0o555
# a fetcher downloads the URI into the folder with its actions applied (transfer.fetch)
Fetcher = Callable[[str, Path, Deadline, Progress | None], None]
# a versioner gives the token that changes with the data (transfer.resource_version)
Versioner = Callable[[str, Deadline], str | None]


@dataclass(frozen=True)
class CachedResource:
    """An entry an execution holds (pinned until ``ResourceCache.release``)."""

    uri: str
    key: str
    data: Path  # the fetched tree


@dataclass
class _Fetch:
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Pin:
    count: int
    lock: int  # a descriptor holding the entry's lock file, shared


class ResourceCache:
    """Resources on disk, shared by this worker's executions (and by other worker
    processes given the same folder). ``acquire`` returns an entry, fetching it when
    needed; threads wanting an entry being fetched wait for that fetch instead of
    repeating it; a failed fetch is forgotten, so the next execution tries again."""

    def __init__(self, root: Path, max_bytes: int, fetch: Fetcher, version: Versioner) -> None:
        self.root = root
        self.max_bytes = max(0, max_bytes)
        self._fetch = fetch
        self._version = version
        self._session = secrets.token_hex(16)  # keys of entries without a version
        self._lock = threading.Lock()  # guards _pins and _fetches
        self._trim_lock = threading.Lock()
        self._pins: dict[str, _Pin] = {}
        self._fetches: dict[str, _Fetch] = {}
        self._over = False  # the last trim could not reach the bound
        for name in ("entries", "locks", "tmp", "trash"):
            (root / name).mkdir(parents=True, exist_ok=True)
        self._clean_leftovers()
        self.trim()  # the bound may be lower than that of the process that filled it

    # -- executions ----------------------------------------------------------------------

    def acquire(self, uri: str, deadline: Deadline,
                progress: Progress | None = None) -> CachedResource:
        """The entry for ``uri`` at the version its store has now, pinned: fetched
        unless the cache holds it. Raises TransferError (the version check or the
        fetch failed), DownloadTimedOut or Aborted."""
        version = self._version(uri, deadline)
        key = entry_key(uri, version if version is not None else f"session:{self._session}")
        while True:
            with self._lock:
                if self._pin_again(key):
                    return self._resource(uri, key)
                waiting = self._fetches.get(key)
                if waiting is None:
                    mine = self._fetches[key] = _Fetch()
            if waiting is not None:
                while not waiting.done.wait(POLL):
                    deadline.check()
                continue  # pinned by now, or failed: then this thread tries itself
            try:
                self._obtain(uri, key, version, deadline, progress)
            finally:
                with self._lock:
                    self._fetches.pop(key, None)
                mine.done.set()
            return self._resource(uri, key)

    def release(self, resources: Iterable[CachedResource]) -> None:
        """The execution no longer uses these entries."""
        with self._lock:
            for resource in resources:
                pin = self._pins.get(resource.key)
                if pin is None:
                    continue
                pin.count -= 1
                if pin.count == 0:
                    del self._pins[resource.key]
                    os.close(pin.lock)  # gives the shared lock up
        if self._over:
            self.trim()

    def close(self) -> None:
        """Give every lock up (the worker is stopping: no execution runs)."""
        with self._lock:
            pins, self._pins = self._pins, {}
        for pin in pins.values():
            os.close(pin.lock)

    def pinned(self) -> set[str]:
        with self._lock:
            return set(self._pins)

    # -- obtaining an entry -------------------------------------------------------------

    def _pin_again(self, key: str) -> bool:
        """Call with ``_lock`` held: one more use of an entry already pinned here."""
        pin = self._pins.get(key)
        if pin is None:
            return False
        pin.count += 1
        _touch(self._entry(key) / "used")
        return True

    def _obtain(self, uri: str, key: str, version: str | None, deadline: Deadline,
                progress: Progress | None) -> None:
        """Pin the entry, fetching it first unless another process (or an earlier
        run) has it. Shared lock to use it; exclusive to fetch it, so that two
        processes never fetch the same entry at once."""
        while True:
            fd = self._locked(key, fcntl.LOCK_SH, deadline)
            try:
                if self._present(key):
                    _touch(self._entry(key) / "used")
                    with self._lock:
                        self._pins[key] = _Pin(1, fd)
                    fd = -1
                    return
                _flock(fd, fcntl.LOCK_EX, deadline)  # not atomic: check again after it
                if not self._present(key):
                    self._download(uri, key, version, deadline, progress)
                _flock(fd, fcntl.LOCK_SH, deadline)
                if _same_file(fd, self._lock_path(key)) and self._present(key):
                    with self._lock:
                        self._pins[key] = _Pin(1, fd)
                    fd = -1
                    self._forget_older(uri, key)
                    self.trim()
                    return
            finally:
                if fd >= 0:
                    os.close(fd)

    def _download(self, uri: str, key: str, version: str | None, deadline: Deadline,
                  progress: Progress | None) -> None:
        """Fetch into ``tmp/``, seal, describe, then rename into ``entries/``."""
        staging = self.root / "tmp" / f"{key}.{secrets.token_hex(4)}"
        try:
            staging.mkdir()
            self._fetch(uri, staging / "data", deadline, progress)
            (staging / "data").mkdir(exist_ok=True)  # a fetch of an empty folder
            size = seal(staging / "data")
            meta = {"uri": shown(uri), "version": version, "bytes": size,
                    "session": None if version is not None else self._session,
                    "fetched_at": time.time()}
            _write_json(staging / "meta.json", meta)
            _touch(staging / "used")
            os.rename(staging, self._entry(key))
        except OSError as exc:  # the cache's own disk: full, or not writable
            raise TransferError(f"{shown(uri)}: cannot keep it in the resource cache "
                                f"{self.root}: {exc.strerror or exc}") from None
        finally:
            if staging.exists():
                remove_tree(staging)
        log.info("cached %s (%s)", shown(uri), size_text(size))

    # -- the bound ----------------------------------------------------------------------

    def trim(self) -> None:
        """Evict the entries used least recently until the cache holds at most
        ``max_bytes``; entries in use stay."""
        with self._trim_lock:
            try:
                entries = sorted(self._entries(), key=lambda entry: entry[1])
                total = sum(size for _, _, size in entries)
                for key, _, size in entries:
                    if total <= self.max_bytes:
                        break
                    if self._evict(key):
                        total -= size
            except OSError as exc:  # the bound waits for the next trim; the task need not
                log.warning("resource cache %s: eviction failed: %s", self.root, exc)
                return
            self._over = total > self.max_bytes

    def _forget_older(self, uri: str, key: str) -> None:
        """Evict the entries of other versions of ``uri`` that nobody uses: the
        store no longer has that data."""
        prefix = key.split("-", 1)[0] + "-"
        try:
            with os.scandir(self.root / "entries") as found:
                names = [e.name for e in found if e.name.startswith(prefix) and e.name != key]
            for name in names:
                if self._evict(name):
                    log.info("evicted %s: the store holds another version", shown(uri))
        except OSError as exc:
            log.warning("resource cache %s: eviction failed: %s", self.root, exc)

    def _evict(self, key: str) -> bool:
        """Move an unused entry to the trash and delete it; False when it is in use
        (here, or by another process: its lock is held)."""
        with self._lock:
            if key in self._pins or key in self._fetches:
                return False
            path = self._lock_path(key)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError:
                return False
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                if not _same_file(fd, path) or not self._present(key):
                    return False
                gone = self.root / "trash" / f"{key}.{secrets.token_hex(4)}"
                os.rename(self._entry(key), gone)
                os.unlink(path)  # lockers check the file they locked is still this one
            finally:
                os.close(fd)
        remove_tree(gone)
        return True

    def _entries(self) -> Iterator[tuple[str, float, int]]:
        """(key, last use, bytes) of every whole entry."""
        with os.scandir(self.root / "entries") as found:
            names = [entry.name for entry in found]
        for name in names:
            folder = self.root / "entries" / name
            try:
                used = os.stat(folder / "used").st_mtime
                size = int(json.loads((folder / "meta.json").read_text())["bytes"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # evicted meanwhile, or not ours
            yield name, used, size

    # -- files --------------------------------------------------------------------------

    def _resource(self, uri: str, key: str) -> CachedResource:
        return CachedResource(uri, key, self._entry(key) / "data")

    def _entry(self, key: str) -> Path:
        return self.root / "entries" / key

    def _lock_path(self, key: str) -> Path:
        return self.root / "locks" / f"{key}.lock"

    def _present(self, key: str) -> bool:
        return (self._entry(key) / "meta.json").is_file()

    def _locked(self, key: str, operation: int, deadline: Deadline) -> int:
        """A descriptor of the entry's lock file, locked; the file is checked to be
        the one at its path (an eviction may have removed the one opened)."""
        path = self._lock_path(key)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                _flock(fd, operation, deadline)
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, path):
                return fd
            os.close(fd)

    def _clean_leftovers(self) -> None:
        """Fetches a killed process left in ``tmp/`` (unless another process is
        fetching them now) and entries evicted halfway."""
        for leftover in list((self.root / "trash").iterdir()):
            remove_tree(leftover)
        for staging in list((self.root / "tmp").iterdir()):
            key = staging.name.split(".", 1)[0]
            fd = os.open(self._lock_path(key), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            finally:
                os.close(fd)
            remove_tree(staging)


def entry_key(uri: str, version: str) -> str:
    """``<digest of the URI>-<digest of the version>``: the versions of one URI share
    the first part."""
    where = hashlib.sha256(uri.encode()).hexdigest()[:32]
    which = hashlib.sha256(version.encode()).hexdigest()[:16]
    return f"{where}-{which}"


# -- into an execution ---------------------------------------------------------------


def link_tree(source: Path, destination: Path) -> None:
    """Merge ``source`` into ``destination`` as ``transfer.merge_tree`` merges a fetch:
    folders merge, a file or link replaces what was there. Files are hard links to
    the cache's (copies where the cache is on another file system); folders are made
    here; symbolic links are made again (never followed)."""
    destination.mkdir(parents=True, exist_ok=True)
    with os.scandir(source) as found:
        entries = list(found)
    for entry in entries:
        target = destination / entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if target.is_symlink() or target.exists():
            if is_dir and target.is_dir() and not target.is_symlink():
                link_tree(Path(entry.path), target)
                continue
            if target.is_dir() and not target.is_symlink():
                remove_tree(target)
            else:
                target.unlink()
        if is_dir:
            target.mkdir()
            link_tree(Path(entry.path), target)
        elif entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
        else:
            _link(entry.path, target)


def _link(source: str, target: Path) -> None:
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EMLINK, errno.EPERM):
            raise
        shutil.copy2(source, target)  # keeps the read-only mode


def seal(root: Path) -> int:
    """Make a fetched tree read-only (files 0444, or 0555 when executable; folders
    0555); return the bytes its files hold (hard links counted once)."""
    size = 0
    seen: set[tuple[int, int]] = set()
    for directory, _subdirs, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode):
                continue
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                size += info.st_size
            os.chmod(path, DIR_MODE if info.st_mode & 0o111 else FILE_MODE)
        os.chmod(directory, DIR_MODE)
    return size


# -- helpers -------------------------------------------------------------------------


def _flock(fd: int, operation: int, deadline: Deadline) -> None:
    """Lock, waiting for another process under the deadline (and its abort)."""
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            deadline.check()
            time.sleep(POLL)


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _touch(path: Path) -> None:
    """Record a use now (to the nanosecond: the kernel's own stamp is coarser)."""
    now = time.time()
    try:
        os.utime(path, (now, now))
    except FileNotFoundError:
        path.touch()
        os.utime(path, (now, now))


def _write_json(path: Path, data: Mapping[str, object]) -> None:
    """Written under a temporary name, then renamed: whole or absent."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    temporary.write_text(json.dumps(data, sort_keys=True))
    os.replace(temporary, path)

