"""Prometheus metrics: what the queue holds, read from the database at each scrape, and
what each API process sees (its call latencies, its waiting long polls, its answers).

Two sources, because they answer different questions:

- The queue's state (tasks by batch and status, executions started and ended by outcome
  and reason, workers, hired machines and their hourly cost, recruitment jobs,
  submissions, scoring durations) lives in the database. It is read there at each
  scrape (a handful of grouped counts), so it equals what the API answers, whichever
  process, replica or background loop made the change, and it survives restarts. Every
  replica reports the same figures: aggregate them with ``max``, never ``sum``.
- A process's own observations (``scitq_bench_worker_call_seconds``,
  ``scitq_bench_long_polls_waiting``, ``scitq_bench_worker_calls_waiting_turn``,
  ``scitq_bench_http_requests_total``) are kept in prometheus_client's
  multiprocess mode: each gunicorn process writes its values to files in
  ``PROMETHEUS_MULTIPROC_DIR`` and a scrape, served by any process, adds them up.
  That folder is per host and emptied when gunicorn starts (``on_starting``).
  Without it (``--debug``, tests, an embedded app) the values stay in the process.

prometheus_client picks its storage when it is first imported, from the environment:
this module imports it only inside functions, so ``prepare_multiprocess_dir`` (run in
gunicorn's master before any API process exists) is always first.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g, has_request_context, request
from sqlalchemy import and_, case, func, select

from scitq_bench import __version__
from scitq_bench.server.bench.models import Run, Submission
from scitq_bench.server.queue.models import Batch, Execution, Task, Worker
from scitq_bench.server.recruit.models import Job
from scitq_bench.states import FINAL_EXECUTION_VALUES

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

    from scitq_bench.server.db import Database

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# request endpoint -> the ``call`` label of the worker protocol's latency histogram
WORKER_CALLS = {"workers.claim": "claim", "workers.report": "report",
                "workers.heartbeat": "heartbeat"}
# methods counted by name; anything else a client sends is "other" (labels stay few)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# server time of a worker call, waiting for work excluded: milliseconds when healthy
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# a scoring program runs seconds to hours
SCORING_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
NO_VALUE = "none"  # the label value of a missing provider or reason

# every family /metrics exposes (the Grafana dashboard and the tests use these names)
METRIC_NAMES = (
    "scitq_bench_build_info",
    "scitq_bench_tasks",
    "scitq_bench_executions_started_total",
    "scitq_bench_executions_ended_total",
    "scitq_bench_workers",
    "scitq_bench_machines_hired",
    "scitq_bench_machines_hourly_cost",
    "scitq_bench_recruitment_jobs",
    "scitq_bench_submissions",
    "scitq_bench_scoring_seconds",
    "scitq_bench_worker_call_seconds",
    "scitq_bench_long_polls_waiting",
    "scitq_bench_worker_calls_waiting_turn",
    "scitq_bench_http_requests_total",
)

_made_dir: Path | None = None  # the folder prepare_multiprocess_dir created, if it did


# -- the multiprocess folder ------------------------------------------------------------


def prepare_multiprocess_dir() -> Path:
    """The folder where API processes write their metrics (``PROMETHEUS_MULTIPROC_DIR``;
    a new temporary one when unset), emptied: values of a previous run would otherwise
    be added to this one's."""
    global _made_dir
    configured = os.environ.get(MULTIPROCESS_ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = _made_dir = Path(tempfile.mkdtemp(prefix="scitq-bench-metrics-"))
        os.environ[MULTIPROCESS_ENV] = str(path)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return path


def process_ended(pid: int) -> None:
    """An API process is gone: its live gauges stop counting."""
    if os.environ.get(MULTIPROCESS_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def remove_multiprocess_dir() -> None:
    """Remove the folder ``prepare_multiprocess_dir`` created (not one configured)."""
    if _made_dir is not None:
        shutil.rmtree(_made_dir, ignore_errors=True)


# -- what each process observes ---------------------------------------------------------


@dataclass(frozen=True)
class ProcessMetrics:
    calls: Histogram
    long_polls: Gauge
    waiting_turn: Gauge
    requests: Counter
    # the labelled series, looked up once each: ``labels`` checks its values and takes
    # a lock at every call, a few per cent of a heartbeat's cost
    _series: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    def count_answer(self, method: str, status: int) -> None:
        self._child(self.requests, method, str(status)).inc()

    def time_call(self, call: str, seconds: float) -> None:
        self._child(self.calls, call).observe(seconds)

    def _child(self, metric: Any, *values: str) -> Any:
        key = (metric, *values)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = metric.labels(*values)
        return series


@functools.cache
def process_metrics() -> ProcessMetrics:
    """This process's metrics, made once (after the multiprocess folder is known)."""
    from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

    disable_created_metrics()  # "_created" series double the exposition for nothing
    return ProcessMetrics(
        calls=Histogram("scitq_bench_worker_call_seconds",
                        "Server time of a worker's claim, report or heartbeat, waiting "
                        "for work or signals excluded", ["call"], buckets=CALL_BUCKETS),
        long_polls=Gauge("scitq_bench_long_polls_waiting",
                         "Long polls (claims and heartbeats) waiting for work or signals",
                         multiprocess_mode="livesum"),
        waiting_turn=Gauge("scitq_bench_worker_calls_waiting_turn",
                           "Worker calls waiting for a turn at the database (every turn of "
                           "their API process taken: it is saturated)",
                           multiprocess_mode="livesum"),
        requests=Counter("scitq_bench_http_requests",
                         "API and GUI requests answered, by method and status",
                         ["method", "status"]),
    )


@contextmanager
def long_poll_waiting() -> Iterator[None]:
    """Around a long poll's wait: counted as waiting, and its time kept out of the
    call's latency."""
    gauge = process_metrics().long_polls
    gauge.inc()
    started = time.perf_counter()
    try:
        yield
    finally:
        gauge.dec()
        if has_request_context():
            g.metrics_waited = g.get("metrics_waited", 0.0) + time.perf_counter() - started


def install(app: Flask) -> None:
    """Count every answer of ``app`` and time the worker protocol's calls."""
    process_metrics()  # made now, not on a first request racing another

    @app.before_request
    def _started() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _answered(response: Response) -> Response:
        metrics = process_metrics()
        method = request.method if request.method in METHODS else "other"
        metrics.count_answer(method, response.status_code)
        call = WORKER_CALLS.get(request.endpoint or "")
        started = g.get("metrics_started")
        if call is not None and started is not None:
            spent = time.perf_counter() - started - g.get("metrics_waited", 0.0)
            metrics.time_call(call, max(spent, 0.0))
        return response


# -- what the database holds --------------------------------------------------------------


class DatabaseCollector:
    """The queue's state, counted in one read transaction at each scrape."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def describe(self) -> list[Any]:
        return []  # nothing is read when registered, only when scraped

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        info = GaugeMetricFamily("scitq_bench_build_info", "The server's version",
                                 labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        with self.db.read() as session:
            connection = session.connection()
            yield from self._tasks(connection)
            yield from self._executions(connection)
            yield from self._workers(connection)
            yield from self._recruitment(connection)
            yield from self._benchmarks(connection)

    @staticmethod
    def _tasks(connection: Any) -> Iterator[Any]:
        rows = connection.execute(
            select(Batch.name, Task.status, func.count())
            .join(Batch, Batch.id == Task.batch_id).group_by(Batch.name, Task.status))
        yield _gauge("scitq_bench_tasks", "Tasks by batch and status", ["batch", "status"],
                     rows)

    @staticmethod
    def _executions(connection: Any) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        started = connection.execute(
            select(func.count()).where(Execution.started_at.is_not(None))).scalar_one()
        family = CounterMetricFamily("scitq_bench_executions_started",
                                     "Executions that started running")
        family.add_metric([], started)
        yield family
        ended = CounterMetricFamily("scitq_bench_executions_ended",
                                    "Executions that ended, by outcome and reason",
                                    labels=["outcome", "reason"])
        for status, reason, count in connection.execute(
                select(Execution.status, Execution.reason, func.count())
                .where(Execution.status.in_(sorted(FINAL_EXECUTION_VALUES)))
                .group_by(Execution.status, Execution.reason)):
            ended.add_metric([status, reason or NO_VALUE], count)
        yield ended

    @staticmethod
    def _workers(connection: Any) -> Iterator[Any]:
        provider = func.coalesce(Worker.provider, NO_VALUE)
        yield _gauge("scitq_bench_workers", "Workers by status and provider",
                     ["status", "provider"],
                     connection.execute(select(Worker.status, provider, func.count())
                                        .group_by(Worker.status, provider)))
        hired = connection.execute(
            select(provider, func.count(), func.coalesce(func.sum(Worker.cost_per_hour), 0.0))
            .where(and_(Worker.instance_id.is_not(None), Worker.released_at.is_(None)))
            .group_by(provider)).all()
        yield _gauge("scitq_bench_machines_hired", "Machines hired and not yet given back",
                     ["provider"], [(name, count) for name, count, _ in hired])
        yield _gauge("scitq_bench_machines_hourly_cost",
                     "What the hired machines cost per hour, by provider", ["provider"],
                     [(name, cost) for name, _, cost in hired])

    @staticmethod
    def _recruitment(connection: Any) -> Iterator[Any]:
        yield _gauge("scitq_bench_recruitment_jobs", "Deploy and destroy jobs by status",
                     ["kind", "status"],
                     connection.execute(select(Job.kind, Job.status, func.count())
                                        .group_by(Job.kind, Job.status)))

    @staticmethod
    def _benchmarks(connection: Any) -> Iterator[Any]:
        from prometheus_client.core import HistogramMetricFamily

        yield _gauge("scitq_bench_submissions", "Submissions by status", ["status"],
                     connection.execute(select(Submission.status, func.count())
                                        .group_by(Submission.status)))
        ran = (Execution.task_id == Run.scoring_task_id) & Execution.duration.is_not(None)
        counted = [func.sum(case((Execution.duration <= bound, 1), else_=0))
                   for bound in SCORING_BUCKETS]
        row = connection.execute(
            select(func.count(), func.coalesce(func.sum(Execution.duration), 0.0), *counted)
            .select_from(Run).join(Execution, ran)).one()
        total, seconds, *within = row
        buckets = [(_bound(b), n or 0) for b, n in zip(SCORING_BUCKETS, within, strict=True)]
        histogram = HistogramMetricFamily(
            "scitq_bench_scoring_seconds", "How long scoring programs ran",
            buckets=[*buckets, ("+Inf", total)], sum_value=seconds)
        yield histogram


def _bound(value: float) -> str:
    return repr(float(value))


def _gauge(name: str, documentation: str, labels: list[str],
           rows: Iterable[Any]) -> Any:
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily(name, documentation, labels=labels)
    for *values, number in rows:
        family.add_metric([str(v) for v in values], number)
    return family


# -- the exposition ----------------------------------------------------------------------


def exposition(db: Database) -> tuple[bytes, str]:
    """The text a scrape gets, and its content type: every process's observations on
    this host (or this process's alone) and the database's counts."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    process_metrics()
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROCESS_ENV):
        MultiProcessCollector(registry)
        sources: list[Any] = [registry]
    else:
        sources = [REGISTRY, registry]
    registry.register(DatabaseCollector(db))
    return b"".join(generate_latest(source) for source in sources), CONTENT_TYPE_LATEST
