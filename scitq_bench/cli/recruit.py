"""``recruiter``, ``job``, ``provider`` and ``cost`` commands, and ``worker deploy`` /
``worker undeploy``: hiring machines, following their deploys, giving them back."""

from __future__ import annotations

from typing import Any

import click

from scitq_bench.cli.common import json_option, pass_client
from scitq_bench.cli.output import (
    Column,
    print_json,
    print_list,
    print_record,
    show_or_say,
    success,
    when,
)
from scitq_bench.client import Client

RECRUITER_COLUMNS = [
    Column("id", "id", justify="right"),
    Column("batch", "batch"),
    Column("rank", "rank", justify="right"),
    Column("flavor", "flavor"),
    Column("provider", "provider"),
    Column("region", "region"),
    Column("concurrency", lambda r: r.get("concurrency") or "auto", justify="right"),
    Column("prefetch", "prefetch", justify="right"),
    Column("tasks/worker", "tasks_per_worker", justify="right"),
    Column("min tasks", "minimum_tasks", justify="right"),
    Column("max workers", "maximum_workers", justify="right"),
]

JOB_COLUMNS = [
    Column("id", "id", justify="right"),
    Column("kind", "kind"),
    Column("worker", "worker_id", justify="right"),
    Column("machine", lambda j: "/".join(str(j["arguments"].get(k) or "") for k in (
        "provider", "region", "flavor")).strip("/")),
    Column("status", "status"),
    Column("progress", lambda j: f"{j['progress']}%", justify="right"),
    Column("attempts", "attempts", justify="right"),
    Column("modified", lambda j: when(j.get("modified_at"))),
    Column("error", "error"),
]


def _limits(function: Any) -> Any:
    for option in reversed([
        click.option("--concurrency", type=click.IntRange(1, 1024),
                     help="Tasks per worker at once [default: from the tasks' needs]."),
        click.option("--prefetch", type=click.IntRange(0, 10_000), help="Tasks fetched ahead."),
        click.option("--tasks-per-worker", type=click.IntRange(min=1),
                     help="One worker per this many pending tasks."),
        click.option("--minimum-tasks", type=click.IntRange(min=0),
                     help="Recruit only when at least this many tasks wait."),
        click.option("--maximum-workers", type=click.IntRange(0, 10_000),
                     help="Workers alive at once for this recruiter."),
    ]):
        function = option(function)
    return function


def _given(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


# -- recruiter ----------------------------------------------------------------------------


@click.group()
def recruiter() -> None:
    """Recruiters: what to hire for a batch while it has work (tried by rank)."""


@recruiter.command("list")
@click.option("-b", "--batch", help="Only this batch's.")
@json_option
@pass_client
def list_recruiters(client: Client, batch: str | None, as_json: bool) -> None:
    print_list(client.recruiter_list(batch), RECRUITER_COLUMNS, as_json=as_json)


@recruiter.command("create")
@click.option("-b", "--batch", required=True, help="The batch to recruit for.")
@click.option("-f", "--flavor", required=True, help="A flavor name, or auto:<protofilters> "
              "(quote it: 'auto:cpu>=8:ram>=32').")
@click.option("-P", "--provider", default="auto", show_default=True)
@click.option("-r", "--region", default="auto", show_default=True)
@click.option("--rank", type=click.IntRange(min=1), default=1, show_default=True)
@_limits
@json_option
@pass_client
def create_recruiter(client: Client, batch: str, flavor: str, provider: str, region: str,
                     rank: int, as_json: bool, **limits: Any) -> None:
    answer = client.recruiter_create(batch, flavor, provider=provider, region=region,
                                     rank=rank, **_given(**limits))
    show_or_say(answer, as_json,
                f"recruiter {answer['id']} (rank {rank}) recruits {flavor} for batch {batch}")


@recruiter.command("update")
@click.argument("recruiter_id", type=int)
@click.option("-f", "--flavor")
@click.option("-P", "--provider")
@click.option("-r", "--region")
@_limits
@json_option
@pass_client
def update_recruiter(client: Client, recruiter_id: int, as_json: bool, **fields: Any) -> None:
    changes = _given(**fields)
    if not changes:
        raise click.UsageError("nothing to change: give at least one option")
    answer = client.recruiter_update(recruiter_id, **changes)
    show_or_say(answer, as_json, f"recruiter {recruiter_id} updated")


@recruiter.command("delete")
@click.argument("recruiter_id", type=int)
@pass_client
def delete_recruiter(client: Client, recruiter_id: int) -> None:
    client.recruiter_delete(recruiter_id)
    success(f"recruiter {recruiter_id} deleted (its workers stay until idle)")


# -- worker deploy / undeploy -------------------------------------------------------------


@click.command("deploy")
@click.option("-f", "--flavor", required=True,
              help="A flavor name, or auto:<protofilters> (quote it).")
@click.option("-P", "--provider", default="auto", show_default=True)
@click.option("-r", "--region", default="auto", show_default=True)
@click.option("-b", "--batch", help="The batch the workers serve [default: any, recycled].")
@click.option("-n", "--number", type=click.IntRange(1, 1000), default=1, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 1024))
@click.option("--prefetch", type=click.IntRange(0, 10_000), default=0, show_default=True)
@json_option
@pass_client
def deploy(client: Client, flavor: str, provider: str, region: str, batch: str | None,
           number: int, concurrency: int | None, prefetch: int, as_json: bool) -> None:
    """Hire NUMBER machines now: the cheapest offers that fit, deployed by jobs (follow
    them with `job list`)."""
    jobs = client.worker_deploy(flavor, provider=provider, region=region, batch=batch,
                                number=number, concurrency=concurrency, prefetch=prefetch)
    if as_json:
        print_json(jobs)
        return
    for job in jobs:
        args = job["arguments"]
        success(f"job {job['id']}: deploying {args['name']} ({args['flavor']} in "
                f"{args['provider']}/{args['region']})")


@click.command("undeploy")
@click.argument("worker_id", type=int)
@pass_client
def undeploy(client: Client, worker_id: int) -> None:
    """Give a recruited worker's machine back (while it is being deployed: cancel that
    deploy, which gives it back)."""
    job = client.worker_undeploy(worker_id)
    if job["kind"] == "deploy":
        success(f"job {job['id']}: deploy of worker {worker_id} cancelled; its machine is "
                "given back")
    else:
        success(f"job {job['id']}: giving worker {worker_id}'s machine back")


# -- job ----------------------------------------------------------------------------------


@click.group()
def job() -> None:
    """Deploy and destroy jobs."""


@job.command("list")
@click.option("-S", "--status", type=click.Choice(["pending", "running", "succeeded",
                                                  "failed", "cancelled"]))
@click.option("-w", "--worker", type=int, help="Only this worker's jobs.")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True)
@json_option
@pass_client
def list_jobs(client: Client, status: str | None, worker: int | None, limit: int,
              as_json: bool) -> None:
    print_list(client.job_list(status, worker, limit), JOB_COLUMNS, as_json=as_json)


@job.command("show")
@click.argument("job_id", type=int)
@json_option
@pass_client
def show_job(client: Client, job_id: int, as_json: bool) -> None:
    found = client.job_get(job_id)
    if as_json:
        print_json(found)
        return
    record = {key: found.get(key) for key in ("id", "kind", "worker_id", "status", "progress",
                                              "attempts", "error")}
    if found.get("cancelled_by"):
        record.update(cancelled_by=found["cancelled_by"], cancelled_at=found.get("cancelled_at"))
    record.update(found.get("arguments") or {})
    print_record(record, title=f"job {job_id}")
    click.echo(found.get("log") or "")


@job.command("log")
@click.argument("job_id", type=int)
@pass_client
def job_log(client: Client, job_id: int) -> None:
    click.echo(client.job_log(job_id), nl=False)


@job.command("retry")
@click.argument("job_id", type=int)
@pass_client
def retry_job(client: Client, job_id: int) -> None:
    client.job_retry(job_id)
    success(f"job {job_id} queued again")


@job.command("cancel")
@click.argument("job_id", type=int)
@pass_client
def cancel_job(client: Client, job_id: int) -> None:
    """Stop a pending or running job where it is (its Ansible run included) and give its
    machine back."""
    client.job_cancel(job_id)
    success(f"job {job_id} cancelled; its machine is given back")


@job.command("delete")
@click.argument("job_id", type=int)
@pass_client
def delete_job(client: Client, job_id: int) -> None:
    """Forget an ended job (cancel a pending or running one first)."""
    client.job_delete(job_id)
    success(f"job {job_id} deleted")


# -- provider, cost -----------------------------------------------------------------------


@click.group()
def provider() -> None:
    """Providers this server recruits from."""


@provider.command("list")
@json_option
@pass_client
def list_providers(client: Client, as_json: bool) -> None:
    columns = [Column("name", "name"), Column("settings", lambda p: ", ".join(p["settings"]))]
    print_list(client.provider_list(), columns, as_json=as_json)


@provider.command("check")
@click.argument("name")
@pass_client
def check_provider(client: Client, name: str) -> None:
    """Check a provider's credentials with a cheap authenticated call."""
    success(f"{name}: {client.provider_check(name)['check']}")


@provider.command("reconcile")
@pass_client
def reconcile_providers(client: Client) -> None:
    """Delete the instances tagged as ours that no live worker knows, and list them."""
    orphans = client.provider_reconcile()
    success(f"{len(orphans)} orphan instance(s) deleted" + "".join(
        f"\n  {orphan}" for orphan in orphans))


@click.command("cost")
@json_option
@pass_client
def cost(client: Client, as_json: bool) -> None:
    """What each recruited worker cost so far."""
    columns = [Column("worker", "worker_id", justify="right"), Column("name", "name"),
               Column("per hour", "cost_per_hour", justify="right"),
               Column("cost", "cost", justify="right"),
               Column("released", lambda c: when(c.get("released_at")))]
    print_list(client.cost_list(), columns, as_json=as_json)


COMMANDS = (recruiter, job, provider, cost)
WORKER_COMMANDS = (deploy, undeploy)
