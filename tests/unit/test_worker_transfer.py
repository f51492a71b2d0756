"""Worker data transfers without a scitq_bench server: file:// and http:// fetches,
archive actions and their safety, merging, uploads to file://, deadlines."""

from __future__ import annotations

import gzip
import io
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from scitq_bench.bench.archives import ArchiveLimits
from scitq_bench.client.worker import transfer
from scitq_bench.client.worker.transfer import (
    Aborted,
    Deadline,
    DownloadTimedOut,
    TransferError,
    fetch,
    merge_tree,
    redact,
    upload,
)
from tests.support.archives import lie_about_size, tar_of, zip_bomb, zip_of, zip_with_symlink


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "file.txt").write_text("file\n")
    (root / "dir" / "a.txt").write_text("a\n")
    (root / "dir" / "sub" / "b.txt").write_text("b\n")
    return root


def test_fetch_local_file_and_folders(tmp_path, source):
    dest = tmp_path / "dest"
    fetch(None, f"file://{source}/file.txt", dest)  # type: ignore[arg-type]
    fetch(None, f"file://{source}/dir", dest)  # type: ignore[arg-type]
    fetch(None, f"file://{source}/dir/", dest / "contents")  # type: ignore[arg-type]
    assert _tree(dest) == ["contents/a.txt", "contents/sub/b.txt", "dir/a.txt",
                           "dir/sub/b.txt", "file.txt"]
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]  # staging removed


def test_fetch_missing_local_file(tmp_path):
    with pytest.raises(TransferError, match="no such file"):
        fetch(None, f"file://{tmp_path}/absent", tmp_path / "dest")  # type: ignore[arg-type]
    assert list((tmp_path / "dest").iterdir()) == []


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "w"])
def test_untar_any_compression(tmp_path, mode):
    archive = _tar(tmp_path / "pack.tar", {"pack/x.txt": b"x", "y.txt": b"y"}, mode)
    fetch(None, f"file://{archive}|untar", tmp_path / "dest")  # type: ignore[arg-type]
    assert _tree(tmp_path / "dest") == ["pack/x.txt", "y.txt"]


def test_untar_refuses_escaping_members(tmp_path):
    archive = _tar(tmp_path / "evil.tar.gz", {"../escaped.txt": b"no"})
    with pytest.raises(TransferError, match="untar"):
        fetch(None, f"file://{archive}|untar", tmp_path / "dest")  # type: ignore[arg-type]
    assert not (tmp_path / "escaped.txt").exists()
    absolute = _tar(tmp_path / "abs.tar", {"/tmp/absolute-evil.txt": b"no"}, "w")
    dest = tmp_path / "dest2"
    try:
        fetch(None, f"file://{absolute}|untar", dest)  # type: ignore[arg-type]
    except TransferError:
        pass
    assert not Path("/tmp/absolute-evil.txt").exists()


def test_untar_refuses_links_out(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(TransferError):
        fetch(None, f"file://{archive}|untar", tmp_path / "dest")  # type: ignore[arg-type]


def test_untar_not_an_archive(tmp_path):
    bogus = tmp_path / "bogus.tar"
    bogus.write_text("not a tar")
    with pytest.raises(TransferError, match="not a readable tar archive"):
        fetch(None, f"file://{bogus}|untar", tmp_path / "dest")  # type: ignore[arg-type]


def test_gunzip(tmp_path):
    (tmp_path / "t.tsv.gz").write_bytes(gzip.compress(b"k\tv\n"))
    (tmp_path / "a.tgz").write_bytes(gzip.compress(b"tar"))
    dest = tmp_path / "dest"
    fetch(None, f"file://{tmp_path}/t.tsv.gz|gunzip", dest)  # type: ignore[arg-type]
    fetch(None, f"file://{tmp_path}/a.tgz|gunzip", dest)  # type: ignore[arg-type]
    assert _tree(dest) == ["a.tar", "t.tsv"]
    assert (dest / "t.tsv").read_bytes() == b"k\tv\n"
    (tmp_path / "bad.gz").write_bytes(b"plain")
    with pytest.raises(TransferError, match="gunzip"):
        fetch(None, f"file://{tmp_path}/bad.gz|gunzip", dest)  # type: ignore[arg-type]


def test_unzip_and_its_safety(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as archive:
        archive.writestr("z/one.txt", "1")
    fetch(None, f"file://{good}|unzip", tmp_path / "dest")  # type: ignore[arg-type]
    assert _tree(tmp_path / "dest") == ["z/one.txt"]
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../../zip-escaped.txt", "no")
    with pytest.raises(TransferError, match=r"unzip: evil.zip: entry '../../zip-escaped.txt' "
                       r"goes outside the archive"):
        fetch(None, f"file://{evil}|unzip", tmp_path / "dest2")  # type: ignore[arg-type]
    assert not (tmp_path / "zip-escaped.txt").exists()


def test_actions_chain_with_mv(tmp_path):
    archive = _tar(tmp_path / "db.tar.gz", {"index.bin": b"i"})
    dest = tmp_path / "dest"
    fetch(None, f"file://{archive}|untar|mv:db/v1", dest)  # type: ignore[arg-type]
    fetch(None, f"file://{tmp_path}/db.tar.gz|mv:raw", dest)  # type: ignore[arg-type]
    assert _tree(dest) == ["db/v1/index.bin", "raw/db.tar.gz"]


def test_merge_tree_replaces_and_merges(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "d").mkdir(parents=True)
    (src / "d" / "new.txt").write_text("new")
    (src / "f.txt").write_text("fresh")
    (src / "was_dir").write_text("now a file")
    (dst / "d").mkdir(parents=True)
    (dst / "d" / "old.txt").write_text("old")
    (dst / "f.txt").write_text("stale")
    (dst / "was_dir").mkdir()
    merge_tree(src, dst)
    assert _tree(dst) == ["d/new.txt", "d/old.txt", "f.txt", "was_dir"]
    assert (dst / "f.txt").read_text() == "fresh"


def test_upload_to_file_uri(tmp_path):
    out = tmp_path / "output"
    (out / "sub").mkdir(parents=True)
    (out / "r.txt").write_text("r")
    (out / "sub" / "s.txt").write_text("s")
    target = tmp_path / "results" / "run"
    assert upload(None, out, f"file://{target}/") == ["r.txt", "sub/s.txt"]  # type: ignore[arg-type]
    assert _tree(target) == ["r.txt", "sub/s.txt"]
    assert upload(None, tmp_path / "empty", f"file://{target}") == []  # type: ignore[arg-type]


def test_deadline_and_abort():
    Deadline(None).check()
    with pytest.raises(DownloadTimedOut, match="download timed out after 0.01 s"):
        deadline = Deadline(0.01)
        time.sleep(0.02)  # past the deadline
        deadline.check()
    with pytest.raises(Aborted):
        Deadline(10, lambda: True).check()
    assert Deadline(5).timeout(60) <= 5
    assert Deadline(None).timeout(60) == 60


def test_redact_hides_credentials():
    assert redact("https://user:pw@host/p/f.gz?sig=secret") == "https://host/p/f.gz"


class _Slow(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/ok.txt":
            body = b"payload"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path == "/missing":
            self.send_error(404)
            return
        if self.path == "/stalled.bin":  # headers, then silence: the socket read times out
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.flush()
            time.sleep(3)
            return
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        for _ in range(50):
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.1)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_fetch_errors_and_timeout(tmp_path, http_url):
    fetch(None, f"{http_url}/ok.txt", tmp_path / "d")  # type: ignore[arg-type]
    assert (tmp_path / "d" / "ok.txt").read_bytes() == b"payload"
    with pytest.raises(TransferError, match="HTTP 404"):
        fetch(None, f"{http_url}/missing", tmp_path / "d")  # type: ignore[arg-type]
    with pytest.raises(TransferError, match="folder over http"):
        fetch(None, f"{http_url}/dir/", tmp_path / "d")  # type: ignore[arg-type]
    began = time.monotonic()
    with pytest.raises(DownloadTimedOut):
        fetch(None, f"{http_url}/trickle.bin", tmp_path / "d", Deadline(0.4))  # type: ignore[arg-type]
    assert time.monotonic() - began < 2
    assert _tree(tmp_path / "d") == ["ok.txt"]


def test_a_stalled_body_at_the_deadline_is_a_timeout_not_a_crash(tmp_path, http_url):
    """The socket read timeout is the deadline's remainder; when it fires mid-body it
    must read as the download's timeout, not escape as a raw urllib3 error."""
    with pytest.raises(DownloadTimedOut, match="download timed out after 0.3 s"):
        fetch(None, f"{http_url}/stalled.bin", tmp_path / "d", Deadline(0.3))  # type: ignore[arg-type]
    assert not (tmp_path / "d").exists() or _tree(tmp_path / "d") == []


def test_upload_to_http_puts_each_file(tmp_path):
    import http.server
    import threading

    received: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self):  # noqa: N802 - the http.server API
            length = int(self.headers.get("Content-Length", 0))
            received[self.path] = self.rfile.read(length)
            self.send_response(403 if "forbidden" in self.path else 201)
            self.end_headers()

        def log_message(self, *args):  # keep the test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = tmp_path / "output"
        (out / "sub").mkdir(parents=True)
        (out / "scores.json").write_text('{"acc": 1}')
        (out / "sub" / "a b.txt").write_text("x")
        base = f"http://127.0.0.1:{server.server_port}/results/run1/"
        files = transfer.upload(None, out, base)  # type: ignore[arg-type]
        assert sorted(files) == ["scores.json", "sub/a b.txt"]
        assert received == {"/results/run1/scores.json": b'{"acc": 1}',
                            "/results/run1/sub/a%20b.txt": b"x"}
        with pytest.raises(TransferError, match="HTTP 403"):
            transfer.upload(None, out, f"http://127.0.0.1:{server.server_port}/forbidden/")  # type: ignore[arg-type]
    finally:
        server.shutdown()


# -- unpacking bounds --------------------------------------------------------------------

MIB = 1 << 20
SMALL = ArchiveLimits(max_bytes=MIB, max_files=10, max_file_bytes=MIB)


def _fetch_refused(tmp_path: Path, name: str, data: bytes, action: str,
                   limits: ArchiveLimits = SMALL) -> str:
    """Fetch ``data`` (saved as ``name``) with ``action``; returns the refusal and checks
    nothing was left in the destination."""
    source = tmp_path / name
    source.write_bytes(data)
    dest = tmp_path / "dest"
    with pytest.raises(TransferError) as caught:
        fetch(None, f"file://{source}|{action}", dest, limits=limits)  # type: ignore[arg-type]
    assert list(dest.iterdir()) == []
    return str(caught.value)


def test_unzip_stops_a_bomb_whose_header_lies(tmp_path):
    # the header says 10 bytes: only counting the bytes written stops it
    bomb = lie_about_size(zip_bomb("zeros.bin", 3 * MIB), "zeros.bin", 10)
    assert _fetch_refused(tmp_path, "bomb.zip", bomb, "unzip") == (
        "unzip: bomb.zip: 'zeros.bin' holds more than the 10 bytes its header says")


def test_unzip_bounds_the_total_and_the_file_count(tmp_path):
    halves = zip_of({"a": b"a" * (MIB // 2), "b": b"b" * (MIB // 2 + 1)})
    assert _fetch_refused(tmp_path, "two.zip", halves, "unzip") == (
        f"unzip: two.zip: too big ({MIB + 1} bytes uncompressed; at most {MIB} allowed)")
    many = zip_of({f"f{i}.txt": b"" for i in range(11)})
    assert _fetch_refused(tmp_path, "many.zip", many, "unzip") == (
        "unzip: many.zip: too many files (11 entries; at most 10 allowed)")


def test_unzip_refuses_symlinks_and_keeps_the_execute_bit(tmp_path):
    link = zip_with_symlink("link", "/etc/passwd")
    assert _fetch_refused(tmp_path, "link.zip", link, "unzip") == (
        "unzip: link.zip: entry 'link' is a symbolic link")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("run.sh")
        info.external_attr = 0o100755 << 16
        archive.writestr(info, "#!/bin/sh\n")
    (tmp_path / "run.zip").write_bytes(buffer.getvalue())
    fetch(None, f"file://{tmp_path}/run.zip|unzip", tmp_path / "ok")  # type: ignore[arg-type]
    assert (tmp_path / "ok" / "run.sh").stat().st_mode & 0o111


def test_untar_bounds_bytes_and_entries(tmp_path):
    # 3 MiB of zeros: a few kilobytes on disk
    big = _tar(tmp_path / "big.tar.gz", {"zeros.bin": b"\0" * (3 * MIB)})
    assert big.stat().st_size < 10_000
    assert _fetch_refused(tmp_path, "bomb.tar.gz", big.read_bytes(), "untar") == (
        f"untar: bomb.tar.gz: 'zeros.bin' is too big (more than {MIB} bytes uncompressed)")
    many = tar_of({f"f{i}.txt": b"" for i in range(11)})
    assert _fetch_refused(tmp_path, "many.tar.gz", many, "untar") == (
        "untar: many.tar.gz: too many files (more than 10 entries)")


def test_untar_links_stay_inside_and_nothing_is_written_through_them(tmp_path):
    fine = tar_of({"lib.so.1": b"elf", "lib.so": (b"", "lib.so.1"), "d/up": (b"", "../lib.so")})
    (tmp_path / "fine.tar.gz").write_bytes(fine)
    dest = tmp_path / "ok"
    fetch(None, f"file://{tmp_path}/fine.tar.gz|untar", dest)  # type: ignore[arg-type]
    assert (dest / "lib.so").is_symlink() and (dest / "lib.so").read_bytes() == b"elf"
    assert (dest / "d" / "up").read_bytes() == b"elf"
    # each link alone stays inside; followed one after the other they climb out
    chain = tar_of({"here": (b"", "."), "out": (b"", "here/here/../..")})
    assert _fetch_refused(tmp_path, "chain.tar.gz", chain, "untar") == (
        "untar: chain.tar.gz: entry 'out' is a symbolic link pointing outside the archive")
    # a file under a link is written in a real folder, never through the link
    outside = tmp_path / "outside"
    outside.mkdir()
    through = tar_of({"sub": (b"", str(outside)), "sub/evil.txt": b"no"})
    assert "untar: through.tar.gz:" in _fetch_refused(tmp_path, "through.tar.gz", through,
                                                      "untar")
    assert list(outside.iterdir()) == []
    up = tar_of({"up": (b"", "../../etc")})
    assert _fetch_refused(tmp_path, "up.tar.gz", up, "untar") == (
        "untar: up.tar.gz: entry 'up' is a symbolic link pointing outside the archive "
        "('../../etc')")


def test_gunzip_stops_at_the_bound(tmp_path):
    bomb = gzip.compress(b"\0" * (3 * MIB))
    assert _fetch_refused(tmp_path, "zeros.bin.gz", bomb, "gunzip") == (
        f"gunzip: zeros.bin.gz: 'zeros.bin' is too big (more than {MIB} bytes uncompressed)")
