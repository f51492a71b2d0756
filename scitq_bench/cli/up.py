"""``up``: a server and a worker on this machine in one command, the quick start.

The worker is hired like any machine, through the ``local`` provider (a worker process
on this machine, deployed and given back by jobs), and kept (``permanent``): it is not
given back when idle, only when ``up`` stops."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import click
import requests

from scitq_bench.cli.server import data_dir_option, database_errors, local_url
from scitq_bench.client import Client
from scitq_bench.exceptions import Conflict, ScitqBenchError
from scitq_bench.settings import DEFAULT_PORT, ServerSettings, write_client_config, write_private
from scitq_bench.states import JobStatus

HEALTH_TIMEOUT = 60.0  # seconds for the server to migrate and answer
STOP_GRACE = {"server": 15.0}  # seconds before SIGKILL
DEPLOY_TIMEOUT = 120.0  # seconds for the local worker to be deployed and registered
UNDEPLOY_TIMEOUT = 45.0
PYTHON_CLI = [sys.executable, "-m", "scitq_bench.cli.main"]


def admin_token(settings: ServerSettings) -> str:
    """Initialise the database if needed; the admin token is kept in
    ``<data_dir>/admin_token`` (0600) so the next ``up`` reuses it."""
    from scitq_bench.server.setup import init_server

    path = settings.data_dir / "admin_token"
    with database_errors():
        try:
            token = init_server(settings)
        except Conflict:  # initialised before: by an earlier `up`, or by `server init`
            if path.exists() and path.read_text().strip():
                return path.read_text().strip()
            token = init_server(settings, new_token=True)
    write_private(path, token + "\n")
    return token


def check_port_free(host: str, port: int) -> None:
    """Refuse early: otherwise the health check could be answered by another server."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ScitqBenchError(f"cannot listen on {host}:{port} ({exc.strerror}); "
                                  "is a server already running? Use --port") from None


class Supervisor:
    """The server process and the stop request; it runs in its own session so Ctrl-C
    reaches only this process, which gives the worker back before stopping the server."""

    def __init__(self) -> None:
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stop_requested = threading.Event()

    def request_stop(self, signum: int, _frame: FrameType | None) -> None:
        os.write(2, f"\n{signal.Signals(signum).name}: stopping...\n".encode())
        self.stop_requested.set()

    def start(self, role: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.children[role] = subprocess.Popen(PYTHON_CLI + args, env=env,
                                               start_new_session=True)

    def dead(self) -> tuple[str, int] | None:
        for role, child in self.children.items():
            code = child.poll()
            if code is not None:
                return role, code
        return None

    def wait_healthy(self, url: str) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while not self.stop_requested.is_set():
            self.raise_if_dead()
            try:
                if requests.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise ScitqBenchError(f"the server did not answer on {url} within "
                                      f"{HEALTH_TIMEOUT:g}s")
            self.stop_requested.wait(0.2)

    def raise_if_dead(self) -> None:
        dead = self.dead()
        if dead:
            role, code = dead
            how = (f"was killed by {signal.Signals(-code).name}" if code < 0
                   else f"exited with code {code}")
            raise ScitqBenchError(f"the {role} {how}; stopping")

    def supervise(self) -> None:
        """Until a signal (returns) or a child's death (raises)."""
        while not self.stop_requested.wait(0.5):
            self.raise_if_dead()

    def stop_all(self) -> None:
        for role in ("server",):
            child = self.children.get(role)
            if child is None or child.poll() is not None:
                continue
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(STOP_GRACE[role])
            except subprocess.TimeoutExpired:
                click.echo(f"the {role} did not stop in {STOP_GRACE[role]:g}s: killing it",
                           err=True)
                child.kill()
                child.wait()


@click.command(short_help="Start a server and a worker on this machine.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@data_dir_option
@click.option("-C", "--concurrency", type=click.IntRange(0, 1024), default=os.cpu_count() or 1,
              show_default="number of CPUs", help="Tasks the worker runs at the same time.")
@click.option("--prefetch", type=click.IntRange(0, 10_000), default=0, show_default=True,
              help="Tasks the worker holds beyond those running: raise it (to about ten "
              "times the concurrency) for many tasks of a few milliseconds each.")
@click.option("--name", help="Worker name [default: this host's name].")
def up(host: str, port: int, data_dir: Path | None, concurrency: int, prefetch: int,
       name: str | None) -> None:
    """Start a server and a worker on this machine (SQLite in the data dir, initialised
    on first use) and print how to reach them. Ctrl-C stops both."""
    settings = ServerSettings.from_env(data_dir)
    root = settings.data_dir
    check_port_free(host, port)
    token = admin_token(settings)
    url = local_url(host, port)
    config = write_client_config(url, token)
    name = name or socket.gethostname()

    supervisor = Supervisor()
    previous = {s: signal.signal(s, supervisor.request_stop)
                for s in (signal.SIGTERM, signal.SIGINT)}
    worker_id: int | None = None
    client: Client | None = None
    try:
        supervisor.start("server", ["server", "run", "--host", host, "--port", str(port),
                                    "--data-dir", str(root)])
        supervisor.wait_healthy(url)
        if supervisor.stop_requested.is_set():
            return
        client = Client(url, token)
        worker_id = _hire_local_worker(client, supervisor, name, concurrency, prefetch)
        _banner(url, token, config, name, concurrency, root)
        supervisor.supervise()
    finally:
        if worker_id is not None:
            _give_back(client, worker_id)
        supervisor.stop_all()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _hire_local_worker(client: Client, supervisor: Supervisor, name: str,
                       concurrency: int, prefetch: int) -> int | None:
    """Deploy this machine's worker through the ``local`` provider and wait for it to
    register; returns its id (None if stopped meanwhile)."""
    client.flavor_update("local")  # this machine, measured
    existing = [w for w in client.worker_list(name=name) if not w.get("released_at")]
    for worker in existing:  # left by an `up` that was killed: give it back first
        if worker.get("provider") == "local":
            _give_back(client, worker["id"])
    (job,) = client.worker_deploy("local", provider="local", region="local", name=name,
                                  concurrency=max(1, concurrency), prefetch=prefetch,
                                  permanent=True)
    deadline = time.monotonic() + DEPLOY_TIMEOUT
    while not supervisor.stop_requested.is_set():
        supervisor.raise_if_dead()
        found = client.job_get(job["id"])
        if found["status"] == JobStatus.SUCCEEDED.value:
            return int(found["worker_id"])
        if found["status"] == JobStatus.FAILED.value or time.monotonic() > deadline:
            raise ScitqBenchError(f"the local worker could not be deployed: "
                                  f"{found.get('error') or 'timeout'}\n{found.get('log', '')}")
        supervisor.stop_requested.wait(0.3)
    return int(job["worker_id"])


def _give_back(client: Client | None, worker_id: int) -> None:
    """Stop the worker through its destroy job (its running tasks go back to the queue)."""
    if client is None:
        return
    try:
        job = client.worker_undeploy(worker_id)
    except ScitqBenchError as exc:
        click.echo(f"the worker could not be given back: {exc}", err=True)
        return
    deadline = time.monotonic() + UNDEPLOY_TIMEOUT
    while time.monotonic() < deadline:
        if client.job_get(job["id"])["status"] in (JobStatus.SUCCEEDED.value,
                                                   JobStatus.FAILED.value):
            return
        time.sleep(0.3)
    click.echo("the worker was not given back in time", err=True)


def _banner(url: str, token: str, config: Path, name: str, concurrency: int, root: Path) -> None:
    click.echo(f"\nscitq-bench is up: server {url}, worker {name!r} "
               f"(concurrency {concurrency}), data in {root}")
    click.echo(f"Admin token: {token}")
    click.echo(f"Web GUI: {url}/ui/ (sign in with the admin token)")
    click.echo(f"The CLI on this machine is configured ({config}); elsewhere, or in scripts:")
    click.echo(f"  export SCITQ_BENCH_SERVER={shlex.quote(url)}")
    click.echo(f"  export SCITQ_BENCH_TOKEN={shlex.quote(token)}")
    click.echo("Press Ctrl-C to stop.\n")
