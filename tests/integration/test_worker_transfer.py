"""Inputs, resources and outputs moved by the worker agent, against the real server
(SQLite and PostgreSQL) and a local HTTP server."""

from __future__ import annotations

import functools
import gzip
import io
import tarfile
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.archives import lie_about_size, tar_of, zip_of
from tests.support.workers import executions, finish, running_worker, stdout_of


class _Handler(SimpleHTTPRequestHandler):
    hits: Counter[str]

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        self.hits[self.path] += 1
        if self.path == "/slow.bin":
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x" * 10)
                self.wfile.flush()
                time.sleep(0.1)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[tuple[str, Path, Counter[str]]]:
    """A local HTTP server over a folder: (base URL, folder, hits per path)."""
    root = tmp_path / "http"
    root.mkdir()
    hits: Counter[str] = Counter()
    handler = functools.partial(type("H", (_Handler,), {"hits": hits}), directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root, hits
    finally:
        server.shutdown()
        server.server_close()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_inputs_from_file_server_and_http(live_server, tmp_path, http_files):
    client = live_server.client()
    base_url, http_root, _ = http_files
    local = tmp_path / "local"
    (local / "tree" / "deep").mkdir(parents=True)
    (local / "one.txt").write_text("one\n")
    (local / "tree" / "a.txt").write_text("a\n")
    (local / "tree" / "deep" / "b.txt").write_text("b\n")
    client.file_put("data/two.txt", b"two\n")
    client.file_put("data/set/x.txt", b"x\n")
    client.file_put("data/set/sub/y.txt", b"y\n")
    (http_root / "three.txt").write_text("three\n")
    inputs = [
        f"file://{local}/one.txt", f"file://{local}/tree", f"file://{local}/tree/",
        "server://data/two.txt", "server://data/set", "server://data/set/",
        f"{base_url}/three.txt",
    ]
    with running_worker(live_server, tmp_path):
        task = client.task_create("cd $INPUT && find . -type f | sort && cat one.txt two.txt "
                                  "three.txt", shell=True, inputs=inputs)
        done = finish(client, [task])[0]
    assert done["status"] == "succeeded", executions(client, task["id"])
    listing = stdout_of(client, task).decode().splitlines()
    assert listing[:-3] == sorted([
        "./one.txt", "./tree/a.txt", "./tree/deep/b.txt", "./a.txt", "./deep/b.txt",
        "./two.txt", "./set/x.txt", "./set/sub/y.txt", "./x.txt", "./sub/y.txt", "./three.txt",
    ])
    assert listing[-3:] == ["one", "two", "three"]
    statuses = [e["status"] for e in executions(client, task["id"])]
    assert statuses == ["succeeded"]


def test_resource_actions_and_single_fetch(live_server, tmp_path, http_files):
    client = live_server.client()
    base_url, http_root, hits = http_files
    (http_root / "ref.tar.gz").write_bytes(_tar_gz({"ref/genome.fa": b">chr1\nACGT\n"}))
    (http_root / "table.tsv.gz").write_bytes(gzip.compress(b"k\tv\n"))
    (http_root / "bundle.zip").write_bytes(_zip({"bundle/readme.txt": b"zipped\n"}))
    (http_root / "tool.sh").write_text("echo tool\n")
    resources = [
        f"{base_url}/ref.tar.gz|untar", f"{base_url}/table.tsv.gz|gunzip",
        f"{base_url}/bundle.zip|unzip", f"{base_url}/tool.sh|mv:bin",
    ]
    command = ("cat $RESOURCE/ref/genome.fa $RESOURCE/table.tsv $RESOURCE/bundle/readme.txt "
               "&& sh $RESOURCE/bin/tool.sh && ls $RESOURCE | sort | tr '\\n' ' '")
    with running_worker(live_server, tmp_path, concurrency=2):
        tasks = client.tasks_create([{"command": command, "shell": True, "resources": resources}
                                     for _ in range(2)])
        done = finish(client, tasks)
    assert [t["status"] for t in done] == ["succeeded", "succeeded"], \
        [executions(client, t["id"]) for t in tasks]
    expected = b">chr1\nACGT\nk\tv\nzipped\ntool\nbin bundle ref table.tsv "
    assert [stdout_of(client, t) for t in tasks] == [expected, expected]
    assert [hits[f"/{name}"] for name in ("ref.tar.gz", "table.tsv.gz", "bundle.zip",
                                           "tool.sh")] == [1, 1, 1, 1]
    assert [e["status"] for e in executions(client, tasks[0]["id"])] == ["succeeded"]


def test_outputs_uploaded(live_server, tmp_path):
    client = live_server.client()
    target = tmp_path / "results"
    with running_worker(live_server, tmp_path):
        to_server = client.task_create(
            "mkdir -p $OUTPUT/sub && echo r > $OUTPUT/result.txt && echo s > $OUTPUT/sub/s.txt",
            shell=True, output="server://results/run1/")
        to_file = client.task_create("echo f > $OUTPUT/f.txt; exit 4", shell=True,
                                     output=f"file://{target}")
        done = finish(client, [to_server, to_file])
    assert [t["status"] for t in done] == ["succeeded", "failed"]
    stored = sorted(f["path"] for f in client.file_list("results/run1"))
    assert stored == ["results/run1/result.txt", "results/run1/sub/s.txt"]
    execution = executions(client, to_server["id"])[-1]
    assert sorted(execution["output_files"]) == ["result.txt", "sub/s.txt"]
    assert (target / "f.txt").read_text() == "f\n"  # uploaded although the task failed
    assert executions(client, to_file["id"])[-1]["output_files"] == ["f.txt"]


def test_bad_download_fails_with_error(live_server, tmp_path, http_files):
    client = live_server.client()
    base_url, _, _ = http_files
    with running_worker(live_server, tmp_path):
        missing = client.task_create("true", inputs=[f"{base_url}/missing.txt"])
        local = client.task_create("true", inputs=[f"file://{tmp_path}/nothing-here"])
        store = client.task_create("true", resources=["server://no/such/file"])
        done = finish(client, [missing, local, store])
    assert [t["status"] for t in done] == ["failed"] * 3
    errors = [executions(client, t["id"])[-1]["error"] for t in (missing, local, store)]
    assert "download failed" in errors[0] and "404" in errors[0]
    assert "no such file" in errors[1]
    assert "server://no/such/file" in errors[2]


def test_download_timeout(live_server, tmp_path, http_files):
    client = live_server.client()
    base_url, _, _ = http_files
    with running_worker(live_server, tmp_path):
        task = client.task_create("true", inputs=[f"{base_url}/slow.bin"], download_timeout=0.5)
        began = time.monotonic()
        done = finish(client, [task])[0]
        took = time.monotonic() - began
    assert done["status"] == "failed"
    execution = executions(client, task["id"])[-1]
    assert execution["status"] == "timeout"
    assert "download timed out" in execution["error"]
    assert took < 5, took


def test_unsafe_archives_fail_the_execution_naming_the_archive(live_server, tmp_path):
    client = live_server.client()
    (tmp_path / "evil.zip").write_bytes(zip_of({"../evil.txt": b"no"}))
    (tmp_path / "link.tar.gz").write_bytes(tar_of({"up": (b"", "../../../etc")}))
    (tmp_path / "liar.zip").write_bytes(
        lie_about_size(zip_of({"a.txt": b"a" * 5000}), "a.txt", 10))
    with running_worker(live_server, tmp_path):
        tasks = [client.task_create("true", inputs=[f"file://{tmp_path}/{name}|{action}"])
                 for name, action in (("evil.zip", "unzip"), ("link.tar.gz", "untar"),
                                      ("liar.zip", "unzip"))]
        done = finish(client, tasks)
    assert [t["status"] for t in done] == ["failed"] * 3
    errors = [executions(client, t["id"])[-1]["error"] for t in tasks]
    assert errors == [
        "download failed: unzip: evil.zip: entry '../evil.txt' goes outside the archive ('..')",
        "download failed: untar: link.tar.gz: entry 'up' is a symbolic link pointing outside "
        "the archive ('../../../etc')",
        "download failed: unzip: liar.zip: 'a.txt' holds more than the 10 bytes its header "
        "says",
    ]
    assert not list(tmp_path.rglob("evil.txt"))
