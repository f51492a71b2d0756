"""Server CPU per call of the worker protocol's hot path, in process.

The app is built in this process (no HTTP server, no reaper) and driven through its
WSGI entry by K registered workers in turn: heartbeats that change nothing, heartbeats
whose leases are due for renewal, reports of a finished execution that claim the next
one (``?claim=1``), reports of a start (accepted then running), and bare claims.
Bodies are those the worker agent sends. Each request is built (as a test client
would) and its answer decoded outside the timing; the WSGI call itself is timed alone
with ``time.process_time`` (CPU of this process: Flask, the API, SQLAlchemy, the
driver; not the database server's), so the untimed steps that prepare the next call
stay out of the figures too. The same measure of ``GET /api/v1/health`` is the floor:
what Flask costs for any request, whatever the view does; the figures are printed with
and without it. Statements are counted per call with a ``before_cursor_execute`` hook,
in warm-up rounds apart from the timed ones (an engine with listeners is slower); a
SQLite transaction's BEGIN IMMEDIATE counts (a round trip), a pool's pre-ping does not
show there.

    python -m benchmarks.hot_path [--workers 50] [--calls 1000] [--history 20000]
    python -m benchmarks.hot_path --profile        # also cProfile's top 15 per kind

After the table, the joint lines: a report-with-claim, then a heartbeat with leases
due, through the domain functions the API runs (no Flask, no view), each worker's
alone, then all the workers' together in one group, as an API process runs a burst of
them (``server.joint_claims``): CPU per call.

PostgreSQL first (``--database-url``, else ``SCITQ_BENCH_TEST_PG_URL``: a fresh database
is created in that server and dropped at the end), then SQLite in a temporary
directory (``--no-sqlite`` to skip). Target: heartbeat and report-with-claim at most
about 1 ms of server CPU each on PostgreSQL.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, event, insert, select, update  # noqa: E402
from sqlalchemy.engine import Engine, make_url  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

import scitq_bench  # noqa: E402
from scitq_bench.server.app import create_app  # noqa: E402
from scitq_bench.server.queue import workers as worker_domain  # noqa: E402
from scitq_bench.server.queue.models import Batch, Execution, Task, Worker, utcnow  # noqa: E402
from scitq_bench.server.schemas import ExecutionEvent, Heartbeat  # noqa: E402
from scitq_bench.server.setup import init_server  # noqa: E402
from scitq_bench.settings import ServerSettings  # noqa: E402

API = "/api/v1"
LEASE = 30.0
# What the agent's stats.collect() sends, plus held/running (figures of a real host)
STATS = {"cpu_percent": 12.5, "load1": 0.42, "load5": 0.38, "load15": 0.3,
         "mem_percent": 41.2, "mem_available_gb": 9.31, "disk_percent": 63.0,
         "disk_free_gb": 120.5}
KINDS = ("health (floor)", "heartbeat, nothing due", "heartbeat, leases due",
         "report final + claim=1", "report accepted+running", "claim max=1 wait=0")


@dataclass
class Figures:
    """CPU seconds, wall seconds and statements of each call of one kind."""

    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)  # while counting


@dataclass
class Bench:
    """One app on one database, its workers and what each holds."""

    app: Any
    engine: Engine  # the app's engine(s) are watched; this one prepares untimed steps
    admin: dict[str, str]
    tokens: dict[int, dict[str, str]] = field(default_factory=dict)
    held: dict[int, list[int]] = field(default_factory=dict)  # running executions
    statements: int = 0
    profiler: cProfile.Profile | None = None
    profiled: str | None = None  # the kind the profiler watches
    figures: dict[str, Figures] = field(default_factory=dict)

    def timed(self, kind: str, call: Callable[[], Any]) -> Any:
        """Run one call, adding its CPU, wall time and statements to ``kind``."""
        figures = self.figures.setdefault(kind, Figures())
        before = self.statements
        profiler = self.profiler if kind == self.profiled else None
        if profiler is not None:
            profiler.enable()
        wall, cpu = time.perf_counter(), time.process_time()
        result = call()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if profiler is not None:
            profiler.disable()
        figures.cpu.append(cpu)
        figures.wall.append(wall)
        figures.statements.append(self.statements - before)
        return result

    def call(self, method: str, path: str, headers: dict[str, str] | None = None,
             body: Any = None, kind: str | None = None) -> Any:
        """One request through the WSGI app; with ``kind``, timed. The request is
        built and the answer decoded outside the timing: what is timed is the
        server's work alone (what a test client adds is no server cost)."""
        environ = EnvironBuilder(path=API + path, method=method, json=body,
                                 headers=headers).get_environ()
        status: list[str] = []

        def start_response(line: str, _headers: Any, _exc_info: Any = None) -> None:
            status.append(line)

        def run() -> bytes:
            answer = self.app(environ, start_response)
            try:
                return b"".join(answer)
            finally:
                getattr(answer, "close", lambda: None)()

        data = self.timed(kind, run) if kind else run()
        if int(status[0].split()[0]) >= 300:
            raise SystemExit(f"{method} {path}: {status[0]} {data.decode(errors='replace')}")
        return json.loads(data)

    def post(self, path: str, headers: dict[str, str], body: Any = None,
             kind: str | None = None) -> Any:
        return self.call("POST", path, headers, body, kind)


@contextmanager
def counting(bench: Bench) -> Iterator[None]:
    """Count the statements sent meanwhile. Apart from the timed pass: an engine with
    listeners takes a slower path for every statement, which would weigh on the
    figures."""
    db = bench.app.extensions["scitq_bench"].db
    engines = list({id(db.writer): db.writer, id(db.reader): db.reader}.values())

    def count(*_args: Any) -> None:
        bench.statements += 1

    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        yield
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh database in the server ``admin_url`` points at, dropped afterwards."""
    name = f"hot_{uuid.uuid4().hex[:12]}"  # hex only: safe as a quoted identifier
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def build(url: str, data_dir: Path, workers: int) -> Bench:
    settings = ServerSettings(data_dir=data_dir, database_url=url, lease_seconds=LEASE,
                              run_reaper=False, claim_max_wait=1.0)
    admin_token = init_server(settings)
    app = create_app(settings, start_reaper=False)
    bench = Bench(app=app, engine=create_engine(url),
                  admin={"Authorization": f"Bearer {admin_token}"})
    for i in range(workers):
        answer = bench.post("/workers", bench.admin, {
            "name": f"hot-{i:03d}", "hostname": f"host-{i:03d}", "concurrency": 4,
            "prefetch": 0, "cpus": 8, "mem_gb": 31.2, "gpus": 0, "containers": False,
            "version": "bench"})
        bench.tokens[answer["worker"]["id"]] = {"Authorization": f"Bearer {answer['token']}"}
    return bench


def fill_history(bench: Bench, done: int) -> None:
    """``done`` finished tasks, each with its succeeded execution, in a running batch
    that has nothing pending: what a long-lived server's tables look like."""
    if not done:
        return
    worker_id = next(iter(bench.tokens))
    now = utcnow()
    with bench.engine.begin() as connection:
        batch_id = connection.execute(insert(Batch.__table__).values(
            name="history", status="running", priority=0, created_at=now, network=False)
            .returning(Batch.__table__.c.id)).scalar_one()
        for start in range(0, done, 5000):
            count = min(5000, done - start)
            connection.execute(insert(Task.__table__), [
                {"batch_id": batch_id, "name": f"old-{start + i}", "command": "true",
                 "shell": False, "inputs": [], "resources": [], "retries_allowed": 0,
                 "retries_used": 0, "losses": 0, "cpu": None, "mem": None, "gpu": 0,
                 "priority": 0, "status": "succeeded", "created_at": now,
                 "modified_at": now, "network": False} for i in range(count)])
        task_ids = connection.execute(select(Task.__table__.c.id).where(
            Task.__table__.c.batch_id == batch_id)).scalars().all()
        for start in range(0, len(task_ids), 5000):
            connection.execute(insert(Execution.__table__), [
                {"task_id": task_id, "worker_id": worker_id, "attempt": 1,
                 "status": "succeeded", "created_at": now, "started_at": now,
                 "finished_at": now, "duration": 0.01, "return_code": 0,
                 "output_files": [], "snapshot": {}}
                for task_id in task_ids[start:start + 5000]])
        if bench.engine.dialect.name == "postgresql":
            connection.exec_driver_sql("ANALYZE")


def add_tasks(bench: Bench, count: int) -> None:
    for start in range(0, count, 2000):
        bench.post("/tasks", bench.admin, {"tasks": [
            {"command": "true", "batch": "hot", "name": f"t{start + i}"}
            for i in range(min(2000, count - start))]})


def start_report(bench: Bench, worker_id: int, executions: list[int]) -> None:
    """Accepted then running, as the agent reports a task it starts."""
    events = [{"execution_id": e, "status": s, "age": 0.004}
              for e in executions for s in ("accepted", "running")]
    bench.post(f"/workers/{worker_id}/report", bench.tokens[worker_id], {"events": events},
               "report accepted+running")


def final_event(execution_id: int) -> dict[str, Any]:
    """The agent's final event of a successful command (``_finish``)."""
    return {"execution_id": execution_id, "status": "succeeded", "return_code": 0,
            "error": None, "output_files": [], "duration": 0.012, "age": 0.003}


def heartbeat_body(bench: Bench, worker_id: int) -> dict[str, Any]:
    held = sorted(bench.held[worker_id])
    return {"stats": {**STATS, "held": len(held), "running": len(held)},
            "executions": held, "acknowledged_signals": []}


def heartbeat(bench: Bench, kind: str, worker_id: int) -> None:
    body = heartbeat_body(bench, worker_id)
    answer = bench.post(f"/workers/{worker_id}/heartbeat?wait=0", bench.tokens[worker_id],
                        body, kind)
    if answer["drop"] or answer["signals"]:
        raise SystemExit(f"unexpected heartbeat answer: {answer}")


def make_due(bench: Bench, worker_id: int) -> None:
    """Age the worker's contact and leases by half a lease (untimed), as if its last
    heartbeat were that old: the next one has leases to renew."""
    past = utcnow() - timedelta(seconds=LEASE / 2)
    execution, worker = Execution.__table__, Worker.__table__
    with bench.engine.begin() as connection:
        connection.execute(update(execution).where(execution.c.worker_id == worker_id,
                                                   execution.c.status == "running")
                           .values(lease_deadline=past + timedelta(seconds=LEASE)))
        connection.execute(update(worker).where(worker.c.id == worker_id)
                           .values(last_contact_at=past))


def report_and_claim(bench: Bench, worker_id: int) -> None:
    """The oldest held execution ends; the report claims its replacement, which then
    starts (untimed)."""
    finished = bench.held[worker_id].pop(0)
    answer = bench.post(f"/workers/{worker_id}/report?claim=1", bench.tokens[worker_id],
                        {"events": [final_event(finished)]}, "report final + claim=1")
    if not all(r["ok"] for r in answer["results"]) or len(answer.get("executions", [])) != 1:
        raise SystemExit(f"unexpected report answer: {answer}")
    new = answer["executions"][0]["execution_id"]
    start_report(bench, worker_id, [new])
    bench.held[worker_id].append(new)


def claim(bench: Bench, worker_id: int) -> None:
    """A bare claim of one (the worker has room); the execution then runs and ends
    in an untimed report, so the worker's room is the same for the next round."""
    answer = bench.post(f"/workers/{worker_id}/claim?max=1&wait=0", bench.tokens[worker_id],
                        None, "claim max=1 wait=0")
    if len(answer["executions"]) != 1:
        raise SystemExit(f"unexpected claim answer: {answer}")
    execution = answer["executions"][0]["execution_id"]
    events = [{"execution_id": execution, "status": "running", "age": 0.01},
              final_event(execution)]
    bench.post(f"/workers/{worker_id}/report", bench.tokens[worker_id], {"events": events})


def health(bench: Bench) -> None:
    bench.call("GET", "/health", kind="health (floor)")


def prepare(bench: Bench, held: int) -> None:
    """Every worker claims ``held`` executions and starts them (untimed)."""
    for worker_id, headers in bench.tokens.items():
        answer = bench.post(f"/workers/{worker_id}/claim?max={held}", headers)
        bench.held[worker_id] = [e["execution_id"] for e in answer["executions"]]
        bench.post(f"/workers/{worker_id}/report", headers, {"events": [
            {"execution_id": e, "status": s, "age": 0.0}
            for e in bench.held[worker_id] for s in ("accepted", "running")]})
        bench.post(f"/workers/{worker_id}/heartbeat", headers, heartbeat_body(bench, worker_id))


def run_rounds(bench: Bench, calls: int) -> None:
    """``calls`` of each kind, the workers taking turns, kinds interleaved so that
    the machine's noise falls on all of them alike."""
    workers = list(bench.tokens)
    for i in range(calls):
        worker_id = workers[i % len(workers)]
        health(bench)
        make_due(bench, worker_id)
        heartbeat(bench, "heartbeat, leases due", worker_id)
        heartbeat(bench, "heartbeat, nothing due", worker_id)  # follows closely
        report_and_claim(bench, worker_id)
        claim(bench, worker_id)


def measure(url: str, label: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hot-path-") as scratch:
        bench = build(url, Path(scratch) / "data", args.workers)
        try:
            fill_history(bench, args.history)
            warm_up = min(args.calls, args.workers)
            rounds = 2 * warm_up + args.calls + (args.profile_calls if args.profile else 0)
            add_tasks(bench, args.workers * (2 + 2 * args.joint_rounds) + 2 * rounds + 10)
            prepare(bench, 2)
            with counting(bench):  # also warms caches and plans up
                run_rounds(bench, warm_up)
                run_rounds(bench, warm_up)
            statements = {kind: statistics.mean(f.statements[warm_up:])
                          for kind, f in bench.figures.items()}
            bench.figures.clear()
            run_rounds(bench, args.calls)
            result = summary(label, bench, statements)
            result["joint"] = joint(bench, args.joint_rounds)
            result["joint_heartbeats"] = joint_heartbeats(bench, args.joint_rounds)
            if args.profile:
                profile(bench, args.profile_calls, args.profile_lines, args.profile_sort)
            return result
        finally:
            bench.app.extensions["scitq_bench"].db.dispose()
            bench.engine.dispose()


def alone_and_together(label: str, workers: list[int], rounds: int,
                       prepare: Callable[[int], Any], alone: Callable[[int, Any], Any],
                       together: Callable[[dict[int, Any]], dict[int, Any]],
                       settle: Callable[[int, Any], None]) -> dict[str, float]:
    """CPU per call, in ms, median of ``rounds`` rounds: each worker's call alone, then
    all the workers' calls in one group, as ``server.joint_claims`` runs a burst.
    ``prepare`` makes a worker's request and ``settle`` checks and follows up its answer,
    both untimed."""
    alone_cpu: list[float] = []
    together_cpu: list[float] = []
    for _ in range(rounds):
        for worker_id in workers:
            request = prepare(worker_id)
            began = time.process_time()
            answer = alone(worker_id, request)
            alone_cpu.append(time.process_time() - began)
            settle(worker_id, answer)
        requests = {worker_id: prepare(worker_id) for worker_id in workers}
        began = time.process_time()
        answers = together(requests)
        together_cpu.append((time.process_time() - began) / len(workers))
        for worker_id in workers:
            settle(worker_id, answers[worker_id])
    figures = {"alone_ms": statistics.median(alone_cpu) * 1000,
               "together_ms": statistics.median(together_cpu) * 1000}
    print(f"  {label} in the domain (no Flask, no view), CPU ms per call, median of "
          f"{rounds} rounds: alone {figures['alone_ms']:.3f}, {len(workers)} together "
          f"{figures['together_ms']:.3f}")
    return figures


def joint(bench: Bench, rounds: int) -> dict[str, float]:
    """Reports that claim, through the domain functions the API runs them with
    (``workers.report_and_claim``, ``workers.reports_and_claims``); the starts that
    follow are untimed."""
    ctx = bench.app.extensions["scitq_bench"]

    def final(worker_id: int) -> tuple[list[ExecutionEvent], int]:
        return [ExecutionEvent.model_validate(final_event(bench.held[worker_id].pop(0)))], 1

    def started(worker_id: int, answer: Any) -> None:
        if not isinstance(answer, dict) or len(answer["executions"]) != 1:
            raise SystemExit(f"unexpected report answer for worker {worker_id}: {answer}")
        new = answer["executions"][0]["execution_id"]
        start_report(bench, worker_id, [new])
        bench.held[worker_id].append(new)

    return alone_and_together(
        "report final + claim=1", list(bench.tokens), rounds, final,
        lambda worker_id, call: worker_domain.report_and_claim(ctx, worker_id, *call),
        lambda calls: worker_domain.reports_and_claims(ctx, calls), started)


def joint_heartbeats(bench: Bench, rounds: int) -> dict[str, float]:
    """Heartbeats with leases due, through the domain functions the API runs them with
    (``workers.beat``, ``workers.beats``); making the leases due is untimed."""
    ctx = bench.app.extensions["scitq_bench"]

    def due(worker_id: int) -> Heartbeat:
        make_due(bench, worker_id)
        return Heartbeat.model_validate(heartbeat_body(bench, worker_id))

    def renewed(worker_id: int, answer: Any) -> None:
        if not isinstance(answer, dict) or answer["drop"]:
            raise SystemExit(f"unexpected heartbeat answer for worker {worker_id}: {answer}")

    return alone_and_together(
        "heartbeat with leases due", list(bench.tokens), rounds, due,
        lambda worker_id, beat: worker_domain.beat(ctx, worker_id, beat),
        lambda beats: worker_domain.beats(ctx, beats), renewed)


def summary(label: str, bench: Bench, statements: dict[str, float]) -> dict[str, Any]:
    floor = statistics.mean(bench.figures["health (floor)"].cpu)
    print(f"\n{label}  (scitq_bench from {Path(scitq_bench.__file__).parent})")
    print(f"  {'kind':28} {'CPU ms':>8} {'-floor':>8} {'median':>8} {'wall ms':>8} "
          f"{'stmts':>6}  calls")
    rows = {}
    for kind in KINDS:
        figures = bench.figures[kind]
        cpu = statistics.mean(figures.cpu) * 1000
        net = cpu - (0 if kind == "health (floor)" else floor * 1000)
        median = statistics.median(figures.cpu) * 1000
        wall = statistics.mean(figures.wall) * 1000
        stmts = statements[kind]
        print(f"  {kind:28} {cpu:8.3f} {net:8.3f} {median:8.3f} {wall:8.3f} {stmts:6.1f}  "
              f"{len(figures.cpu)}")
        rows[kind] = {"cpu_ms": cpu, "net_cpu_ms": net, "median_cpu_ms": median,
                      "wall_ms": wall, "statements": stmts, "calls": len(figures.cpu)}
    return {"database": label, "code": str(Path(scitq_bench.__file__).parent), "kinds": rows}


def profile(bench: Bench, calls: int, lines: int, order: str) -> None:
    """cProfile of each kind alone (a fresh profile per kind, timed in CPU, not wall
    time: waiting for the database is not this process's cost), its top ``lines``."""
    workers = list(bench.tokens)
    steps: dict[str, Callable[[int], None]] = {
        "heartbeat, nothing due": lambda w: heartbeat(bench, "heartbeat, nothing due", w),
        "heartbeat, leases due": lambda w: (make_due(bench, w),
                                            heartbeat(bench, "heartbeat, leases due", w)),
        "report final + claim=1": lambda w: report_and_claim(bench, w),
    }
    for kind, step in steps.items():
        bench.profiler, bench.profiled = cProfile.Profile(time.process_time), kind
        for i in range(calls):
            step(workers[i % len(workers)])
        out = io.StringIO()
        pstats.Stats(bench.profiler, stream=out).sort_stats(order).print_stats(lines)
        bench.profiler = bench.profiled = None
        print(f"\n--- cProfile: {kind}, {calls} calls ---")
        print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--calls", type=int, default=1000, help="calls of each kind")
    parser.add_argument("--history", type=int, default=20_000,
                        help="finished tasks (with their executions) already in the tables")
    parser.add_argument("--database-url", default=os.environ.get("SCITQ_BENCH_TEST_PG_URL"),
                        help="a PostgreSQL server (a fresh database is made in it)")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile top 15 per kind")
    parser.add_argument("--profile-calls", type=int, default=300)
    parser.add_argument("--profile-lines", type=int, default=15)
    parser.add_argument("--profile-sort", default="cumulative", help="or tottime, ncalls...")
    parser.add_argument("--joint-rounds", type=int, default=20,
                        help="rounds of every worker's report-with-claim, alone then jointly")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    results = []
    if args.database_url:
        with postgres_database(args.database_url) as url:
            results.append(measure(url, "PostgreSQL", args))
    else:
        print("no PostgreSQL URL (--database-url or SCITQ_BENCH_TEST_PG_URL): SQLite only")
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="hot-path-db-") as scratch:
            results.append(measure(f"sqlite:///{scratch}/hot.db", "SQLite", args))
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
