"""``job``: follow the deploy and destroy jobs of recruited machines, retry, cancel
or forget them."""

from __future__ import annotations

import click

from scitq_bench.cli.common import json_option, pass_client
from scitq_bench.cli.output import (
    Column,
    print_json,
    print_list,
    print_record,
    success,
    when,
)
from scitq_bench.client import Client
from scitq_bench.states import JobStatus

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


@click.group()
def job() -> None:
    """Deploy and destroy jobs."""


@job.command("list")
@click.option("-S", "--status", type=click.Choice([s.value for s in JobStatus]))
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
