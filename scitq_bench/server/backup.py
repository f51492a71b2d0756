"""``server backup``: the whole state of a running server in one archive file.

The archive is a gzip'd tar (PAX headers), written under a temporary name beside its
target and renamed into place once complete, readable by its owner only (0600): it
holds participants' data, token hashes and the settings, credentials included. Its
members, in this order:

``manifest.json``
    What the archive is: ``format`` (``scitq-bench-backup``), ``format_version``,
    ``scitq_bench_version`` (the version that wrote it), ``created_at`` (UTC, ISO 8601),
    and ``database``: its ``dialect`` (``sqlite`` or ``postgresql``), the ``member``
    holding it, the Alembic schema ``revision`` and each table's row count
    (``tables``) at the instant of the dump; on PostgreSQL also the ``pg_dump`` and
    ``server`` versions.
``database/scitq_bench.sqlite3`` or ``database/scitq_bench.pgdump``
    The database: a SQLite file, or ``pg_dump --format=custom`` (see ``dbcopy``).
``logs/...``
    The execution logs (``log_dir``), file by file.
``store/...``
    The files behind ``server://`` URIs (``store_dir``), file by file.

    Neither when the server keeps them in an object store (``store_url``): a backup
    copies what is on this disk, not a bucket, so it holds the database and the data
    directory's state only, its manifest names the ``store_url`` and its summary says
    how to copy the store (``scitq-bench files sync``).
``data/...``
    The data directory's own state (``DATA_FILES``).
``contents.json``
    Last: how many files and bytes each section holds. A restore checks what it read
    against it; an archive that does not end with it is incomplete.

Consistency: the database is dumped first, at one instant, then the files are copied.
A stored file is written before the rows that name it and logs only grow, so files
copied after the dump hold everything the dumped rows refer to (a log may hold a few
lines more than its rows account for). Each file is copied from one open handle, as
many bytes as it held when opened: the store renames complete files into place, so a
file being replaced is read whole, old or new; a file deleted meanwhile (a batch
deletion) is left out, not an error. Files stream into the archive, never whole in
memory; only the database dump is staged on disk, beside the output.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import scitq_bench
from scitq_bench.exceptions import InvalidInput, ScitqBenchError
from scitq_bench.server import dbcopy
from scitq_bench.server.filestore import TEMPORARY
from scitq_bench.settings import ServerSettings

FORMAT = "scitq-bench-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONTENTS = "contents.json"
DATABASE = "database"
SECTIONS = ("logs", "store", "data")  # the file sections, in the order written
# What of the data directory a restored server needs: its settings; the key that signs
# browser sessions (``gui/sessions.py``: kept, the sessions of the restored server stay
# valid); the admin token ``up`` reuses. Left out, as scratch or caches the server makes
# again: ``imports/`` (bundles being checked), ``package/`` (the worker wheel it
# builds), ``local-workers/`` (local workers' work directories), ``leader.lock``.
SETTINGS_FILE = "settings.yaml"
DATA_FILES = (SETTINGS_FILE, "gui-secret", "admin_token")
COMPRESS_LEVEL = 6  # gzip's own default: most of level 9's size at a fraction of its time


@dataclass(frozen=True)
class Tally:
    """Files and bytes of one section."""

    files: int = 0
    bytes: int = 0

    def plus(self, size: int) -> Tally:
        return Tally(self.files + 1, self.bytes + size)


@dataclass(frozen=True)
class Summary:
    """What a backup or a restore did, for its one line of output."""

    verb: str  # "Backed up" or "Restored"
    preposition: str  # "to" or "from"
    archive: Path
    dialect: str
    revision: str
    rows: int
    tallies: dict[str, Tally]
    seconds: float
    notes: tuple[str, ...] = ()  # what the operator must know, each on a line of its own

    def line(self) -> str:
        """The summary, then each note on its own line."""
        files = sum(t.files for t in self.tallies.values())
        size = sum(t.bytes for t in self.tallies.values())
        summary = (f"{self.verb} the {self.dialect} database at revision {self.revision} "
                   f"({self.rows} rows) and {files} files ({size} bytes) {self.preposition} "
                   f"{self.archive} in {self.seconds:.1f} s")
        return "\n".join([summary, *(f"Note: {note}" for note in self.notes)])


def object_store_note(store_url: str, archive: Path) -> str:
    """What a backup of a server keeping its logs and files in ``store_url`` leaves
    out, and how to copy them."""
    return (f"the execution logs and stored files are not in {archive}: this server keeps "
            f"them in {store_url} (store_url), which a backup does not copy; copy them "
            f"with `scitq-bench files sync {store_url} file:///backup/scitq-bench-store/` "
            "(or the object store's own versioning or replication)")


def create_backup(settings: ServerSettings, output: Path) -> Summary:
    """Write the database, the logs, the file store and the data directory's state to
    ``output``, atomically: until the last rename, ``output`` is untouched."""
    started = time.monotonic()
    output = output.expanduser().absolute()
    _check_output(settings, output)
    copy = dbcopy.for_url(settings.session_database_url)
    fd, partial = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial",
                                   dir=output.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            dump, tallies = _write(raw, settings, copy, output.parent)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(partial, 0o600)
        os.replace(partial, output)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    notes = (object_store_note(settings.store_url, output),) if settings.store_url else ()
    return Summary("Backed up", "to", output, copy.dialect, dump.revision,
                   sum(dump.tables.values()), tallies, time.monotonic() - started, notes)


def _check_output(settings: ServerSettings, output: Path) -> None:
    """The archive must not land in what it copies: it would copy itself."""
    if not output.parent.is_dir():
        raise InvalidInput(f"cannot write {output}: {output.parent} is not a directory")
    if output.is_dir():
        raise InvalidInput(f"cannot write {output}: it is a directory")
    folder = output.parent.resolve()
    if settings.store_url:  # the local directories are not used, nor copied
        return
    for what, root in (("log directory", settings.log_dir), ("file store", settings.store_dir)):
        if root.resolve() in (folder, *folder.parents):
            raise InvalidInput(f"cannot write {output}: it is inside the {what} ({root}), "
                               "which the backup copies; write it elsewhere")


def _write(raw: IO[bytes], settings: ServerSettings, copy: dbcopy.DatabaseCopy,
           scratch_parent: Path) -> tuple[dbcopy.Dump, dict[str, Tally]]:
    with tempfile.TemporaryDirectory(prefix=".scitq-bench-dump-", dir=scratch_parent) as scratch:
        dump = copy.dump(Path(scratch))  # first: the files copied next cover its rows
        local = settings.store_url is None  # else the logs and files are in an object store
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=COMPRESS_LEVEL) as zipped, \
                tarfile.open(fileobj=zipped, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            _add_json(tar, MANIFEST, manifest(copy, dump, settings.store_url))
            if _add_file(tar, dump.path, f"{DATABASE}/{copy.member}") is None:
                raise ScitqBenchError(f"the database dump {dump.path} vanished")
            dump.path.unlink()
            tallies = {
                "logs": _add_files(tar, _tree(settings.log_dir, "logs")) if local else Tally(),
                "store": (_add_files(tar, _tree(settings.store_dir, "store")) if local
                          else Tally()),
                "data": _add_files(tar, ((settings.data_dir / name, f"data/{name}")
                                         for name in DATA_FILES)),
            }
            _add_json(tar, CONTENTS, {section: {"files": t.files, "bytes": t.bytes}
                                      for section, t in tallies.items()})
    return dump, tallies


def manifest(copy: dbcopy.DatabaseCopy, dump: dbcopy.Dump,
             store_url: str | None = None) -> dict[str, Any]:
    """The manifest; ``store_url``, when the server kept its logs and files there
    (and the archive holds none)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "scitq_bench_version": scitq_bench.__version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "database": {"dialect": copy.dialect, "member": f"{DATABASE}/{copy.member}",
                     "revision": dump.revision, "tables": dump.tables, **dump.details},
        **({"store_url": store_url} if store_url else {}),
    }


def _add_json(tar: tarfile.TarFile, name: str, value: Any) -> None:
    data = json.dumps(value, indent=2, sort_keys=True).encode() + b"\n"
    member = tarfile.TarInfo(name)
    member.size, member.mtime, member.mode = len(data), int(time.time()), 0o600
    tar.addfile(member, io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, path: Path, name: str) -> int | None:
    """Copy one regular file, as many bytes as it held when opened; None (nothing
    added) when it is gone, a link, or anything but a regular file."""
    try:  # O_NONBLOCK: a pipe found here must not stall the backup
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            return None
        raise
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        member = tarfile.TarInfo(name)
        member.size, member.mtime = info.st_size, info.st_mtime
        member.mode = stat.S_IMODE(info.st_mode)
        tar.addfile(member, handle)
        return info.st_size


def _add_files(tar: tarfile.TarFile, files: Iterable[tuple[Path, str]]) -> Tally:
    """Each (path, member name) that is still a regular file when opened."""
    tally = Tally()
    for path, name in files:
        size = _add_file(tar, path, name)
        if size is not None:
            tally = tally.plus(size)
    return tally


def _tree(root: Path, section: str) -> Iterator[tuple[Path, str]]:
    """Every file under ``root`` with its member name, in a stable order; folders
    deleted while it walks are skipped (``os.walk`` ignores what it cannot list)."""
    for directory, folders, names in os.walk(root):
        folders.sort()
        for name in sorted(names):
            if name.startswith(TEMPORARY):  # an upload being written: not a file yet
                continue
            path = Path(directory) / name
            yield path, f"{section}/{path.relative_to(root).as_posix()}"
