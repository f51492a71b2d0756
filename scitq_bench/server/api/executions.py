"""/api/v1/executions"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request

from scitq_bench.exceptions import Conflict
from scitq_bench.server.api.registry import WORKER, QueryParam, endpoint
from scitq_bench.server.context import server_context
from scitq_bench.server.queue import executions as domain
from scitq_bench.server.serialize import execution_dict
from scitq_bench.server.storage import STREAMS
from scitq_bench.server.web import execution_log, int_arg, list_arg
from scitq_bench.states import ExecutionStatus

bp = Blueprint("executions", __name__)


def _log_sizes(execution_id: int) -> dict[str, int]:
    logs = server_context().logs
    return {stream: logs.size(execution_id, stream) for stream in STREAMS}


@endpoint(bp, "/executions", "GET", summary="List executions", query=(
    QueryParam("task", "task id", "integer"), QueryParam("worker", "worker id", "integer"),
    QueryParam("status", "statuses, comma-separated"), QueryParam("batch", "batch name"),
    QueryParam("limit", "page size", "integer"), QueryParam("offset", "rows to skip", "integer"),
))
def list_executions() -> Any:
    task_id, worker_id = int_arg("task"), int_arg("worker")
    statuses = list_arg("status", [s.value for s in ExecutionStatus])
    limit, offset = int_arg("limit"), int_arg("offset")
    with server_context().db.read() as session:
        found = domain.list_executions(
            session, task_id=task_id, worker_id=worker_id, statuses=statuses,
            batch=request.args.get("batch") or None, limit=limit, offset=offset)
        return {"executions": [execution_dict(e) for e in found]}


@endpoint(bp, "/executions/<id:execution_id>", "GET", summary="Get an execution")
def get_execution(execution_id: int) -> Any:
    with server_context().db.read() as session:
        return execution_dict(domain.get_execution(session, execution_id),
                              _log_sizes(execution_id))


@endpoint(bp, "/executions/<id:execution_id>/logs/<stream>", "GET",
          summary="Read a log stream (raw bytes; X-Next-Offset and X-Log-Size headers)",
          query=(QueryParam("offset", "byte offset", "integer"),
                 QueryParam("limit", "bytes at most", "integer"),
                 QueryParam("wait", "seconds to wait for new bytes (live tail)", "number")))
def read_log(execution_id: int, stream: str) -> Response:
    return execution_log(execution_id, stream)


@endpoint(bp, "/executions/<id:execution_id>/logs/<stream>", "PUT", access=WORKER,
          summary="Append to a log stream at ?offset= (the owning worker only)",
          query=(QueryParam("offset", "where the worker believes the log ends", "integer"),),
          raw_body=True)
def append_log(execution_id: int, stream: str) -> Any:
    ctx = server_context()
    with ctx.db.read() as session:
        execution = domain.get_execution(session, execution_id)
        if execution.worker_id is None:
            g.principal.require_admin()  # a worker is refused before it learns more
            raise Conflict(f"execution {execution_id} has no worker")
        g.principal.require_worker(execution.worker_id)
    size = ctx.logs.append(execution_id, stream, int_arg("offset", 0) or 0, request.stream)
    return {"size": size}
