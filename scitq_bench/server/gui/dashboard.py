"""The admins' home page: the queue by status, failures of the last hour and their
reasons, the workers up by provider with what they run, what machines cost, and the
recruitment jobs in flight, live; with two charts over the last hours."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import jsonify, url_for

from scitq_bench.server.gui import dashboard_data as data
from scitq_bench.server.gui.jobs import job_row
from scitq_bench.server.gui.web import page, reading, render
from scitq_bench.server.queue import workers
from scitq_bench.server.queue.models import utcnow

HOURS = 6  # what the charts look back on
STEP = 300  # seconds per point of the charts
CHART_REFRESH = 10_000  # ms: the charts read the time columns, which have no index


@page("/dashboard")
def dashboard() -> Any:
    now = utcnow()
    with reading() as session:
        providers, up = data.workers_up(session)
        jobs, jobs_total = data.jobs_in_flight(session)
        names = workers.names_of(session, {job.worker_id for job in jobs if job.worker_id})
        counts = data.status_counts(session)
        context: dict[str, Any] = {
            "counts": counts, "queued": sum(counts[s] for s in data.QUEUED_VALUES),
            "failures": data.failures(session, now - timedelta(hours=1)),
            "providers": providers, "workers_up": up,
            "spend": data.spend(session, now),
            "jobs": [job_row(job, names) for job in jobs], "jobs_total": jobs_total,
        }
    return render("dashboard/index.html", fragment="dashboard/_live.html",
                  live_url=url_for("gui.dashboard", fragment=1), hours=HOURS,
                  chart_refresh=CHART_REFRESH, **context)


@page("/dashboard/charts/queue")
def dashboard_chart_queue() -> Any:
    now = utcnow()
    with reading() as session:
        series = data.queue_over_time(session, now - timedelta(hours=HOURS), now, STEP)
    return jsonify({
        "kind": "line", "x": "time", "x_label": f"UTC, every {STEP // 60} minutes",
        "y_label": "tasks",
        "series": [{"name": "queued", "points": series["queued"]},
                   {"name": "running", "points": series["running"]}],
        "empty": "No task in this window.",
    })


@page("/dashboard/charts/ended")
def dashboard_chart_ended() -> Any:
    now = utcnow()
    with reading() as session:
        series = data.ended_over_time(session, now - timedelta(hours=HOURS), now, STEP)
    return jsonify({
        "kind": "line", "x": "time", "x_label": f"end time (UTC), {STEP // 60}-minute buckets",
        "y_label": "tasks per minute",
        "series": [{"name": f"{name} per minute", "points": points}
                   for name, points in series.items()],
        "empty": "No task ended in this window.",
    })
