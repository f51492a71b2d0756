"""``scitq-bench files`` through click's runner and the installed command, on real
stores: the local file system, a live server (server://), moto's S3 server, Azurite,
an FTP server and a local HTTP server (to read). Copies land whole and checked, sync
moves only what differs, errors are one line naming the URI, and nothing half-written
is ever left behind."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import pty
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from scitq_bench.cli.main import cli
from scitq_bench.client.files import Files
from scitq_bench.storage.config import StorageConfig
from scitq_bench.storage.locations import MANIFEST
from tests.conftest import LiveServer
from tests.support.cli import Invoke, as_json, fails, ok
from tests.support.objectstores import AzureContainer, FtpSite

SCRIPT = Path(sys.executable).with_name("scitq-bench")
ROW_KEYS = {"path", "size", "modified", "version", "sha256"}
TREE = {"a.txt": b"alpha\n", "sub/b.txt": b"bravo bravo\n",
        "sub/deeper/c.bin": bytes(range(256)) * 64}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The live server on SQLite only: what these tests exercise is the file store,
    which is the same on every database."""
    return f"sqlite:///{tmp_path / 'server.db'}"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No storage settings, client config or server of the machine running the tests."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc, no ~/.aws
    monkeypatch.delenv("SCITQ_BENCH_STORAGE_CONFIG", raising=False)
    monkeypatch.setenv("SCITQ_BENCH_CONFIG", str(tmp_path / "absent-client.json"))
    monkeypatch.delenv("SCITQ_BENCH_SERVER", raising=False)
    monkeypatch.delenv("SCITQ_BENCH_TOKEN", raising=False)


def files_cli(*args: Any, input: str | None = None) -> Result:
    """``scitq-bench files ARGS`` with no server options (the URIs name no server://)."""
    return CliRunner().invoke(cli, ["files", *(str(arg) for arg in args)], input=input)


def write_tree(root: Path, tree: dict[str, bytes] = TREE) -> Path:
    for relative, data in tree.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return root


def files_under(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


def leftovers(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if ".part-" in path.name]


def storage_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     data: dict[str, Any]) -> Path:
    """A storage settings file readable by its owner only, named by the environment."""
    path = tmp_path / "storage.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    monkeypatch.setenv("SCITQ_BENCH_STORAGE_CONFIG", str(path))
    return path


def settings_for(*sites: AzureContainer | FtpSite) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for site in sites:
        if isinstance(site, AzureContainer):
            data.setdefault("azure", {})[site.account] = {
                "connection_string": site.connection_string}
        else:
            data.setdefault("ftp", {})[f"{site.host}:{site.port}"] = {
                "user": site.user, "password": site.password}
    return data


def copied(result: Result) -> list[str]:
    return sorted(json.loads(ok(result).stdout)["copied"])


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The folder data/ holding TREE (away from tmp_path/data, the live server's)."""
    return write_tree(tmp_path / "input" / "data")


def local(path: Path, folder: bool = False) -> str:
    return f"file://{path}" + ("/" if folder else "")


# -- file:// -------------------------------------------------------------------------


def test_a_folder_copies_as_its_contents_or_as_itself(tree: Path, tmp_path: Path) -> None:
    result = ok(files_cli("copy", local(tree, folder=True), local(tmp_path / "contents")))
    assert files_under(tmp_path / "contents") == TREE
    assert result.stdout == f"copied 3 file(s) (16.0 KiB) to file://{tmp_path}/contents\n"
    ok(files_cli("copy", local(tree), local(tmp_path / "itself", folder=True)))
    assert files_under(tmp_path / "itself") == {f"data/{k}": v for k, v in TREE.items()}


def test_a_file_copies_into_a_folder_or_to_a_new_name(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "existing").mkdir()
    ok(files_cli("copy", local(tree / "a.txt"), local(tmp_path / "existing")))
    ok(files_cli("copy", local(tree / "a.txt"), local(tmp_path / "new", folder=True)))
    ok(files_cli("copy", local(tree / "a.txt"), local(tmp_path / "renamed.txt")))
    assert (tmp_path / "existing" / "a.txt").read_bytes() == b"alpha\n"
    assert (tmp_path / "new" / "a.txt").read_bytes() == b"alpha\n"
    assert (tmp_path / "renamed.txt").read_bytes() == b"alpha\n"


def test_a_folder_is_not_copied_onto_a_file(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    fails(files_cli("copy", local(tree), local(tmp_path / "plain")),
          f"file://{tmp_path}/plain: is a file")
    assert (tmp_path / "plain").read_text() == "x"


def test_list_json_gives_each_file_relative_to_the_folder(tree: Path) -> None:
    rows = as_json(files_cli("list", local(tree), "--json"))
    assert [row["path"] for row in rows] == list(TREE)
    assert all(set(row) == ROW_KEYS for row in rows)
    assert [row["size"] for row in rows] == [len(data) for data in TREE.values()]
    modified = datetime.fromisoformat(rows[0]["modified"])
    assert abs(modified.timestamp() - (tree / "a.txt").stat().st_mtime) < 1
    assert as_json(files_cli("list", local(tree / "sub" / "b.txt"), "--json")) == [
        {**rows[1], "path": "b.txt"}]


def test_list_prints_a_table_with_or_without_its_header(tree: Path) -> None:
    table = ok(files_cli("list", local(tree, folder=True))).stdout.splitlines()
    assert table[0].split() == ["size", "modified", "path"]
    assert table[2].split()[0] == "12" and table[2].split()[-1] == "sub/b.txt"
    bare = ok(files_cli("list", "-H", local(tree, folder=True))).stdout.splitlines()
    assert bare == table[1:]


def test_sync_copies_only_what_differs_and_deletes_only_when_asked(
        tree: Path, tmp_path: Path) -> None:
    target = local(tmp_path / "mirror", folder=True)
    assert copied(files_cli("sync", local(tree, True), target, "--json")) == sorted(TREE)
    second = json.loads(ok(files_cli("sync", local(tree, True), target, "--json")).stdout)
    assert (second["copied"], sorted(second["skipped"])) == ([], sorted(TREE))
    (tree / "sub" / "b.txt").write_bytes(b"bravo, changed\n")
    assert copied(files_cli("sync", local(tree, True), target, "--json")) == ["sub/b.txt"]
    (tree / "a.txt").write_bytes(b"ALPHA\n")  # same size, and the mirror's copy older:
    earlier = time.time() - 10
    os.utime(tmp_path / "mirror" / "a.txt", (earlier, earlier))
    assert copied(files_cli("sync", local(tree, True), target, "--json")) == ["a.txt"]
    (tmp_path / "mirror" / "extra.txt").write_text("not in the source")
    kept = ok(files_cli("sync", local(tree, True), target))
    assert "copied 0 file(s) (0 bytes)" in kept.stdout and "3 already there" in kept.stdout
    assert (tmp_path / "mirror" / "extra.txt").exists()
    deleted = json.loads(ok(files_cli("sync", local(tree, True), target, "--delete",
                                      "--json")).stdout)
    assert deleted["deleted"] == ["extra.txt"]
    assert files_under(tmp_path / "mirror") == files_under(tree)


def test_a_dry_run_says_what_would_change_and_changes_nothing(
        tree: Path, tmp_path: Path) -> None:
    mirror = write_tree(tmp_path / "mirror", {"a.txt": TREE["a.txt"], "old.txt": b"old"})
    result = ok(files_cli("sync", "-n", "--delete", local(tree, True), local(mirror, True)))
    assert result.stdout.splitlines() == [
        "copy sub/b.txt", "copy sub/deeper/c.bin", "delete old.txt",
        f"would copy 2 file(s) (16.0 KiB) to {local(mirror, True)}, leave 1, delete 1"]
    assert files_under(mirror) == {"a.txt": TREE["a.txt"], "old.txt": b"old"}
    planned = as_json(files_cli("sync", "--dry-run", "--json", local(tree, True),
                                local(mirror, True)))
    assert planned == {"copy": ["sub/b.txt", "sub/deeper/c.bin"], "skip": ["a.txt"],
                       "delete": [], "size": 12 + 16384}


def test_delete_removes_a_file_and_a_folder_only_when_told_and_confirmed(
        tree: Path) -> None:
    ok(files_cli("delete", local(tree / "a.txt")))
    assert not (tree / "a.txt").exists()
    fails(files_cli("delete", local(tree / "sub")), f"file://{tree}/sub/: is a folder",
          "-r")
    aborted = files_cli("delete", "-r", local(tree / "sub"), input="n\n")
    assert aborted.exit_code == 1 and "and its 2 file(s)?" in aborted.output
    assert (tree / "sub" / "b.txt").exists()
    ok(files_cli("delete", "-r", local(tree / "sub"), input="y\n"))
    assert not (tree / "sub").exists()
    write_tree(tree)
    result = ok(files_cli("delete", "-r", "-y", "--json", local(tree, True)))
    assert sorted(json.loads(result.stdout)["deleted"]) == sorted(TREE)
    assert not tree.exists()


def test_cat_writes_the_exact_bytes(tree: Path) -> None:
    result = ok(files_cli("cat", local(tree / "sub" / "deeper" / "c.bin")))
    assert result.stdout_bytes == TREE["sub/deeper/c.bin"]


@pytest.mark.parametrize(("args", "fragments"), [
    (["cat", "file:///nonexistent/nothing.txt"],
     ["file:///nonexistent/nothing.txt: no such file"]),
    (["list", "file:///nonexistent/folder/"],
     ["file:///nonexistent/folder/: no such file or folder"]),
    (["copy", "file:///nonexistent/x", "file:///tmp/"],
     ["file:///nonexistent/x: no such file or folder"]),
    (["copy", "gopher://host/x", "file:///tmp/"], ["unsupported URI scheme 'gopher'"]),
    (["list", "s3://user:secret@bucket/x"], ["carries credentials"]),
    (["cat", "server://runs/x"], ["server://runs/x", "cannot reach"]),  # no server there
])
def test_errors_are_one_line_naming_the_uri(args: list[str], fragments: list[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCITQ_BENCH_SERVER", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("SCITQ_BENCH_RETRY_SECONDS", "0")
    message = fails(files_cli(*args), *fragments)
    assert "secret" not in message


def test_an_insecure_storage_settings_file_is_refused(
        tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = storage_settings(tmp_path, monkeypatch, {"transfer": {"attempts": 2}})
    path.chmod(0o644)
    fails(files_cli("list", local(tree)), f"storage settings file {path}", "chmod 600")


def test_the_installed_command_copies_and_fails_cleanly(tree: Path, tmp_path: Path) -> None:
    done = subprocess.run([str(SCRIPT), "files", "copy", local(tree, True),
                           local(tmp_path / "out")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert files_under(tmp_path / "out") == TREE
    missing = subprocess.run([str(SCRIPT), "files", "cat", local(tmp_path / "none")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"Error: file://{tmp_path}/none: no such file"


def terminal_environment() -> dict[str, str]:
    """This environment as a plain interactive terminal's (whatever CI says of its own)."""
    forced = ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CI")
    return {**{k: v for k, v in os.environ.items() if k not in forced},
            "TERM": "xterm", "COLUMNS": "120", "LINES": "40"}


def test_on_a_terminal_a_copy_shows_a_transient_progress_bar(
        tree: Path, tmp_path: Path) -> None:
    big = tree / "big.bin"
    big.write_bytes(os.urandom(24 << 20))
    main, terminal = pty.openpty()
    process = subprocess.Popen([str(SCRIPT), "files", "copy", local(tree, True),
                                local(tmp_path / "out")], stdout=terminal, stderr=terminal,
                               stdin=subprocess.DEVNULL, env=terminal_environment())
    os.close(terminal)
    shown = b""
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        try:
            chunk = os.read(main, 65536) if ready else b""
        except OSError:  # the other end closed
            chunk = b""
        if not chunk:
            break
        shown += chunk
    os.close(main)
    assert process.wait(timeout=60) == 0, shown
    text = shown.decode(errors="replace")
    assert "4 file(s)" in text and "MB" in text  # the bar: its files and bytes
    assert "copied 4 file(s) (24.0 MiB)" in text
    assert files_under(tmp_path / "out")["big.bin"] == big.read_bytes()


# -- http(s):// --------------------------------------------------------------------------


@pytest.fixture
def web(tree: Path) -> Iterator[str]:
    """``tree`` served over HTTP at the URL yielded; under /truncated/ every file
    promises 100000 bytes and sends 1000 before hanging up."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(tree), **kwargs)

        def do_HEAD(self) -> None:
            if not self.path.startswith("/truncated/"):
                super().do_HEAD()
                return
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()

        def do_GET(self) -> None:
            if not self.path.startswith("/truncated/"):
                super().do_GET()
                return
            self.do_HEAD()
            self.wfile.write(b"x" * 1000)
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_an_http_file_copies_lists_and_cats(web: str, tmp_path: Path) -> None:
    ok(files_cli("copy", f"{web}/sub/b.txt", local(tmp_path / "got", folder=True)))
    assert (tmp_path / "got" / "b.txt").read_bytes() == TREE["sub/b.txt"]
    rows = as_json(files_cli("list", "--json", f"{web}/sub/deeper/c.bin"))
    assert [(row["path"], row["size"]) for row in rows] == [("c.bin", 16384)]
    assert rows[0]["modified"] and rows[0]["version"]
    assert ok(files_cli("cat", f"{web}/a.txt")).stdout_bytes == TREE["a.txt"]
    synced = copied(files_cli("sync", "--json", f"{web}/a.txt", local(tmp_path / "got/")))
    assert synced == ["a.txt"]
    assert copied(files_cli("sync", "--json", f"{web}/a.txt", local(tmp_path / "got/"))) == []


def test_http_is_read_only_and_a_missing_url_is_named(web: str, tree: Path) -> None:
    fails(files_cli("copy", local(tree / "a.txt"), f"{web}/upload.txt"),
          f"{web}/upload.txt: http(s) is read-only here")
    fails(files_cli("delete", f"{web}/a.txt"), f"{web}/a.txt: http(s) is read-only")
    fails(files_cli("cat", f"{web}/nothing.txt"), f"{web}/nothing.txt: no such file")
    fails(files_cli("list", f"{web}/sub/"), "http(s) cannot list a folder")


def test_a_cut_download_fails_naming_the_url_and_leaves_nothing(
        web: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage_settings(tmp_path, monkeypatch, {"transfer": {"attempts": 2}})
    (tmp_path / "into").mkdir()
    fails(files_cli("copy", f"{web}/truncated/big.bin", local(tmp_path / "into")),
          f"{web}/truncated/big.bin")
    assert list((tmp_path / "into").iterdir()) == []


# -- server:// ------------------------------------------------------------------------------


def test_server_files_copy_list_cat_sync_and_delete(
        run: Invoke, live_server: LiveServer, tree: Path, tmp_path: Path) -> None:
    result = ok(run("files", "copy", local(tree), "server://runs/"))
    assert "copied 3 file(s)" in result.stdout
    rows = as_json(run("files", "list", "--json", "server://runs/data/"))
    assert [(row["path"], row["size"]) for row in rows] == [
        (path, len(data)) for path, data in TREE.items()]
    assert ok(run("files", "cat", "server://runs/data/sub/b.txt")).stdout_bytes == TREE[
        "sub/b.txt"]
    ok(run("files", "copy", "server://runs/data/", local(tmp_path / "back")))
    assert files_under(tmp_path / "back") == TREE
    assert json.loads(ok(run("files", "sync", "--json", local(tree, True),
                             "server://runs/data/")).stdout)["copied"] == []
    (tree / "a.txt").write_bytes(b"alpha, longer\n")
    assert copied(run("files", "sync", "--json", local(tree, True),
                      "server://runs/data/")) == ["a.txt"]
    assert ok(run("files", "cat", "server://runs/data/a.txt")).stdout_bytes == (
        b"alpha, longer\n")
    ok(run("files", "delete", "-r", "-y", "server://runs/data/"))
    assert live_server.client().file_list("runs") == []
    fails(run("files", "cat", "server://runs/data/a.txt"), "server://runs/data/a.txt")


def test_the_python_client_reaches_the_server_store(
        live_server: LiveServer, tree: Path) -> None:
    with Files(live_server.client(), StorageConfig()) as store:
        moved = store.copy(local(tree / "a.txt"), "server://inbox/")
        assert (moved.copied, moved.size) == (["a.txt"], 6)
        assert b"".join(store.cat("server://inbox/a.txt")) == b"alpha\n"
        assert [row["path"] for row in store.list("server://inbox/")] == ["a.txt"]
        assert store.delete("server://inbox/a.txt") == ["a.txt"]
        with pytest.raises(Exception, match="server://inbox/a.txt: no such file"):
            store.cat("server://inbox/a.txt")


# -- s3:// ---------------------------------------------------------------------------------


def s3_client() -> Any:
    import boto3

    return boto3.client("s3")  # the s3_bucket fixture's environment: moto


def s3_keys(bucket: str) -> list[str]:
    listed = s3_client().list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(item["Key"] for item in listed)


def test_s3_folders_carry_a_manifest_and_files_their_sha256(
        s3_bucket: str, tree: Path, tmp_path: Path) -> None:
    ok(files_cli("copy", local(tree, True), f"s3://{s3_bucket}/run/"))
    assert s3_keys(s3_bucket) == sorted([f"run/{key}" for key in TREE] + [f"run/{MANIFEST}"])
    body = s3_client().get_object(Bucket=s3_bucket, Key=f"run/{MANIFEST}")["Body"].read()
    assert json.loads(body)["files"] == [
        {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for path, data in TREE.items()]
    ok(files_cli("copy", local(tree / "a.txt"), f"s3://{s3_bucket}/single.txt"))
    head = s3_client().head_object(Bucket=s3_bucket, Key="single.txt")
    assert head["Metadata"]["sha256"] == hashlib.sha256(TREE["a.txt"]).hexdigest()
    rows = as_json(files_cli("list", "--json", f"s3://{s3_bucket}/run/"))
    assert [(row["path"], row["sha256"]) for row in rows] == [  # from the manifest, not in it
        (path, hashlib.sha256(data).hexdigest()) for path, data in TREE.items()]
    ok(files_cli("copy", f"s3://{s3_bucket}/run", local(tmp_path / "back")))
    assert files_under(tmp_path / "back") == {f"run/{k}": v for k, v in TREE.items()}


def test_s3_sync_copies_only_what_differs(s3_bucket: str, tree: Path) -> None:
    target = f"s3://{s3_bucket}/mirror/"
    assert copied(files_cli("sync", "--json", local(tree, True), target)) == sorted(TREE)
    assert copied(files_cli("sync", "--json", local(tree, True), target)) == []
    (tree / "sub" / "b.txt").write_bytes(b"bravo changed\n")
    assert copied(files_cli("sync", "--json", local(tree, True), target)) == ["sub/b.txt"]
    assert copied(files_cli("sync", "--json", local(tree, True), target)) == []
    manifest = json.loads(s3_client().get_object(
        Bucket=s3_bucket, Key=f"mirror/{MANIFEST}")["Body"].read())
    assert {item["path"]: item["sha256"] for item in manifest["files"]}["sub/b.txt"] == (
        hashlib.sha256(b"bravo changed\n").hexdigest())
    (tree / "a.txt").unlink()
    result = json.loads(ok(files_cli("sync", "--json", "--delete", local(tree, True),
                                     target)).stdout)
    assert result["deleted"] == ["a.txt"] and "mirror/a.txt" not in s3_keys(s3_bucket)


def test_a_file_replaced_in_an_uploaded_folder_keeps_it_downloadable(
        s3_bucket: str, tree: Path, tmp_path: Path) -> None:
    ok(files_cli("copy", local(tree, True), f"s3://{s3_bucket}/run/"))
    (tmp_path / "b.txt").write_bytes(b"a new bravo\n")
    ok(files_cli("copy", local(tmp_path / "b.txt"), f"s3://{s3_bucket}/run/sub/"))
    ok(files_cli("copy", f"s3://{s3_bucket}/run/", local(tmp_path / "back")))
    assert files_under(tmp_path / "back")["sub/b.txt"] == b"a new bravo\n"


def test_a_corrupted_s3_object_is_caught_by_the_manifest(
        s3_bucket: str, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage_settings(tmp_path, monkeypatch, {"transfer": {"attempts": 2}})
    ok(files_cli("copy", local(tree, True), f"s3://{s3_bucket}/run/"))
    s3_client().put_object(Bucket=s3_bucket, Key="run/sub/b.txt", Body=b"BRAVO BRAVO\n")
    fails(files_cli("copy", f"s3://{s3_bucket}/run/", local(tmp_path / "back")),
          f"s3://{s3_bucket}/run/sub/b.txt", "SHA-256")
    assert "sub/b.txt" not in files_under(tmp_path / "back")
    assert leftovers(tmp_path / "back") == []


def test_s3_cat_and_delete(s3_bucket: str, tree: Path) -> None:
    ok(files_cli("copy", local(tree), f"s3://{s3_bucket}/"))
    data = ok(files_cli("cat", f"s3://{s3_bucket}/data/sub/deeper/c.bin")).stdout_bytes
    assert data == TREE["sub/deeper/c.bin"]
    fails(files_cli("delete", f"s3://{s3_bucket}/data"), "is a folder")
    ok(files_cli("delete", f"s3://{s3_bucket}/data/a.txt"))
    assert "data/a.txt" not in s3_keys(s3_bucket)
    manifest = json.loads(s3_client().get_object(
        Bucket=s3_bucket, Key=f"data/{MANIFEST}")["Body"].read())
    assert [item["path"] for item in manifest["files"]] == ["sub/b.txt", "sub/deeper/c.bin"]
    ok(files_cli("delete", "-r", "-y", f"s3://{s3_bucket}/data/"))
    assert s3_keys(s3_bucket) == []


def test_s3_errors_name_the_missing_key_and_bucket(s3_bucket: str, tmp_path: Path) -> None:
    fails(files_cli("cat", f"s3://{s3_bucket}/missing.txt"),
          f"s3://{s3_bucket}/missing.txt")
    fails(files_cli("copy", f"s3://{s3_bucket}/missing.txt", local(tmp_path, True)),
          f"s3://{s3_bucket}/missing.txt")
    fails(files_cli("list", "s3://no-such-bucket-here/"), "no-such-bucket-here")
    assert list(tmp_path.glob("missing*")) == []


# -- between remote stores ---------------------------------------------------------------------


def test_a_folder_moves_between_remote_stores_through_a_local_folder(
        run: Invoke, s3_bucket: str, azure_container: AzureContainer, tree: Path,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage_settings(tmp_path, monkeypatch, settings_for(azure_container))
    ok(run("files", "copy", local(tree, True), f"s3://{s3_bucket}/run/"))
    ok(run("files", "copy", f"s3://{s3_bucket}/run", azure_container.uri()))
    ok(run("files", "copy", azure_container.uri("run/"), "server://from-azure/"))
    ok(run("files", "copy", "server://from-azure/", local(tmp_path / "back")))
    assert files_under(tmp_path / "back") == TREE
    listed = as_json(run("files", "list", "--json", azure_container.uri("run/")))
    assert [(row["path"], row["sha256"]) for row in listed] == [
        (path, hashlib.sha256(data).hexdigest()) for path, data in TREE.items()]
    assert copied(run("files", "sync", "--json", f"s3://{s3_bucket}/run/",
                      azure_container.uri("run/"))) == []
    (tmp_path / "b.txt").write_bytes(b"a new bravo\n")
    ok(run("files", "copy", local(tmp_path / "b.txt"), f"s3://{s3_bucket}/run/sub/"))
    assert copied(run("files", "sync", "--json", f"s3://{s3_bucket}/run/",
                      azure_container.uri("run/"))) == ["sub/b.txt"]
    ok(run("files", "copy", azure_container.uri("run/"), local(tmp_path / "again")))
    assert files_under(tmp_path / "again") == {**TREE, "sub/b.txt": b"a new bravo\n"}


# -- azure:// ---------------------------------------------------------------------------------


def test_azure_copy_list_sync_cat_and_delete(
        azure_container: AzureContainer, tree: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    storage_settings(tmp_path, monkeypatch, settings_for(azure_container))
    target = azure_container.uri("mirror/")
    assert copied(files_cli("sync", "--json", local(tree, True), target)) == sorted(TREE)
    assert copied(files_cli("sync", "--json", local(tree, True), target)) == []
    (tree / "a.txt").write_bytes(b"alpha, again and again\n")
    assert copied(files_cli("sync", "--json", local(tree, True), target)) == ["a.txt"]
    rows = as_json(files_cli("list", "--json", target))
    assert [(row["path"], row["size"]) for row in rows] == [
        ("a.txt", 23), ("sub/b.txt", 12), ("sub/deeper/c.bin", 16384)]
    assert ok(files_cli("cat", azure_container.uri("mirror/a.txt"))).stdout_bytes == (
        b"alpha, again and again\n")
    ok(files_cli("copy", target, local(tmp_path / "back")))
    assert files_under(tmp_path / "back") == files_under(tree)
    fails(files_cli("cat", azure_container.uri("mirror/none.txt")),
          azure_container.uri("mirror/none.txt"))
    ok(files_cli("delete", "-r", "-y", target))
    assert as_json(files_cli("list", "--json", azure_container.uri())) == []


# -- ftp:// -----------------------------------------------------------------------------------


def test_ftp_copy_list_sync_cat_and_delete(
        ftp_site: FtpSite, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage_settings(tmp_path, monkeypatch, settings_for(ftp_site))
    target = ftp_site.uri("mirror/")
    assert copied(files_cli("sync", "--json", local(tree, True), target)) == sorted(TREE)
    assert files_under(ftp_site.folder / "mirror") == {**TREE, MANIFEST: (
        ftp_site.folder / "mirror" / MANIFEST).read_bytes()}
    assert copied(files_cli("sync", "--json", local(tree, True), target)) == []
    (tree / "sub" / "b.txt").write_bytes(b"b\n")
    assert copied(files_cli("sync", "--json", local(tree, True), target)) == ["sub/b.txt"]
    rows = as_json(files_cli("list", "--json", target))
    assert [(row["path"], row["size"]) for row in rows] == [
        ("a.txt", 6), ("sub/b.txt", 2), ("sub/deeper/c.bin", 16384)]
    assert ok(files_cli("cat", ftp_site.uri("mirror/sub/b.txt"))).stdout_bytes == b"b\n"
    ok(files_cli("copy", target, local(tmp_path / "back")))
    assert files_under(tmp_path / "back") == files_under(tree)
    fails(files_cli("cat", ftp_site.uri("mirror/none.txt")), ftp_site.uri("mirror/none.txt"))
    ok(files_cli("delete", "-r", "-y", target))
    assert files_under(ftp_site.folder) == {}
