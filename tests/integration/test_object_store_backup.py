"""``server backup`` and ``server restore`` of a server keeping its logs and files in an
object store (``store_url``; a ``file://`` folder here, as a shared mount would be): the
archive holds the database and the data directory's state only, and both commands say
where the logs and files are and how to copy them."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from scitq_bench.cli.main import cli
from scitq_bench.server.filestore import LocalFileStore
from scitq_bench.server.logstore import LocalLogStore
from scitq_bench.server.setup import init_server
from scitq_bench.server.storage import build_stores
from scitq_bench.settings import ServerSettings
from tests.conftest import fresh_database

ENVIRONMENT = ("SCITQ_BENCH_DATABASE_URL", "SCITQ_BENCH_DIRECT_DATABASE_URL",
               "SCITQ_BENCH_LOG_DIR", "SCITQ_BENCH_STORE_DIR", "SCITQ_BENCH_DATA_DIR",
               "SCITQ_BENCH_STORE_URL")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"file://{tmp_path}/bucket/scitq/"


@pytest.fixture
def source(tmp_path: Path, database_url: str, store_url: str) -> ServerSettings:
    """A server whose settings.yaml names the object store, with a file and a log in it."""
    data_dir = tmp_path / "source"
    data_dir.mkdir()
    (data_dir / "settings.yaml").write_text(f"store_url: {store_url}\n")
    settings = ServerSettings.from_env(data_dir, database_url=database_url)
    init_server(settings)
    logs, files = build_stores(settings)
    files.write("results/1/out.txt", io.BytesIO(b"output one\n"))
    logs.append(1, "stdout", 0, io.BytesIO(b"line 1\n"))
    return settings


@pytest.fixture
def target_database(request: pytest.FixtureRequest, tmp_path: Path,
                    database_url: str) -> Iterator[str]:
    dialect = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    with fresh_database(dialect, tmp_path / "target-db", request, "scitq_bench.db") as url:
        yield url


def run(*args: str, database_url: str) -> Result:
    return CliRunner().invoke(cli, ["server", *args],
                              env={"SCITQ_BENCH_DATABASE_URL": database_url})


def backup(settings: ServerSettings, output: Path) -> Result:
    output.parent.mkdir(parents=True, exist_ok=True)
    result = run("backup", "--data-dir", str(settings.data_dir), "--output", str(output),
                 database_url=settings.database_url)
    assert result.exit_code == 0, result.output
    return result


def test_a_backup_holds_the_database_and_says_where_the_files_are(source, store_url,
                                                                  tmp_path) -> None:
    archive = tmp_path / "backups" / "server.tar.gz"
    lines = backup(source, archive).stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("Backed up the ")
    assert " and 1 files " in lines[0]  # settings.yaml: no log, no stored file
    assert lines[1] == (
        f"Note: the execution logs and stored files are not in {archive}: this server "
        f"keeps them in {store_url} (store_url), which a backup does not copy; copy them "
        f"with `scitq-bench files sync {store_url} file:///backup/scitq-bench-store/` "
        "(or the object store's own versioning or replication)")
    with tarfile.open(archive, "r:gz") as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        contents = json.loads(tar.extractfile("contents.json").read())  # type: ignore[union-attr]
    assert not [name for name in names if name.startswith(("logs/", "store/"))]
    assert "data/settings.yaml" in names
    assert manifest["store_url"] == store_url
    assert contents["logs"] == contents["store"] == {"files": 0, "bytes": 0}
    assert not (source.data_dir / "logs").exists() and not (source.data_dir / "store").exists()


def test_a_restore_says_where_the_files_are_and_they_are_read_there(
        source, store_url, tmp_path, target_database) -> None:
    archive = tmp_path / "backups" / "server.tar.gz"
    backup(source, archive)
    target = tmp_path / "target"
    target.mkdir()
    (target / "settings.yaml").write_text(f"store_url: {store_url}\n")
    result = run("restore", str(archive), "--data-dir", str(target),
                 database_url=target_database)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Restored the ")
    assert (f"Note: the execution logs and stored files are not restored: this server reads "
            f"them from {store_url} (store_url); if they were lost, copy a copy of them back "
            f"with `scitq-bench files sync file:///backup/scitq-bench-store/ {store_url}`"
            ) in lines
    restored = ServerSettings.from_env(target, database_url=target_database)
    logs, files = build_stores(restored)
    with files.open("results/1/out.txt") as stored:
        assert stored.stream.read() == b"output one\n"
    assert b"".join(logs.read(1, "stdout")) == b"line 1\n"
    assert not (target / "logs").exists() and not (target / "store").exists()


def test_a_restore_names_the_store_the_backup_came_from(source, store_url, tmp_path,
                                                        target_database) -> None:
    archive = tmp_path / "backups" / "server.tar.gz"
    backup(source, archive)
    target, other = tmp_path / "target", f"file://{tmp_path}/other/"
    target.mkdir()
    (target / "settings.yaml").write_text(f"store_url: {other}\n")
    result = run("restore", str(archive), "--data-dir", str(target),
                 database_url=target_database)
    assert result.exit_code == 0, result.output
    assert (f"this server reads them from {other} (store_url); the backed up server kept them "
            f"in {store_url}; if they were lost") in result.stdout


def test_files_from_disk_are_not_restored_into_an_object_store(tmp_path, database_url,
                                                               store_url,
                                                               target_database) -> None:
    local = ServerSettings(data_dir=tmp_path / "local", database_url=database_url)
    init_server(local)
    LocalFileStore(local.store_dir).write("a.txt", io.BytesIO(b"a"))
    LocalLogStore(local.log_dir).append(1, "stdout", 0, io.BytesIO(b"x"))
    archive = tmp_path / "backups" / "local.tar.gz"
    backup(local, archive)
    target = tmp_path / "target"
    target.mkdir()
    (target / "settings.yaml").write_text(f"store_url: {store_url}\n")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    result = run("restore", str(archive), "--data-dir", str(target),
                 database_url=target_database)
    assert result.exit_code == 1, result.output
    message = result.stderr.strip().removeprefix("Error: ")
    assert message.startswith("restore failed reading the archive: the backup holds execution "
                              "logs and stored files kept on disk (logs/000000/1/")
    assert (f"this server keeps them in {store_url} (store_url), where a restore does not "
            "write: restore it into a server without store_url (its log_dir and store_dir)"
            ) in message
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
