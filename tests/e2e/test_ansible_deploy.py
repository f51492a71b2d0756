"""Deploying a worker with Ansible over real SSH, and destroying it.

The target is sshd in a network namespace (``tests.support.sshd_netns``): the same
machine seen over SSH, so the worker goes to a temporary ``worker_home`` and runs as a
background process (no systemd here). The namespace has no network but the veth to
this one: the server listens on this side's address, and the target installs the
package's dependencies from a wheelhouse built here once per session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from scitq_bench.client import Client
from scitq_bench.recruit.deploy import (
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
from scitq_bench.server.app import create_app
from scitq_bench.server.setup import create_token, init_server
from scitq_bench.settings import ServerSettings
from tests.support.sshd_netns import SshTarget, missing, start_sshd
from tests.support.stack import wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
# The target is this machine: run Ansible's modules and the worker's venv on the Python
# running these tests (interpreter discovery may find a shim of another one).
PYTHON = str(Path(sys.base_prefix) / "bin" / "python3")
TARGET_VARS = {"ansible_python_interpreter": PYTHON, "worker_python": PYTHON, "connect_timeout": 30}
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                     "__pycache__", ".pytest_cache", ".ruff_cache",
                                     ".test-run", "node_modules")


@dataclass
class Packages:
    wheel: Path  # the project's wheel
    wheelhouse: Path  # its dependencies', for a target without network


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    """The project's wheel, built from a copy of the tree (pip builds in place: the
    checkout gets no build/), and its dependencies' wheels."""
    reason = missing()
    if reason:
        _unavailable(reason)
    root = tmp_path_factory.mktemp("packages")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCES)
    dist, wheelhouse = root / "dist", root / "wheelhouse"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _check(subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "-w", str(dist), str(source)],
                          capture_output=True, text=True, timeout=300))
    wheel = next(dist.glob("scitq_bench-*.whl"))
    _check(subprocess.run([*pip, "wheel", "--quiet", "-w", str(wheelhouse), str(wheel)],
                          capture_output=True, text=True, timeout=300))
    return Packages(wheel=wheel, wheelhouse=wheelhouse)


def _check(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, f"{' '.join(done.args)}:\n{done.stdout}\n{done.stderr}"


def _unavailable(reason: str) -> None:
    if os.environ.get("SCITQ_BENCH_TEST_ENGINE") == "required":
        pytest.fail(f"an SSH target is required: {reason}")
    pytest.skip(f"no SSH target: {reason}")


@pytest.fixture
def target(tmp_path: Path) -> Iterator[SshTarget]:
    reason = missing()
    if reason:
        _unavailable(reason)
    try:
        ssh = start_sshd(tmp_path / "sshd")
    except RuntimeError as exc:  # no network namespaces here (a container without them)
        _unavailable(str(exc))
    try:
        yield ssh
    finally:
        ssh.stop()


@dataclass
class ReachableServer:
    url: str
    admin_token: str
    settings: ServerSettings
    package_tokens: set[str]  # the tokens GET /api/v1/package accepts
    package_requests: list[str | None]  # the Authorization headers it was sent

    def client(self) -> Client:
        return Client(self.url, self.admin_token)


@pytest.fixture
def server(tmp_path: Path, target: SshTarget, packages: Packages) -> Iterator[ReachableServer]:
    """The real app behind a real HTTP server on this side of the veth, so the target
    reaches it. It also answers GET /api/v1/package as the deploy playbook expects the
    server to: the wheel, as an attachment named after it, for a bearer token of the
    server."""
    settings = ServerSettings(
        data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'server.db'}",
        lease_seconds=3.0, reaper_interval=0.2, run_reaper=True, claim_max_wait=5.0)
    admin = init_server(settings)
    application = create_app(settings)
    requests: list[str | None] = []
    tokens = {admin}

    def serve(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") != "/api/v1/package":
            return application(environ, start_response)
        request = Request(environ)
        given = request.headers.get("Authorization")
        requests.append(given)
        if request.method != "GET" or given not in {f"Bearer {t}" for t in tokens}:
            return Response("unauthorized", status=401)(environ, start_response)
        response = Response(packages.wheel.read_bytes(), mimetype="application/octet-stream")
        response.headers["Content-Disposition"] = f"attachment; filename={packages.wheel.name}"
        return response(environ, start_response)

    http = make_server(target.host_address, 0, serve, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    reachable = ReachableServer(f"http://{target.host_address}:{http.server_port}", admin,
                                settings, tokens, requests)
    try:
        yield reachable
    finally:
        http.shutdown()
        application.extensions["scitq_bench_reaper"].stop()
        application.extensions["scitq_bench"].db.dispose()


def _processes_naming(name: str) -> list[tuple[int, str]]:
    """Processes whose command line has ``--name NAME`` (the worker's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in arguments]
        if any(a == "--name" and b == name for a, b in zip(words, words[1:], strict=False)):
            found.append((int(entry.name), " ".join(words)))
    return found


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


def test_deploy_run_redeploy_and_destroy(tmp_path: Path, target: SshTarget,
                                         server: ReachableServer, packages: Packages) -> None:
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
    assert [p for p, _ in _processes_naming(name)] == [pid]
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
    assert [p for p, _ in _processes_naming(name)] == [new_pid]
    task = client.task_create("echo again", shell=True, batch="ansible")
    assert client.join([task], timeout=60)[0]["status"] == "succeeded"

    steps: list[int] = []
    gone = destroy_worker(address=target.address, worker_name=name, ssh_key=target.client_key,
                          on_progress=lambda p, _task: steps.append(p), timeout=120,
                          work_dir=tmp_path / "destroy",
                          extravars={**TARGET_VARS, "worker_home": str(home)})
    assert gone.ok, _show(gone)
    assert steps[0] == 0 and steps[-1] == 100
    assert _processes_naming(name) == []
    assert not env_file.exists()
    assert not (home / "worker.pid").exists()
    # what is left in the target's namespace: sshd (and Ansible's persisting session)
    assert {_command(pid) for pid in target.namespace_pids()} <= {"sshd"}
    assert enroll not in gone.log
    assert (home / "venv").is_dir()  # kept without purge


def test_failed_deploy_names_the_task_and_hides_the_token(
        tmp_path: Path, target: SshTarget) -> None:
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
