"""Archive safety, shared by bundle imports, submission uploads and the worker's unpacking.

What is refused, before anything is written: an entry with an absolute path, a drive
letter, a ``..`` part or a NUL character; a link, a device or any other special entry;
an encrypted entry; a compression method Python cannot read; a stored entry whose two
sizes differ; two entries with the same path, or a file where a folder is needed; more
than ``ArchiveLimits.max_files`` entries, more than ``max_bytes`` bytes uncompressed in
all, or more than ``max_file_bytes`` for one file, as the headers declare them; and,
where ``max_ratio`` is set, an entry of more than ``RATIO_FREE_BYTES`` that claims to
be compressed more than ``max_ratio`` times. A folder copied with ``copy_tree`` is held
to the same: no symbolic link or special file anywhere in it, and the same limits.

Headers can lie, so the limits are enforced again on the bytes actually decompressed:
a member is counted as it comes and refused the moment it passes the size its header
declares (which passed the limits) or the limits themselves; a member holding less
than its header says is refused too.
"""

from __future__ import annotations

import copy
import os
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from scitq_bench.exceptions import InvalidInput

if TYPE_CHECKING:  # a gzip file, a zip member or a plain file: anything read or written
    from _typeshed import SupportsRead, SupportsWrite

CHUNK = 1 << 20
RATIO_FREE_BYTES = 1 << 20  # smaller entries may compress as well as they like
_READ_AHEAD = 1 << 16  # more than zipfile's ZipExtFile.MIN_READ_SIZE (4096)
DRIVE = re.compile(r"^[A-Za-z]:")
READABLE_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                              zipfile.ZIP_LZMA})


class ArchiveError(InvalidInput):
    """An archive is unsafe to unpack, or over its limits."""


@dataclass(frozen=True)
class ArchiveLimits:
    """What one archive (or one set of archives sharing a budget) may unpack to."""

    max_bytes: int = 2 << 30  # uncompressed, in all
    max_files: int = 20_000  # entries, folders included
    max_file_bytes: int = 1 << 30  # one file, uncompressed
    max_ratio: int | None = None  # uncompressed / compressed size of one entry, declared

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_files", "max_file_bytes", "max_ratio"):
            value = getattr(self, name)
            if value is None and name == "max_ratio":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(f"{name}: {value!r} is not a positive whole number",
                                   field=name)


class ArchiveBudget:
    """Bytes and entries unpacked so far from one source, against its limits."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.bytes = 0
        self.files = 0

    def check_declared(self, label: str, entries: int, total: int) -> None:
        if self.files + entries > self.limits.max_files:
            raise ArchiveError(f"{label}: too many files ({self.files + entries} entries; "
                               f"at most {self.limits.max_files} allowed)")
        if self.bytes + total > self.limits.max_bytes:
            raise ArchiveError(f"{label}: too big ({self.bytes + total} bytes uncompressed; "
                               f"at most {self.limits.max_bytes} allowed)")

    def count_entry(self, label: str) -> None:
        """One more entry, for archives read as a stream (tar), whose count comes late."""
        self.files += 1
        if self.files > self.limits.max_files:
            raise ArchiveError(f"{label}: too many files (more than {self.limits.max_files} "
                               "entries)")

    def file_cap(self) -> int:
        """The most bytes the next file may hold."""
        return min(self.limits.max_file_bytes, self.limits.max_bytes - self.bytes)

    def refuse_over(self, label: str, name: str, read: int) -> None:
        if read > self.limits.max_file_bytes:
            raise ArchiveError(f"{label}: {name!r} is too big (more than "
                               f"{self.limits.max_file_bytes} bytes uncompressed)")
        raise ArchiveError(f"{label}: too big (more than {self.limits.max_bytes} bytes "
                           f"uncompressed)")

    def copy(self, label: str, name: str, source: SupportsRead[bytes],
             out: SupportsWrite[bytes] | None, declared: int | None = None) -> int:
        """Copy ``source`` to ``out`` (or only count it), refusing past the limits or past
        the ``declared`` size (one byte more is enough to know); the bytes are added to
        the budget and returned."""
        cap = self.file_cap()
        if declared is not None and declared < cap:
            cap = declared
        read = 0
        while chunk := source.read(min(CHUNK, cap + 1 - read)):
            read += len(chunk)
            if read > cap:
                if cap == declared:
                    raise ArchiveError(f"{label}: {name!r} holds more than the {declared} "
                                       "bytes its header says")
                self.refuse_over(label, name, read)
            if out is not None:
                out.write(chunk)
        self.bytes += read
        return read


def entry_parts(label: str, name: str) -> tuple[str, ...]:
    """The parts of an archive path, refusing any that could land outside the archive."""
    clean = name.replace("\\", "/")
    if "\x00" in clean:
        raise ArchiveError(f"{label}: entry {name!r} has a NUL character in its name")
    if clean.startswith("/") or DRIVE.match(clean):
        raise ArchiveError(f"{label}: entry {name!r} has an absolute path")
    parts = tuple(part for part in clean.split("/") if part not in ("", "."))
    if ".." in parts:
        raise ArchiveError(f"{label}: entry {name!r} goes outside the archive ('..')")
    return parts


def check_layout(label: str, files: list[tuple[str, ...]], dirs: list[tuple[str, ...]]) -> None:
    """No two entries with the same path, and no file where a folder is needed."""
    seen: set[tuple[str, ...]] = set()
    for parts in files:
        if parts in seen:
            raise ArchiveError(f"{label}: entry {'/'.join(parts)!r} appears twice")
        seen.add(parts)
    folders = set(dirs)
    for parts in files:
        folders.update(parts[:i] for i in range(1, len(parts)))
    for parts in files:
        if parts in folders:
            raise ArchiveError(f"{label}: entry {'/'.join(parts)!r} is both a file and a folder")


@dataclass
class Member:
    """One file of a zip or a folder, with what is needed to copy it."""

    parts: tuple[str, ...]
    size: int  # declared (zip) or seen (folder)
    executable: bool
    stored: bool  # kept uncompressed when normalized
    info: zipfile.ZipInfo | None = None  # a zip member
    path: Path | None = None  # a folder member

    @property
    def name(self) -> str:
        return "/".join(self.parts)


def open_zip(label: str, path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise ArchiveError(f"{label}: not a readable zip file ({exc})") from None


def _archive_size(zf: zipfile.ZipFile) -> int:
    assert zf.fp is not None
    zf.fp.seek(0, os.SEEK_END)
    return zf.fp.tell()


def _check_header(label: str, info: zipfile.ZipInfo, limits: ArchiveLimits,
                  archive_size: int) -> None:
    """A file entry's header: a method we read, sizes that make sense, within limits."""
    if info.header_offset + info.compress_size > archive_size:
        raise ArchiveError(f"{label}: entry {info.filename!r} claims {info.compress_size} "
                           "compressed bytes, more than the archive holds")
    if info.compress_type not in READABLE_METHODS:
        raise ArchiveError(f"{label}: entry {info.filename!r} uses an unsupported "
                           f"compression method ({info.compress_type})")
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        raise ArchiveError(f"{label}: entry {info.filename!r} is stored uncompressed but its "
                           f"header gives two sizes ({info.file_size} and "
                           f"{info.compress_size} bytes)")
    if info.file_size > limits.max_file_bytes:
        raise ArchiveError(f"{label}: {info.filename!r} is too big ({info.file_size} bytes "
                           f"uncompressed; at most {limits.max_file_bytes} allowed)")
    ratio = limits.max_ratio
    if ratio is not None and info.file_size > max(RATIO_FREE_BYTES,
                                                  ratio * info.compress_size):
        raise ArchiveError(f"{label}: entry {info.filename!r} is compressed more than "
                           f"{ratio}:1 ({info.compress_size} bytes unpack to "
                           f"{info.file_size}; at most {ratio}:1 allowed)")


def scan_zip(label: str, zf: zipfile.ZipFile,
             budget: ArchiveBudget) -> tuple[list[Member], list[tuple[str, ...]]]:
    """The files and folders of a zip, every entry checked; nothing is read or written."""
    members: list[Member] = []
    dirs: list[tuple[str, ...]] = []
    infos = zf.infolist()
    total = 0
    archive_size = _archive_size(zf)
    for info in infos:
        parts = entry_parts(label, info.filename)
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            raise ArchiveError(f"{label}: entry {info.filename!r} is a symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise ArchiveError(f"{label}: entry {info.filename!r} is not a plain file or folder")
        if info.flag_bits & 0x1:
            raise ArchiveError(f"{label}: entry {info.filename!r} is encrypted")
        if info.is_dir() or kind == stat.S_IFDIR:
            if parts:
                dirs.append(parts)
            continue
        if not parts:
            raise ArchiveError(f"{label}: entry {info.filename!r} has no name")
        _check_header(label, info, budget.limits, archive_size)
        total += info.file_size
        members.append(Member(parts, info.file_size, bool(mode & 0o111),
                              info.compress_type == zipfile.ZIP_STORED, info=info))
    budget.check_declared(label, len(infos), total)
    check_layout(label, [m.parts for m in members], dirs)
    return members, dirs


def copy_zip_member(label: str, zf: zipfile.ZipFile, member: Member, out: IO[bytes] | None,
                    budget: ArchiveBudget) -> None:
    """Copy one zip member's bytes to ``out`` (or only count them), counting the bytes
    actually decompressed.

    The member is opened as if it declared more than its header does, so that the
    decompressor does not stop where the header says, and the count decides: one byte
    past the declared size (or the limits) and the member is refused, so a lying header
    costs no more to refuse than its declared size to read. The CRC is still checked at
    the end. The margin exceeds what ``zipfile`` decompresses ahead of a read, so the
    pretended end is never reached (reaching it would check the CRC of a partial
    member)."""
    assert member.info is not None
    declared = member.info.file_size
    probe = copy.copy(member.info)
    probe.file_size = declared + _READ_AHEAD  # at most declared + 1 bytes are read
    try:
        with zf.open(probe) as source:
            read = budget.copy(label, member.name, source, out, declared)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as exc:
        reason = str(exc) or "its data ends early"
        raise ArchiveError(f"{label}: cannot read {member.name!r} ({reason})") from None
    if read != member.info.file_size:
        raise ArchiveError(f"{label}: {member.name!r} holds {read} bytes but its header says "
                           f"{member.info.file_size}")
    budget.files += 1


def check_zip(path: Path, label: str, limits: ArchiveLimits) -> None:
    """Check the zip at ``path`` as it would be unpacked, writing nothing: every entry's
    header, then every member decompressed and counted against ``limits``."""
    budget = ArchiveBudget(limits)
    with open_zip(label, path) as zf:
        members, dirs = scan_zip(label, zf, budget)
        for member in members:
            copy_zip_member(label, zf, member, None, budget)
    budget.files += len(dirs)


def extract_zip(source: Path, dest: Path, budget: ArchiveBudget, label: str | None = None) -> None:
    """Unpack the zip at ``source`` into the folder ``dest`` (made if missing), every
    entry checked first; a file keeps its execute bit."""
    label = label or source.name
    with open_zip(label, source) as zf:
        members, dirs = scan_zip(label, zf, budget)
        dest.mkdir(exist_ok=True)
        for parts in dirs:
            dest.joinpath(*parts).mkdir(parents=True, exist_ok=True)
        for member in members:
            target = dest.joinpath(*member.parts)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "xb") as out:
                    copy_zip_member(label, zf, member, out, budget)
                os.chmod(target, 0o755 if member.executable else 0o644)
            except OSError as exc:
                raise ArchiveError(f"{label}: cannot extract {member.name!r} ({exc})") from None
        budget.files += len(dirs)


def copy_tree(source: Path, dest: Path, budget: ArchiveBudget,
              error: type[InvalidInput] = ArchiveError) -> None:
    """Copy the folder ``source`` to ``dest`` (made here), as ``extract_zip`` unpacks a
    zip: nothing is written before every file and folder is checked, and a symbolic link
    or special file anywhere in it is refused. A file keeps its execute bit.

    A refused entry raises ``error`` (a folder bundle raises ``BundleError``); the limits
    raise ``ArchiveError``, as for a zip."""
    label = source.name
    files: list[tuple[Path, tuple[str, ...], int]] = []
    dirs: list[tuple[str, ...]] = []
    total = 0

    def unreadable(exc: OSError) -> None:
        raise error(f"{label}: cannot read {exc.filename!r} ({exc.strerror})")

    for current, dirnames, filenames in os.walk(source, onerror=unreadable, followlinks=False):
        base = Path(current)
        for name in sorted(dirnames) + sorted(filenames):
            path = base / name
            rel = path.relative_to(source)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                raise error(f"{label}: {rel.as_posix()!r} is a symbolic link")
            if stat.S_ISDIR(info.st_mode):
                dirs.append(rel.parts)
            elif stat.S_ISREG(info.st_mode):
                if info.st_size > budget.limits.max_file_bytes:
                    raise error(
                        f"{label}: {rel.as_posix()!r} is too big ({info.st_size} bytes; "
                        f"at most {budget.limits.max_file_bytes} allowed)")
                total += info.st_size
                files.append((path, rel.parts, info.st_mode))
            else:
                raise error(f"{label}: {rel.as_posix()!r} is not a plain file or folder")
    budget.check_declared(label, len(files) + len(dirs), total)
    dest.mkdir()
    for parts in dirs:
        dest.joinpath(*parts).mkdir(parents=True, exist_ok=True)
    for path, parts, mode in files:
        name = "/".join(parts)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "rb") as src, open(dest.joinpath(*parts), "xb") as out:
                budget.copy(label, name, src, out)
            os.chmod(dest.joinpath(*parts), 0o755 if mode & 0o111 else 0o644)
        except OSError as exc:
            raise error(f"{label}: cannot copy {name!r} ({exc})") from None
        budget.files += 1
    budget.files += len(dirs)


__all__ = [
    "CHUNK",
    "DRIVE",
    "RATIO_FREE_BYTES",
    "ArchiveBudget",
    "ArchiveError",
    "ArchiveLimits",
    "Member",
    "check_layout",
    "check_zip",
    "copy_tree",
    "copy_zip_member",
    "entry_parts",
    "extract_zip",
    "open_zip",
    "scan_zip",
]
