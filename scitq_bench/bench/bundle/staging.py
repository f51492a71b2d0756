"""The bundle's files: where ``competition.yaml`` lies, the paths it names (kept inside
the bundle), and the normalized zips made from the zips and folders it names.

A normalized zip holds its files at its root: a zip whose files all sit in one single
folder is flattened (for a program: when its metadata sits in that folder), macOS
leftovers (``__MACOSX/``, ``.DS_Store``) are dropped, directories are implied, and every
entry gets the same timestamp, so the same content always gives the same bytes. The
execute bit of a file is kept. A zip or folder named by several tasks is normalized once.
The zips inside a bundle share one ``ArchiveLimits`` budget, apart from the bundle's own.
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from pathlib import Path
from typing import Any

from scitq_bench.bench.archives import (
    CHUNK,
    DRIVE,
    ArchiveBudget,
    ArchiveLimits,
    Member,
    copy_zip_member,
    open_zip,
    scan_zip,
)
from scitq_bench.bench.bundle.fields import as_text, fail, parse_yaml
from scitq_bench.bench.bundle.model import COMPETITION_YAML, BundleError, Program

METADATA_NAMES = ("metadata.yaml", "metadata")
JUNK_DIRS = frozenset({"__MACOSX"})
JUNK_FILES = frozenset({".DS_Store"})
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def find_root(tree: Path, label: str) -> Path:
    """The folder holding ``competition.yaml``: ``tree`` itself, or its single top folder."""
    if (tree / COMPETITION_YAML).is_file():
        return tree
    children = [c for c in tree.iterdir() if c.name not in JUNK_DIRS | JUNK_FILES]
    if len(children) == 1 and children[0].is_dir() and (children[0] / COMPETITION_YAML).is_file():
        return children[0]
    raise BundleError(f"{label}: no {COMPETITION_YAML} at its top (or in its single top folder)")


class Staging:
    """The files of one bundle being loaded: under ``staging/files``, the normalized zips
    (each made once) and the copied logo."""

    def __init__(self, root: Path, staging: Path, limits: ArchiveLimits) -> None:
        self.root = root
        self.resolved_root = root.resolve()
        self.files = staging / "files"
        self.files.mkdir()
        self.inner = ArchiveBudget(limits)
        self.count = 0
        self.cache: dict[tuple[Path, str], Path | Program] = {}

    # paths

    def resolve(self, value: Any, where: str) -> Path:
        text = as_text(value, where)
        if text is None:
            raise fail(where, "is missing")
        if "\x00" in text:
            raise fail(where, f"{text!r} is not a path")
        if text.startswith(("/", "\\")) or DRIVE.match(text):
            raise fail(where, f"{text!r} is outside the bundle (use a path relative to "
                               f"{COMPETITION_YAML})")
        path = (self.root / text.replace("\\", "/")).resolve()
        if path != self.resolved_root and self.resolved_root not in path.parents:
            raise fail(where, f"{text!r} is outside the bundle")
        if not path.exists():
            raise fail(where, f"{text!r} is not in the bundle")
        return path

    def read_text(self, value: Any, where: str) -> str:
        path = self.resolve(value, where)
        if not path.is_file():
            raise fail(where, f"{as_text(value, where)!r} is not a file")
        return path.read_bytes().decode("utf-8-sig", errors="replace")

    def copy_file(self, value: Any, where: str, stem: str) -> Path:
        path = self.resolve(value, where)
        if not path.is_file():
            raise fail(where, f"{as_text(value, where)!r} is not a file")
        target = self.files / f"{stem}{path.suffix.lower()}"
        shutil.copyfile(path, target)
        return target

    # normalized zips

    def _members(self, path: Path, label: str, zf: zipfile.ZipFile | None) -> list[Member]:
        if zf is not None:
            members, _ = scan_zip(label, zf, self.inner)
        else:
            members = []
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                info = file.stat()
                members.append(Member(file.relative_to(path).parts, info.st_size,
                                       bool(info.st_mode & 0o111), False, path=file))
        return [m for m in members
                if m.parts[0] not in JUNK_DIRS and m.parts[-1] not in JUNK_FILES]

    def program(self, value: Any, where: str) -> Program:
        result = self.normalize(value, where, True)
        assert isinstance(result, Program)
        return result

    def data(self, value: Any, where: str) -> Path:
        result = self.normalize(value, where, False)
        assert isinstance(result, Path)
        return result

    def normalize(self, value: Any, where: str, program: bool) -> Path | Program:
        path = self.resolve(value, where)
        kind = "program" if program else "data"
        if (path, kind) in self.cache:
            return self.cache[(path, kind)]
        text = as_text(value, where) or ""
        label = text.rstrip("/\\") or text
        if path.is_dir():
            result = self._normalize(path, label, program, None)
        elif path.is_file() and zipfile.is_zipfile(path):
            with open_zip(label, path) as zf:
                result = self._normalize(path, label, program, zf)
        else:
            raise fail(where, f"{text!r} is neither a zip file nor a folder")
        self.cache[(path, kind)] = result
        return result

    def _normalize(self, path: Path, label: str, program: bool,
                   zf: zipfile.ZipFile | None) -> Path | Program:
        members = self._members(path, label, zf)
        prefix = 0
        tops = {m.parts[0] for m in members}
        single = len(tops) == 1 and all(len(m.parts) > 1 for m in members)
        if program:
            names = {m.parts for m in members}
            if not any((name,) in names for name in METADATA_NAMES):
                if single and any((*tops, name) in names for name in METADATA_NAMES):
                    prefix = 1
                else:
                    raise BundleError(f"{label}: no metadata.yaml (or metadata) with a command")
        elif single and zf is not None:
            prefix = 1
        self.count += 1
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(label).stem or "data")[:60]
        target = self.files / f"{self.count:02d}-{stem}.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
            for member in sorted(members, key=lambda m: m.parts):
                info = zipfile.ZipInfo("/".join(member.parts[prefix:]), date_time=_ZIP_TIME)
                info.compress_type = zipfile.ZIP_STORED if member.stored else zipfile.ZIP_DEFLATED
                info.external_attr = (stat.S_IFREG | (0o755 if member.executable else 0o644)) << 16
                with out.open(info, "w", force_zip64=member.size > (1 << 30)) as sink:
                    if zf is not None:
                        copy_zip_member(label, zf, member, sink, self.inner)
                    else:
                        assert member.path is not None
                        with open(member.path, "rb") as src:
                            shutil.copyfileobj(src, sink, CHUNK)
        if not program:
            return target
        return Program(target, _command(target, label))


def _command(archive: Path, label: str) -> str:
    """A program's command, from the metadata at the root of its normalized zip."""
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        name = next(n for n in METADATA_NAMES if n in names)
        raw = zf.read(name)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BundleError(f"{label}: {name} is not UTF-8 text") from None
    metadata = parse_yaml(text, f"{label}: {name}")
    command = metadata.get("command") if isinstance(metadata, dict) else None
    if not isinstance(command, str) or not command.strip():
        raise BundleError(f"{label}: no metadata.yaml (or metadata) with a command")
    return command.strip()


__all__ = ["JUNK_DIRS", "JUNK_FILES", "METADATA_NAMES", "Staging", "find_root"]
