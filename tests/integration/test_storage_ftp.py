"""The FTP and FTPS store against a real pyftpdlib server over TCP: round trips, folders
made on upload, writes no reader sees half done, ranges, errors that name the URI and
never the password, ~/.netrc credentials, and connections the server dropped."""

from __future__ import annotations

import ftplib
import importlib.util
import os
import secrets
import shutil
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from scitq_bench.storage.base import (
    AccessDenied,
    ChecksumMismatch,
    Entry,
    NotFoundError,
    StorageError,
    Store,
    TransientError,
    no_progress,
)
from scitq_bench.storage.config import StorageConfig
from scitq_bench.storage.ftp import BLOCK
from scitq_bench.storage.stores import Stores
from tests.support import objectstores
from tests.support.objectstores import FtpSite, Processes, storage_config_for
from tests.support.postgres import free_port
from tests.support.waiting import wait_until

USER = "scitq-test"

# A server of tests/support/ftpserver.py with one quirk: "legacy" takes MLST and MLSD
# away (as vsftpd lacks them), "impatient" closes control connections silent for half a
# second (as servers do to idle clients).
QUIRKY_SERVER = r"""
import sys
from tests.support.ftpserver import build

root, port, user, password, quirk = sys.argv[1:]
server = build(root, int(port), user, password, None, None)
if quirk == "legacy":
    server.handler.proto_cmds = {name: value for name, value in server.handler.proto_cmds.items()
                                 if name not in ("MLST", "MLSD")}
else:
    server.handler.timeout = 0.5
server.serve_forever()
"""


def _answers(port: int) -> bool:
    try:
        with ftplib.FTP() as client:
            client.connect("127.0.0.1", port, timeout=2)
        return True
    except (OSError, ftplib.Error, EOFError):
        return False


def _start_quirky(processes: Processes, root: Path, password: str, quirk: str) -> FtpSite:
    port = free_port()
    process = processes.spawn(quirk, [sys.executable, "-c", QUIRKY_SERVER, str(root), str(port),
                                      USER, password, quirk], cwd=objectstores.REPO)
    wait_until(lambda: process.poll() is not None or _answers(port), 60,
               what=f"the {quirk} FTP server")
    assert process.poll() is None, processes.log_tail(quirk)
    return FtpSite("127.0.0.1", port, USER, password, root)


@pytest.fixture(scope="module")
def quirky_servers() -> Iterator[dict[str, FtpSite]]:
    """The "legacy" and the "impatient" server, serving one directory of their own."""
    if importlib.util.find_spec("pyftpdlib") is None:
        if objectstores.required():
            pytest.fail("the FTP test servers need pyftpdlib")
        pytest.skip("the FTP test servers need pyftpdlib")
    processes = Processes.create()
    try:
        root = processes.root / "ftp-root"
        root.mkdir()
        password = secrets.token_hex(12)
        yield {quirk: _start_quirky(processes, root, password, quirk)
               for quirk in ("legacy", "impatient")}
    finally:
        processes.stop()


def _fresh(site: FtpSite) -> Iterator[FtpSite]:
    fresh = replace(site, base=f"t-{uuid.uuid4().hex[:12]}")
    fresh.folder.mkdir()
    yield fresh
    shutil.rmtree(fresh.folder, ignore_errors=True)


@pytest.fixture
def legacy_site(quirky_servers: dict[str, FtpSite]) -> Iterator[FtpSite]:
    """A server without MLST/MLSD: stat by SIZE and MDTM, list by NLST."""
    yield from _fresh(quirky_servers["legacy"])


@pytest.fixture
def impatient_site(quirky_servers: dict[str, FtpSite]) -> Iterator[FtpSite]:
    """A server that closes control connections silent for half a second."""
    yield from _fresh(quirky_servers["impatient"])


@pytest.fixture
def stores() -> Iterator[list[Stores]]:
    """Every Stores a test opens, closed after it."""
    opened: list[Stores] = []
    yield opened
    for each in opened:
        each.close()


def _open(site: FtpSite, stores: list[Stores], credentials: dict[str, Any] | None = None,
          transfer: dict[str, int] | None = None) -> tuple[Store, str]:
    """The store for ``site`` (its own user and password, or ``credentials``) and the
    key of its test folder (ending with "/")."""
    if credentials is None:
        config = storage_config_for(site, transfer=transfer)
    else:
        mapping: dict[str, Any] = {"ftp": {f"{site.host}:{site.port}": credentials}}
        if transfer:
            mapping["transfer"] = transfer
        config = StorageConfig.from_mapping(mapping)
    opened = Stores(config)
    stores.append(opened)
    store, location = opened.resolve(f"{site.url}/{site.base}/x")
    assert location.key == f"{site.base}/x"
    return store, f"{site.base}/"


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _leftovers(site: FtpSite) -> list[str]:
    """Temporary files left in the test's folder."""
    return sorted(str(path.relative_to(site.root)) for path in site.folder.rglob("*.part-*"))


def _round_trip(store: Store, folder: str, tmp_path: Path) -> None:
    """Upload a nested tree, then stat, list, download and read it back."""
    contents = {
        "a.txt": b"alpha\n",
        "sub/b.bin": os.urandom(3 * BLOCK + 17),
        "sub/deeper/c.txt": b"",
        "sub-x.txt": b"dash sorts before slash",
        "subway.txt": b"w",
    }
    for name, data in contents.items():
        moved: list[int] = []
        store.upload(_write(tmp_path, "source", data), folder + name, moved.append)
        assert sum(moved) == len(data)
    before = time.time()
    for name, data in contents.items():
        entry = store.stat(folder + name)
        assert entry is not None and entry.key == folder + name and entry.size == len(data)
        assert entry.version and entry.version.endswith(f"-{len(data)}")
        assert entry.modified is not None and abs(entry.modified - before) < 120
    assert [e.key for e in store.list(folder)] == sorted(folder + name for name in contents)
    assert [e.key for e in store.list(folder + "sub")] == [
        folder + "sub-x.txt", folder + "sub/b.bin", folder + "sub/deeper/c.txt",
        folder + "subway.txt"]
    assert [e.key for e in store.list(folder + "sub/")] == [
        folder + "sub/b.bin", folder + "sub/deeper/c.txt"]
    assert [(e.key, e.size) for e in store.list(folder + "sub/b")] == [
        (folder + "sub/b.bin", len(contents["sub/b.bin"]))]
    assert store.stat(folder + "sub") is None  # a folder is not a file
    for name, data in contents.items():
        entry = store.stat(folder + name)
        assert entry is not None
        moved = []
        store.download(entry, tmp_path / "target", moved.append)
        assert (tmp_path / "target").read_bytes() == data and sum(moved) == len(data)
    with store.read(folder + "sub/b.bin", BLOCK - 3, 2 * BLOCK + 5) as stream:
        assert stream.read() == contents["sub/b.bin"][BLOCK - 3:2 * BLOCK + 5]


def test_round_trip_makes_folders_and_leaves_no_temporary_file(
        ftp_site: FtpSite, stores: list[Stores], tmp_path: Path) -> None:
    store, folder = _open(ftp_site, stores)
    assert store.scheme == "ftp" and store.root == f"{ftp_site.host}:{ftp_site.port}"
    _round_trip(store, folder, tmp_path)
    served = ftp_site.folder
    assert (served / "sub" / "deeper" / "c.txt").is_file()
    assert (served / "a.txt").read_bytes() == b"alpha\n"
    assert _leftovers(ftp_site) == []
    store.delete(folder + "a.txt")
    assert store.stat(folder + "a.txt") is None and not (served / "a.txt").exists()
    store.close()  # closes its connections; a later call opens new ones
    assert store.stat(folder + "subway.txt") is not None


def test_legacy_server_without_mlst(legacy_site: FtpSite, stores: list[Stores],
                                    tmp_path: Path) -> None:
    store, folder = _open(legacy_site, stores)
    _round_trip(store, folder, tmp_path)
    assert _leftovers(legacy_site) == []


def test_readers_never_see_an_upload_before_it_is_complete(
        ftp_site: FtpSite, stores: list[Stores], tmp_path: Path) -> None:
    store, folder = _open(ftp_site, stores)
    reader, _ = _open(ftp_site, stores)
    key, data = folder + "big.bin", os.urandom(4 * BLOCK)
    store.put_bytes(folder + "other.txt", b"there before")
    seen: list[tuple[Entry | None, list[str]]] = []

    def look(_: int) -> None:  # runs while the upload is under way
        seen.append((reader.stat(key), [entry.key for entry in reader.list(folder)]))

    store.upload(_write(tmp_path, "big.bin", data), key, look)
    assert len(seen) >= 4
    assert all(entry is None and keys == [folder + "other.txt"] for entry, keys in seen)
    entry = reader.stat(key)
    assert entry is not None and entry.size == len(data)
    assert (ftp_site.root / key).read_bytes() == data


class Interrupted(Exception):
    pass


class Cancelled(TransientError):
    """Ours, though of a kind the store retries when its server raises it."""


def test_an_interrupted_upload_leaves_nothing_behind(
        ftp_site: FtpSite, stores: list[Stores], tmp_path: Path) -> None:
    store, folder = _open(ftp_site, stores)
    raised = Interrupted("stop here")
    calls: list[int] = []

    def interrupt(size: int) -> None:
        calls.append(size)
        if len(calls) == 2:
            raise raised

    source = _write(tmp_path, "big.bin", os.urandom(4 * BLOCK))
    with pytest.raises(Interrupted) as caught:
        store.upload(source, folder + "new/big.bin", interrupt)
    assert caught.value is raised and len(calls) == 2  # ours, unchanged, not retried
    assert list(store.list(folder)) == [] and store.stat(folder + "new/big.bin") is None
    assert _leftovers(ftp_site) == []
    # over an existing file, an interrupted upload leaves the old one whole
    store.put_bytes(folder + "kept.txt", b"old content")
    calls.clear()
    with pytest.raises(Interrupted):
        store.upload(source, folder + "kept.txt", interrupt)
    assert (ftp_site.folder / "kept.txt").read_bytes() == b"old content"
    assert [e.key for e in store.list(folder)] == [folder + "kept.txt"]
    assert _leftovers(ftp_site) == []
    # a failure of ours is never retried, whatever its kind
    cancelled = Cancelled("the task was cancelled")

    def cancel(_: int) -> None:
        calls.append(0)
        raise cancelled

    calls.clear()
    with pytest.raises(Cancelled) as stopped:
        store.upload(source, folder + "kept.txt", cancel)
    assert stopped.value is cancelled and calls == [0]
    assert _leftovers(ftp_site) == []
    # and a download whose progress callback fails raises that failure, unchanged
    entry = store.stat(folder + "kept.txt")
    assert entry is not None

    def fail(_: int) -> None:
        raise raised

    with pytest.raises(Interrupted) as caught:
        store.download(entry, tmp_path / "target", fail)
    assert caught.value is raised


def test_put_bytes_if_absent(ftp_site: FtpSite, stores: list[Stores]) -> None:
    store, folder = _open(ftp_site, stores)
    key = folder + "deep/lock.json"
    assert store.put_bytes(key, b"first", if_absent=True) is True
    assert store.put_bytes(key, b"second", if_absent=True) is False
    assert (ftp_site.root / key).read_bytes() == b"first"
    assert store.put_bytes(key, b"third") is True
    assert (ftp_site.root / key).read_bytes() == b"third"
    assert _leftovers(ftp_site) == []


def test_read_ranges(ftp_site: FtpSite, stores: list[Stores]) -> None:
    store, folder = _open(ftp_site, stores, transfer={"concurrency": 1})
    key, data = folder + "data.bin", os.urandom(3 * BLOCK + 1000)
    store.put_bytes(key, data)
    size = len(data)
    ranges = [(0, None), (10, 20), (BLOCK - 1, 2 * BLOCK + 1), (size - 3, None),
              (size - 10, size + 100), (0, size), (7, 7), (9, 3)]
    for start, end in ranges:
        with store.read(key, start, end) as stream:
            assert stream.read() == data[start:end], (start, end)
    for _ in range(5):  # closing a stream early gives its connection up cleanly
        stream = store.read(key, 100)
        assert stream.read(50) == data[100:150]
        stream.close()
    with store.read(key, 5, 5 + BLOCK) as stream:
        chunks = iter(lambda: stream.read(1000), b"")
        assert b"".join(chunks) == data[5:5 + BLOCK]
    assert store.stat(key) is not None
    with pytest.raises(NotFoundError):
        store.read(folder + "missing.bin")


def test_missing_files(ftp_site: FtpSite, stores: list[Stores], tmp_path: Path) -> None:
    store, folder = _open(ftp_site, stores)
    key = folder + "nothing/here.txt"
    assert store.stat(key) is None
    assert list(store.list(folder)) == []
    with pytest.raises(NotFoundError) as caught:
        store.download(Entry(key, 3), tmp_path / "target", no_progress)
    assert f"ftp://{ftp_site.host}:{ftp_site.port}/{key}" in str(caught.value)
    store.delete(key)  # no error


def test_a_download_shorter_than_listed_is_a_checksum_mismatch(
        ftp_site: FtpSite, stores: list[Stores], tmp_path: Path) -> None:
    store, folder = _open(ftp_site, stores, transfer={"attempts": 2})
    store.put_bytes(folder + "f.txt", b"12345")
    with pytest.raises(ChecksumMismatch) as caught:
        store.download(Entry(folder + "f.txt", 6), tmp_path / "target", no_progress)
    assert "received 5 bytes where 6 were expected" in str(caught.value)
    assert f"ftp://{ftp_site.host}:{ftp_site.port}/{folder}f.txt" in str(caught.value)


def test_an_unreachable_server_is_a_transient_error(stores: list[Stores]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site = FtpSite("127.0.0.1", port, USER, "a-Pa55word", Path("/nonexistent"), base="base")
    store, folder = _open(site, stores, transfer={"attempts": 1})
    with pytest.raises(TransientError) as caught:
        store.stat(folder + "f.txt")
    assert f"ftp://127.0.0.1:{port}/base/f.txt" in str(caught.value)
    assert "a-Pa55word" not in str(caught.value)


def test_wrong_password_is_access_denied_without_the_password(
        ftp_site: FtpSite, stores: list[Stores]) -> None:
    secret = "not-the-Pa55word"
    store, folder = _open(ftp_site, stores, credentials={"user": USER, "password": secret})
    with pytest.raises(AccessDenied) as caught:
        store.stat(folder + "file.txt")
    message = str(caught.value)
    assert f"ftp://{ftp_site.host}:{ftp_site.port}/{folder}file.txt" in message
    assert "530" in message and secret not in message and ftp_site.password not in message


def test_ftps_round_trip(ftps_site: FtpSite, stores: list[Stores], tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    assert ftps_site.cafile is not None
    monkeypatch.setenv("SSL_CERT_FILE", str(ftps_site.cafile))
    store, folder = _open(ftps_site, stores)
    assert store.scheme == "ftps"
    _round_trip(store, folder, tmp_path)
    assert _leftovers(ftps_site) == []


def test_ftps_refuses_an_untrusted_certificate(
        ftps_site: FtpSite, stores: list[Stores], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", os.devnull)
    store, folder = _open(ftps_site, stores)
    with pytest.raises(StorageError) as caught:
        store.stat(folder + "file.txt")
    assert not isinstance(caught.value, TransientError)  # not worth trying again
    assert "certificate" in str(caught.value) and "ftps://" in str(caught.value)


def test_credentials_from_netrc(ftp_site: FtpSite, stores: list[Stores], tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    netrc = home / ".netrc"
    netrc.write_text(f"machine {ftp_site.host} login {ftp_site.user} password {ftp_site.password}\n")
    netrc.chmod(0o600)
    store, folder = _open(ftp_site, stores, credentials={})
    assert store.put_bytes(folder + "via-netrc.txt", b"hello") is True
    assert (ftp_site.folder / "via-netrc.txt").read_bytes() == b"hello"
    # readable by others: refused (as ftp and curl do), without quoting the file
    netrc.chmod(0o644)
    with pytest.raises(StorageError) as caught:
        _open(ftp_site, stores, credentials={})
    assert "permissive" in str(caught.value) and ftp_site.password not in str(caught.value)
    # none at all: anonymous, which this server refuses
    netrc.unlink()
    store, folder = _open(ftp_site, stores, credentials={})
    with pytest.raises(AccessDenied):
        store.stat(folder + "via-netrc.txt")


def test_connections_dropped_underneath_are_reopened(
        ftp_site: FtpSite, stores: list[Stores]) -> None:
    # one attempt only: the store's own retries cannot hide a failure here
    store, folder = _open(ftp_site, stores, transfer={"attempts": 1})
    store.put_bytes(folder + "f.txt", b"data")
    idle = list(store._pool._idle)  # type: ignore[attr-defined]
    assert idle
    for conn in idle:
        conn.sock.shutdown(socket.SHUT_RDWR)
    entry = store.stat(folder + "f.txt")
    assert entry is not None and entry.size == 4
    assert all(conn not in store._pool._idle for conn in idle)  # type: ignore[attr-defined]


def test_connections_the_server_closed_while_idle_are_reopened(
        impatient_site: FtpSite, stores: list[Stores], tmp_path: Path) -> None:
    store, folder = _open(impatient_site, stores, transfer={"attempts": 1, "concurrency": 2})
    store.put_bytes(folder + "f.txt", b"data")
    time.sleep(0.8)  # the server times the idle connection out
    assert [e.key for e in store.list(folder)] == [folder + "f.txt"]
    time.sleep(0.8)
    store.upload(_write(tmp_path, "g.txt", b"more"), folder + "g.txt", no_progress)
    time.sleep(0.8)
    with store.read(folder + "g.txt") as stream:
        assert stream.read() == b"more"


def test_threads_share_one_store(ftp_site: FtpSite, stores: list[Stores],
                                 tmp_path: Path) -> None:
    store, folder = _open(ftp_site, stores, transfer={"concurrency": 3})
    failures: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for index in range(6):
                key, data = f"{folder}w{worker}/{index}.bin", os.urandom(1000 + index)
                store.put_bytes(key, data)
                entry = store.stat(key)
                assert entry is not None
                target = tmp_path / f"{worker}-{index}"
                store.download(entry, target, no_progress)
                assert target.read_bytes() == data
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert len(list(store.list(folder))) == 36
