"""/api/v1/batches"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from scitq_bench.server.api.registry import QueryParam, endpoint
from scitq_bench.server.context import server_context
from scitq_bench.server.queue import batches as domain
from scitq_bench.server.queue.models import Batch
from scitq_bench.server.schemas import BatchCreate, BatchStop, BatchUpdate
from scitq_bench.server.serialize import batch_dict

bp = Blueprint("batches", __name__)


def _describe(session: Any, batches: list[Batch]) -> list[dict[str, Any]]:
    return [batch_dict(b, s) for b, s in zip(batches, domain.summaries(session, batches), strict=True)]


@endpoint(bp, "/batches", "GET", summary="List batches with counts by status and durations",
          query=(QueryParam("name", "batch name"),))
def list_batches() -> Any:
    with server_context().db.read() as session:
        found = domain.list_batches(session, request.args.get("name") or None)
        return {"batches": _describe(session, found)}


@endpoint(bp, "/batches", "POST", body=BatchCreate, summary="Create a batch")
def create_batch(body: BatchCreate) -> Any:
    with server_context().db.write() as session:
        return _describe(session, [domain.create_batch(session, body)])[0], 201


@endpoint(bp, "/batches/<id:batch_id>", "GET", summary="Get a batch")
def get_batch(batch_id: int) -> Any:
    with server_context().db.read() as session:
        return _describe(session, [domain.get_batch(session, batch_id)])[0]


@endpoint(bp, "/batches/<id:batch_id>", "PATCH", body=BatchUpdate,
          summary="Change a batch's priority or whether its tasks may use the network")
def update_batch(batch_id: int, body: BatchUpdate) -> Any:
    with server_context().db.write() as session:
        batch = domain.update_batch(session, batch_id, body)
        return _describe(session, [batch])[0]


@endpoint(bp, "/batches/<id:batch_id>/stop", "POST", body=BatchStop,
          summary="Pause a batch; optionally pause, stop or kill its running tasks and "
          "pause its workers")
def stop_batch(batch_id: int, body: BatchStop) -> Any:
    return domain.commit_stop(server_context(), batch_id, body)


@endpoint(bp, "/batches/<id:batch_id>/go", "POST",
          summary="Resume a batch: its paused tasks and workers run again")
def go_batch(batch_id: int) -> Any:
    return domain.commit_go(server_context(), batch_id)


@endpoint(bp, "/batches/<id:batch_id>", "DELETE",
          summary="Delete a batch and its tasks (live executions are dropped by workers)")
def delete_batch(batch_id: int) -> Any:
    removed = domain.commit_delete(server_context(), batch_id)
    return {"deleted": batch_id, "executions_removed": removed}
