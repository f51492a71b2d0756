"""Deploying a worker with Ansible over real SSH, and destroying it.

The target is sshd in a network namespace (``tests.support.sshd_netns``): the same
machine seen over SSH, so the worker goes to a temporary ``worker_home`` and runs as a
background process (no systemd here). The namespace has no network but the veth to
this one: the server listens on this side's address, and the target installs the
package's dependencies from a wheelhouse built here once per session.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from scitq_bench.recruiters.deploy import (
    ANSIBLE_DIR,
    DEPLOY_PLAYBOOK,
    DESTROY_PLAYBOOK,
    PlaybookResult,
    Redactor,
    count_tasks,
    deploy_worker,
    destroy_worker,
    secret_values,
)
from scitq_bench.server.setup import create_token
from tests.support.ansible import (  # noqa: F401 - fixtures
    TARGET_VARS,
    Packages,
    ReachableServer,
    packages,
    processes_naming,
    server,
    target,
)
from tests.support.sshd_netns import SshTarget
from tests.support.stack import wait_until

pytestmark = pytest.mark.e2e


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _command_lines_with(secret: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if secret.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _files_with(directory: Path, secret: str) -> list[Path]:
    return [path for path in directory.rglob("*")
            if path.is_file() and secret.encode() in path.read_bytes()]


def _show(result: PlaybookResult) -> str:
    return f"status={result.status} rc={result.rc} failed={result.failed_task}\n{result.log}"


def test_deploy_run_redeploy_and_destroy(tmp_path: Path, target: SshTarget,  # noqa: F811
                                         server: ReachableServer,  # noqa: F811
                                         packages: Packages) -> None:  # noqa: F811
    enroll = create_token(server.settings, "enroll")
    server.package_tokens.add(enroll)
    name = f"ansible-{uuid.uuid4().hex[:8]}"
    home = tmp_path / "worker-home"
    variables = {
        **TARGET_VARS,
        "worker_home": str(home),
        "install_container_engine": False,
        "worker_service_mode": "process",
        "worker_extra_args": ["--no-containers"],
        "worker_start_check": 1,
        "pip_extra_args": f"--no-index --find-links {packages.wheelhouse} --no-compile",
    }
    progress: list[tuple[int, str]] = []
    result = deploy_worker(
        address=target.address, worker_name=name, server_url=server.url, token=enroll,
        concurrency=2, prefetch=1, flavor_tags="C", package_path=packages.wheel,
        ssh_key=target.client_key, on_progress=lambda p, task: progress.append((p, task)),
        timeout=200, work_dir=tmp_path / "deploy", extravars=variables)
    assert result.ok, _show(result)
    assert result.rc == 0 and result.failed_task is None

    percents = [percent for percent, _ in progress]
    assert percents[0] == 0 and percents[-1] == 100, progress
    assert percents == sorted(percents), progress
    assert len(set(percents)) >= 5, progress
    assert any("Install the worker package" in task for _, task in progress), progress
    assert enroll not in result.log and enroll not in repr(progress)
    assert "Install the worker package" in result.log

    # the token: in the root-only environment file, nowhere else
    env_file = home / "worker.env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert enroll in env_file.read_text()
    assert enroll not in (home / "bin" / "run-worker").read_text()
    assert not (tmp_path / "deploy" / "env" / "extravars").exists()
    assert _files_with(tmp_path / "deploy", enroll) == []  # ansible-runner's artifacts
    pid = int((home / "worker.pid").read_text())
    assert pid in target.namespace_pids()  # started over SSH, in the target's namespace
    assert [p for p, _ in processes_naming(name)] == [pid]
    assert _command_lines_with(enroll) == []

    client = server.client()
    worker = wait_until(lambda: client.worker_list(name=name), timeout=60,
                        what="the worker to register")[0]
    assert worker["concurrency"] == 2
    task = client.task_create("echo deployed by $((40 + 2))", shell=True, batch="ansible")
    final = client.join([task], timeout=60)[0]
    assert final["status"] == "succeeded"
    assert client.task_output(task["id"])[0] == b"deployed by 42\n"
    executions = client.task_executions(task["id"])
    assert [e["worker_id"] for e in executions] == [worker["id"]]

    # again, with the package downloaded from the server: same package, new process
    server.package_requests.clear()
    again = deploy_worker(
        address=target.address, worker_name=name, server_url=server.url, token=enroll,
        concurrency=2, prefetch=1, ssh_key=target.client_key, timeout=200,
        work_dir=tmp_path / "redeploy", extravars=variables)
    assert again.ok, _show(again)
    assert server.package_requests == [f"Bearer {enroll}"]
    assert enroll not in again.log
    assert _files_with(tmp_path / "redeploy", enroll) == []
    new_pid = int((home / "worker.pid").read_text())
    assert new_pid != pid
    assert [p for p, _ in processes_naming(name)] == [new_pid]
    task = client.task_create("echo again", shell=True, batch="ansible")
    assert client.join([task], timeout=60)[0]["status"] == "succeeded"

    steps: list[int] = []
    gone = destroy_worker(address=target.address, worker_name=name, ssh_key=target.client_key,
                          on_progress=lambda p, _task: steps.append(p), timeout=120,
                          work_dir=tmp_path / "destroy",
                          extravars={**TARGET_VARS, "worker_home": str(home)})
    assert gone.ok, _show(gone)
    assert steps[0] == 0 and steps[-1] == 100
    assert processes_naming(name) == []
    assert not env_file.exists()
    assert not (home / "worker.pid").exists()
    # what is left in the target's namespace: sshd (and Ansible's persisting session)
    assert {_command(pid) for pid in target.namespace_pids()} <= {"sshd"}
    assert enroll not in gone.log
    assert (home / "venv").is_dir()  # kept without purge


def test_failed_deploy_names_the_task_and_hides_the_token(
        tmp_path: Path, target: SshTarget) -> None:  # noqa: F811
    token = f"secret-{uuid.uuid4().hex}"
    home = tmp_path / "worker-home"
    steps: list[tuple[int, str]] = []
    # nothing listens on port 9 of this side: the package download fails
    result = deploy_worker(
        address=target.address, worker_name="never", server_url=f"http://{target.host_address}:9",
        token=token, ssh_key=target.client_key, timeout=120, work_dir=tmp_path / "deploy",
        on_progress=lambda p, task: steps.append((p, task)),
        extravars={**TARGET_VARS, "worker_home": str(home),
                   "install_container_engine": False, "worker_service_mode": "process"})
    assert result.status == "failed" and result.rc != 0
    assert result.failed_task == "worker : Report a failed download", _show(result)
    assert "could not download the worker package" in result.log
    assert token not in result.log and token not in repr(steps)
    assert steps[-1][0] < 100
    assert not (home / "worker.env").exists()
    destroy = destroy_worker(address=target.address, worker_name="never",
                             ssh_key=target.client_key, purge=True, timeout=120,
                             extravars={**TARGET_VARS, "worker_home": str(home)})
    assert destroy.ok, _show(destroy)
    assert not home.exists()


@pytest.mark.parametrize("playbook", [DEPLOY_PLAYBOOK, DESTROY_PLAYBOOK])
def test_progress_counts_the_tasks_ansible_lists(playbook: str) -> None:
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "--list-tasks", "-i",
         "localhost,", playbook], cwd=ANSIBLE_DIR, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    tasks = [line for line in listed.stdout.splitlines()
             if "TAGS:" in line and not line.lstrip().startswith("play #")]
    assert count_tasks(ANSIBLE_DIR / playbook) == len(tasks)


def test_secrets_are_found_by_name_and_redacted() -> None:
    extravars = {"worker_token": "t0k3n", "worker_name": "w", "db": {"password": "pw"},
                 "more": {"api_secret": ["s1", {"x": "s2"}]}, "concurrency": 2}
    assert sorted(secret_values(extravars)) == ["pw", "s1", "s2", "t0k3n"]
    redact = Redactor([*secret_values(extravars), ""])
    assert redact("w t0k3n pw s2 2") == "w *** *** *** 2"
