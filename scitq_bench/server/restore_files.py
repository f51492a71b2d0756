"""The file side of a restore: which archive members may be written, and where.

A member is a regular file (or a folder) under a known section, with no absolute path
and no ``..``: anything else (a link, a device, a name outside the sections) is
refused before a byte is written. Files are written with O_EXCL and O_NOFOLLOW into
temporary folders the restore made, siblings of their targets on the same file
systems, renamed into place only once the whole restore succeeded; never
``extractall``.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

import yaml

from scitq_bench.exceptions import InvalidInput, ScitqBenchError
from scitq_bench.server import dbcopy
from scitq_bench.server.backup import (
    CONTENTS,
    DATA_FILES,
    DATABASE,
    MANIFEST,
    SECTIONS,
    SETTINGS_FILE,
    Tally,
)
from scitq_bench.settings import ServerSettings, normal_store_url

CHUNK = 1 << 20
# settings.yaml keys naming where the server's state lives: a restored file naming
# other places than this restore wrote to is kept aside, not put in force
PLACES = ("database_url", "direct_database_url", "log_dir", "store_dir", "store_url")
SET_ASIDE = "settings.yaml.from-backup"


class UnsafeMember(InvalidInput):
    """The archive holds a member a backup never holds."""


def member_target(member: tarfile.TarInfo) -> tuple[str, PurePosixPath]:
    """The section a member belongs to and its path inside it; ``UnsafeMember`` for
    anything a backup never holds: a link, a device, an absolute path, ``..``, a name
    outside the sections."""
    name = member.name
    kind = _kind(member)
    if kind:
        raise unsafe(name, f"is {kind}")
    path = PurePosixPath(name)
    parts = path.parts
    if path.is_absolute():
        raise unsafe(name, "has an absolute path")
    if ".." in parts:
        raise unsafe(name, "goes outside its directory ('..')")
    if member.isreg() and parts in ((MANIFEST,), (CONTENTS,)):
        return "", path
    if not parts or parts[0] not in (DATABASE, *SECTIONS):
        raise unsafe(name, "is not part of a scitq-bench backup")
    inside = PurePosixPath(*parts[1:])
    if member.isdir():
        return parts[0], inside
    if len(parts) < 2 or (parts[0] in (DATABASE, "data") and len(parts) != 2):
        raise unsafe(name, "is not part of a scitq-bench backup")
    if parts[0] == "data" and parts[1] not in DATA_FILES:
        raise unsafe(name, "is not a file of the data directory a backup holds")
    return parts[0], inside


def _kind(member: tarfile.TarInfo) -> str | None:
    """What a member is, when it is neither a regular file nor a folder."""
    if member.isreg() or member.isdir():
        return None
    if member.issym():
        return f"a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"a hard link (to {member.linkname!r})"
    if member.isdev():
        return "a device or a pipe"
    return "not a regular file"


def unsafe(name: str, reason: str) -> UnsafeMember:
    return UnsafeMember(f"unsafe archive member {name!r}: it {reason}")


class Staging:
    """Temporary siblings of the targets, which ``commit`` renames into place and
    ``discard`` removes; ``work`` (in the data directory) holds the data directory's
    files and, on PostgreSQL, the dump until they are used."""

    def __init__(self, settings: ServerSettings, copy: dbcopy.DatabaseCopy) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        # the sections' folders; none where an object store holds the logs and files
        self.targets = ({} if settings.store_url
                        else {"logs": settings.log_dir, "store": settings.store_dir})
        self.made: list[Path] = []  # folders made for the targets, removed if it fails
        self.siblings: dict[str, Path] = {}
        self.placed: list[Path] = []
        self.tallies = {section: Tally() for section in SECTIONS}
        self._make(self.data_dir)
        for target in self.targets.values():
            self._make(target.parent)  # where its sibling goes
        if copy.folder is not None:
            self._make(copy.folder)
        self.work = _temporary_dir(self.data_dir, ".restore-")

    def _make(self, folder: Path) -> None:
        missing = [path for path in (folder, *folder.parents) if not path.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        self.made += missing

    def folder(self, section: str) -> Path:
        if section == "data":
            (self.work / "data").mkdir(exist_ok=True)
            return self.work / "data"
        if section not in self.siblings:
            target = self.targets[section]
            self.siblings[section] = _temporary_dir(target.parent, f".{target.name}.restore-")
        return self.siblings[section]

    def write(self, section: str, inside: PurePosixPath, member: tarfile.TarInfo,
              tar: tarfile.TarFile) -> None:
        if section != "data" and section not in self.targets:
            raise InvalidInput(
                f"the backup holds execution logs and stored files kept on disk "
                f"({member.name}...), and this server keeps them in {self.settings.store_url} "
                "(store_url), where a restore does not write: restore it into a server "
                "without store_url (its log_dir and store_dir)")
        root = self.folder(section)
        path = root.joinpath(*inside.parts)
        if root.resolve() not in path.resolve().parents:
            raise unsafe(member.name, "goes outside its directory")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:  # a file of that name came first
            raise unsafe(member.name, "clashes with another member") from None
        self.write_file(path, member, tar, mode=0o600 if section == "data" else None)
        self.tallies[section] = self.tallies[section].plus(member.size)

    def write_file(self, path: Path, member: tarfile.TarInfo, tar: tarfile.TarFile,
                   mode: int | None = None) -> None:
        """A new file (never one that exists, never through a link) with the member's
        bytes, permissions (no more than rw-r--r--) and modification time."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            raise unsafe(member.name, "appears twice") from None
        with os.fdopen(fd, "wb") as out:
            source = tar.extractfile(member)
            if source is not None:
                shutil.copyfileobj(source, out, CHUNK)
        os.chmod(path, mode if mode is not None else member.mode & 0o644)
        os.utime(path, (member.mtime, member.mtime))

    def commit(self) -> list[str]:
        """Rename the sections into place (over an empty folder at most); returns notes."""
        for section, sibling in self.siblings.items():
            os.rename(sibling, self.targets[section])  # fails on a folder filled since
            self.placed.append(self.targets[section])
        notes: list[str] = []
        staged = self.work / "data"
        for path in sorted(staged.iterdir()) if staged.is_dir() else []:
            destination = self.data_dir / path.name
            if path.name == SETTINGS_FILE:
                destination, note = self._settings_destination(path)
                notes += [note] if note else []
            if destination.exists():
                raise ScitqBenchError(f"{destination} appeared during the restore")
            os.rename(path, destination)
            self.placed.append(destination)
        shutil.rmtree(self.work, ignore_errors=True)
        return notes

    def _settings_destination(self, staged: Path) -> tuple[Path, str | None]:
        """settings.yaml, unless the target has its own, or the backup's names other
        places than this restore wrote to (it would point the server at them)."""
        target = self.data_dir / SETTINGS_FILE
        aside = self.data_dir / SET_ASIDE
        if target.exists():
            return aside, (f"the backup's {SETTINGS_FILE} is in {aside}: {target} was kept")
        elsewhere = settings_elsewhere(staged.read_text(errors="replace"), self.settings)
        if elsewhere:
            return aside, (f"the backup's {SETTINGS_FILE} is in {aside}, not in force: it "
                           f"names another {', '.join(elsewhere)} than this restore used")
        return target, None

    def discard(self) -> None:
        for path in self.placed:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        for sibling in self.siblings.values():
            shutil.rmtree(sibling, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)
        for folder in sorted(self.made, key=lambda path: len(path.parts), reverse=True):
            try:
                folder.rmdir()  # only if nothing else was put there meanwhile
            except OSError:
                pass


def settings_elsewhere(text: str, settings: ServerSettings) -> list[str]:
    """The keys of ``PLACES`` a settings file sets differently from ``settings``, the
    environment's values included: a server started without that environment would
    read the file's."""
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError:
        return ["configuration (it is not valid YAML)"]
    if not isinstance(values, dict):
        return ["configuration (it is not a mapping)"]
    differ = []
    for key in PLACES:
        value = values.get(key)
        if key == "store_url" and (value or settings.store_url):  # unset is a place too
            if _store_url(value) != settings.store_url:
                differ.append(key)
            continue
        if not value:
            continue
        named = Path(str(value)).expanduser() if key.endswith("_dir") else str(value)
        if named != getattr(settings, key):
            differ.append(key)
    return differ


def _store_url(value: object) -> str | None:
    """A settings file's store_url as the settings hold it; an invalid one as is."""
    try:
        return normal_store_url(value)
    except InvalidInput:
        return str(value)


def _temporary_dir(parent: Path, prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
