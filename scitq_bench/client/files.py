"""``Files``: list, copy, sync, delete and read files wherever they live (``file://``,
``server://``, ``s3://``, ``azure://``, ``ftp(s)://``, and ``http(s)://`` to read), for
scripts and for ``scitq-bench files``.

Everything goes through ``scitq_bench.storage``, which makes the guarantees: a download
lands under a temporary name and is checked before it is renamed, an upload is whole or
nothing, a folder uploaded to an object store gets its manifest last. Between two
remote stores the bytes go through a local temporary folder. What a copy or a sync will
do is worked out first (a ``Plan``), so a dry run can show it and a progress bar knows
its total. A write into an object-store folder that has a manifest keeps that manifest
true (the folder in flux has none; files replaced or deleted below one are amended in
it), so a folder with one file replaced still downloads.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from scitq_bench.client.api import Client
from scitq_bench.client.serverstore import ServerStore
from scitq_bench.exceptions import InvalidInput
from scitq_bench.storage import copying, manifests
from scitq_bench.storage.base import (
    Entry,
    NotFoundError,
    Progress,
    Store,
    file_sha256,
    no_progress,
)
from scitq_bench.storage.config import StorageConfig
from scitq_bench.storage.copying import Moved
from scitq_bench.storage.locations import MANIFEST, OBJECT_SCHEMES, READ_ONLY, Location
from scitq_bench.storage.stores import Stores

CHUNK = 1 << 20
Change = tuple[int, str | None] | None  # a file written (size, sha256), or deleted (None)


@dataclass
class Synced(Moved):
    """What a sync did: a ``Moved`` with the destination files it deleted."""

    deleted: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Transfer:
    """One file to move: ``relative`` is its path under the plan's ``base`` (a single
    file: its new name), ``sha256`` what the source records of it."""

    entry: Entry
    relative: str
    target: str
    sha256: str | None = None


@dataclass
class Plan:
    """What a copy or sync will do, worked out before anything moves.

    ``source`` is the URI as given, ``origin`` what it names (a file, or a folder with
    a trailing "/"); the files go under ``base`` (the destination, plus the source
    folder's name when the source had no trailing "/", rsync's convention), shown as
    ``prefix`` + their relative path."""

    kind: Literal["copy", "sync"]
    source: Location
    origin: Location
    destination: Location
    base: Location
    folder: bool
    transfers: list[Transfer]
    prefix: str = ""
    skipped: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # destination keys a sync deletes
    known: dict[str, str] = field(default_factory=dict)  # sha256 of skipped files
    listed: dict[str, Entry] = field(default_factory=dict)  # destination files, by relative
    manifest: dict[str, dict[str, Any]] | None = None  # the destination folder's own

    @property
    def size(self) -> int | None:
        """Bytes of the files to move; None when a source could not say (http)."""
        sizes = [transfer.entry.size for transfer in self.transfers]
        return None if any(size < 0 for size in sizes) else sum(sizes)

    @property
    def total(self) -> int | None:
        """Bytes a progress callback will be told of: twice the size between two
        remote stores (down to a temporary folder, then up)."""
        size = self.size
        return None if size is None else size * self.passes

    @property
    def passes(self) -> int:
        return 1 if "file" in (self.origin.scheme, self.base.scheme) else 2

    def shown(self, relative: str) -> str:
        return self.prefix + relative


class Files:
    """Files across storage schemes. ``client`` serves ``server://`` (without one,
    server:// URIs are refused); ``config`` defaults to the storage settings file."""

    def __init__(self, client: Client | None = None,
                 config: StorageConfig | None = None) -> None:
        self.stores = Stores(config if config is not None else StorageConfig.load(),
                             server=ServerStore(client) if client is not None else None)

    def close(self) -> None:
        self.stores.close()

    def __enter__(self) -> Files:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    @property
    def attempts(self) -> int:
        return self.stores.config.transfer.attempts

    # -- reading ---------------------------------------------------------------------

    def list(self, uri: str, recursive: bool = True) -> list[dict[str, Any]]:
        """A file gives itself; a folder its files (at any depth, or with
        ``recursive=False`` those directly in it and one row per subfolder, its path
        ending with "/" and its size that of its files). Paths are relative to the
        folder; manifests are left out (they describe the files, they are not data)."""
        store, location = self.stores.resolve(uri)
        if not location.is_folder:
            entry = _stat_file(store, location)
            if entry is not None:
                return [_row(location.name, entry)]
            if location.scheme in READ_ONLY:
                raise NotFoundError(f"{location}: no such file")
        folder = location.as_folder()
        listed = [entry for entry in store.list(folder.key) if entry.key != folder.key]
        entries = [entry for entry in listed if not _is_manifest(entry.key)]
        if not entries and (not location.is_folder or _missing_directory(folder)):
            raise NotFoundError(f"{location}: no such file or folder")
        recorded = _recorded_hashes(store, [entry.key for entry in listed
                                            if _is_manifest(entry.key)])
        rows = [_row(entry.key[len(folder.key):], entry, recorded.get(entry.key))
                for entry in entries]
        return rows if recursive else _one_level(rows)

    def is_folder(self, uri: str) -> bool:
        """Whether the URI names a folder (a trailing "/", or no file of that name)."""
        store, location = self.stores.resolve(uri)
        return location.is_folder or _stat_file(store, location) is None

    def cat(self, uri: str) -> Iterator[bytes]:
        """The bytes of one file, streamed in chunks; checked before the first one."""
        store, location = self.stores.resolve(uri)
        if location.is_folder:
            raise InvalidInput(f"{location}: is a folder; name a file")
        if _stat_file(store, location) is None:
            raise NotFoundError(f"{location}: no such file")
        return _chunks(store, location.key)

    # -- planning --------------------------------------------------------------------

    def plan_copy(self, source: str, destination: str) -> Plan:
        """Every file of ``source`` to move to ``destination``."""
        return self._plan("copy", source, destination, delete=False)

    def plan_sync(self, source: str, destination: str, *, delete: bool = False) -> Plan:
        """The files of ``source`` that differ at ``destination`` (see ``same``), and
        with ``delete`` the destination files the source does not have."""
        return self._plan("sync", source, destination, delete=delete)

    def _plan(self, kind: Literal["copy", "sync"], source: str, destination: str, *,
              delete: bool) -> Plan:
        src_store, source_location = self.stores.resolve(source, "source")
        dst_store, dst = self.stores.resolve(destination, "destination")
        dst_store.refuse_writes(dst.key)
        origin, entries = copying.resolve_source(src_store, source_location)
        if not origin.is_folder:
            return self._plan_file(kind, source_location, origin, entries[0], dst_store, dst)
        if not dst.is_folder and dst_store.stat(dst.key) is not None:
            raise InvalidInput(f"{dst}: is a file; a folder ({origin}) copies into a folder")
        hashes = copying.read_manifest(src_store, origin, entries)
        contents = source_location.is_folder
        base = dst.as_folder() if contents else dst.as_folder().child(origin.name + "/")
        plan = Plan(kind, source_location, origin, dst, base, True, [],
                    prefix="" if contents else origin.name + "/")
        if kind == "sync" or base.scheme in OBJECT_SCHEMES:
            plan.listed, plan.manifest = _destination_files(dst_store, base)
        names: set[str] = set()
        for entry in entries:
            relative = copying.relative_path(origin, entry)
            names.add(relative)
            sha256 = entry.sha256 or hashes.get(relative)
            there = plan.listed.get(relative) if kind == "sync" else None
            if there is not None:
                there_sha = there.sha256 or _sha(plan.manifest, relative)
                if same(entry, sha256, there, there_sha):
                    plan.skipped.append(relative)
                    known = sha256 or there_sha
                    if known:
                        plan.known[relative] = known
                    continue
            plan.transfers.append(Transfer(entry, relative, base.child(relative).key, sha256))
        if delete:
            plan.stale = [entry.key for relative, entry in plan.listed.items()
                          if relative not in names]
        return plan

    def _plan_file(self, kind: Literal["copy", "sync"], source: Location, origin: Location,
                   entry: Entry, dst_store: Store, dst: Location) -> Plan:
        into = dst.is_folder or _existing_folder(dst_store, dst)
        target = dst.as_folder().child(origin.name) if into else dst
        name = target.name
        plan = Plan(kind, source, origin, dst, _parent(target), False, [])
        if kind == "sync":
            there = dst_store.stat(target.key)
            if there is not None and same(entry, entry.sha256, there, there.sha256):
                plan.skipped.append(name)
                return plan
        plan.transfers.append(Transfer(entry, name, target.key, entry.sha256))
        return plan

    # -- moving ----------------------------------------------------------------------

    def copy(self, source: str, destination: str, *, progress: Progress | None = None) -> Moved:
        """A file to a file, or into a folder (``destination`` ending with "/" or an
        existing folder); a folder into a folder: with a trailing "/" its contents,
        without it the folder itself (rsync's convention)."""
        return self.run(self.plan_copy(source, destination), progress)

    def sync(self, source: str, destination: str, *, delete: bool = False,
             progress: Progress | None = None) -> Synced:
        """Copy only the files that differ (``same``); with ``delete``, remove the
        destination files the source does not have. Files left as they were are in
        ``skipped``."""
        result = self.run(self.plan_sync(source, destination, delete=delete), progress)
        assert isinstance(result, Synced)
        return result

    def run(self, plan: Plan, progress: Progress | None = None) -> Moved:
        """Carry out a plan; ``progress`` is told of every byte moved (``plan.total``
        in all, less after a retry)."""
        tick = progress or no_progress
        if plan.kind == "copy" and plan.folder:
            return self._copy_folder(plan, tick)
        return self._transfer(plan, tick)

    def _copy_folder(self, plan: Plan, progress: Progress) -> Moved:
        """A folder through ``copying.download`` and ``copying.upload``."""
        dst_store = self.stores.store(plan.base)
        object_store = plan.base.scheme in OBJECT_SCHEMES
        if object_store and plan.manifest is not None:
            dst_store.delete(plan.base.key + MANIFEST)  # in flux: nothing says it is complete
        if plan.base.scheme == "file":
            moved = copying.download(self.stores, plan.source,
                                     _local(plan.destination.as_folder()), progress=progress)
        elif plan.origin.scheme == "file":
            moved = _prefixed(copying.upload(self.stores, _local(plan.origin), plan.base,
                                             progress=progress), plan.prefix)
        else:
            with tempfile.TemporaryDirectory(prefix="scitq-bench-files-") as scratch:
                copying.download(self.stores, plan.origin, Path(scratch), progress=progress)
                moved = _prefixed(copying.upload(self.stores, Path(scratch), plan.base,
                                                 progress=progress), plan.prefix)
        if object_store:
            self._after_folder_upload(dst_store, plan)
        return moved

    def _after_folder_upload(self, store: Store, plan: Plan) -> None:
        """Keep, in the new manifest, the entries of the files the copy left in place,
        and amend the manifests above and below that list what it wrote."""
        written = _read_manifest(store, plan.base.key + MANIFEST) or {}
        kept = {relative: item for relative, item in (plan.manifest or {}).items()
                if relative not in written and relative in plan.listed}
        if kept:
            manifests.write(store, plan.base.key, {**kept, **written})
        changes: dict[str, Change] = {
            plan.base.child(relative).key: (int(item["size"]), item.get("sha256"))
            for relative, item in written.items()}
        _amend_manifests(store, changes, plan.base.key, _manifests_in(plan.base, plan.listed))

    def _transfer(self, plan: Plan, progress: Progress) -> Moved:
        """File by file: a single file, or a sync's files that differ."""
        src_store = self.stores.store(plan.origin)
        dst_store = self.stores.store(plan.base)
        object_folder = plan.folder and plan.base.scheme in OBJECT_SCHEMES
        changing = bool(plan.transfers or plan.stale)
        if object_folder and changing and plan.manifest is not None:
            dst_store.delete(plan.base.key + MANIFEST)  # in flux: nothing says it is complete
        written: dict[str, str | None] = {}
        with contextlib.ExitStack() as stack:
            scratch = None
            if plan.passes == 2:
                scratch = Path(stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="scitq-bench-files-")))

            def one(job: tuple[int, Transfer]) -> None:
                index, transfer = job
                room = None if scratch is None else scratch / str(index)
                written[transfer.relative] = self._move(src_store, transfer, dst_store,
                                                        plan.base, room, progress)

            copying.run_all(one, enumerate(plan.transfers),
                            self.stores.config.transfer.concurrency, copying.no_check)
        copying.run_all(dst_store.delete, plan.stale, self.stores.config.transfer.concurrency,
                        copying.no_check)
        deleted = [plan.shown(key[len(plan.base.key):]) for key in plan.stale]
        if plan.base.scheme in OBJECT_SCHEMES and changing:
            self._after_transfer(src_store, dst_store, plan, written, object_folder)
        moved = Synced() if plan.kind == "sync" else Moved()
        moved.copied = [plan.shown(transfer.relative) for transfer in plan.transfers]
        moved.skipped = [plan.shown(relative) for relative in plan.skipped]
        moved.size = sum(max(transfer.entry.size, 0) for transfer in plan.transfers)
        if isinstance(moved, Synced):
            moved.deleted = deleted
        return moved

    def _after_transfer(self, src_store: Store, dst_store: Store, plan: Plan,
                        written: dict[str, str | None], object_folder: bool) -> None:
        """A synced folder's manifest, written last; then the other manifests that
        list what changed."""
        changes: dict[str, Change] = {key: None for key in plan.stale}
        for transfer in plan.transfers:
            changes[transfer.target] = (transfer.entry.size, written.get(transfer.relative))
        if not object_folder:
            _amend_manifests(dst_store, changes)
            return
        items: dict[str, dict[str, Any]] = {}
        stale = {key[len(plan.base.key):] for key in plan.stale}
        for relative, item in (plan.manifest or {}).items():  # files the sync left alone
            there = plan.listed.get(relative)
            if relative not in stale and there is not None and there.size == item.get("size"):
                items[relative] = item
        skipped = {relative: plan.listed[relative] for relative in plan.skipped}
        for relative, entry in skipped.items():
            sha256 = plan.known.get(relative)
            if not sha256 and plan.origin.scheme == "file":
                sha256 = file_sha256(_local(plan.origin.child(relative)))
            if sha256:
                items[relative] = manifests.item(relative, entry.size, sha256)
        for transfer in plan.transfers:
            sha256 = written.get(transfer.relative)
            if sha256:
                items[transfer.relative] = manifests.item(transfer.relative, transfer.entry.size, sha256)
        manifests.write(dst_store, plan.base.key, items)
        _amend_manifests(dst_store, changes, plan.base.key,
                         _manifests_in(plan.base, plan.listed))

    def _move(self, src_store: Store, transfer: Transfer, dst_store: Store, base: Location,
              scratch: Path | None, progress: Progress) -> str | None:
        """One file to its target; the SHA-256 recorded with it on an object store."""
        if base.scheme == "file":
            copying.download_file(src_store, transfer.entry, Path("/" + transfer.target),
                                  progress=progress, sha256=transfer.sha256,
                                  attempts=self.attempts)
            return transfer.sha256
        if scratch is None:
            local = Path("/" + transfer.entry.key)
        else:
            local = scratch / (transfer.entry.key.rsplit("/", 1)[-1] or "file")
            copying.download_file(src_store, transfer.entry, local, progress=progress,
                                  sha256=transfer.sha256, attempts=self.attempts)
        try:
            sha256 = transfer.sha256
            if base.scheme in OBJECT_SCHEMES and not sha256:
                sha256 = file_sha256(local)  # first: the store keeps it with the file
            copying.upload_file(dst_store, local, transfer.target, progress=progress,
                                sha256=sha256, attempts=self.attempts)
            return sha256
        finally:
            if scratch is not None:
                local.unlink(missing_ok=True)

    # -- deleting --------------------------------------------------------------------

    def delete(self, uri: str, recursive: bool = False) -> builtins.list[str]:
        """Remove a file, or with ``recursive`` a folder's files, its manifest first
        (and, on file://, its emptied directories). Returns the paths removed, relative
        to the folder."""
        store, location = self.stores.resolve(uri)
        store.refuse_writes(location.key)
        if not location.is_folder and _stat_file(store, location) is not None:
            store.delete(location.key)
            if location.scheme in OBJECT_SCHEMES:
                _amend_manifests(store, {location.key: None})
            return [location.name]
        folder = location.as_folder()
        keys = [entry.key for entry in store.list(folder.key) if entry.key != folder.key]
        if not keys and (not location.is_folder or _missing_directory(folder)):
            raise NotFoundError(f"{location}: no such file or folder")
        if not recursive:
            raise InvalidInput(f"{folder}: is a folder of {len(keys)} file(s); delete it "
                               "recursively (-r) to remove them all")
        own = folder.key + MANIFEST
        if own in keys:  # first: the folder stops claiming to be complete
            store.delete(own)
        rest = [key for key in keys if key != own]
        copying.run_all(store.delete, rest, self.stores.config.transfer.concurrency,
                        copying.no_check)
        if folder.scheme == "file":
            _remove_empty_directories(_local(folder))
        elif folder.scheme in OBJECT_SCHEMES:
            _amend_manifests(store, {key: None for key in keys}, folder.key)
        return [key[len(folder.key):] for key in keys]


def files(client: Client | None = None, config: StorageConfig | None = None) -> Files:
    """``Files`` over the storage settings file, server:// through ``client``."""
    return Files(client, config)


def same(source: Entry, source_sha: str | None, there: Entry, there_sha: str | None) -> bool:
    """Whether a destination file already holds the source's bytes, as far as the
    stores can tell: sizes equal, and then both SHA-256 equal when both are recorded,
    else the destination not older (to the second: most stores keep no finer time)
    when both times are known, else the size is all there is to go by."""
    if source.size < 0 or source.size != there.size:
        return False
    if source_sha and there_sha:
        return source_sha == there_sha
    if source.modified is not None and there.modified is not None:
        return int(there.modified) >= int(source.modified)
    return True


# -- internals ---------------------------------------------------------------------


def _stat_file(store: Store, location: Location) -> Entry | None:
    return store.stat(location.key) if location.key else None


def _existing_folder(store: Store, location: Location) -> bool:
    """Whether a name without a trailing "/" is a folder already there."""
    if location.scheme == "file":
        return _local(location).is_dir()
    if store.stat(location.key) is not None:
        return False
    return next(iter(store.list(location.key + "/")), None) is not None


def _parent(location: Location) -> Location:
    """The folder a file's location is in."""
    head, slash, _ = location.key.rpartition("/")
    return replace(location, key=head + slash)


def _missing_directory(folder: Location) -> bool:
    """An empty listing means "no such folder" on file:// only (elsewhere, an empty
    folder and a missing one look the same)."""
    return folder.scheme == "file" and not _local(folder).is_dir()


def _local(location: Location) -> Path:
    return Path("/" + location.key)


def _is_manifest(key: str) -> bool:
    return key == MANIFEST or key.endswith("/" + MANIFEST)


def _row(path: str, entry: Entry, sha256: str | None = None) -> dict[str, Any]:
    """A listed file; ``sha256`` as its metadata, else a manifest, records it."""
    modified = (None if entry.modified is None else
                datetime.fromtimestamp(entry.modified, timezone.utc).isoformat(
                    timespec="seconds"))
    return {"path": path, "size": entry.size if entry.size >= 0 else None,
            "modified": modified, "version": entry.version,
            "sha256": entry.sha256 or sha256}


def _recorded_hashes(store: Store, manifests: Iterable[str]) -> dict[str, str]:
    """The SHA-256 these manifests record, by key; where two list a file, the deeper
    one (its own folder's) wins."""
    hashes: dict[str, str] = {}
    for key in sorted(manifests, key=len):
        folder = key[:-len(MANIFEST)]
        for relative, item in (_read_manifest(store, key) or {}).items():
            if isinstance(item.get("sha256"), str):
                hashes[folder + relative] = item["sha256"]
    return hashes


def _one_level(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = []
    folders: dict[str, dict[str, Any]] = {}
    for row in rows:
        head, slash, _ = str(row["path"]).partition("/")
        if not slash:
            files.append(row)
            continue
        folder = folders.setdefault(head + "/", {"path": head + "/", "size": 0,
                                                 "modified": None, "version": None,
                                                 "sha256": None})
        folder["size"] += row["size"] or 0
    return sorted([*files, *folders.values()], key=lambda row: str(row["path"]))


def _chunks(store: Store, key: str) -> Iterator[bytes]:
    with store.read(key) as stream:
        while chunk := stream.read(CHUNK):
            yield chunk


def _prefixed(moved: Moved, prefix: str) -> Moved:
    return Moved([prefix + path for path in moved.copied], moved.skipped, moved.size)


def _destination_files(store: Store, base: Location) -> tuple[dict[str, Entry],
                                                             dict[str, dict[str, Any]] | None]:
    """The files already under ``base`` by relative path (its own manifest left out),
    and that manifest's entries (None: it has none)."""
    listed = {entry.key[len(base.key):]: entry for entry in store.list(base.key)
              if entry.key != base.key}
    own = listed.pop(MANIFEST, None)
    return listed, None if own is None else (_read_manifest(store, own.key) or {})


def _sha(manifest: dict[str, dict[str, Any]] | None, relative: str) -> str | None:
    item = (manifest or {}).get(relative) or {}
    value = item.get("sha256")
    return value if isinstance(value, str) and value else None


def _read_manifest(store: Store, key: str) -> manifests.Items | None:
    """A manifest's entries by path; None when there is none. One that cannot be read
    counts as empty: it is rewritten, never trusted."""
    try:
        return manifests.read(store, key)
    except manifests.UnreadableManifest:
        return {}


def _amend_manifests(store: Store, changes: dict[str, Change], below: str | None = None,
                     found: Iterable[str] = ()) -> None:
    """Amend every manifest in a folder holding a changed key: a written file gets its
    new size and SHA-256 (none known: it leaves, so nothing checks it against old
    bytes), a deleted one leaves. With ``below``, a folder whose listing the caller
    has: its own manifest is the caller's, those under it are the manifest keys
    ``found`` in it; the folders above are each asked."""
    folders: set[str] = set()
    for key in changes:
        parts = key.split("/")[:-1]
        folders.update("".join(part + "/" for part in parts[:depth])
                       for depth in range(len(parts) + 1))
    known = set(found)
    for folder in sorted(folders):
        if below is not None and folder.startswith(below):
            if folder == below or folder + MANIFEST not in known:
                continue
        items = _read_manifest(store, folder + MANIFEST)
        if items is None:
            continue
        before = json.dumps(items, sort_keys=True)
        for key, change in changes.items():
            if not key.startswith(folder):
                continue
            relative = key[len(folder):]
            if change is None or not change[1]:
                items.pop(relative, None)
            else:
                items[relative] = manifests.item(relative, change[0], change[1])
        if json.dumps(items, sort_keys=True) != before:
            manifests.write(store, folder, items)


def _manifests_in(base: Location, listed: dict[str, Entry]) -> list[str]:
    return [base.key + relative for relative in listed if _is_manifest(relative)]


def _remove_empty_directories(root: Path) -> None:
    """Directories under ``root`` (and it) left empty, deepest first."""
    if not root.is_dir():
        return
    for directory, _, _ in sorted(os.walk(root), key=lambda walked: -len(walked[0])):
        with contextlib.suppress(OSError):
            os.rmdir(directory)

