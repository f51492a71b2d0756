"""Real server and worker processes for end-to-end tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import requests

from scitq_bench.client import Client
from scitq_bench.server.setup import init_server
from scitq_bench.settings import ServerSettings
from tests.support import waiting
from tests.support.postgres import free_port

T = TypeVar("T")

CLI = [sys.executable, "-m", "scitq_bench.cli.main"]


@dataclass
class Replica:
    """One more ``server run`` on a port of its own, on the stack's database and data
    dir: what a deployment behind a load balancer runs."""

    port: int
    process: subprocess.Popen
    log: str  # its output, a file name under the stack's root
    access_log: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Stack:
    """A server subprocess, any number of replicas of it, and any number of worker
    subprocesses."""

    root: Path
    database_url: str
    lease_seconds: float = 3.0
    port: int = field(default_factory=free_port)
    token: str = ""
    server: subprocess.Popen | None = None
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    access_log: bool = False  # the server logs every request to access.log
    replicas: list[Replica] = field(default_factory=list)

    def status_counts(self, log: str = "access.log") -> dict[int, int]:
        """Answers the server (or the replica whose access log is ``log``) gave, by
        HTTP status, from its access log."""
        counts: dict[int, int] = {}
        path = self.root / log
        for line in path.read_text().splitlines() if path.exists() else []:
            status = int(line.split('" ', 1)[1].split()[0])
            counts[status] = counts.get(status, 0) + 1
        return counts

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SCITQ_BENCH_DATA_DIR=str(self.data_dir),
            SCITQ_BENCH_DATABASE_URL=self.database_url,
            SCITQ_BENCH_LEASE_SECONDS=str(self.lease_seconds),
            SCITQ_BENCH_CONFIG=str(self.root / "client.json"),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        env.pop("SCITQ_BENCH_SERVER", None)
        env.pop("SCITQ_BENCH_TOKEN", None)
        return env

    def init(self) -> str:
        settings = ServerSettings(data_dir=self.data_dir, database_url=self.database_url)
        self.token = init_server(settings)
        return self.token

    def start_server(self, processes: int | None = None) -> None:
        self.server = self._launch(self.port, processes, "server.log", "access.log")
        self.wait_healthy()

    def start_replica(self, processes: int | None = None) -> Replica:
        """One more server on a free port, sharing the database and the data dir."""
        port = free_port()
        log, access_log = f"server-{port}.log", f"access-{port}.log"
        replica = Replica(port, self._launch(port, processes, log, access_log), log,
                          access_log)
        self.replicas.append(replica)
        self._wait_healthy(replica.url, replica.process, log)
        return replica

    def _launch(self, port: int, processes: int | None, log_name: str,
                access_log: str) -> subprocess.Popen:
        """A ``server run`` in a process group of its own (killed whole by killpg)."""
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / log_name, "ab")
        return subprocess.Popen(
            [*CLI, "server", "run", "--port", str(port),
             *(["--processes", str(processes)] if processes else []),
             *(["--access-log", str(self.root / access_log)] if self.access_log else [])],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_healthy(self, timeout: float = 30.0) -> None:
        self._wait_healthy(self.url, self.server, "server.log", timeout)

    def _wait_healthy(self, url: str, process: subprocess.Popen | None, log: str,
                      timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"server exited: {self.tail(log)}")
            try:
                if requests.get(f"{url}/api/v1/health", timeout=5).ok:
                    return
            except requests.RequestException:  # not up yet, or too loaded to answer in time
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not answer: {self.tail(log)}")

    def kill_server(self) -> None:
        if self.server is not None:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait()
            self.server = None

    def kill_replica(self, replica: Replica) -> None:
        """SIGKILL the replica's whole process group, mid-request if it is serving."""
        os.killpg(replica.process.pid, signal.SIGKILL)
        replica.process.wait()

    def start_worker(self, name: str, concurrency: int = 2, prefetch: int = 0,
                     containers: bool = False, server: str | None = None) -> subprocess.Popen:
        """A worker process; with a container engine only when ``containers`` (the
        engine ``DOCKER_HOST`` names); talking to ``server`` (a replica or a balancer)
        rather than the stack's server when given."""
        work_dir = self.root / f"work-{name}"
        log = open(self.root / f"worker-{name}.log", "ab")
        process = subprocess.Popen(
            [*CLI, "--token", self.token, "worker", "run", server or self.url, "--name", name,
             "--concurrency", str(concurrency), "--prefetch", str(prefetch),
             "--work-dir", str(work_dir), "--containers" if containers else "--no-containers"],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT,
        )
        self.workers[name] = process
        return process

    def client(self, **kwargs: object) -> Client:
        return Client(self.url, self.token, **kwargs)  # type: ignore[arg-type]

    def tail(self, name: str, size: int = 3000) -> str:
        path = self.root / name
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    def stop(self) -> None:
        for process in self.workers.values():
            if process.poll() is None:
                process.terminate()
        for process in self.workers.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        servers = [self.server, *(replica.process for replica in self.replicas)]
        running = [p for p in servers if p is not None and p.poll() is None]
        for process in running:
            os.killpg(process.pid, signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.2,
               what: str = "condition") -> T:
    """``waiting.wait_until`` paced for a real server: asked every 0.2 s by default, so
    that the waiting test does not load what it waits for."""
    return waiting.wait_until(predicate, timeout, interval, what)


def counts(stack: Stack, batch: str) -> dict[str, int]:
    """The batch's tasks by status (empty while it does not exist)."""
    found = stack.client().batch_list(name=batch)
    return found[0]["counts"] if found else {}


def succeeded(stack: Stack, batch: str) -> int:
    """The batch's succeeded tasks."""
    return counts(stack, batch).get("succeeded", 0)


def executions_by_task(stack: Stack, batch: str) -> dict[int, list[dict]]:
    """The batch's executions, by task."""
    by_task: dict[int, list[dict]] = {}
    for execution in stack.client().execution_list(batch=batch):
        by_task.setdefault(execution["task_id"], []).append(execution)
    return by_task
