"""Execution folders: ``<root>/<execution_id>/`` with ``input/``, ``output/``, ``tmp/``
and the two log files.

Folders are recycled: one that its task left clean is renamed for the next execution
instead of being deleted and created again. That turns a dozen file-system metadata
writes per task into one rename, which matters on a busy worker: concurrent creations
in one directory contend in the kernel and cost more CPU than a short task itself.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
from pathlib import Path

SUBDIRS = ("input", "output", "tmp")
LOGS = ("stdout.log", "stderr.log")
_EXPECTED = frozenset(SUBDIRS + LOGS)


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
        shutil.rmtree(self.root, ignore_errors=True)
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
        if it is as we made it, with its logs emptied so a spare holds no disk, else
        delete it."""
        if _pristine(path) and _empty_logs(path):
            with self._lock:
                if len(self._spare) < self.keep:
                    self._spare.append(path)
                    return
        shutil.rmtree(path, ignore_errors=True)

    def discard_spares(self) -> None:
        with self._lock:
            spares, self._spare = self._spare, []
        for path in spares:
            shutil.rmtree(path, ignore_errors=True)


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
