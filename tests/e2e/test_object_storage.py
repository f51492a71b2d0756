"""Inputs, resources and outputs on s3://, azure:// and ftp:// through a real server and
worker: data read where it lives, outputs written with their manifest last, failures
named, and the worker's credentials nowhere a user or a task can see them."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from scitq_bench.client import Client
from scitq_bench.storage.base import Store
from scitq_bench.storage.config import StorageConfig
from scitq_bench.storage.locations import MANIFEST
from scitq_bench.storage.stores import Stores
from tests.support.objectstores import AzureContainer, FtpSite
from tests.support.stack import Stack, wait_until

AWS_SECRET = f"aws-secret-{uuid.uuid4().hex}"  # only the worker's environment holds it


@dataclass
class Site:
    """One store as a test sees it: URIs under a fresh folder, a Store to check what
    landed, the secrets that must never show, and what the worker needs to reach it."""

    base: str  # a URI prefix ending with "/"
    store: Store
    root_key: str  # the store key of ``base``
    secrets: list[str]
    worker_env: dict[str, str]
    settings: dict[str, Any]

    def put(self, path: str, data: bytes, tmp: Path) -> None:
        local = tmp / uuid.uuid4().hex
        local.write_bytes(data)
        self.store.upload(local, self.root_key + path, lambda _: None)

    def get(self, path: str) -> bytes:
        with self.store.read(self.root_key + path) as stream:
            return stream.read()

    def keys(self) -> list[str]:
        return [e.key[len(self.root_key):] for e in self.store.list(self.root_key)]


def _s3_site(request: pytest.FixtureRequest) -> Site:
    bucket = request.getfixturevalue("s3_bucket")
    folder = f"run-{uuid.uuid4().hex[:8]}/"
    store = Stores(StorageConfig()).resolve(f"s3://{bucket}/")[0]
    env = {name: os.environ[name] for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                               "AWS_DEFAULT_REGION")}
    env["AWS_SECRET_ACCESS_KEY"] = AWS_SECRET  # moto takes any secret
    return Site(f"s3://{bucket}/{folder}", store, folder, [AWS_SECRET], env, {})


def _azure_site(request: pytest.FixtureRequest) -> Site:
    container: AzureContainer = request.getfixturevalue("azure_container")
    settings = {"azure": {container.account: {"connection_string": container.connection_string}}}
    store = Stores(StorageConfig.from_mapping(settings)).resolve(container.uri())[0]
    key = container.connection_string.split("AccountKey=")[1].split(";")[0]
    return Site(container.uri("run/"), store, "run/", [key], {}, settings)


def _ftp_site(request: pytest.FixtureRequest) -> Site:
    site: FtpSite = request.getfixturevalue("ftp_site")
    settings = {"ftp": {f"{site.host}:{site.port}": {"user": site.user,
                                                      "password": site.password}}}
    store = Stores(StorageConfig.from_mapping(settings)).resolve(site.uri())[0]
    return Site(site.uri(), store, site.base + "/", [site.password], {}, settings)


SITES: dict[str, Callable[[pytest.FixtureRequest], Site]] = {
    "s3": _s3_site, "azure": _azure_site, "ftp": _ftp_site}


@pytest.fixture(params=sorted(SITES))
def site(request: pytest.FixtureRequest) -> Site:
    return SITES[request.param](request)


@pytest.fixture
def stack_for(tmp_path: Path, request: pytest.FixtureRequest
              ) -> Iterator[Callable[[Site], Stack]]:
    """A server and one worker whose environment (and storage settings file, mode 600)
    reaches the site."""
    made: list[Stack] = []

    def make(site: Site) -> Stack:
        env = dict(site.worker_env)
        if site.settings:
            path = tmp_path / "storage.yaml"
            path.write_text(yaml.safe_dump(site.settings))
            path.chmod(0o600)
            env["SCITQ_BENCH_STORAGE_CONFIG"] = str(path)
        stack = Stack(root=tmp_path / "stack", database_url=f"sqlite:///{tmp_path / 'db'}",
                      lease_seconds=10, extra_env=env)
        made.append(stack)
        stack.init()
        stack.start_server()
        stack.start_worker("w1", concurrency=2)
        wait_until(lambda: stack.client().worker_list(), 60, what="the worker")
        return stack

    yield make
    for stack in made:
        stack.stop()
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            for log in ("server.log", "worker-w1.log"):
                print(f"---- {log} ----\n" + stack.tail(log))


def _finished(client: Client, task_ids: list[int], timeout: float = 120
              ) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        tasks = [client.task_get(task_id) for task_id in task_ids]
        final = all(t["status"] in ("succeeded", "failed", "timeout") for t in tasks)
        return tasks if final else None

    wait_until(done, timeout, what="the tasks")
    return [client.execution_list(task=task_id)[-1] for task_id in task_ids]


def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_inputs_resources_and_outputs_where_they_live(site: Site, stack_for: Callable[[Site], Stack],
                                                      tmp_path: Path) -> None:
    site.put("in/one.txt", b"one\n", tmp_path)
    site.put("in/folder/a.txt", b"a\n", tmp_path)
    site.put("in/folder/sub/b.txt", b"b\n", tmp_path)
    site.put("refs/ref.tar.gz", _tarball({"ref/r.txt": b"reference\n"}), tmp_path)
    stack = stack_for(site)
    client = stack.client()
    output = site.base + "out/"
    command = ("cat $INPUT/one.txt $INPUT/folder/sub/b.txt $INPUT/a.txt $RESOURCE/ref/r.txt "
               "> $OUTPUT/result.txt && mkdir $OUTPUT/deep && echo deep > $OUTPUT/deep/y.txt "
               "&& env > $OUTPUT/env.txt && ls -a $INPUT > $OUTPUT/inputs.txt")
    task = client.tasks_create([{
        "command": command, "shell": True, "batch": "data",
        "inputs": [site.base + "in/one.txt", site.base + "in/folder", site.base + "in/folder/"],
        "resources": [site.base + "refs/ref.tar.gz|untar"],
        "output": output,
    }])[0]
    execution = _finished(client, [task["id"]])[0]
    assert execution["status"] == "succeeded", execution
    assert site.get("out/result.txt") == b"one\nb\na\nreference\n"
    assert site.get("out/deep/y.txt") == b"deep\n"
    assert sorted(site.get("out/inputs.txt").split()) == sorted(
        [b".", b"..", b"one.txt", b"folder", b"a.txt", b"sub"])
    manifest = json.loads(site.get("out/" + MANIFEST))
    listed = {item["path"]: item for item in manifest["files"]}
    assert set(listed) == {"result.txt", "deep/y.txt", "env.txt", "inputs.txt"}
    assert listed["deep/y.txt"]["size"] == 5
    # the credentials the worker used reached no task and no answer
    task_env = site.get("out/env.txt").decode()
    assert "SCITQ_BENCH_STORAGE_CONFIG" not in task_env and "AWS_ENDPOINT_URL" not in task_env
    _assert_secrets_absent(site, stack, client, [task["id"]], task_env)


def test_failures_name_the_data(site: Site, stack_for: Callable[[Site], Stack],
                                tmp_path: Path) -> None:
    site.put("in/present.txt", b"x\n", tmp_path)
    stack = stack_for(site)
    client = stack.client()
    missing = site.base + "in/absent.txt"
    nowhere = site.base.split("://")[0] + "://" + _elsewhere(site) + "/out/"
    tasks = client.tasks_create([
        {"command": "true", "batch": "bad", "inputs": [missing]},
        {"command": "echo hi > $OUTPUT/x.txt", "shell": True, "batch": "bad",
         "inputs": [site.base + "in/present.txt"], "output": nowhere},
    ])
    fetch, upload = _finished(client, [t["id"] for t in tasks])
    assert fetch["status"] == "failed" and fetch["reason"] == "input_fetch_failed", fetch
    assert missing in fetch["error"]
    assert upload["status"] == "failed" and upload["reason"] == "output_upload_failed", upload
    assert nowhere.rstrip("/") in upload["error"]
    _assert_secrets_absent(site, stack, client, [t["id"] for t in tasks], "")


def _elsewhere(site: Site) -> str:
    """A root the worker cannot write to: a bucket or container that is not there, an
    FTP port nobody listens on."""
    scheme = site.base.split("://")[0]
    if scheme == "s3":
        return f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    if scheme == "azure":
        account = site.base.split("://")[1].split("/")[0]
        return f"{account}/nosuchcontainer{uuid.uuid4().hex[:8]}"
    return "127.0.0.1:1"


def _assert_secrets_absent(site: Site, stack: Stack, client: Client, task_ids: list[int],
                           task_env: str) -> None:
    answers = [json.dumps(client.task_get(t)) for t in task_ids]
    answers += [json.dumps(client.execution_list(task=t)) for t in task_ids]
    answers.append(json.dumps(client.worker_list()))
    for t in task_ids:
        for execution in client.execution_list(task=t):
            for stream in ("stdout", "stderr"):
                answers.append(client.execution_log(execution["id"], stream)[0]
                               .decode(errors="replace"))
    logs = [stack.tail("server.log", 10**7), stack.tail("worker-w1.log", 10**7)]
    for secret in site.secrets:
        assert secret not in task_env
        for text in answers + logs:
            assert secret not in text


def test_a_one_gigabyte_object_arrives_whole(request: pytest.FixtureRequest,
                                             stack_for: Callable[[Site], Stack],
                                             tmp_path: Path) -> None:
    """1 GiB through boto3's multipart machinery on both sides: the task sees every
    byte, checked against the SHA-256 kept with the object."""
    site = _s3_site(request)
    big = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    with open(big, "wb") as handle:
        for index in range(1024):
            chunk = block[:-8] + index.to_bytes(8, "big")
            handle.write(chunk)
            digest.update(chunk)
    site.store.upload(big, site.root_key + "big.bin", lambda _: None, digest.hexdigest())
    big.unlink()
    stack = stack_for(site)
    client = stack.client()
    task = client.tasks_create([{
        "command": "wc -c < $INPUT/big.bin > $OUTPUT/size.txt && sha256sum $INPUT/big.bin "
                   "> $OUTPUT/sum.txt", "shell": True, "batch": "big",
        "inputs": [site.base + "big.bin"], "output": site.base + "out/"}])[0]
    execution = _finished(client, [task["id"]], timeout=600)[0]
    assert execution["status"] == "succeeded", execution
    assert int(site.get("out/size.txt")) == 1 << 30
    assert site.get("out/sum.txt").split()[0].decode() == digest.hexdigest()
    stderr = client.execution_log(execution["id"], "stderr")[0].decode()
    assert "fetching " + site.base + "big.bin" in stderr  # progress, live in the task's log
