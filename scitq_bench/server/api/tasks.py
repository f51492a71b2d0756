"""/api/v1/tasks"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from scitq_bench.exceptions import InvalidInput
from scitq_bench.server.api.registry import QueryParam, endpoint, json_body
from scitq_bench.server.context import server_context
from scitq_bench.server.queue import executions, waiting
from scitq_bench.server.queue import tasks as domain
from scitq_bench.server.schemas import (
    SignalRequest,
    TaskBulkCreate,
    TaskCreate,
    TaskUpdate,
    parse_body,
)
from scitq_bench.server.serialize import execution_dict, signal_dict
from scitq_bench.server.web import execution_log, int_arg, int_list_arg, list_arg
from scitq_bench.states import TaskStatus

bp = Blueprint("tasks", __name__)

LIST_QUERY = (
    QueryParam("batch", "batch name"),
    QueryParam("status", "statuses, comma-separated"),
    QueryParam("name", "task name; '%' is a wildcard"),
    QueryParam("key", "task key (exact)"),
    QueryParam("id", "task ids, comma-separated"),
    QueryParam("worker", "id of a worker that ran the task", "integer"),
    QueryParam("limit", "page size", "integer"),
    QueryParam("offset", "rows to skip", "integer"),
    QueryParam("order", "'oldest' (by id, the default) or 'newest' first"),
)
ORDERS = ("oldest", "newest")


@endpoint(bp, "/tasks", "POST", summary="Create one task, or many with {'tasks': [...]} "
          "(all or none)", documented_body=TaskBulkCreate)
def create_tasks() -> Any:
    data = json_body()
    bulk = "tasks" in data
    if bulk:
        specs = parse_body(TaskBulkCreate, data).tasks
    else:
        specs = [parse_body(TaskCreate, data)]
    answer = domain.commit_create(server_context(), specs, bulk=bulk, describe=_created)
    assert answer is not None  # given ``describe``, its answer comes back
    return answer, 201 if answer["created"] else 200


def _created(session: Any, rows: list[Any]) -> dict[str, Any]:
    """The tasks in the request's order; ``existing``: those a key found (unchanged)."""
    return {"tasks": domain.describe_tasks(session, rows),
            "created": sum(1 for row in rows if row.new),
            "existing": [row.id for row in rows if not row.new]}


@endpoint(bp, "/tasks", "GET", summary="List tasks", query=LIST_QUERY)
def list_tasks() -> Any:
    """With ``limit``, ``total`` says how many tasks match (all pages together)."""
    ctx = server_context()
    order = list_arg("order", list(ORDERS))
    if len(order) > 1:
        raise InvalidInput(f"query parameter order: one value, got {', '.join(order)}",
                           field="order")
    filters = dict(
        batch=request.args.get("batch"),
        statuses=list_arg("status", [s.value for s in TaskStatus]),
        name=request.args.get("name"),
        key=request.args.get("key"),
        ids=int_list_arg("id"),
        worker_id=int_arg("worker"),
    )
    limit = int_arg("limit")
    with ctx.db.read() as session:
        tasks = domain.list_tasks(session, limit=limit, offset=int_arg("offset", 0) or 0,
                                  newest_first=order == ["newest"], **filters)
        answers = domain.describe_tasks(session, tasks)
        reasons = waiting.why_waiting_many(session, tasks)
        for answer in answers:
            answer["waiting"] = reasons.get(answer["id"])
        page: dict[str, Any] = {"tasks": answers}
        if limit:
            page["total"] = domain.count_tasks(session, **filters)
        return page


@endpoint(bp, "/tasks/<id:task_id>", "GET", summary="Get a task")
def get_task(task_id: int) -> Any:
    """``waiting``: why a queued task cannot be taken by any worker that is up (none
    is, or none has a container engine, the GPUs, ... it needs); null otherwise."""
    with server_context().db.read() as session:
        task = domain.get_task(session, task_id)
        answer = domain.describe_task(session, task)
        answer["waiting"] = waiting.why_waiting(session, task)
        return answer


@endpoint(bp, "/tasks/<id:task_id>", "PATCH", summary="Update a task (fields, or status "
          "paused/pending)", body=TaskUpdate)
def update_task(task_id: int, body: TaskUpdate) -> Any:
    return domain.commit_update(server_context(), task_id, body,
                                describe=domain.describe_task)


@endpoint(bp, "/tasks/<id:task_id>", "DELETE", summary="Delete a task")
def delete_task(task_id: int) -> Any:
    domain.commit_delete(server_context(), task_id)
    return {"deleted": task_id}


@endpoint(bp, "/tasks/<id:task_id>/relaunch", "POST",
          summary="Run a failed, succeeded or cancelled task again")
def relaunch_task(task_id: int) -> Any:
    return domain.commit_relaunch(server_context(), task_id, describe=domain.describe_task)


@endpoint(bp, "/tasks/<id:task_id>/signal", "POST",
          summary="Pause, resume, stop or kill a task's live execution", body=SignalRequest)
def signal_task(task_id: int, body: SignalRequest) -> Any:
    return domain.commit_signal(server_context(), task_id, body.signal,
                                describe=lambda _session, signal: signal_dict(signal))


@endpoint(bp, "/tasks/<id:task_id>/executions", "GET", summary="A task's executions")
def task_executions(task_id: int) -> Any:
    with server_context().db.read() as session:
        return {"executions": [execution_dict(e)
                               for e in executions.of_task(session, task_id)]}


@endpoint(bp, "/tasks/<id:task_id>/output", "GET",
          summary="Log of the task's latest execution (raw bytes; X-Next-Offset header)",
          query=(QueryParam("stream", "stdout or stderr"),
                 QueryParam("offset", "byte offset", "integer"),
                 QueryParam("limit", "bytes at most", "integer"),
                 QueryParam("wait", "seconds to wait for new bytes (live tail)", "number")))
def task_output(task_id: int) -> Response:
    with server_context().db.read() as session:
        domain.get_task(session, task_id)
        latest = domain.latest_execution(session, task_id)
        latest_id = latest.id if latest is not None else None
    if latest_id is None:
        return Response(b"", mimetype="application/octet-stream",
                        headers={"X-Next-Offset": "0", "X-Execution-Id": ""})
    return execution_log(latest_id)
