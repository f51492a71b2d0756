"""Two real ``server run`` replicas on one PostgreSQL database keeping their logs and
files in one S3 bucket (moto's S3 server): what one is given, the other serves, ranges
included; log appends by offset hold across them; nothing lands on their disks; and the
store's secret key is in no answer and no log line, errors included."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
import yaml

from tests.conftest import _drop_postgres_database, _fresh_postgres_database
from tests.support.api import register
from tests.support.stack import Replica, Stack

BODY = bytes(range(256)) * 1200  # 307,200 bytes, each position telling where it is
SECRET = f"secret-{uuid.uuid4().hex}"  # moto takes any key: this one is easy to find


class Http:
    """Calls to the replicas, every answer's body kept to search afterwards."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.bodies: list[bytes] = []

    def __call__(self, base: str, method: str, path: str, token: str | None = None,
                 **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.token}", **kwargs.pop("headers", {})}
        answer = requests.request(method, f"{base}/api/v1{path}", headers=headers, timeout=30,
                                  **kwargs)
        self.bodies.append(answer.content)
        return answer


@pytest.fixture
def replicas(tmp_path: Path, postgres_url: str, s3_bucket: str, s3_endpoint: str,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stack, Replica]]:
    """The stack's server and one replica, on a fresh database, their store in
    ``s3://<bucket>/scitq/``: its endpoint and keys in settings.yaml's storage mapping,
    and in boto3's environment too."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    url, handle = _fresh_postgres_database(postgres_url)
    stack = Stack(root=tmp_path / "stack", database_url=url, access_log=True,
                  extra_env={"SCITQ_BENCH_STORE_URL": f"s3://{s3_bucket}/scitq"})
    stack.data_dir.mkdir(parents=True)
    (stack.data_dir / "settings.yaml").write_text(yaml.safe_dump({"storage": {"s3": {"*": {
        "endpoint_url": s3_endpoint, "region": "us-east-1", "access_key_id": "testing",
        "secret_access_key": SECRET}}}}))
    stack.init()
    try:
        stack.start_server(processes=1)
        yield stack, stack.start_replica(processes=1)
    finally:
        stack.stop()
        for log in ["server.log", *(r.log for r in stack.replicas)]:  # shown if it failed
            print(f"---- {log} ----\n" + stack.tail(log))
        _drop_postgres_database(handle)


def bucket_keys(bucket: str) -> list[str]:
    found = boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(item["Key"] for item in found)


def test_an_admin_deletes_a_stored_file(api) -> None:
    """On the local store, in process: the route every store answers alike."""
    worker_token = register(api)[1]
    assert api.put("/files/a/b.txt", data=b"x").status_code == 201
    assert api.delete("/files/a/b.txt", token=worker_token).status_code == 403
    answer = api.delete("/files/a/b.txt")
    assert (answer.status_code, answer.json) == (200, {"deleted": "a/b.txt"})
    assert api.get("/files/a/b.txt").status_code == 404
    missing = api.delete("/files/a/b.txt")
    assert (missing.status_code, missing.json["message"]) == (404, "no file at server://a/b.txt")
    assert api.delete("/files/a/%2e%2e/x").status_code == 400


@pytest.mark.e2e
@pytest.mark.postgres
def test_two_replicas_share_files_and_logs_in_one_bucket(replicas, s3_bucket) -> None:
    stack, replica = replicas
    one, two = stack.url, replica.url
    http = Http(stack.token)

    # a file put through one is listed, downloaded and sought in through the other
    put = http(one, "PUT", "/files/results/1/big.bin", data=BODY)
    assert (put.status_code, put.json()) == (201, {"path": "results/1/big.bin",
                                                   "size": len(BODY)})
    listed = http(two, "GET", "/files", params={"prefix": "results/1"}).json()["files"]
    assert [(f["path"], f["size"]) for f in listed] == [("results/1/big.bin", len(BODY))]
    whole = http(two, "GET", "/files/results/1/big.bin")
    assert (whole.status_code, whole.content) == (200, BODY)
    assert whole.headers["ETag"] == f'"{listed[0]["etag"]}"'
    part = http(two, "GET", "/files/results/1/big.bin", headers={"Range": "bytes=1000-1999"})
    assert (part.status_code, part.content) == (206, BODY[1000:2000])
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(BODY)}"
    http(two, "PUT", "/files/results/1/big.bin", data=b"replaced")
    again = http(one, "GET", "/files/results/1/big.bin")
    assert again.content == b"replaced" and again.headers["ETag"] != whole.headers["ETag"]

    # a log appended through one by offset is read through the other
    worker = http(one, "POST", "/workers", json={"name": "w1", "concurrency": 1}).json()
    worker_token = worker["token"]
    http(one, "POST", "/tasks", json={"command": "true"})
    claimed = http(two, "POST", f"/workers/{worker['worker']['id']}/claim",
                   token=worker_token).json()["executions"]
    log = f"/executions/{claimed[0]['execution_id']}/logs/stdout"
    append = {"token": worker_token}
    assert http(one, "PUT", log, params={"offset": 0}, data=b"hello ", **append).json() == {
        "size": 6}
    assert http(two, "PUT", log, params={"offset": 0}, data=b"hello ", **append).json() == {
        "size": 6}  # a retry reaching the other replica: skipped
    assert http(two, "PUT", log, params={"offset": 3}, data=b"lo world",
                **append).json() == {"size": 11}  # the overlap skipped
    gap = http(one, "PUT", log, params={"offset": 50}, data=b"late", **append)
    assert gap.status_code == 409 and gap.json()["details"] == {"expected_offset": 11}
    read = http(two, "GET", log)
    assert read.content == b"hello world" and read.headers["X-Log-Size"] == "11"
    assert http(one, "GET", log, params={"offset": 6, "limit": 3}).content == b"wor"

    # deleting: admins only, then gone for both
    refused = http(one, "DELETE", "/files/results/1/big.bin", token=worker_token)
    assert refused.status_code == 403
    deleted = http(two, "DELETE", "/files/results/1/big.bin")
    assert (deleted.status_code, deleted.json()) == (200, {"deleted": "results/1/big.bin"})
    assert http(one, "GET", "/files/results/1/big.bin").status_code == 404
    missing = http(one, "DELETE", "/files/results/1/big.bin")
    assert missing.status_code == 404
    assert missing.json()["message"] == "no file at server://results/1/big.bin"

    # everything is in the bucket, nothing on the replicas' disks
    execution = claimed[0]["execution_id"]
    assert bucket_keys(s3_bucket) == [f"scitq/logs/000000/{execution}/stdout/{0:016d}",
                                      f"scitq/logs/000000/{execution}/stdout/{6:016d}"]
    assert not (stack.data_dir / "store").exists() and not (stack.data_dir / "logs").exists()

    # a store failing (its bucket gone) answers a plain 500, its secret nowhere
    client = boto3.client("s3")
    for key in bucket_keys(s3_bucket):
        client.delete_object(Bucket=s3_bucket, Key=key)
    client.delete_bucket(Bucket=s3_bucket)
    assert http(one, "PUT", "/files/lost.txt", data=b"x").status_code == 500
    assert http(two, "GET", "/files").status_code == 500
    stack.stop()  # its logs complete
    logs = "".join(stack.tail(name, 10**7) for name in (
        "server.log", "access.log", replica.log, replica.access_log))
    assert f"s3://{s3_bucket}/scitq/ (store_url)" in logs  # the logs are those of the servers
    assert "NoSuchBucket" in logs or s3_bucket in logs
    assert SECRET not in logs
    assert not [body for body in http.bodies if SECRET.encode() in body]
