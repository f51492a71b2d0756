"""Deploying with Ansible over real SSH, for end-to-end tests: the target (sshd in a
network namespace, sshd_netns), the project's wheel and its dependencies' built once
per session, the real app served where the target reaches it, a deploy job for an
``ssh`` machine, and the worker processes found by name.

The fixtures (packages, target, server) are imported by the test modules
that use them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from scitq_bench.client import Client
from scitq_bench.recruiters.providers.base import Provider
from scitq_bench.server.app import create_app
from scitq_bench.server.db import Database
from scitq_bench.server.recruit import catalog
from scitq_bench.server.recruit.engine import RecruitSettings, Refusal, hire
from scitq_bench.server.setup import init_server
from scitq_bench.settings import ServerSettings
from tests.support.sshd_netns import SshTarget, missing, start_sshd

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


def processes_naming(name: str) -> list[tuple[int, str]]:
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


def hire_on_ssh(db: Database, ssh: Provider, concurrency: int = 1) -> tuple[int, int]:
    """A deploy job for a machine of the ``ssh`` provider: (its id, its worker's id)."""
    with db.write() as session:
        catalog.upsert_offers(session, "ssh", ssh.offers())
        job = hire(session, RecruitSettings(), batch=None, flavor="auto:cpu>=2",
                   provider="ssh", region="auto", concurrency=concurrency, prefetch=0)
        assert not isinstance(job, Refusal), job
        assert job.worker_id is not None
        return job.id, job.worker_id
