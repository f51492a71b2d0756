"""Moving files and folders between stores, with the guarantees users rely on.

- Nothing partial is ever seen as complete: a download lands under a temporary name
  beside its target and is renamed once its size (and SHA-256, when the store or a
  manifest records one) is checked; every store's upload is whole or nothing.
- A folder uploaded to an object store (s3, azure, ftp) gets a manifest
  (``locations.MANIFEST``: every file's path, size and SHA-256) written last: its
  presence says the folder is complete, and a later download checks each file
  against it. Hashing runs beside the uploads, costing no extra time.
- Transient failures are tried again with backoff (``base.with_retries``), on top of
  the SDKs' own retries.
- ``check`` is called between files and as bytes arrive: a deadline or a cancellation
  raises from there and stops the transfer promptly.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from scitq_bench.storage import manifests
from scitq_bench.storage.base import (
    ChecksumMismatch,
    Entry,
    NotFoundError,
    Progress,
    StorageError,
    Store,
    file_sha256,
    no_progress,
    with_retries,
)
from scitq_bench.storage.locations import MANIFEST, OBJECT_SCHEMES, READ_ONLY, Location
from scitq_bench.storage.stores import Stores

Check = Callable[[], None]
T = TypeVar("T")


def no_check() -> None:
    return None


@dataclass
class Moved:
    """What a copy did: files copied (their paths relative to the target), files left
    as they were (sync), bytes moved."""

    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    size: int = 0

    def add(self, other: Moved) -> None:
        self.copied += other.copied
        self.skipped += other.skipped
        self.size += other.size


# -- reading -----------------------------------------------------------------------


def resolve_source(store: Store, location: Location) -> tuple[Location, list[Entry]]:
    """What a source URI names: one file (a list of one entry, its own location) or
    the files of a folder (its location as a folder). A name without a trailing "/"
    is a file when one exists, else a folder."""
    named = location
    if not location.is_folder:
        entry = store.stat(location.key)
        if entry is not None:
            return location, [entry]
        if location.scheme in READ_ONLY:  # http(s) names files only
            raise NotFoundError(f"{named}: no such file")
        location = location.as_folder()
    entries = [e for e in store.list(location.key) if e.key != location.key]
    if not entries:
        raise NotFoundError(f"{named}: no such file or folder")
    return location, entries


def read_manifest(store: Store, folder: Location, entries: list[Entry]) -> dict[str, str]:
    """The SHA-256 of each file a folder's manifest lists (by relative path), and the
    manifest taken out of ``entries``; {} when there is none."""
    key = folder.key + MANIFEST
    if not any(entry.key == key for entry in entries):
        return {}
    entries[:] = [entry for entry in entries if entry.key != key]
    items = manifests.read(store, key) or {}
    return {relative: str(item["sha256"]) for relative, item in items.items()
            if item.get("sha256")}


def download_file(store: Store, entry: Entry, target: Path, *, progress: Progress = no_progress,
                  check: Check = no_check, sha256: str | None = None,
                  attempts: int = 4) -> None:
    """``entry`` to the local file ``target``, checked, then renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.part-{secrets.token_hex(4)}")
    expected = sha256 or entry.sha256
    where = store.location(entry.key)

    def once() -> None:
        tally = _Tally(progress, check)
        check()
        try:
            store.download(entry, temporary, tally)
            size = temporary.stat().st_size
            if entry.size >= 0 and size != entry.size:
                raise ChecksumMismatch(f"{where}: {size} bytes arrived, the store holds "
                                       f"{entry.size}")
            if expected and file_sha256(temporary) != expected:
                raise ChecksumMismatch(f"{where}: the bytes that arrived do not match "
                                       f"their recorded SHA-256 {expected}")
        except StorageError:  # a checksum mismatch included: given back, tried again
            tally.give_back()
            raise

    try:
        with_retries(once, str(where), attempts)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def download(stores: Stores, uri: str | Location, destination: Path, *,
             progress: Progress = no_progress, check: Check = no_check) -> Moved:
    """Fetch a URI into the local folder ``destination``: a file arrives under its
    name; a folder named with a trailing "/" copies its contents, without one it
    arrives as a subfolder of its name (rsync's convention). Folder files are checked
    against the folder's manifest when it has one."""
    store, location = stores.resolve(uri)
    check()
    source, entries = resolve_source(store, location)
    if not source.is_folder:
        download_file(store, entries[0], destination / source.name, progress=progress,
                      check=check, attempts=stores.config.transfer.attempts)
        return Moved([source.name], [], entries[0].size)
    base = destination if location.is_folder else destination / source.name
    manifest = read_manifest(store, source, entries)
    jobs = [(entry, relative_path(source, entry)) for entry in entries]

    def one(job: tuple[Entry, str]) -> None:
        entry, relative = job
        download_file(store, entry, inside(base, relative), progress=progress, check=check,
                      sha256=manifest.get(relative), attempts=stores.config.transfer.attempts)

    run_all(one, jobs, stores.config.transfer.concurrency, check)
    prefix = "" if location.is_folder else source.name + "/"
    return Moved([prefix + relative for _, relative in jobs], [],
                 sum(entry.size for entry, _ in jobs))


# -- writing -----------------------------------------------------------------------


def local_files(directory: Path) -> list[tuple[Path, str]]:
    """Regular files under ``directory`` (links not followed), with their relative
    "/"-paths, sorted."""
    found = []
    for folder, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                found.append((path, path.relative_to(directory).as_posix()))
    return found


def upload_file(store: Store, source: Path, key: str, *, progress: Progress = no_progress,
                check: Check = no_check, sha256: str | None = None, attempts: int = 4) -> None:
    """One local file to ``key``, tried again on transient failures."""
    def once() -> None:
        tally = _Tally(progress, check)
        check()
        try:
            store.upload(source, key, tally, sha256)
        except StorageError:
            tally.give_back()
            raise

    with_retries(once, str(store.location(key)), attempts)


def upload(stores: Stores, directory: Path, uri: str | Location, *,
           progress: Progress = no_progress, check: Check = no_check,
           files: list[tuple[Path, str]] | None = None) -> Moved:
    """Every file under ``directory`` to the folder ``uri``; on an object store the
    manifest goes last. Returns the relative paths sent."""
    store, location = stores.resolve(uri)
    folder = location.as_folder()
    files = local_files(directory) if files is None else files
    if not files:
        return Moved()
    with_manifest = folder.scheme in OBJECT_SCHEMES
    hashes: dict[str, Future[str]] = {}
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sha256") as hashing:
        if with_manifest:
            hashes = {relative: hashing.submit(file_sha256, path) for path, relative in files}

        def one(job: tuple[Path, str]) -> None:
            path, relative = job
            upload_file(store, path, folder.child(relative).key, progress=progress,
                        check=check, attempts=stores.config.transfer.attempts)

        run_all(one, files, stores.config.transfer.concurrency, check)
        if with_manifest:
            manifests.write(store, folder.key, {
                relative: manifests.item(relative, path.stat().st_size,
                                         hashes[relative].result())
                for path, relative in files})
    return Moved([relative for _, relative in files], [],
                 sum(path.stat().st_size for path, _ in files))


# -- helpers -----------------------------------------------------------------------


class _Tally:
    """One try's progress: each increment checked (a deadline, a cancellation) and
    passed on, and the whole given back when the try fails and starts again."""

    def __init__(self, progress: Progress, check: Check) -> None:
        self.progress = progress
        self.check = check
        self.moved = 0

    def __call__(self, count: int) -> None:
        self.check()
        self.moved += count
        self.progress(count)

    def give_back(self) -> None:
        self.progress(-self.moved)


def relative_path(folder: Location, entry: Entry) -> str:
    return entry.key[len(folder.key):]


def inside(root: Path, relative: str) -> Path:
    """``root/relative``, refusing a listing's path that would leave ``root``."""
    clean = os.path.normpath(relative)
    if os.path.isabs(relative) or clean in (".", "..") or clean.startswith("../"):
        raise StorageError(f"unsafe path in a listing: {relative!r}")
    return root / clean


def run_all(work: Callable[[T], None], jobs: Iterable[T], concurrency: int,
               check: Check) -> None:
    """``work`` on every job, ``concurrency`` at a time; the first error stops what
    has not started and is raised."""
    jobs = list(jobs)
    if len(jobs) <= 1 or concurrency <= 1:
        for job in jobs:
            check()
            work(job)
        return
    failed = threading.Event()

    def guarded(job: T) -> None:
        if failed.is_set():
            return
        try:
            check()
            work(job)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=min(concurrency, len(jobs)),
                            thread_name_prefix="transfer") as pool:
        futures = [pool.submit(guarded, job) for job in jobs]
        for future in futures:
            future.exception()  # wait for all: no thread left writing after we return
        for future in futures:
            future.result()


def iter_entries(stores: Stores, uri: str | Location) -> Iterator[tuple[Location, Entry]]:
    """The files a URI names (one, or a folder's), with the folder they were listed
    under; an empty folder yields nothing."""
    store, location = stores.resolve(uri)
    try:
        source, entries = resolve_source(store, location)
    except NotFoundError:
        if location.is_folder:
            return
        raise
    for entry in entries:
        yield source, entry
