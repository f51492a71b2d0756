"""Spot interruptions: the worker reads the notice from the metadata service (AWS and
Azure formats), tells the server, and its tasks go back to the queue without spending
retries."""

from __future__ import annotations

from pathlib import Path

import pytest

from scitq_bench.client.worker.interruption import reader
from tests.support.fake_metadata import TOKEN, FakeMetadata
from tests.support.waiting import wait_until
from tests.support.workers import executions, run_worker_in_thread


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def metadata():
    fake = FakeMetadata()
    yield fake
    fake.stop()


@pytest.mark.parametrize("kind", ["aws", "azure"])
def test_notices_are_read(metadata, kind) -> None:
    poll = reader(kind, metadata.url)
    assert poll() is None
    metadata.interrupt()
    notice = poll()
    assert notice and ("terminate" in notice if kind == "aws" else "Preempt E1" in notice)
    if kind == "aws":
        assert set(metadata.seen_tokens) == {TOKEN}  # IMDSv2: the token is used


def test_unreachable_metadata_service_reads_as_no_notice() -> None:
    assert reader("aws", "http://127.0.0.1:9")() is None
    with pytest.raises(ValueError, match="unknown spot provider"):
        reader("gcp")


def test_interrupted_worker_gives_its_work_back(live_server, tmp_path, metadata) -> None:
    client = live_server.client()
    agent, thread = run_worker_in_thread(live_server, tmp_path / "work", "spotty",
                                         concurrency=1, spot_interval=0.2,
                                         spot_notice=reader("aws", metadata.url))
    task = client.task_create("sleep 60", retry=0)
    wait_until(lambda: client.task_get(task["id"])["status"] == "running", timeout=15)
    metadata.interrupt()
    thread.join(20)
    assert not thread.is_alive(), "the worker stops after the notice"
    assert client.worker_get(agent.worker_id)["status"] == "evicted"
    after = client.task_get(task["id"])
    assert after["status"] == "pending"
    assert (after["retries_used"], after["losses"]) == (0, 1)
    assert executions(client, task["id"])[0]["status"] == "lost"
    assert "reclaimed by its provider" in executions(client, task["id"])[0]["error"]
