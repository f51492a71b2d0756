"""/api/v1/workers: the registry for admins, and the worker protocol
(register, heartbeat, claim, report)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, g, request

from scitq_bench.server.api.registry import ENROLL, WORKER, QueryParam, endpoint
from scitq_bench.server.context import ServerContext, server_context
from scitq_bench.server.metrics import long_poll_waiting
from scitq_bench.server.notify import claim_key, worker_key
from scitq_bench.server.queue import workers as domain
from scitq_bench.server.schemas import Heartbeat, WorkerRegister, WorkerReport, WorkerUpdate
from scitq_bench.server.serialize import worker_dict
from scitq_bench.server.web import bool_arg, float_arg, int_arg, list_arg
from scitq_bench.states import WorkerStatus

bp = Blueprint("workers", __name__)


@endpoint(bp, "/workers", "POST", access=ENROLL, body=WorkerRegister,
          summary="Register a worker (same name: take over its record); returns its token")
def register_worker(body: WorkerRegister) -> Any:
    return domain.commit_register(server_context(), body), 201


@endpoint(bp, "/workers", "GET", summary="List workers", query=(
    QueryParam("name", "worker name; '%' is a wildcard"),
    QueryParam("status", "statuses, comma-separated")))
def list_workers() -> Any:
    with server_context().db.read() as session:
        rows = domain.list_workers(
            session, name=request.args.get("name"),
            statuses=tuple(list_arg("status", [s.value for s in WorkerStatus])),
        )
        live = domain.live_counts(session)
        return {"workers": [worker_dict(w, live.get(w.id)) for w in rows]}


@endpoint(bp, "/workers/<id:worker_id>", "GET", access=WORKER, summary="Get a worker")
def get_worker(worker_id: int) -> Any:
    g.principal.require_worker(worker_id)
    with server_context().db.read() as session:
        worker = domain.get_worker(session, worker_id)
        return worker_dict(worker, domain.live_counts(session).get(worker_id))


@endpoint(bp, "/workers/<id:worker_id>", "PATCH", body=WorkerUpdate,
          summary="Change a worker's concurrency, prefetch, batch or status")
def update_worker(worker_id: int, body: WorkerUpdate) -> Any:
    return domain.change_worker(server_context(), worker_id, body)


@endpoint(bp, "/workers/<id:worker_id>", "DELETE", summary="Delete a worker record",
          query=(QueryParam("force", "re-queue its live executions", "boolean"),))
def delete_worker(worker_id: int) -> Any:
    domain.remove_worker(server_context(), worker_id, force=bool_arg("force"))
    return {"deleted": worker_id}


@endpoint(bp, "/workers/<id:worker_id>/heartbeat", "POST", access=WORKER, body=Heartbeat,
          summary="Renew leases, acknowledge signals; waits up to ?wait= s for new signals",
          query=(QueryParam("wait", "seconds to wait for signals", "number"),))
def heartbeat(worker_id: int, body: Heartbeat) -> Any:
    g.principal.require_worker(worker_id)
    ctx = server_context()
    key = worker_key(worker_id)
    deadline = time.monotonic() + min(float_arg("wait", 0.0), ctx.settings.claim_max_wait)
    seen = ctx.notifier.version(key)
    answer = _beat(ctx, worker_id, body)
    if answer["signals"] or answer["drop"]:
        return answer
    while (remaining := deadline - time.monotonic()) > 0:
        with long_poll_waiting():
            changed = ctx.notifier.wait(key, seen, remaining)
        if changed:
            # something changed for this worker: answer now with what is new
            return _beat(ctx, worker_id, Heartbeat(stats=body.stats, executions=body.executions))
    return answer


def _beat(ctx: ServerContext, worker_id: int, body: Heartbeat) -> dict[str, Any]:
    """One heartbeat's transaction, with the others that come now, in its turn:
    bookkeeping, which work may pass."""
    return ctx.joint.beats.claim(worker_id, body)


@endpoint(bp, "/workers/<id:worker_id>/claim", "POST", access=WORKER,
          summary="Claim up to ?max= executions; waits up to ?wait= s for work (long poll)",
          query=(QueryParam("max", "executions at most", "integer"),
                 QueryParam("wait", "seconds to wait for work", "number")))
def claim(worker_id: int) -> Any:
    g.principal.require_worker(worker_id)
    ctx = server_context()
    max_count = int_arg("max", 1, minimum=1) or 1
    wait = min(float_arg("wait", 0.0), ctx.settings.claim_max_wait)
    deadline = time.monotonic() + wait
    # the key of the work this worker may take, read before looking for work: its
    # batch as its last claim here saw it (one query the first time); a claim that
    # finds the worker moved to another batch looks again under the new key
    key = claim_key(ctx.worker_batch(worker_id, domain.batch_of)) if wait > 0 else None
    while True:
        seen = ctx.notifier.version(key) if key else 0
        claimed, worker = ctx.joint.claims.claim(worker_id, max_count)
        if worker is not None:
            ctx.remember_batch(worker_id, worker.batch_id)
        remaining = deadline - time.monotonic()
        if claimed or remaining <= 0 or key is None or worker is None:
            return {"executions": claimed}
        if claim_key(worker.batch_id) != key:
            key = claim_key(worker.batch_id)
            continue
        with long_poll_waiting():
            ctx.notifier.wait(key, seen, remaining)


@endpoint(bp, "/workers/<id:worker_id>/report", "POST", access=WORKER, body=WorkerReport,
          summary="Report execution events in order; with ?claim=N, also claim up to N "
          "new executions in the same call (slots freed by this report count)",
          query=(QueryParam("claim", "executions to claim after the report", "integer"),))
def report(worker_id: int, body: WorkerReport) -> Any:
    g.principal.require_worker(worker_id)
    ctx = server_context()
    wanted = int_arg("claim", 0) or 0
    # with the others that come now; one that claims is work (its worker idles until
    # answered), one that claims nothing is bookkeeping
    joint = ctx.joint.reports if wanted > 0 else ctx.joint.records
    return joint.claim(worker_id, (body.events, max(wanted, 0)))


@endpoint(bp, "/workers/<id:worker_id>/evicted", "POST", access=WORKER,
          summary="The provider is taking the machine back (a spot interruption): its "
          "executions go back to the queue without spending retries",
          query=(QueryParam("notice", "what the provider said"),))
def evicted(worker_id: int) -> Any:
    g.principal.require_worker(worker_id)
    requeued = domain.commit_evict(server_context(), worker_id,
                                   request.args.get("notice") or "")
    return {"requeued": requeued}
