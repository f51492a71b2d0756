"""Recruitment through Ansible over real SSH: the ``ssh`` provider hands out a host
(sshd in a network namespace), the deploy job installs the worker there with the
deploy playbook, the worker registers and runs a task, and the destroy job stops it
with the destroy playbook and frees the host."""

from __future__ import annotations

from pathlib import Path

import pytest

from scitq_bench.recruiters.providers.base import build_provider
from scitq_bench.server.db import Database
from scitq_bench.server.queue.models import Worker
from scitq_bench.server.recruit.engine import destroy
from scitq_bench.server.recruit.jobs import JobRunner, JobSettings
from scitq_bench.server.recruit.models import Job
from scitq_bench.server.setup import create_token
from tests.support.ansible import (  # noqa: F401 - fixtures
    TARGET_VARS,
    Packages,
    ReachableServer,
    hire_on_ssh,
    packages,
    processes_naming,
    server,
    target,
)
from tests.support.sshd_netns import SshTarget
from tests.support.stack import wait_until

pytestmark = pytest.mark.e2e


def _finished(db: Database, job_id: int) -> Job:
    def ended() -> Job | None:
        with db.read() as session:
            job = session.get(Job, job_id)
            session.expunge(job)
            return job if job.status in ("succeeded", "failed") else None

    return wait_until(ended, timeout=300, interval=0.5, what=f"job {job_id}")


def test_recruited_over_ssh_deployed_by_ansible_and_given_back(
        tmp_path: Path, target: SshTarget, server: ReachableServer,  # noqa: F811
        packages: Packages) -> None:  # noqa: F811
    db = Database(server.settings.database_url)
    ssh = build_provider("ssh", {"hosts": {"netns": {
        "address": target.address, "cpu": 2, "ram_gb": 4, "disk_gb": 10}}}, "tests")
    home = tmp_path / "worker-home"
    runner = JobRunner(
        db=db, providers=lambda name: ssh, server_url=server.url,
        enroll_token=lambda name: _token(server),
        settings=JobSettings(deploy_timeout=240, boot_poll=0.2, ssh_key=target.client_key,
                             package_path=packages.wheel, ansible_vars={
                                 **TARGET_VARS, "worker_home": str(home),
                                 "install_container_engine": False,
                                 "worker_service_mode": "process",
                                 "worker_extra_args": ["--no-containers"],
                                 "pip_extra_args": f"--no-index --find-links "
                                                   f"{packages.wheelhouse} --no-compile"}))
    try:
        job_id, worker_id = hire_on_ssh(db, ssh, concurrency=2)
        runner.submit(job_id)
        deployed = _finished(db, job_id)
        assert deployed.status == "succeeded", deployed.log
        assert "ansible:" in deployed.log and deployed.progress == 100
        with db.read() as session:
            name = session.get(Worker, worker_id).name
        client = server.client()
        task = client.task_create("echo hired over ssh", batch="any")
        assert client.join([task], timeout=60)[0]["status"] == "succeeded"
        assert client.task_executions(task["id"])[0]["worker_id"] == worker_id
        assert ssh.list_owned()  # the host is taken

        with db.write() as session:
            gone_id = destroy(session, session.get(Worker, worker_id), "test").id
        runner.submit(gone_id)
        gone = _finished(db, gone_id)
        assert gone.status == "succeeded", gone.log
        assert processes_naming(name) == []
        assert not (home / "worker.env").exists()
        assert ssh.list_owned() == []  # the host is free again
    finally:
        runner.shutdown()
        db.dispose()


def _token(reachable: ReachableServer) -> str:
    token = create_token(reachable.settings, "enroll")
    reachable.package_tokens.add(token)
    return token
