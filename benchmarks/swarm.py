"""Many simulated workers against a real server on PostgreSQL: makespan, latency, CPU.

One client process (asyncio and ``lean_http``, loopback only) plays N workers of concurrency 1
that follow the worker agent's protocol: register, hold a claim long poll while idle,
heartbeat as a long poll, "run" a task by sleeping the S of its ``sleep S`` command,
report ``running`` and then the final event with the next claim in the same call. A 503
is waited out for its Retry-After. The tasks are created once the servers hold every
worker's two long polls (their ``/metrics``): the workers' first calls written is not
enough, the servers may still be answering them. Every phase is bounded by
``--timeout``; whatever happens, the servers and the database the script started are
stopped.

    python -m benchmarks.swarm --workers 1000 --tasks 5000 --task-seconds 10
    python -m benchmarks.swarm --server-arg=--threads=2500 --replicas 2
    python -m benchmarks.swarm --compare processes
    python -m benchmarks.swarm --compare replicas --cpu-per-process 0.25 --tasks 10000

``--cpu-per-process C`` caps each API process at C of a core (a cgroup each, as root:
``benchmarks/cpucap.py``), so that on a small machine the API processes are the
bottleneck and a 1-to-2 comparison says whether their capacities add up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import lean_http  # noqa: E402
from benchmarks.cpucap import CapUnavailable, CpuCaps  # noqa: E402
from tests.support.postgres import free_port, start_postgres  # noqa: E402

API = "/api/v1"
BATCH = "swarm"
CLAIM_WAIT = 20.0  # the agent's claim long poll
LINGER = 0.05  # the agent's reporter waits this long for company before it reports
CALL_TIMEOUT = 60.0  # the agent's client timeout, on top of a long poll's wait
FIRST_DELAY, MAX_DELAY = 0.2, 10.0  # the agent's backoff after a failed call
REGISTER_AT_ONCE = 100
PROBE_EVERY = 0.5  # the wait=0 heartbeat that measures a heartbeat's latency
WATCH_EVERY = 2.0  # the server's own count of succeeded tasks
START_BOUND = 60.0  # init, a server's start, the long polls settling: each at most this
# the long polls the servers must hold before the creation, of the workers' two each: a
# heartbeat's wait that ended is in flight a moment before the next one waits
SETTLED_SHARE = 0.98
WAITING_METRIC = "scitq_bench_long_polls_waiting"
STOP_GRACE = 10.0
INTERRUPTED = "interrupted: the servers and the database were stopped"
CLI = [sys.executable, "-m", "scitq_bench.cli.main"]
LATENCY_KINDS = {
    "report": "`running` event, no claim",
    "report+claim": "final event with ?claim=1: report and claim in one call",
    "heartbeat probe": f"?wait=0, one extra worker (concurrency 0) every {PROBE_EVERY:g} s",
    "register": "setup, before the run",
}


class Aborted(Exception):
    """A phase ran out of time or could not go on: the figures so far are printed."""


class Refused(Exception):
    """A 4xx answer: the simulated worker cannot go on."""


# -- what was measured -------------------------------------------------------------------


@dataclass
class Tally:
    """Every answer, failure and finished task, counted by the one event loop."""

    tasks: int
    calls: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    busy: Counter[str] = field(default_factory=Counter)
    latencies: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    claims_written: set[int] = field(default_factory=set)
    woken: list[float] = field(default_factory=list)
    done: set[int] = field(default_factory=set)
    claims_empty: int = 0
    refused_events: int = 0
    server_succeeded: int | None = None
    server_counted_at: float | None = None
    stopped: list[str] = field(default_factory=list)
    all_done: asyncio.Event = field(default_factory=asyncio.Event)
    done_at: float | None = None

    def answered(self, kind: str, seconds: float, timed: bool) -> None:
        self.calls[kind] += 1
        if timed:
            self.latencies[kind].append(seconds)

    def finished(self, execution_id: int) -> None:
        self.done.add(execution_id)
        self._check(len(self.done))

    def server_count(self, succeeded: int) -> None:
        self.server_succeeded, self.server_counted_at = succeeded, time.monotonic()
        self._check(succeeded)

    def _check(self, succeeded: int) -> None:
        if succeeded >= self.tasks and not self.all_done.is_set():
            self.done_at = time.monotonic()
            self.all_done.set()

    def succeeded(self) -> int:
        return max(len(self.done), self.server_succeeded or 0)


@dataclass
class Figures:
    """One run's figures, filled phase by phase (None: the phase did not get there)."""

    workers: int
    tasks: int
    seconds: float
    heartbeat: float
    replicas: int
    server_args: list[str]
    tally: Tally
    code: str = ""
    registered_in: float | None = None
    claims_written_in: float | None = None
    polls_waiting: int | None = None  # long polls the servers held when it settled
    settled_in: float | None = None
    health_after: float | None = None
    create_seconds: float | None = None
    makespan: float | None = None
    run_wall: float | None = None
    run_began: float | None = None
    server_cpu: float | None = None
    database_cpu: float | None = None  # the PostgreSQL server, when on this machine
    client_cpu: float | None = None
    capped: str | None = None  # the API processes' CPU cap, as printed
    aborted: str | None = None

    @property
    def throughput(self) -> float | None:
        return self.tally.tasks / self.makespan if self.makespan else None

    @property
    def cpu_per_task(self) -> float | None:
        done = self.tally.succeeded()
        return self.server_cpu / done if self.server_cpu is not None and done else None

    @property
    def database_cpu_per_task(self) -> float | None:
        done = self.tally.succeeded()
        return self.database_cpu / done if self.database_cpu is not None and done else None


# -- HTTP ----------------------------------------------------------------------------------


class Http:
    """The simulated workers' HTTP (``lean_http``: the client's CPU is taken from the
    servers it measures); retries as the agent does."""

    def __init__(self, client: lean_http.Client, tally: Tally) -> None:
        self.client = client
        self.tally = tally
        self._headers: dict[str, dict[str, str]] = {}

    async def call(self, kind: str, method: str, url: str, token: str, *,
                   params: dict[str, str] | None = None, body: Any = None,
                   wait: float = 0.0, timed: bool = False, trace: Any = None,
                   text: bool = False) -> Any:
        """The answer's JSON (``text``: its text). A 503 is waited out for its
        Retry-After (a busy answer); connection errors, timeouts and 5xx are retried
        with backoff (failed calls); a 4xx raises ``Refused``. ``trace()`` is called
        once the request is written."""
        delay = FIRST_DELAY
        while True:
            began = time.monotonic()
            status, payload = await self._attempt(method, url, token, params, body, wait, trace,
                                                  text)
            if status == 503:
                self.tally.busy[kind] += 1
                await asyncio.sleep(payload * random.uniform(1.0, 1.5))  # spread the herd
                continue
            if 200 <= status < 300:
                self.tally.answered(kind, time.monotonic() - began, timed)
                return payload
            self.tally.failed[kind] += 1
            if 400 <= status < 500:
                raise Refused(f"{kind}: HTTP {status}: {str(payload)[:200]}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)

    async def _attempt(self, method: str, url: str, token: str, params: dict[str, str] | None,
                       body: Any, wait: float, trace: Any, text: bool) -> tuple[int, Any]:
        """(status, JSON) on success, (503, seconds to wait), (other status, text), or
        (0, None) when no answer came."""
        try:
            answer = await self.client.request(
                method, url, headers=self._authorization(token), params=params, body=body,
                timeout=CALL_TIMEOUT + wait, written=trace)
            if answer.status == 503:
                return 503, retry_after(answer.headers.get("retry-after"))
            if 200 <= answer.status < 300:
                return answer.status, answer.text() if text else answer.json()
            return answer.status, answer.text()
        except (lean_http.HttpError, OSError, TimeoutError, ValueError):
            return 0, None

    def _authorization(self, token: str) -> dict[str, str]:
        headers = self._headers.get(token)
        if headers is None:
            headers = self._headers[token] = {"Authorization": f"Bearer {token}"}
        return headers


def retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value or 1))
    except ValueError:
        return 1.0


# -- a simulated worker ----------------------------------------------------------------------


def metric_total(exposition: str, name: str) -> int:
    """The sum of a metric's samples in a Prometheus text exposition."""
    return int(sum(sample.value for family in text_string_to_metric_families(exposition)
                   for sample in family.samples if sample.name == name))


def task_seconds(command: str) -> float:
    """How long the task's command would run: ``sleep S`` sleeps S, ``true`` nothing."""
    words = command.split()
    return float(words[1]) if len(words) == 2 and words[0] == "sleep" else 0.0


def machine_stats() -> dict[str, Any]:
    """Once per run: the fields the agent sends with each heartbeat."""
    memory = psutil.virtual_memory()
    load = os.getloadavg()
    return {"cpu_percent": psutil.cpu_percent(interval=None), "load1": round(load[0], 2),
            "load5": round(load[1], 2), "load15": round(load[2], 2),
            "mem_percent": memory.percent, "mem_available_gb": round(memory.available / 2**30, 2)}


@dataclass
class SimulatedWorker:
    """Concurrency 1, no prefetch: claim, run, report with the next claim, and a
    heartbeat long poll all along, as the agent's threads do."""

    index: int
    server: str
    http: Http
    heartbeat: float
    stats: dict[str, Any]
    worker_id: int = 0
    token: str = ""
    held: int | None = None
    woken: bool = False
    acks: list[int] = field(default_factory=list)
    dropped: set[int] = field(default_factory=set)

    def url(self, path: str = "") -> str:
        return f"{self.server}{API}/workers/{self.worker_id}{path}"

    async def register(self, admin_token: str, concurrency: int = 1) -> None:
        body = {"name": f"swarm-{self.index}", "hostname": socket.gethostname(),
                "concurrency": concurrency, "prefetch": 0, "cpus": os.cpu_count(),
                "gpus": 0, "containers": False}
        answer = await self.http.call("register", "POST", f"{self.server}{API}/workers",
                                      admin_token, body=body, timed=True)
        self.worker_id, self.token = int(answer["worker"]["id"]), answer["token"]

    async def live(self) -> None:
        """Work and heartbeat until cancelled; a 4xx stops this worker."""
        try:
            await asyncio.gather(self._work_loop(), self._heartbeat_loop())
        except Refused as exc:
            self.http.tally.stopped.append(str(exc))

    async def _heartbeat_loop(self) -> None:
        while True:
            acks, self.acks = self.acks, []
            body = {"stats": {**self.stats, "held": int(self.held is not None),
                              "running": int(self.held is not None)},
                    "executions": [] if self.held is None else [self.held],
                    "acknowledged_signals": acks}
            began = time.monotonic()
            answer = await self.http.call("heartbeat", "POST", self.url("/heartbeat"),
                                          self.token, params={"wait": f"{self.heartbeat:g}"},
                                          body=body, wait=self.heartbeat)
            self.acks += [int(s["id"]) for s in answer.get("signals") or []]
            self.dropped.update(int(e) for e in answer.get("drop") or [])
            if time.monotonic() - began < 0.05 and not answer.get("signals"):
                await asyncio.sleep(0.05)  # the agent never spins either

    async def _work_loop(self) -> None:
        claimed: list[dict[str, Any]] = []
        while True:
            claimed = await self._run(claimed[0]) if claimed else await self._claim()

    async def _claim(self) -> list[dict[str, Any]]:
        tally = self.http.tally
        answer = await self.http.call(
            "claim", "POST", self.url("/claim"), self.token, wait=CLAIM_WAIT,
            params={"max": "1", "wait": f"{CLAIM_WAIT:g}"},
            trace=lambda: tally.claims_written.add(self.index),
        )
        claimed = answer["executions"]
        if claimed and not self.woken:
            self.woken = True
            tally.woken.append(time.monotonic())
        tally.claims_empty += not claimed
        return claimed

    async def _run(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        """Sleep the task's duration; ``running`` goes after the reporter's linger unless
        the command already ended (the final event then implies it), and the final event
        claims the freed slot. Returns what that claim brought."""
        execution_id, seconds = int(payload["execution_id"]), task_seconds(payload["command"])
        self.held, started = execution_id, time.monotonic()
        try:
            if seconds > LINGER:
                await asyncio.sleep(LINGER)
                running = {"execution_id": execution_id, "status": "running",
                           "age": round(time.monotonic() - started, 3)}
                taken, _ = await self._report("report", running, claim=False)
                if not taken:  # the server no longer counts it as ours: the agent drops it
                    return []
            await asyncio.sleep(max(0.0, started + seconds - time.monotonic()))
            if execution_id in self.dropped:
                return []
            final = {"execution_id": execution_id, "status": "succeeded", "return_code": 0,
                     "error": None, "output_files": [], "duration": round(seconds, 3),
                     "age": 0.0}
            return (await self._report("report+claim", final, claim=True))[1]
        finally:
            self.held = None

    async def _report(self, kind: str, event: dict[str, Any],
                      claim: bool) -> tuple[bool, list[dict[str, Any]]]:
        """Whether the server took the event, and what the claim in the same call brought."""
        answer = await self.http.call(kind, "POST", self.url("/report"), self.token,
                                      params={"claim": "1"} if claim else None,
                                      body={"events": [event]}, timed=True)
        taken = bool(answer["results"][0].get("ok"))
        if not taken:
            self.http.tally.refused_events += 1
        elif event["status"] == "succeeded":
            self.http.tally.finished(event["execution_id"])
        return taken, answer.get("executions", [])


# -- the servers -----------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(admin_url: str | None) -> Iterator[str]:
    """A new database on that PostgreSQL server, or on a throwaway one; dropped after."""
    throwaway = start_postgres() if admin_url is None else None
    admin_url = admin_url or throwaway.url  # type: ignore[union-attr]
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"swarm_{uuid.uuid4().hex[:12]}"
    try:
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with contextlib.suppress(Exception), engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
        if throwaway is not None:
            throwaway.stop()


@dataclass
class Servers:
    """R ``server run`` processes sharing one database and one data dir."""

    root: Path
    database_url: str
    args: list[str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("SCITQ_BENCH_SERVER", "SCITQ_BENCH_TOKEN")}
        env.update(SCITQ_BENCH_DATABASE_URL=self.database_url,
                   SCITQ_BENCH_DATA_DIR=str(self.root / "data"),
                   SCITQ_BENCH_CONFIG=str(self.root / "client.json"),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
                   PYTHONUNBUFFERED="1")
        return env

    def init(self, bound: float) -> str:
        """``server init``: the schema and the admin token it prints."""
        done = subprocess.run([*CLI, "server", "init", "--data-dir", str(self.root / "data")],
                              env=self.env(), cwd=ROOT, capture_output=True, text=True,
                              timeout=bound)
        lines = done.stdout.splitlines()
        for index, line in enumerate(lines[:-1]):
            if line.startswith("Admin token"):
                return lines[index + 1].strip()
        raise Aborted(f"server init failed: {(done.stdout + done.stderr)[-2000:]}")

    def start(self, replicas: int, bound: float) -> None:
        for index in range(replicas):
            self.ports.append(free_port())
            log = open(self.root / f"server-{index}.log", "ab")
            self.processes.append(subprocess.Popen(
                [*CLI, "server", "run", "--port", str(self.ports[-1]),
                 "--data-dir", str(self.root / "data"), *self.args],
                env=self.env(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            ))
            log.close()
        deadline = time.monotonic() + bound
        for index in range(replicas):
            self._wait_healthy(index, deadline)

    def _wait_healthy(self, index: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.processes[index].poll() is not None:
                raise Aborted(f"server {index} exited: {self.tail(index)}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.urls[index]}{API}/health", timeout=5):
                    return
            time.sleep(0.1)
        raise Aborted(f"server {index} did not answer in time: {self.tail(index)}")

    def api_processes(self, expected: int, bound: float) -> list[int]:
        """The pids of the API processes (gunicorn's workers: children of a serving
        process), once ``expected`` of them are up."""
        deadline = time.monotonic() + bound
        while True:
            found = []
            for process in self.processes:
                with contextlib.suppress(psutil.NoSuchProcess):
                    for member in psutil.Process(process.pid).children(recursive=True):
                        with contextlib.suppress(psutil.NoSuchProcess):
                            parent = member.parent()
                            if parent is not None and _serving(member) and _serving(parent):
                                found.append(member.pid)
            if len(found) >= expected or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def tail(self, index: int, size: int = 1500) -> str:
        path = self.root / f"server-{index}.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    def cpu_seconds(self) -> float:
        """User + system CPU of every server process and its descendants, those that
        ended included (their parent's children times)."""
        total = 0.0
        for process in self.processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += tree_cpu(psutil.Process(process.pid))
        return total

    def stop(self) -> None:
        """SIGTERM to each server's process group, SIGKILL to what is left of it after
        the grace time (children that outlived their parent included)."""
        for process in self.processes:
            _signal_group(process, signal.SIGTERM)
        ends = time.monotonic() + STOP_GRACE
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, ends - time.monotonic()))
            _signal_group(process, signal.SIGKILL)
            process.wait()


def _serving(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return "scitq_bench.server.serving" in " ".join(process.cmdline())
    return False


def _given_processes(server_args: list[str]) -> int | None:
    """``--processes`` as given to ``server run`` (None: its default, the CPUs)."""
    for arg in server_args:
        if arg.startswith("--processes="):
            return int(arg.split("=", 1)[1])
    return None


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def code_description() -> str:
    """Which tree the servers run: its path, commit and whether scitq_bench/ differs."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
        return done.stdout.strip() if done.returncode == 0 else "?"

    changed = git("status", "--porcelain", "--untracked-files=no", "--", "scitq_bench")
    state = (f"{len(changed.splitlines())} file(s) changed under scitq_bench/" if changed
             else "scitq_bench/ as committed")
    return f"{ROOT} at {git('rev-parse', '--short', 'HEAD')}, {state}"


# -- the phases ------------------------------------------------------------------------------


@dataclass
class Run:
    """One swarm against running servers: the phases, each bounded by ``deadline``."""

    figures: Figures
    urls: list[str]
    admin_token: str
    deadline: float
    servers: Servers
    workers: list[SimulatedWorker] = field(default_factory=list)
    prober: SimulatedWorker | None = None
    loops: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def tally(self) -> Tally:
        return self.figures.tally

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    async def bounded(self, awaitable: Any, what: str, bound: float | None = None) -> Any:
        limit = self.left() if bound is None else min(bound, self.left())
        try:
            return await asyncio.wait_for(awaitable, limit)
        except asyncio.TimeoutError:
            cause = " (all that was left of --timeout)" if bound is None or limit < bound else ""
            raise Aborted(f"{what}: not done within {limit:.0f} s{cause}") from None

    async def execute(self, http: Http) -> None:
        """Register, let every worker wait in its claim, create, run to the end."""
        try:
            await self.register(http)
            await self.settle(http)
            await self.create_and_run(http)
        except (Aborted, Refused) as exc:
            self.figures.aborted = str(exc)
        finally:
            for loop in self.loops:
                loop.cancel()
            await asyncio.gather(*self.loops, return_exceptions=True)

    async def register(self, http: Http) -> None:
        stats = machine_stats()
        self.workers = [SimulatedWorker(i, self.urls[i % len(self.urls)], http,
                                        self.figures.heartbeat, stats)
                        for i in range(self.figures.workers)]
        gate = asyncio.Semaphore(REGISTER_AT_ONCE)

        async def one(worker: SimulatedWorker) -> None:
            async with gate:
                await worker.register(self.admin_token)

        began = time.monotonic()
        await self.bounded(asyncio.gather(*(one(w) for w in self.workers)), "registering")
        self.figures.registered_in = time.monotonic() - began
        self.prober = SimulatedWorker(len(self.workers), self.urls[0], http, 0.0, {})
        await self.bounded(self.prober.register(self.admin_token, concurrency=0),
                           "registering the probe")

    async def settle(self, http: Http) -> None:
        """Every worker holds its long polls before any task exists."""
        began = time.monotonic()
        self.loops = [asyncio.create_task(w.live()) for w in self.workers]
        await self.bounded(self._claims_written(), "claim long polls", START_BOUND)
        self.figures.claims_written_in = time.monotonic() - began
        await self.bounded(self._polls_waiting(http), "long polls waiting on the servers",
                           START_BOUND)
        self.figures.settled_in = time.monotonic() - began
        began = time.monotonic()
        with contextlib.suppress(Aborted):
            await self.bounded(self._health(http), "health check", START_BOUND)
            self.figures.health_after = time.monotonic() - began

    async def _claims_written(self) -> None:
        while len(self.tally.claims_written) < len(self.workers):
            await asyncio.sleep(0.05)

    async def _polls_waiting(self, http: Http) -> None:
        """Until the servers hold nearly every worker's claim and heartbeat long polls."""
        wanted = math.ceil(2 * len(self.workers) * SETTLED_SHARE)
        while True:
            waiting = 0
            for url in self.urls:
                exposition = await http.call("metrics", "GET", f"{url}/metrics",
                                             self.admin_token, text=True)
                waiting += metric_total(exposition, WAITING_METRIC)
            self.figures.polls_waiting = waiting
            if waiting >= wanted:
                return
            await asyncio.sleep(0.2)

    async def _health(self, http: Http) -> None:
        for url in self.urls:
            await http.call("health", "GET", f"{url}{API}/health", self.admin_token)

    async def probe(self) -> None:
        """Heartbeats that do not wait: what a heartbeat costs under this load."""
        worker = self.prober
        assert worker is not None
        body: dict[str, Any] = {"stats": {}, "executions": [], "acknowledged_signals": []}
        with contextlib.suppress(Refused):
            while True:
                await worker.http.call("heartbeat probe", "POST", worker.url("/heartbeat"),
                                       worker.token, body=body, timed=True)
                await asyncio.sleep(PROBE_EVERY)

    async def create_and_run(self, http: Http) -> None:
        figures = self.figures
        database = database_server(self.servers.database_url)
        cpu_before, client_before = self.servers.cpu_seconds(), client_cpu()
        database_before = database_cpu(database)
        began = figures.run_began = time.monotonic()
        try:
            self.loops.append(asyncio.create_task(self.probe()))
            await self.create(http)
            self.loops.append(asyncio.create_task(self.watch(http)))
            await self.bounded(self.tally.all_done.wait(), "the run")
        finally:
            ended = self.tally.done_at or time.monotonic()
            figures.run_wall = ended - began
            figures.makespan = ended - began if self.tally.all_done.is_set() else None
            figures.server_cpu = self.servers.cpu_seconds() - cpu_before
            figures.client_cpu = client_cpu() - client_before
            database_after = database_cpu(database)
            if database_before is not None and database_after is not None:
                figures.database_cpu = database_after - database_before

    async def create(self, http: Http) -> None:
        """All the tasks in one request, as the Python client's ``tasks_create`` sends them."""
        command = f"sleep {self.figures.seconds:g}" if self.figures.seconds else "true"
        body = {"tasks": [{"command": command, "batch": BATCH}] * self.figures.tasks}
        began = time.monotonic()
        await self.bounded(http.call("create", "POST", f"{self.urls[0]}{API}/tasks",
                                     self.admin_token, body=body), "creating the tasks")
        self.figures.create_seconds = time.monotonic() - began

    async def watch(self, http: Http) -> None:
        """The server's count: a success whose report the client missed still counts."""
        while True:
            await asyncio.sleep(WATCH_EVERY)
            with contextlib.suppress(Refused):
                await self.server_count(http)

    async def server_count(self, http: Http) -> None:
        answer = await http.call("watch", "GET", f"{self.urls[0]}{API}/batches",
                                 self.admin_token, params={"name": BATCH})
        if answer["batches"]:
            self.tally.server_count(int(answer["batches"][0]["counts"]["succeeded"]))


def tree_cpu(root: psutil.Process) -> float:
    """User + system CPU of ``root`` and its descendants, those that ended included
    (their parent's children times)."""
    total = 0.0
    for member in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = member.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def database_server(database_url: str) -> psutil.Process | None:
    """The PostgreSQL server of ``database_url`` when it runs on this machine (the
    process listening on its port), else None."""
    url = make_url(database_url)
    if url.host not in (None, "", "localhost", "127.0.0.1", "::1"):
        return None
    port = url.port or 5432
    with contextlib.suppress(psutil.AccessDenied):
        for connection in psutil.net_connections(kind="tcp"):
            if (connection.status == psutil.CONN_LISTEN and connection.laddr
                    and connection.laddr.port == port and connection.pid):
                return psutil.Process(connection.pid)
    return None


def database_cpu(server: psutil.Process | None) -> float | None:
    if server is None:
        return None
    with contextlib.suppress(psutil.NoSuchProcess):
        return tree_cpu(server)
    return None


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def drive(run: Run) -> None:
    """The client side of one run: one pool of keep-alive connections for every
    worker's calls."""
    client = lean_http.Client()
    try:
        http = Http(client, run.tally)
        await run.execute(http)
        if run.figures.tasks and run.figures.create_seconds is not None:
            with contextlib.suppress(Refused, asyncio.TimeoutError):
                await asyncio.wait_for(run.server_count(http), STOP_GRACE)
    finally:
        client.close()


def run_once(args: argparse.Namespace, server_args: list[str], replicas: int,
             timeout: float) -> Figures:
    """One swarm on a fresh database and fresh servers, all stopped at the end."""
    deadline = time.monotonic() + timeout
    figures = Figures(args.workers, args.tasks, args.task_seconds, args.heartbeat, replicas,
                      server_args, Tally(args.tasks), code=code_description())
    with tempfile.TemporaryDirectory(prefix="scitq-bench-swarm-") as tmp, \
            fresh_database(args.database_url) as database_url:
        servers = Servers(Path(tmp), database_url, server_args)
        caps = CpuCaps(args.cpu_per_process) if args.cpu_per_process else None
        try:
            token = servers.init(max(1.0, min(START_BOUND, deadline - time.monotonic())))
            servers.start(replicas, max(1.0, min(START_BOUND, deadline - time.monotonic())))
            if caps is not None:
                figures.capped = cap_api_processes(servers, caps, replicas, server_args)
            run = Run(figures, servers.urls, token, deadline, servers)
            asyncio.run(drive(run))
        except (Aborted, subprocess.TimeoutExpired) as exc:
            figures.aborted = str(exc)
        except KeyboardInterrupt:  # the figures so far are still worth printing
            figures.aborted = INTERRUPTED
        finally:
            servers.stop()
            if caps is not None:
                caps.release()
    return figures


def cap_api_processes(servers: Servers, caps: CpuCaps, replicas: int,
                      server_args: list[str]) -> str:
    """Cap every API process of every replica; what was capped, in words."""
    expected = replicas * (_given_processes(server_args) or os.cpu_count() or 1)
    pids = servers.api_processes(expected, bound=10.0)
    if len(pids) < expected:
        raise Aborted(f"found {len(pids)} API process(es) to cap, expected {expected}")
    for pid in pids:
        caps.cap(pid)
    return f"{len(pids)} API process(es), each capped at {caps.cores:g} of a core (cgroup)"


# -- the figures -----------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank: a value that was measured."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def seconds(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f} s"


def describe(figures: Figures) -> list[str]:
    """The run's block, one figure a line."""
    tally = figures.tally
    command = f"sleep {figures.seconds:g}" if figures.seconds else "true"
    extra = " ".join(figures.server_args) or "no extra options"
    lines = [
        f"== swarm: {figures.workers} workers (concurrency 1), {figures.tasks} tasks of "
        f"`{command}`, heartbeat long poll {figures.heartbeat:g} s, claim long poll "
        f"{CLAIM_WAIT:g} s",
        f"code               {figures.code}",
        f"server             {figures.replicas} x `server run` ({extra}) on a fresh "
        "PostgreSQL database",
    ]
    if figures.capped:
        lines.append(f"cpu cap            {figures.capped}")
    if figures.registered_in is not None:  # else nothing was measured
        lines += [*setup_lines(figures), *run_lines(figures), *latency_lines(tally),
                  *count_lines(figures)]
    if figures.aborted:
        lines.append(f"ABORTED            {figures.aborted}")
    return lines


def setup_lines(figures: Figures) -> list[str]:
    health = ("no answer" if figures.health_after is None
              else f"answered {figures.health_after:.2f} s later")
    return [
        f"setup              registered {figures.workers} workers in "
        f"{seconds(figures.registered_in)}; "
        f"{len(figures.tally.claims_written)}/{figures.workers} claim long polls written "
        f"after {seconds(figures.claims_written_in)}; {figures.polls_waiting}/"
        f"{2 * figures.workers} long polls waiting on the servers after "
        f"{seconds(figures.settled_in)}; health check {health}",
        f"create             {figures.tasks} tasks in one request: "
        f"{seconds(figures.create_seconds, 3)}",
    ]


def run_lines(figures: Figures) -> list[str]:
    tally = figures.tally
    ideal = math.ceil(figures.tasks / figures.workers) * figures.seconds
    efficiency = (f"{ideal / figures.makespan:.3f}" if figures.makespan and ideal
                  else "n/a")
    throughput = "n/a" if figures.throughput is None else f"{figures.throughput:.1f} tasks/s"
    woken = ([t - figures.run_began for t in tally.woken]
             if figures.run_began is not None else [])
    wake = (f"p50 {percentile(woken, 0.5):.3f} s, p99 {percentile(woken, 0.99):.3f} s "
            f"over {len(woken)} workers" if woken else "n/a")
    counted = ("n/a" if tally.server_counted_at is None or figures.run_began is None else
               f"{tally.server_succeeded} succeeded "
               f"{tally.server_counted_at - figures.run_began:.1f} s after the create "
               "request's start")
    return [
        f"run                {len(tally.done)}/{figures.tasks} successes taken by the "
        f"server in the workers' reports, {seconds(figures.run_wall)} after the create "
        "request's start",
        f"server count       {counted} (its last answer to GET /batches)",
        f"makespan           {seconds(figures.makespan)} (create request's start -> "
        "every task seen succeeded)",
        f"ideal makespan     {ideal:.2f} s (ceil(M/N) x S at concurrency 1)",
        f"efficiency         {efficiency} (ideal / makespan)",
        f"throughput         {throughput}",
        f"wake-up            {wake} (create request's start -> a worker's first claim "
        "answer with a task)",
    ]


def latency_lines(tally: Tally) -> list[str]:
    lines = ["latency            one answered call, request sent -> answer read, client clock:"]
    for kind, meaning in LATENCY_KINDS.items():
        values = tally.latencies.get(kind)
        if not values:
            lines.append(f"  {kind:17} n/a ({meaning})")
            continue
        lines.append(f"  {kind:17} p50 {percentile(values, 0.5) * 1000:7.1f} ms  "
                     f"p99 {percentile(values, 0.99) * 1000:7.1f} ms  n={len(values):<6} "
                     f"({meaning})")
    return lines


def count_lines(figures: Figures) -> list[str]:
    tally = figures.tally
    done = tally.succeeded()
    per_task = ("n/a" if figures.cpu_per_task is None
                else f"{figures.cpu_per_task * 1000:.1f} ms per finished task")
    database = ("n/a (the PostgreSQL server is not on this machine)"
                if figures.database_cpu is None or figures.database_cpu_per_task is None
                else f"{figures.database_cpu:.1f} s over the run, "
                f"{figures.database_cpu_per_task * 1000:.1f} ms per finished task "
                "(the PostgreSQL server's process tree, every database in it)")
    client = ("n/a" if figures.client_cpu is None or not figures.run_wall else
              f"{figures.client_cpu:.1f} s over the run "
              f"({100 * figures.client_cpu / figures.run_wall:.0f}% of one core)")
    lines = [
        f"calls              {_counts(tally.calls)}; empty claim answers {tally.claims_empty}",
        f"failed calls       {sum(tally.failed.values())} {_counts(tally.failed, True)}"
        "(connection errors, timeouts, non-2xx other than 503)",
        f"busy answers       {sum(tally.busy.values())} {_counts(tally.busy, True)}"
        "(503, waited out for Retry-After)",
        f"refused events     {tally.refused_events} (a report's event the server did not take)",
        f"server CPU         {seconds(figures.server_cpu, 1)} over the run (create included), "
        f"{per_task} ({done} finished; every server process tree)",
        f"database CPU       {database}",
        f"client CPU         {client}",
    ]
    if tally.stopped:
        lines.append(f"workers stopped    {len(tally.stopped)}, first: {tally.stopped[0]}")
    return lines


def _counts(counter: Counter[str], bracket: bool = False) -> str:
    text = ", ".join(f"{kind} {count}" for kind, count in sorted(counter.items()))
    return (f"({text}) " if text else "") if bracket else text


# -- comparisons and the command line ----------------------------------------------------------


def compare(args: argparse.Namespace) -> list[Figures]:
    """The same short-task load with 1 then 2 processes (or replicas)."""
    runs = []
    for count in (1, 2):
        left = args.deadline - time.monotonic()
        bound = left / (3 - count)
        if args.compare == "processes":
            runs.append(run_once(args, [*args.server_arg, f"--processes={count}"],
                                 args.replicas, bound))
        else:  # capped: one process per replica unless told otherwise
            one_each = (["--processes=1"] if args.cpu_per_process
                        and _given_processes(args.server_arg) is None else [])
            runs.append(run_once(args, [*args.server_arg, *one_each], count, bound))
        print("\n".join(describe(runs[-1])), flush=True)
        if runs[-1].aborted == INTERRUPTED:
            break
    return runs


def comparison_lines(args: argparse.Namespace, runs: list[Figures]) -> list[str]:
    def ratio(one: float | None, two: float | None) -> str:
        return f"{two / one:.2f}" if one and two else "n/a"

    kind = args.compare
    one, two = runs
    names = {"processes": ("1 process", "2 processes"), "replicas": ("1 replica", "2 replicas")}
    tput = [f"{f.throughput:.1f}" if f.throughput else "n/a" for f in runs]
    cpu = [_milliseconds(f.cpu_per_task) for f in runs]
    db_cpu = [_milliseconds(f.database_cpu_per_task) for f in runs]
    return [
        f"== compare {kind}: {one.tasks} tasks of `true` over {one.workers} workers"
        + (f"; each API process capped at {args.cpu_per_process:g} of a core (cgroup)"
           if args.cpu_per_process else ""),
        f"{'':26}{names[kind][0]:>14}{names[kind][1]:>14}{'ratio 2/1':>11}",
        f"{'throughput (tasks/s)':26}{tput[0]:>14}{tput[1]:>14}"
        f"{ratio(one.throughput, two.throughput):>11}",
        f"{'server CPU per task (ms)':26}{cpu[0]:>14}{cpu[1]:>14}"
        f"{ratio(one.cpu_per_task, two.cpu_per_task):>11}",
        f"{'database CPU per task (ms)':26}{db_cpu[0]:>14}{db_cpu[1]:>14}"
        f"{ratio(one.database_cpu_per_task, two.database_cpu_per_task):>11}",
    ]


def _milliseconds(seconds_: float | None) -> str:
    return f"{seconds_ * 1000:.1f}" if seconds_ else "n/a"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, help="simulated workers [1000; compare: 100]")
    parser.add_argument("--tasks", type=int, help="tasks created in one request "
                        "[5000; compare: 3000]")
    parser.add_argument("--task-seconds", type=float, help="S of each task's `sleep S` "
                        "(0: `true`) [10; compare: 0]")
    parser.add_argument("--heartbeat", type=float, default=10.0,
                        help="seconds each heartbeat long poll waits [10]")
    parser.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="passed to `server run`, repeatable: --server-arg=--threads=2500")
    parser.add_argument("--replicas", type=int, default=1,
                        help="`server run` processes on one database; workers are spread "
                        "over them in turn [1]")
    parser.add_argument("--compare", choices=["processes", "replicas"],
                        help="the short-task load with 1 then 2 processes (--processes=N) "
                        "or replicas; prints both and the ratio")
    parser.add_argument("--cpu-per-process", type=float, metavar="CORES",
                        help="cap each API process at CORES of a core (a cgroup each; "
                        "root): the API processes become the bottleneck, for --compare")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="bound on all the phases, in seconds; stopping adds a few [600]")
    parser.add_argument("--database-url",
                        default=os.environ.get("SCITQ_BENCH_TEST_PG_URL") or None,
                        help="a PostgreSQL server to create a fresh database on "
                        "[$SCITQ_BENCH_TEST_PG_URL, else a throwaway server]")
    args = parser.parse_args()
    defaults = (100, 3000, 0.0) if args.compare else (1000, 5000, 10.0)
    for name, default in zip(("workers", "tasks", "task_seconds"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    return args


def raise_open_files() -> None:
    """Every worker holds up to three connections; the servers inherit this limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    args = parse_args()
    if args.cpu_per_process:
        try:
            CpuCaps(args.cpu_per_process)
        except CapUnavailable as exc:
            sys.exit(f"--cpu-per-process: {exc}")
    args.deadline = time.monotonic() + args.timeout
    raise_open_files()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up as on Ctrl-C
    if args.compare:
        runs = compare(args)
        if len(runs) == 2:
            print("\n".join(comparison_lines(args, runs)))
    else:
        runs = [run_once(args, args.server_arg, args.replicas, args.timeout)]
        print("\n".join(describe(runs[0])))
    if any(f.aborted == INTERRUPTED for f in runs):
        sys.exit(130)
    sys.exit(1 if any(f.aborted for f in runs) else 0)


if __name__ == "__main__":
    main()
