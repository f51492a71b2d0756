"""/api/v1 for recruitment: recruiters, one-off deploys, jobs, providers, costs."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request

from scitq_bench.server.api.registry import ADMIN, QueryParam, endpoint
from scitq_bench.server.bench.accounts import display_name
from scitq_bench.server.context import server_context
from scitq_bench.server.recruit import service
from scitq_bench.server.recruit.schemas import DeployRequest, RecruiterCreate, RecruiterUpdate
from scitq_bench.server.web import current_recruitment, int_arg, require_recruitment

bp = Blueprint("recruit", __name__)


def caller() -> str:
    """Who makes this request, as a job records who cancelled it."""
    with server_context().db.read() as session:
        return display_name(session, g.principal)


@endpoint(bp, "/recruiters", "POST", access=ADMIN, body=RecruiterCreate,
          summary="Add a recruiter to a batch (tried in rank order)")
def create_recruiter(body: RecruiterCreate) -> Any:
    with server_context().db.write() as session:
        recruiter = service.create_recruiter(session, body)
        return service.recruiter_dict(recruiter, body.batch), 201


@endpoint(bp, "/recruiters", "GET", access=ADMIN, summary="Recruiters, by batch and rank",
          query=(QueryParam("batch", "only this batch's"),))
def list_recruiters() -> Any:
    with server_context().db.read() as session:
        return service.list_recruiters(session, request.args.get("batch"))


@endpoint(bp, "/recruiters/<id:recruiter_id>", "PATCH", access=ADMIN, body=RecruiterUpdate,
          summary="Change a recruiter")
def update_recruiter(recruiter_id: int, body: RecruiterUpdate) -> Any:
    with server_context().db.write() as session:
        return service.recruiter_dict(service.update_recruiter(session, recruiter_id, body))


@endpoint(bp, "/recruiters/<id:recruiter_id>", "DELETE", access=ADMIN,
          summary="Delete a recruiter (its workers stay until idle)")
def delete_recruiter(recruiter_id: int) -> Any:
    with server_context().db.write() as session:
        service.delete_recruiter(session, recruiter_id)
    return {"deleted": recruiter_id}


@endpoint(bp, "/workers/deploy", "POST", access=ADMIN, body=DeployRequest,
          summary="Hire machines now: the cheapest offers that fit, deployed by jobs")
def deploy_workers(body: DeployRequest) -> Any:
    runtime = require_recruitment()
    return {"jobs": service.deploy_now(server_context().db, runtime, body)}, 201


@endpoint(bp, "/workers/<id:worker_id>/undeploy", "POST", access=ADMIN,
          summary="Give a recruited worker's machine back: a destroy job (201), or, while "
                  "it is being deployed, the cancel of its deploy job (200)")
def undeploy_worker(worker_id: int) -> Any:
    runtime = require_recruitment()
    job = service.undeploy_now(server_context().db, runtime, worker_id, caller())
    return job, 201 if job["kind"] == "destroy" else 200


@endpoint(bp, "/jobs", "GET", access=ADMIN, summary="Deploy and destroy jobs, newest first",
          query=(QueryParam("status", "pending, running, succeeded, failed or cancelled"),
                 QueryParam("worker", "worker id", "integer"),
                 QueryParam("limit", "at most this many (default 200)", "integer")))
def list_jobs() -> Any:
    with server_context().db.read() as session:
        return [service.job_dict(job) for job in service.list_jobs(
            session, status=request.args.get("status"), worker_id=int_arg("worker"),
            limit=int_arg("limit", 200, minimum=1) or 200)]


@endpoint(bp, "/jobs/<id:job_id>", "GET", access=ADMIN, summary="A job, with its log")
def get_job(job_id: int) -> Any:
    with server_context().db.read() as session:
        return service.job_dict(service.get_job(session, job_id), with_log=True)


@endpoint(bp, "/jobs/<id:job_id>/log", "GET", access=ADMIN, summary="A job's log, as text")
def job_log(job_id: int) -> Any:
    with server_context().db.read() as session:
        return Response(service.get_job(session, job_id).log or "", mimetype="text/plain")


@endpoint(bp, "/jobs/<id:job_id>/retry", "POST", access=ADMIN, summary="Run a failed job again")
def retry_job(job_id: int) -> Any:
    runtime = require_recruitment()
    return service.retry_now(server_context().db, runtime, job_id)


@endpoint(bp, "/jobs/<id:job_id>/cancel", "POST", access=ADMIN,
          summary="Cancel a pending or running job: it stops where it is (its Ansible run "
                  "killed) and gives its machine back")
def cancel_job(job_id: int) -> Any:
    return service.cancel_now(server_context().db, current_recruitment(), job_id, caller())


@endpoint(bp, "/jobs/<id:job_id>", "DELETE", access=ADMIN,
          summary="Forget an ended job (a pending or running one is refused: cancel it first)")
def delete_job(job_id: int) -> Any:
    with server_context().db.write() as session:
        service.delete_job(session, job_id)
    return {"deleted": job_id}


@endpoint(bp, "/providers", "GET", access=ADMIN,
          summary="Configured providers (their settings' names, never their secrets)")
def list_providers() -> Any:
    return service.providers(require_recruitment())


@endpoint(bp, "/providers/<name>/check", "POST", access=ADMIN,
          summary="Check a provider's credentials with a cheap authenticated call")
def check_provider(name: str) -> Any:
    return service.check_provider(require_recruitment(), name)


@endpoint(bp, "/providers/reconcile", "POST", access=ADMIN,
          summary="Delete instances tagged as ours that no live worker knows; list them")
def reconcile_providers() -> Any:
    return {"orphans": service.reconcile(require_recruitment())}


@endpoint(bp, "/costs", "GET", access=ADMIN, summary="What each recruited worker cost so far")
def costs() -> Any:
    with server_context().db.read() as session:
        return service.worker_costs(session)
