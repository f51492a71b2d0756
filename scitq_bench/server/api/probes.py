"""What load balancers, orchestrators and Prometheus ask a server process, at the root
where they look for it: ``/healthz`` (the process answers), ``/readyz`` (it can serve:
its database answers, at the schema this code expects) and ``/metrics``.

The probes need no token, so they say nothing a stranger could use: no version, no
database name, no error text. Why a process is not ready goes to its log.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response
from sqlalchemy.exc import SQLAlchemyError

from scitq_bench.exceptions import Busy
from scitq_bench.server import metrics
from scitq_bench.server.api.registry import METRICS, PUBLIC, endpoint
from scitq_bench.server.context import server_context
from scitq_bench.server.db import error_reason
from scitq_bench.server.migrate import current_revisions, head_revisions

bp = Blueprint("probes", __name__)
log = logging.getLogger(__name__)

READY_RETRY_SECONDS = 5


@endpoint(bp, "/healthz", "GET", access=PUBLIC, prefix="",
          summary="Liveness: this process answers (nothing else is checked)")
def healthz() -> Any:
    return {"status": "ok"}


@endpoint(bp, "/readyz", "GET", access=PUBLIC, prefix="",
          summary="Readiness: the database answers and its schema is the one this server "
                  "expects; 503 otherwise")
def readyz() -> Any:
    problem = readiness_problem()
    if problem is None:
        return {"status": "ready"}
    log.warning("not ready: %s", problem)
    answer: Response = Response('{"status": "not ready"}\n', status=503,
                                mimetype="application/json")
    answer.headers["Retry-After"] = str(READY_RETRY_SECONDS)
    return answer


def readiness_problem() -> str | None:
    """Why this process cannot serve now, or None."""
    try:
        with server_context().db.read() as session:
            revisions = current_revisions(session.connection())
    except (SQLAlchemyError, Busy) as exc:
        return f"database unreachable: {error_reason(exc)}"
    expected = head_revisions()
    if revisions != expected:
        return (f"database schema at {', '.join(sorted(revisions)) or 'nothing'}, this "
                f"server expects {', '.join(sorted(expected))} (run the migrations: "
                "restart the server at its new version)")
    return None


@endpoint(bp, "/metrics", "GET", access=METRICS, prefix="",
          summary="Prometheus metrics: the queue's state and this host's API processes")
def prometheus_metrics() -> Any:
    body, content_type = metrics.exposition(server_context().db)
    return Response(body, content_type=content_type)
