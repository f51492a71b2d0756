"""What a restore accepts from an archive, member by member; how PostgreSQL's client
programs are chosen and told the database; which settings a restore keeps aside."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path, PurePosixPath

import pytest

from scitq_bench.exceptions import ScitqBenchError
from scitq_bench.server import pgtools
from scitq_bench.server.backup import DATA_FILES
from scitq_bench.server.gui.sessions import SECRET_FILE
from scitq_bench.server.restore_files import UnsafeMember, member_target, settings_elsewhere
from scitq_bench.settings import ServerSettings


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(("name", "kind", "section", "inside"), [
    ("store/results/1/out.txt", tarfile.REGTYPE, "store", "results/1/out.txt"),
    ("logs/000000/7/stdout", tarfile.REGTYPE, "logs", "000000/7/stdout"),
    ("data/settings.yaml", tarfile.REGTYPE, "data", "settings.yaml"),
    ("database/scitq_bench.pgdump", tarfile.REGTYPE, "database", "scitq_bench.pgdump"),
    ("store/results", tarfile.DIRTYPE, "store", "results"),
    ("contents.json", tarfile.REGTYPE, "", "contents.json"),
])
def test_what_a_backup_holds_is_accepted(name, kind, section, inside) -> None:
    assert member_target(entry(name, kind)) == (section, PurePosixPath(inside))


@pytest.mark.parametrize(("info", "reason"), [
    (entry("../x"), "goes outside its directory ('..')"),
    (entry("store/a/../../../x"), "goes outside its directory ('..')"),
    (entry("/etc/cron.d/x"), "has an absolute path"),
    (entry("store/l", tarfile.SYMTYPE, "../../etc"), "is a symbolic link (to '../../etc')"),
    (entry("logs/h", tarfile.LNKTYPE, "/etc/shadow"), "is a hard link (to '/etc/shadow')"),
    (entry("store/dev", tarfile.CHRTYPE), "is a device or a pipe"),
    (entry("store/fifo", tarfile.FIFOTYPE), "is a device or a pipe"),
    (entry("elsewhere/x"), "is not part of a scitq-bench backup"),
    (entry("store"), "is not part of a scitq-bench backup"),
    (entry("database/a/b"), "is not part of a scitq-bench backup"),
    (entry("data/sub/settings.yaml"), "is not part of a scitq-bench backup"),
    (entry("data/.bashrc"), "is not a file of the data directory a backup holds"),
])
def test_what_a_backup_never_holds_is_refused(info, reason) -> None:
    with pytest.raises(UnsafeMember) as caught:
        member_target(info)
    assert str(caught.value) == f"unsafe archive member {info.name!r}: it {reason}"


def test_the_session_key_is_among_the_data_files() -> None:
    """Its name is the GUI's: a rename there must not silently drop it from backups."""
    assert SECRET_FILE in DATA_FILES


def test_major_versions() -> None:
    assert pgtools.major("16.4") == (16,)
    assert pgtools.major("15.18 (Debian 15.18-0+deb12u1)") == (15,)
    assert pgtools.major("9.6.24") == (9, 6)
    assert pgtools.major("9.6.24") < pgtools.major("10.1") < pgtools.major("16")


def test_the_password_goes_in_the_environment_only() -> None:
    target = pgtools.libpq_target(
        "postgresql+psycopg2://sci%27tq:s3cr%20t@db.example:6543/bench?sslmode=require")
    assert "s3cr" not in target.conninfo and "s3cr" not in target.label
    assert target.conninfo == ("dbname='bench' host='db.example' port='6543' "
                               "sslmode='require' user='sci\\'tq'")
    assert target.env["PGPASSWORD"] == "s3cr t"
    socket = pgtools.libpq_target("postgresql+psycopg2://me@/bench?host=/run/postgresql")
    assert socket.conninfo == "dbname='bench' host='/run/postgresql' user='me'"


def installed_pg_dump() -> pgtools.Program:
    found = [p for p in map(pgtools.probe, pgtools.candidates("pg_dump")) if p]
    if not found:
        pytest.skip("no pg_dump on this machine")
    return max(found, key=lambda p: pgtools.major(p.version))


def test_a_pg_dump_older_than_the_server_is_named_with_both_versions() -> None:
    newest = installed_pg_dump()
    with pytest.raises(ScitqBenchError) as caught:
        pgtools.find_program("pg_dump", "99.1", "the PostgreSQL server")
    message = str(caught.value)
    assert f"pg_dump {newest.version} (" in message
    assert "is older than the PostgreSQL server (99.1): install the PostgreSQL 99 client " \
           "programs and put them first on PATH" in message


def test_an_old_pg_dump_first_on_path_is_passed_over(tmp_path, monkeypatch) -> None:
    """PATH first, but only a program new enough is used: here an old one on PATH
    and the packaged ones after it."""
    if not any(Path(p).parent.parent.parent == Path("/usr/lib/postgresql")
               for p in pgtools.candidates("pg_dump")):
        pytest.skip(f"no pg_dump in {pgtools.PACKAGED}")
    old = tmp_path / "pg_dump"
    old.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    old.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert pgtools.candidates("pg_dump")[0] == str(old)
    chosen = pgtools.find_program("pg_dump", "10", "the PostgreSQL server")
    assert chosen.path.startswith("/usr/lib/postgresql/")
    assert pgtools.major(chosen.version) >= (10,)


def test_settings_naming_other_places_are_found(tmp_path) -> None:
    target = ServerSettings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/x.db")
    assert settings_elsewhere("lease_seconds: 5\n", target) == []
    assert settings_elsewhere(f"database_url: sqlite:///{tmp_path}/x.db\n"
                              f"store_dir: {tmp_path}/store\n", target) == []
    assert settings_elsewhere("database_url: postgresql://h/prod\nlog_dir: /var/log/x\n",
                              target) == ["database_url", "log_dir"]
    assert settings_elsewhere("- a list\n", target) == ["configuration (it is not a mapping)"]
