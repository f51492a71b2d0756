"""The workers page's charts, as JSON for the ``data-chart`` script: how many workers
were up, and what recruited machines cost, over the last hours."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import request

from scitq_bench.server.gui.web import page, reading
from scitq_bench.server.queue import workers as domain
from scitq_bench.server.queue.costs import spend_over_time
from scitq_bench.server.queue.models import utcnow
from scitq_bench.server.serialize import epoch

WINDOWS = (6, 24, 168, 720)  # hours a chart may look back
DEFAULT_WINDOW = 24


def window_hours() -> int:
    """The window asked by ``?hours=``, one of ``WINDOWS``."""
    try:
        hours = int(request.args.get("hours", DEFAULT_WINDOW))
    except ValueError:
        return DEFAULT_WINDOW
    return hours if hours in WINDOWS else DEFAULT_WINDOW


@page("/workers/charts/up")
def workers_chart_up() -> Any:
    now = utcnow()
    since = now - timedelta(hours=window_hours())
    with reading() as session:
        lifetimes = domain.worker_lifetimes(session, since, now)
    return {
        "kind": "step", "x": "time", "x_label": "UTC", "y_label": "workers",
        "series": [
            {"name": "workers up", "points": up_steps(lifetimes, since, now)},
            {"name": "recruited", "points": up_steps(
                [life for life in lifetimes if life[2]], since, now)},
        ],
        "empty": "No worker was up in this window.",
    }


def up_steps(lifetimes: list[tuple[datetime, datetime | None, bool]], since: datetime,
             now: datetime) -> list[list[float]]:
    """How many were up, as steps: each change is drawn as a rise or a fall at its
    moment (two points at the same time)."""
    if not lifetimes:
        return []
    changes: list[tuple[datetime, int]] = []
    for start, end, _ in lifetimes:
        changes.append((max(start, since), 1))
        if end is not None and end < now:
            changes.append((max(end, since), -1))
    changes.sort(key=lambda change: change[0])
    count = 0
    points = [[epoch(since), 0]]
    for when, delta in changes:
        x = epoch(when)
        count += delta
        if points[-1][0] == x:
            points[-1][1] = count
        else:
            points.extend([[x, points[-1][1]], [x, count]])
    points.append([epoch(now), count])
    return points


@page("/workers/charts/cost")
def workers_chart_cost() -> Any:
    now = utcnow()
    since = now - timedelta(hours=window_hours())
    with reading() as session:
        spent = spend_over_time(session, since, now)
    has_cost = any(value for _, value in spent)
    return {
        "kind": "line", "x": "time", "x_label": "UTC", "y_label": "spent",
        "series": [{"name": "spent in this window",
                    "points": [[epoch(when), value] for when, value in spent] if has_cost else []}],
        "empty": "No recruited machine with a price was up in this window.",
    }
