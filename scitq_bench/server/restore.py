"""``server restore``: a backup (``backup.py`` describes the format) into the fresh data
directory and the empty database the settings name.

Refused before anything is written: a file that is not a backup; a format version or
a schema revision this version does not know (a backup from a newer version); a
database of the other dialect; a target that is not fresh (the SQLite file exists or
the PostgreSQL database holds tables, the log or store directory is not empty, the
data directory already holds a session key or an admin token).

A server keeping its logs and files in an object store (``store_url``) restores the
database and the data directory's state only, and says so: the object store is not
restored (nor checked for freshness: it is what survived), and a backup holding logs
or files from disk is refused, as there is no directory to put them in.

Nothing half-written: each section is extracted into a temporary sibling of its target
and checked against the archive's closing ``contents.json``; the database is loaded,
checked against the manifest's row counts and migrated to this version's schema; only
then are the siblings renamed into place, the SQLite file last. On a failure, what the
restore made is removed (on PostgreSQL, the tables it loaded are dropped).

The archive is trusted no further than its format (``restore_files``).
"""

from __future__ import annotations

import gzip
import json
import tarfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import scitq_bench
from scitq_bench.exceptions import Conflict, InvalidInput, ScitqBenchError
from scitq_bench.server import dbcopy
from scitq_bench.server.backup import (
    CONTENTS,
    DATA_FILES,
    DATABASE,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    SECTIONS,
    SETTINGS_FILE,
    Summary,
    Tally,
)
from scitq_bench.server.db import error_reason
from scitq_bench.server.migrate import is_known_revision, upgrade
from scitq_bench.server.restore_files import Staging, member_target, unsafe
from scitq_bench.settings import ServerSettings

MAX_JSON = 16 << 20  # bytes: the manifest and contents are small; a bigger one is no backup
DIALECTS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


def restore_backup(settings: ServerSettings, archive: Path) -> tuple[Summary, list[str]]:
    """Restore ``archive`` into the place ``settings`` name; returns the summary and
    notes for the operator."""
    started = time.monotonic()
    copy = dbcopy.for_url(settings.session_database_url)
    with _entries(archive) as entries:
        recorded = read_manifest(archive, next(entries, None))
        _check_fits(archive, recorded, copy)
        _refuse_unless_fresh(settings, copy)
        staging = Staging(settings, copy)
        step = "reading the archive"
        try:
            staged = _extract(archive, entries, staging, copy, recorded)
            step = "loading the database"
            url = copy.load(staged, recorded["database"])
            _check_rows(url, recorded["database"]["tables"])
            step = "migrating the database"
            upgrade(url)
            revision = dbcopy.revision(url)
            step = "putting the restored files in place"
            notes = staging.commit()
            copy.commit()
        except BaseException as exc:
            problem = _discard(staging, copy)
            if not isinstance(exc, Exception):
                raise
            raise ScitqBenchError(f"restore failed {step}: {error_reason(exc)}; "
                                  f"{problem or 'what it had written is removed'}") from exc
    old = recorded["database"]["revision"]
    shown = revision if revision == old else f"{revision} (migrated from {old})"
    summary = Summary("Restored", "from", archive, copy.dialect, str(shown),
                      sum(recorded["database"]["tables"].values()), staging.tallies,
                      time.monotonic() - started)
    if settings.store_url:
        notes.append(object_store_note(settings.store_url, recorded.get("store_url")))
    return summary, notes


def object_store_note(store_url: str, recorded: Any) -> str:
    """What a restore into a server keeping its logs and files in ``store_url`` did
    not restore; ``recorded``: where the backed up server kept them, if it said."""
    where = (f"; the backed up server kept them in {recorded}"
             if isinstance(recorded, str) and recorded != store_url else "")
    return (f"the execution logs and stored files are not restored: this server reads them "
            f"from {store_url} (store_url){where}; if they were lost, copy a copy of them "
            f"back with `scitq-bench files sync file:///backup/scitq-bench-store/ {store_url}`")


@contextmanager
def _entries(archive: Path) -> Iterator[Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]]:
    """The archive's members in order, read as a stream (never seeking), each with the
    tar to read its bytes from before the next."""
    try:
        tar = tarfile.open(archive, mode="r|gz")
    except READ_ERRORS:
        raise InvalidInput(f"{archive} is not a scitq-bench backup (not a gzip'd tar "
                           "archive)") from None

    def members() -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
        while True:
            with _damaged(archive):
                member = tar.next()
            if member is None:
                return
            yield member, tar

    with tar:
        yield members()


@contextmanager
def _damaged(archive: Path) -> Iterator[None]:
    """Reading errors of a truncated or corrupted archive, as one line."""
    try:
        yield
    except READ_ERRORS as exc:
        raise InvalidInput(f"{archive} is damaged or truncated ({exc})") from None


def read_manifest(archive: Path, first: tuple[tarfile.TarInfo, tarfile.TarFile] | None
                  ) -> dict[str, Any]:
    """The manifest, checked: a backup in a format and shape this version reads."""
    not_backup = InvalidInput(f"{archive} is not a scitq-bench backup (it does not begin "
                              f"with {MANIFEST})")
    if first is None or first[0].name != MANIFEST or not first[0].isreg():
        raise not_backup
    try:
        manifest = json.loads(_small(archive, *first))
    except (ValueError, UnicodeDecodeError):
        raise not_backup from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise not_backup
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise InvalidInput(
            f"{archive} is a backup in format version {version!r}, which scitq-bench "
            f"{scitq_bench.__version__} does not read (it reads version {FORMAT_VERSION}): "
            f"restore it with scitq-bench {manifest.get('scitq_bench_version', '?')} or newer")
    database = manifest.get("database")
    if not (isinstance(database, dict) and database.get("dialect") in DIALECTS
            and isinstance(database.get("revision"), str)
            and isinstance(database.get("member"), str)
            and isinstance(database.get("tables"), dict)
            and all(isinstance(n, int) for n in database["tables"].values())):
        raise InvalidInput(f"{archive}: its {MANIFEST} does not describe a database")
    return manifest


def _small(archive: Path, member: tarfile.TarInfo, tar: tarfile.TarFile) -> bytes:
    if member.size > MAX_JSON:
        raise InvalidInput(f"{archive}: {member.name} is too big for a backup's "
                           f"({member.size} bytes)")
    handle = tar.extractfile(member)
    with _damaged(archive):
        return handle.read() if handle else b""


def _check_fits(archive: Path, manifest: dict[str, Any], copy: dbcopy.DatabaseCopy) -> None:
    """The backup's database can be loaded here: same dialect, a known revision."""
    database = manifest["database"]
    if database["dialect"] != copy.dialect:
        raise InvalidInput(
            f"{archive} holds a {DIALECTS[database['dialect']]} database and the target "
            f"database is {DIALECTS[copy.dialect]} ({copy.label}): a backup restores into "
            "the same kind of database (see SCITQ_BENCH_DATABASE_URL)")
    if not is_known_revision(database["revision"]):
        raise InvalidInput(
            f"{archive} was written at schema revision {database['revision']} (by scitq-bench "
            f"{manifest.get('scitq_bench_version', '?')}), which scitq-bench "
            f"{scitq_bench.__version__} does not know: restore it with that version or newer")


def in_the_way(settings: ServerSettings, copy: dbcopy.DatabaseCopy) -> list[str]:
    """Everything that makes the target not fresh."""
    found = [copy.in_the_way()]
    folders = [] if settings.store_url else [("log directory", settings.log_dir),
                                             ("file store", settings.store_dir)]
    for what, folder in folders:
        if folder.exists() and not folder.is_dir():
            found.append(f"the {what} {folder} is not a directory")
        elif folder.is_dir() and any(folder.iterdir()):
            found.append(f"the {what} {folder} is not empty")
    found += [f"{settings.data_dir / name} exists" for name in DATA_FILES
              if name != SETTINGS_FILE and (settings.data_dir / name).exists()]
    return [item for item in found if item]


def _refuse_unless_fresh(settings: ServerSettings, copy: dbcopy.DatabaseCopy) -> None:
    found = in_the_way(settings, copy)
    if found:
        raise Conflict(f"restore refused, the target is not fresh: {'; '.join(found)}. "
                       "Restore into a new data directory (--data-dir) and an empty database")


def _extract(archive: Path, entries: Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]],
             staging: Staging, copy: dbcopy.DatabaseCopy, manifest: dict[str, Any]) -> Path:
    """Every member after the manifest into the staging folders; returns where the
    database file went."""
    database = manifest["database"]["member"]
    staged: Path | None = None
    contents: dict[str, Any] | None = None
    for member, tar in entries:
        section, inside = member_target(member)
        if contents is not None:
            raise unsafe(member.name, f"comes after {CONTENTS}, which ends a backup")
        if member.name == MANIFEST:
            raise unsafe(member.name, "appears twice")
        if member.isdir():
            continue
        if member.name == CONTENTS:
            contents = _json(archive, member, tar)
        elif section == DATABASE:
            if member.name != database or staged is not None:
                raise unsafe(member.name, "is not the one database the manifest names")
            staged = copy.stage(staging.work)
            with _damaged(archive):
                staging.write_file(staged, member, tar)
        else:
            with _damaged(archive):
                staging.write(section, inside, member, tar)
    if staged is None:
        raise InvalidInput(f"{archive} holds no database ({database})")
    if contents is None:
        raise InvalidInput(f"{archive} is incomplete: it does not end with {CONTENTS}")
    _check_contents(archive, contents, staging.tallies)
    return staged


def _json(archive: Path, member: tarfile.TarInfo, tar: tarfile.TarFile) -> dict[str, Any]:
    try:
        value = json.loads(_small(archive, member, tar))
    except (ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict):
        raise InvalidInput(f"{archive}: {member.name} is not a JSON object")
    return value


def _check_contents(archive: Path, contents: dict[str, Any], tallies: dict[str, Tally]) -> None:
    """What was extracted is what the backup wrote, section by section."""

    def listed(section: str) -> tuple[Any, Any]:
        counts = contents.get(section)
        return (counts.get("files"), counts.get("bytes")) if isinstance(counts, dict) else (None, None)

    wrong = [s for s in SECTIONS if listed(s) != (tallies[s].files, tallies[s].bytes)]
    if wrong:
        found = ", ".join(f"{s}: {tallies[s].files} files, {tallies[s].bytes} bytes" for s in wrong)
        raise InvalidInput(f"{archive} does not hold what its {CONTENTS} lists ({found})")


def _check_rows(url: str, expected: dict[str, int]) -> None:
    """The loaded database holds the rows the backup counted, table by table."""
    _revision, found = dbcopy.describe(url)
    wrong = sorted(name for name in {*found, *expected} if found.get(name) != expected.get(name))
    if wrong:
        listed = ", ".join(f"{name}: {found.get(name)} rows, {expected.get(name)} expected"
                           for name in wrong[:5])
        raise ScitqBenchError(f"the loaded database does not hold what the backup counted "
                              f"({listed})")


def _discard(staging: Staging, copy: dbcopy.DatabaseCopy) -> str | None:
    """Undo the restore; what could not be undone, if anything."""
    problems = []
    for undo in (copy.discard, staging.discard):  # the folders made for both go last
        try:
            undo()
        except Exception as exc:
            problems.append(error_reason(exc))
    return f"cleaning up failed too: {'; '.join(problems)}" if problems else None
