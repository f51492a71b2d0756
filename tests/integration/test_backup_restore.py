"""``server backup`` and ``server restore`` in process, on SQLite and PostgreSQL: what
a round trip keeps, and every refusal, each with its message and nothing written to
the target (the test's whole directory is listed before and after, and a PostgreSQL
target still holds no table)."""

from __future__ import annotations

import io
import itertools
import json
import stat
import tarfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, inspect

from scitq_bench.cli.main import cli
from scitq_bench.server.dbcopy import describe
from scitq_bench.server.filestore import LocalFileStore
from scitq_bench.server.logstore import LocalLogStore
from scitq_bench.server.migrate import head_revisions, upgrade
from scitq_bench.server.setup import init_server
from scitq_bench.settings import ServerSettings
from tests.conftest import fresh_database

(HEAD,) = head_revisions()  # the schema this code expects
ENVIRONMENT = ("SCITQ_BENCH_DATABASE_URL", "SCITQ_BENCH_DIRECT_DATABASE_URL",
               "SCITQ_BENCH_LOG_DIR", "SCITQ_BENCH_STORE_DIR", "SCITQ_BENCH_DATA_DIR")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """``make(dialect)``: a fresh, empty database of that dialect, dropped at the end."""
    count = itertools.count()
    with ExitStack() as made:
        yield lambda dialect: made.enter_context(fresh_database(
            dialect, tmp_path / f"target-{next(count)}", request, "scitq_bench.db"))


def dialect_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


@pytest.fixture
def source(tmp_path: Path, database_url: str) -> ServerSettings:
    """An initialised server with stored files, logs, settings and a session key."""
    settings = ServerSettings(data_dir=tmp_path / "source", database_url=database_url)
    init_server(settings)
    files = LocalFileStore(settings.store_dir)
    files.write("results/1/out.txt", io.BytesIO(b"output one\n"))
    files.write("results/2/big.bin", io.BytesIO(bytes(range(256)) * 4096))
    logs = LocalLogStore(settings.log_dir)
    logs.append(1, "stdout", 0, io.BytesIO(b"line 1\nline 2\n"))
    logs.append(1, "stderr", 0, io.BytesIO(b"warning\n"))
    (settings.data_dir / "settings.yaml").write_text("lease_seconds: 12\n")
    (settings.data_dir / "gui-secret").write_text("0123abcd")
    (settings.data_dir / "package").mkdir()  # a cache: left out
    (settings.data_dir / "package" / "wheel.whl").write_bytes(b"w")
    return settings


@pytest.fixture
def archive(source: ServerSettings, tmp_path: Path) -> Path:
    return backup(source, tmp_path / "backups" / "server.tar.gz")


def backup(settings: ServerSettings, output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    result = CliRunner().invoke(cli, ["server", "backup", "--data-dir", str(settings.data_dir),
                                      "--output", str(output)],
                                env={"SCITQ_BENCH_DATABASE_URL": settings.database_url})
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Backed up the ")
    return output


def restore(archive: Path, data_dir: Path, database_url: str) -> Result:
    return CliRunner().invoke(cli, ["server", "restore", str(archive), "--data-dir",
                                    str(data_dir)],
                              env={"SCITQ_BENCH_DATABASE_URL": database_url})


def listing(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def tables(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return inspect(connection).get_table_names()
    finally:
        engine.dispose()


def refused(tmp_path: Path, archive: Path, data_dir: Path, url: str, *,
            empty: bool = True) -> str:
    """Restore, expect a refusal; the directory tree is untouched, and the database
    still ``empty`` if it was."""
    before = listing(tmp_path)
    result = restore(archive, data_dir, url)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert listing(tmp_path) == before
    if empty and not url.startswith("sqlite"):
        assert tables(url) == []
    return result.stderr.strip().removeprefix("Error: ")


def rewritten(archive: Path, output: Path, *,
              after_database: Sequence[tuple[tarfile.TarInfo, bytes]] = (),
              manifest: Callable[[dict[str, Any]], None] | None = None,
              drop: str = "") -> Path:
    """A copy of ``archive`` with members added after the database, its manifest
    changed, or the member ``drop`` left out."""
    with tarfile.open(archive, "r:gz") as old, tarfile.open(output, "w:gz") as new:
        for member in old:
            if member.name == drop:
                continue
            data = old.extractfile(member).read() if member.isreg() else b""  # type: ignore[union-attr]
            if member.name == "manifest.json" and manifest is not None:
                changed = json.loads(data)
                manifest(changed)
                data = json.dumps(changed).encode()
                member.size = len(data)
            new.addfile(member, io.BytesIO(data))
            if member.name.startswith("database/"):
                for extra, content in after_database:
                    new.addfile(extra, io.BytesIO(content))
    return output


def member(name: str, content: bytes = b"evil\n", kind: bytes = tarfile.REGTYPE,
           link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(content) if kind == tarfile.REGTYPE else 0
    return info, content if kind == tarfile.REGTYPE else b""


# -- round trips -----------------------------------------------------------------------


def test_a_round_trip_keeps_rows_files_logs_and_settings(source, archive, tmp_path, databases,
                                                         database_url) -> None:
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert listing(archive.parent) == ["server.tar.gz"]  # no partial file, no dump left
    with tarfile.open(archive, "r:gz") as tar:
        names = tar.getnames()
    assert names[0] == "manifest.json" and names[1].startswith("database/")
    assert names[-1] == "contents.json"
    assert "data/settings.yaml" in names and "data/gui-secret" in names
    assert not any("package" in name or "upload" in name for name in names)

    target_url = databases(dialect_of(database_url))
    target = tmp_path / "target"
    result = restore(archive, target, target_url)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Restored the {dialect_of(database_url)} database at "
                                    f"revision {HEAD} (")
    assert " and 6 files (" in result.stdout  # 2 stored, 2 logs, settings.yaml, the key
    assert describe(target_url) == describe(database_url)
    restored = ServerSettings.from_env(target)
    assert restored.lease_seconds == 12  # the backup's settings.yaml is in force
    assert (target / "gui-secret").read_text() == "0123abcd"
    assert stat.S_IMODE((target / "gui-secret").stat().st_mode) == 0o600
    for relative in ("results/1/out.txt", "results/2/big.bin"):
        assert (restored.store_dir / relative).read_bytes() == \
            (source.store_dir / relative).read_bytes()
    assert b"".join(LocalLogStore(restored.log_dir).read(1, "stdout")) == b"line 1\nline 2\n"
    assert not (target / "package").exists()
    assert [p for p in listing(tmp_path) if ".restore-" in p or ".partial" in p] == []


def test_an_older_backup_comes_up_at_the_head_revision(tmp_path, database_url, databases) -> None:
    settings = ServerSettings(data_dir=tmp_path / "old", database_url=database_url)
    upgrade(database_url, "0005")
    archive = backup(settings, tmp_path / "old.tar.gz")
    target_url = databases(dialect_of(database_url))
    result = restore(archive, tmp_path / "target", target_url)
    assert result.exit_code == 0, result.output
    assert f"revision {HEAD} (migrated from 0005)" in result.stdout
    assert describe(target_url)[0] == HEAD


def test_settings_naming_another_database_are_set_aside(source, archive, tmp_path,
                                                        databases, database_url) -> None:
    """A settings.yaml from the backup that names another database would point the
    restored server at it: it is kept aside, not put in force."""
    (source.data_dir / "settings.yaml").write_text(f"database_url: {source.database_url}\n")
    archive = backup(source, tmp_path / "again.tar.gz")
    target = tmp_path / "target"
    result = restore(archive, target, databases(dialect_of(database_url)))
    assert result.exit_code == 0, result.output
    assert not (target / "settings.yaml").exists()
    assert (target / "settings.yaml.from-backup").read_text().startswith("database_url:")
    assert "names another database_url than this restore used" in result.stdout


def test_the_targets_own_settings_are_kept(archive, tmp_path, databases, database_url) -> None:
    """An operator may name the target database in the new data directory's
    settings.yaml: the restore reads it, keeps it, and puts the backup's aside."""
    target = tmp_path / "target"
    target.mkdir()
    url = databases(dialect_of(database_url))
    (target / "settings.yaml").write_text(f"database_url: {url}\n")
    result = CliRunner().invoke(cli, ["server", "restore", str(archive), "--data-dir",
                                      str(target)])
    assert result.exit_code == 0, result.output
    assert (target / "settings.yaml").read_text() == f"database_url: {url}\n"
    assert (target / "settings.yaml.from-backup").read_text() == "lease_seconds: 12\n"
    assert f"Note: the backup's settings.yaml is in {target / 'settings.yaml.from-backup'}: " \
           f"{target / 'settings.yaml'} was kept" in result.stdout
    assert describe(url)[0] == HEAD


# -- backups refused -------------------------------------------------------------------


def test_a_backup_of_no_database_fails_and_leaves_no_file(tmp_path) -> None:
    output = tmp_path / "out" / "b.tar.gz"
    output.parent.mkdir()
    result = CliRunner().invoke(cli, ["server", "backup", "--data-dir", str(tmp_path / "none"),
                                      "--output", str(output)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: no SQLite database at {tmp_path / 'none'}/"
                                     "scitq_bench.db: nothing to back up")
    assert listing(output.parent) == []


def test_a_backup_inside_the_store_is_refused(source) -> None:
    output = source.store_dir / "b.tar.gz"
    result = CliRunner().invoke(cli, ["server", "backup", "--data-dir", str(source.data_dir),
                                      "--output", str(output)],
                                env={"SCITQ_BENCH_DATABASE_URL": source.database_url})
    assert result.exit_code == 1
    assert "it is inside the file store" in result.stderr
    assert not output.exists()


# -- restores refused ------------------------------------------------------------------


def test_a_target_that_is_not_fresh(source, archive, tmp_path) -> None:
    message = refused(tmp_path, archive, source.data_dir, source.database_url, empty=False)
    assert message.startswith("restore refused, the target is not fresh: the ")
    assert f"the file store {source.store_dir} is not empty" in message
    assert f"the log directory {source.log_dir} is not empty" in message
    assert f"{source.data_dir / 'gui-secret'} exists" in message
    if source.database_url.startswith("sqlite"):
        assert f"the SQLite database {tmp_path / 'test.db'} exists" in message
    else:
        assert "holds tables (account, alembic_version, api_token" in message


def test_a_fresh_database_with_a_full_store_is_refused(archive, tmp_path, databases,
                                                       database_url) -> None:
    target = tmp_path / "target"
    (target / "store").mkdir(parents=True)
    (target / "store" / "left.txt").write_text("x")
    message = refused(tmp_path, archive, target, databases(dialect_of(database_url)))
    assert message == (f"restore refused, the target is not fresh: the file store "
                       f"{target / 'store'} is not empty. Restore into a new data directory "
                       "(--data-dir) and an empty database")


def test_the_other_dialect_is_refused(archive, tmp_path, databases, database_url) -> None:
    names = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
    mine = dialect_of(database_url)
    other = "postgresql" if mine == "sqlite" else "sqlite"
    url = databases(other)
    message = refused(tmp_path, archive, tmp_path / "target", url)
    assert message.startswith(f"{archive} holds a {names[mine]} database and the target "
                              f"database is {names[other]} (")
    assert message.endswith("a backup restores into the same kind of database "
                            "(see SCITQ_BENCH_DATABASE_URL)")


@pytest.mark.parametrize(("extra", "reason"), [
    (member("store/../../escaped.txt"),
     "unsafe archive member 'store/../../escaped.txt': it goes outside its directory ('..')"),
    (member("../escaped.txt"),
     "unsafe archive member '../escaped.txt': it goes outside its directory ('..')"),
    (member("/tmp/scitq-bench-escaped.txt"),
     "unsafe archive member '/tmp/scitq-bench-escaped.txt': it has an absolute path"),
    (member("store/link", kind=tarfile.SYMTYPE, link="/etc"),
     "unsafe archive member 'store/link': it is a symbolic link (to '/etc')"),
    (member("store/hard", kind=tarfile.LNKTYPE, link="manifest.json"),
     "unsafe archive member 'store/hard': it is a hard link (to 'manifest.json')"),
    (member("data/authorized_keys"),
     "unsafe archive member 'data/authorized_keys': it is not a file of the data directory "
     "a backup holds"),
])
def test_a_tampered_archive_is_refused(archive, tmp_path, databases, database_url, extra,
                                       reason) -> None:
    """The unsafe member comes after the database, so the restore has begun writing
    into its temporary folders: they are gone too."""
    evil = rewritten(archive, tmp_path / "evil.tar.gz",
                     after_database=[member("store/fine.txt", b"fine\n"), extra])
    message = refused(tmp_path, evil, tmp_path / "target", databases(dialect_of(database_url)))
    assert message == (f"restore failed reading the archive: {reason}; what it had written "
                       "is removed")
    assert not Path("/tmp/scitq-bench-escaped.txt").exists()


def test_a_newer_schema_revision_is_refused(archive, tmp_path, databases, database_url) -> None:
    def newer(manifest: dict[str, Any]) -> None:
        manifest["database"]["revision"] = "9999"
        manifest["scitq_bench_version"] = "9.0.0"

    newer_archive = rewritten(archive, tmp_path / "newer.tar.gz", manifest=newer)
    message = refused(tmp_path, newer_archive, tmp_path / "target",
                      databases(dialect_of(database_url)))
    assert message == (f"{newer_archive} was written at schema revision 9999 (by scitq-bench "
                       "9.0.0), which scitq-bench 0.1.0 does not know: restore it with that "
                       "version or newer")


def test_an_unknown_format_version_is_refused(archive, tmp_path, databases,
                                              database_url) -> None:
    def future(manifest: dict[str, Any]) -> None:
        manifest["format_version"] = 2

    changed = rewritten(archive, tmp_path / "future.tar.gz", manifest=future)
    message = refused(tmp_path, changed, tmp_path / "target", databases(dialect_of(database_url)))
    assert message.startswith(f"{changed} is a backup in format version 2, which scitq-bench "
                              "0.1.0 does not read (it reads version 1)")


def test_files_that_are_not_backups_are_refused(tmp_path, databases, database_url) -> None:
    url = databases(dialect_of(database_url))
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert refused(tmp_path, text, tmp_path / "target", url) == (
        f"{text} is not a scitq-bench backup (not a gzip'd tar archive)")
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        info, data = member("readme.txt", b"hi\n")
        tar.addfile(info, io.BytesIO(data))
    assert refused(tmp_path, other, tmp_path / "target", url) == (
        f"{other} is not a scitq-bench backup (it does not begin with manifest.json)")


def test_a_truncated_archive_is_refused_and_cleaned_up(archive, tmp_path, databases,
                                                       database_url) -> None:
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size * 3 // 4])
    message = refused(tmp_path, cut, tmp_path / "target", databases(dialect_of(database_url)))
    assert message.startswith(f"restore failed reading the archive: {cut} is damaged or "
                              "truncated (")


@pytest.mark.parametrize(("change", "reason"), [
    ({"drop": "store/results/1/out.txt"},
     "{archive} does not hold what its contents.json lists (store: 1 files, 1048576 bytes)"),
    ({"drop": "contents.json"}, "{archive} is incomplete: it does not end with contents.json"),
    ({"after_database": [member("data/gui-secret", b"1"), member("data/gui-secret", b"2")]},
     "unsafe archive member 'data/gui-secret': it appears twice"),
    ({"after_database": [member("manifest.json", b"{}")]},
     "unsafe archive member 'manifest.json': it appears twice"),
])
def test_an_archive_that_does_not_add_up_is_refused(archive, tmp_path, databases, database_url,
                                                    change, reason) -> None:
    changed = rewritten(archive, tmp_path / "changed.tar.gz", **change)
    message = refused(tmp_path, changed, tmp_path / "target", databases(dialect_of(database_url)))
    assert message == (f"restore failed reading the archive: {reason.format(archive=changed)}; "
                       "what it had written is removed")


def test_a_database_that_does_not_hold_the_counted_rows_is_dropped(archive, tmp_path, databases,
                                                                   database_url) -> None:
    """The database is loaded, then found wrong: the tables it made are dropped (on
    PostgreSQL), the file never put in place (on SQLite), the files extracted removed."""
    def miscounted(manifest: dict[str, Any]) -> None:
        manifest["database"]["tables"]["batch"] = 7

    changed = rewritten(archive, tmp_path / "changed.tar.gz", manifest=miscounted)
    message = refused(tmp_path, changed, tmp_path / "target", databases(dialect_of(database_url)))
    assert message == ("restore failed loading the database: the loaded database does not "
                       "hold what the backup counted (batch: 0 rows, 7 expected); what it had "
                       "written is removed")
