"""Execution folders: ``<root>/<execution_id>/`` with ``input/``, ``output/``, ``tmp/``,
``resource/`` (the execution's own resources, hard links into the worker's cache) and
the two log files.

Folders are recycled: one that its task left clean is renamed for the next execution
instead of being deleted and created again. That turns a dozen file-system metadata
writes per task into one rename, which matters on a busy worker: concurrent creations
in one directory contend in the kernel and cost more CPU than a short task itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import threading
from pathlib import Path

RESOURCE = "resource"  # emptied when the folder is released
SUBDIRS = ("input", "output", "tmp", RESOURCE)
LOGS = ("stdout.log", "stderr.log")
_EXPECTED = frozenset((*SUBDIRS, *LOGS))


class ExecutionDirs:
    def __init__(self, root: Path, keep: int = 64) -> None:
        self.root = root
        self.keep = keep
        self._lock = threading.Lock()
        self._spare: list[Path] = []

    def reset(self) -> None:
        """Start empty: what a previous process left belongs to executions the server
        re-queues when the worker registers again."""
        self.discard_spares()
        remove_tree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)

    def create(self, execution_id: int) -> Path:
        path = self.root / str(execution_id)
        with self._lock:
            spare = self._spare.pop() if self._spare else None
        if spare is not None:
            try:
                os.rename(spare, path)
                return path
            except OSError:
                shutil.rmtree(spare, ignore_errors=True)
        try:
            os.mkdir(path)
        except FileExistsError:
            shutil.rmtree(path)
            os.mkdir(path)
        for name in SUBDIRS:
            os.mkdir(path / name)
        return path

    def release(self, path: Path) -> None:
        """The execution is over (its logs shipped): keep its folder for the next one
        if it is as we made it, with its logs and resources emptied so a spare holds
        no disk, else delete it."""
        if _empty_resources(path) and _pristine(path) and _empty_logs(path):
            with self._lock:
                if len(self._spare) < self.keep:
                    self._spare.append(path)
                    return
        remove_tree(path)

    def discard_spares(self) -> None:
        with self._lock:
            spares, self._spare = self._spare, []
        for path in spares:
            shutil.rmtree(path, ignore_errors=True)


def remove_tree(path: Path) -> None:
    """Delete a tree whatever its modes (the resource cache makes its folders
    read-only; a task may have done so too); links are removed, never followed."""
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    try:
        shutil.rmtree(path)
        return
    except OSError:
        pass
    for directory, subdirs, _files in os.walk(path):  # links to folders are not entered
        for name in [directory, *(os.path.join(directory, sub) for sub in subdirs)]:
            if not os.path.islink(name):
                with contextlib.suppress(OSError):
                    os.chmod(name, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def _empty_resources(path: Path) -> bool:
    """Remove what the resource folder holds (never following a link); False when it
    cannot be read. What stays behind keeps the folder from being recycled."""
    folder = path / RESOURCE
    try:
        if folder.is_symlink() or not folder.is_dir():
            return True  # none, or not ours: _pristine decides
        with os.scandir(folder) as entries:
            inside = [Path(entry.path) for entry in entries]
        for entry in inside:
            remove_tree(entry)
        return True
    except OSError:
        return False


def _empty_logs(path: Path) -> bool:
    """Truncate the logs that hold anything (most short tasks print nothing)."""
    try:
        for name in LOGS:
            log = path / name
            try:
                size = os.stat(log).st_size
            except FileNotFoundError:
                continue
            if size:
                os.truncate(log, 0)
        return True
    except OSError:
        return False


def _pristine(path: Path) -> bool:
    """Only our subfolders (empty, real folders, still writable) and our logs."""
    try:
        with os.scandir(path) as entries:
            found = {e.name: e for e in entries}
        if set(found) - _EXPECTED or not set(SUBDIRS) <= set(found):
            return False
        if any(not found[n].is_file(follow_symlinks=False) for n in LOGS if n in found):
            return False
        for name in SUBDIRS:
            entry = found[name]
            if not entry.is_dir(follow_symlinks=False):
                return False
            if stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode) & 0o700 != 0o700:
                return False
            with os.scandir(entry.path) as inside:
                if next(inside, None) is not None:
                    return False
        return stat.S_IMODE(os.stat(path).st_mode) & 0o700 == 0o700
    except OSError:
        return False
