"""A deploy that cannot reach its machine: real Ansible runs against a loopback port
where nothing answers (connections refused) or where a listener accepts TCP and never
speaks SSH (a hanging host). The deploy timeout bounds the whole job, and a user's
cancel stops it: either way the job names the step it stopped in, no Ansible process
is left, and the machine is given back."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import psutil
import pytest

from scitq_bench.recruiters.providers.base import Provider, build_provider
from scitq_bench.server.db import Database
from scitq_bench.server.recruit import catalog
from scitq_bench.server.recruit.jobs import JobRunner, JobSettings
from scitq_bench.server.recruit.models import Job
from scitq_bench.server.recruit.runtime import EXTENSION, build
from scitq_bench.states import FINAL_JOB_VALUES as ENDED
from tests.support.ansible import hire_on_ssh
from tests.support.cli import as_json, fails, ok
from tests.support.recruitment import job_of, worker_of
from tests.support.stack import wait_until

pytestmark = pytest.mark.e2e

TIMEOUT = 10  # the deploy timeout: long enough for Ansible to start on a loaded machine
GRACE = 6  # seconds allowed past it to kill the playbook and give the machine back


@pytest.fixture(autouse=True)
def _needs_ssh_client() -> None:
    if shutil.which("ssh") is None:
        if os.environ.get("SCITQ_BENCH_TEST_ENGINE") == "required":
            pytest.fail("the ssh client is required (openssh-client)")
        pytest.skip("no ssh client (openssh-client)")


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word (a hung host)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield int(listener.getsockname()[1])
    listener.close()
    for connection in held:
        connection.close()


def ssh_provider() -> Provider:
    return build_provider("ssh", {"hosts": {"nowhere": {
        "address": "127.0.0.1", "cpu": 2, "ram_gb": 4, "disk_gb": 10}}}, "tests")


def ansible_processes() -> list[psutil.Process]:
    """This test's descendants that belong to an Ansible run: the playbook, its workers
    (once it has started a task), their SSH clients."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "ansible" in " ".join(child.cmdline()) or child.name() == "ssh":
                found.append(child)
        except psutil.Error:
            continue
    return found


def a_running_task() -> list[psutil.Process] | None:
    """The run's processes once the playbook runs a task: itself and a worker (Ansible's
    workers start sessions of their own: killing the playbook's group leaves them)."""
    found = ansible_processes()
    return found if sum("ansible-playbook" in " ".join(p.cmdline()) for p in found) >= 2 \
        else None


def still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.Error:
            continue
    return alive


def ended(db: Database, job_id: int) -> Job | None:
    job = job_of(db, job_id)
    return job if job.status in ENDED else None


def test_the_deploy_timeout_bounds_the_whole_job(db: Database, closed_port: int) -> None:
    ssh = ssh_provider()
    runner = JobRunner(
        db=db, providers=lambda name: ssh, server_url="http://127.0.0.1:9",
        enroll_token=lambda name: "unused-token",
        # a long wait for SSH asked in the settings is cut to the job's time
        settings=JobSettings(deploy_timeout=TIMEOUT, boot_poll=0.2, ansible_vars={
            "ansible_port": closed_port, "connect_timeout": 600}))
    try:
        job_id, worker_id = hire_on_ssh(db, ssh)
        started = time.monotonic()
        runner.submit(job_id)
        seen = wait_until(a_running_task, timeout=TIMEOUT, interval=0.1,
                          what="Ansible to run a task")
        done = wait_until(lambda: ended(db, job_id), timeout=TIMEOUT + 30, interval=0.2,
                          what="the deploy to end")
        took = time.monotonic() - started
    finally:
        runner.shutdown()
    assert done.status == "failed", done.log
    assert done.error == f"timed out after {TIMEOUT} s in step 'Wait for SSH'", done.log
    assert TIMEOUT - 1 <= took <= TIMEOUT + GRACE, took
    assert "giving instance nowhere back" in done.log
    assert still_running(seen) == [] and ansible_processes() == []
    assert ssh.list_owned() == []  # the host is free again
    worker = worker_of(db, worker_id)
    assert worker.status == "failed" and worker.released_at is not None


@pytest.fixture
def recruiting(live_server: Any, silent_port: int) -> Iterator[Any]:
    """The live server recruiting (its loop idle) from one SSH host that hangs."""
    context = live_server.app.extensions["scitq_bench"]
    settings = replace(context.settings, recruitment={
        "deploy_timeout": 120,
        "providers": {"ssh": {"hosts": {"nowhere": {"address": "127.0.0.1", "cpu": 2,
                                                    "ram_gb": 4, "disk_gb": 10}}}},
        "ansible_vars": {"ansible_port": silent_port},
    })
    runtime = build(settings, context.db, live_server.url)
    live_server.app.extensions[EXTENSION] = runtime
    with context.db.write() as session:
        catalog.upsert_offers(session, "ssh", runtime.runner.providers("ssh").offers())
    yield live_server
    runtime.runner.shutdown()


def test_a_running_deploy_is_cancelled_from_the_cli(run: Any, recruiting: Any) -> None:
    runtime = recruiting.app.extensions[EXTENSION]
    db = recruiting.app.extensions["scitq_bench"].db
    (job,) = as_json(run("worker", "deploy", "-f", "auto:cpu>=2", "-P", "ssh", "--json"))
    client = recruiting.client()
    wait_until(lambda: "ansible: Wait for SSH" in client.job_get(job["id"])["log"],
               timeout=60, interval=0.2, what="Ansible to wait for SSH")
    seen = wait_until(a_running_task, timeout=10, interval=0.1, what="Ansible to run a task")
    fails(run("job", "delete", job["id"]), f"cancel it first (job cancel {job['id']})")

    started = time.monotonic()
    said = ok(run("job", "cancel", job["id"])).stdout
    assert f"job {job['id']} cancelled" in said
    done = wait_until(lambda: ended(db, job["id"]) if not still_running(seen) else None,
                      timeout=30, interval=0.1, what="the cancelled deploy to stop")
    assert time.monotonic() - started < 5
    assert ansible_processes() == []
    assert done.status == "cancelled" and done.cancelled_by == "admin"
    assert done.cancelled_at is not None

    def final() -> dict | None:  # the job's last word, once its machine is back
        found = client.job_get(job["id"])
        return found if "in step" in (found["error"] or "") else None

    shown = wait_until(final, timeout=10, what="the job's final error")
    assert shown["error"] == "cancelled by admin in step 'Wait for SSH'", shown["log"]
    assert "giving instance nowhere back" in shown["log"]
    assert "cancel requested by admin (the job was running)" in shown["log"]
    assert runtime.runner.providers("ssh").list_owned() == []
    worker = client.worker_get(job["worker_id"])
    assert worker["status"] == "failed"
    fails(run("job", "cancel", job["id"]), "only a pending or running job is cancelled")
    fails(run("worker", "undeploy", job["worker_id"]), "given back already")
    ok(run("job", "delete", job["id"]))
