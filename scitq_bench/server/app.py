"""The Flask app factory: configuration comes in, nothing runs at import time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from scitq_bench.server import bounds, gui, metrics, request_ids, wiring
from scitq_bench.server.api import (
    batches,
    bench,
    executions,
    files,
    flavors,
    meta,
    probes,
    recruit,
    tasks,
    workers,
)
from scitq_bench.server.api.errors import register_error_handlers
from scitq_bench.server.api.registry import API_PREFIX
from scitq_bench.server.context import (
    EXTENSION,
    ClaimAnswer,
    JointCalls,
    ReportCall,
    ServerContext,
)
from scitq_bench.server.db import Database
from scitq_bench.server.joint_claims import JointClaims
from scitq_bench.server.migrate import upgrade
from scitq_bench.server.notify import Notifier, build_notifier
from scitq_bench.server.queue import scheduling
from scitq_bench.server.queue import workers as worker_domain
from scitq_bench.server.reaper import Reaper
from scitq_bench.server.schemas import Heartbeat
from scitq_bench.server.storage import build_stores
from scitq_bench.server.turns import Turns
from scitq_bench.settings import ServerSettings

BLUEPRINTS = (meta.bp, batches.bp, tasks.bp, executions.bp, workers.bp, files.bp, bench.bp,
              flavors.bp, recruit.bp)


def create_app(settings: ServerSettings, *, start_reaper: bool | None = None,
               start_recruiter: bool | None = None,
               notifier: Notifier | None = None, dispatch_jobs: bool = False) -> Flask:
    """Build the app. ``start_reaper`` (default: ``settings.run_reaper``) starts the
    lease reaper thread; recruitment is set up when the server knows the URL workers
    reach it at (``public_url``), and its loop started with ``start_recruiter``
    (default: ``settings.run_recruiter`` when the reaper runs). ``notifier`` carries
    wake-ups (default: this process only). ``dispatch_jobs``: deploy and destroy jobs
    run in the leader's background process, not here. The schema is migrated to the
    latest revision first."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    wiring.connect()
    app = Flask(__name__)
    bounds.register(app)  # before any route: the routes use its ``id`` converter
    app.config["MAX_CONTENT_LENGTH"] = None
    app.json.sort_keys = False  # type: ignore[attr-defined]  # field order is the model's; sorting costs
    db = Database(settings.database_url, busy_timeout=settings.database_busy_timeout,
                  pool_size=settings.database_pool_size,
                  prepare=settings.database_prepare)
    logs, files = build_stores(settings)
    context = ServerContext(
        settings=settings,
        db=db,
        logs=logs,
        files=files,
        notifier=notifier or Notifier(),
        turns=Turns(min(settings.worker_transactions, settings.database_pool_size),
                    timeout=settings.database_busy_timeout,
                    bookkeeping_yield=settings.lease_seconds / 6,
                    waiting=metrics.process_metrics().waiting_turn),
    )
    context.joint = joint_calls(context)
    app.extensions[EXTENSION] = context
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint, url_prefix=API_PREFIX)
    app.register_blueprint(probes.bp)  # at the root, where probes and Prometheus look
    register_error_handlers(app)
    request_ids.install(app)
    metrics.install(app)
    gui.register(app, settings)
    if settings.run_reaper if start_reaper is None else start_reaper:
        reaper = Reaper(db, settings.lease_seconds, settings.reaper_interval, context.notifier)
        reaper.grant_grace()  # the server was away: its workers are not to blame
        reaper.start()
        app.extensions["scitq_bench_reaper"] = reaper
    if settings.public_url:
        reaping = settings.run_reaper if start_reaper is None else start_reaper
        if start_recruiter is None:
            start_recruiter = settings.run_recruiter and reaping
        start_recruitment(app, settings.public_url, start=start_recruiter,
                          dispatch=dispatch_jobs)
    return app


def start_recruitment(app: Flask, server_url: str, *, start: bool,
                      dispatch: bool = False) -> None:
    """Set up recruitment for ``app`` (its API answers once this ran) and, with
    ``start``, run its loop; with ``dispatch``, its jobs are handed to the leader."""
    from scitq_bench.server.recruit.runtime import EXTENSION as RECRUIT
    from scitq_bench.server.recruit.runtime import build

    context = app.extensions[EXTENSION]
    runtime = build(context.settings, context.db, server_url,
                    dispatch=context.notifier if dispatch else None)
    app.extensions[RECRUIT] = runtime
    if start:
        runtime.engine.start()


def create_serving_app(settings: ServerSettings, *, max_long_polls: int) -> Flask:
    """The app of one API process of ``server run``: it serves requests only (the
    background process runs the loops) and shares wake-ups with every other process
    on the database."""
    notifier = build_notifier(settings.session_database_url, max_waiters=max_long_polls)
    notifier.start()
    return create_app(settings, start_reaper=False, start_recruiter=False, notifier=notifier,
                      dispatch_jobs=True)


def joint_calls(context: ServerContext, *, at_once: int | None = None) -> JointCalls:
    """The claims, the reports and the heartbeats, run in groups
    (``server.joint_claims``). Each group takes one turn at the database, of the
    context's turns as they are when it runs: claims and reports that claim as work,
    reports that claim nothing and heartbeats as bookkeeping. A group is a few
    statements whatever its size (the executemany of a group's moves goes in pages,
    ``server.prepared``): one group at a time per kind of call and process, of up to
    256, cost the least CPU and gave the shortest tail in the swarm (docs/scaling.md).
    ``at_once``: groups side by side (tests)."""
    settings = context.settings
    # a call may wait for the group before its own, then its own: each may wait for its
    # turn, then for the database
    timeout = 3 * settings.database_busy_timeout

    def joint(run: Callable[[dict[int, Any]], Any], *, hands_out_work: bool) -> Any:
        def in_its_turn(calls: dict[int, Any]) -> Any:
            with context.turns.take(hands_out_work=hands_out_work):
                return run(calls)
        return JointClaims(in_its_turn, timeout=timeout, at_once=at_once or 1)

    def claim_jointly(wanted: dict[int, int]) -> dict[int, ClaimAnswer]:
        return scheduling.claim_jointly(context.db, wanted, settings.lease_seconds)

    def report_jointly(calls: dict[int, ReportCall]) -> dict[int, dict[str, Any] | Exception]:
        return worker_domain.reports_and_claims(context, calls)

    def beat_jointly(bodies: dict[int, Heartbeat]) -> dict[int, dict[str, Any] | Exception]:
        return worker_domain.beats(context, bodies)

    return JointCalls(
        claims=joint(claim_jointly, hands_out_work=True),
        reports=joint(report_jointly, hands_out_work=True),
        records=joint(report_jointly, hands_out_work=False),
        beats=joint(beat_jointly, hands_out_work=False),
    )
