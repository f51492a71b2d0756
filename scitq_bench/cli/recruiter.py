"""``recruiter``: what to hire for a batch while it has work, tried by rank."""

from __future__ import annotations

from typing import Any

import click

from scitq_bench.cli.common import json_option, long_option, pass_client
from scitq_bench.cli.output import Column, note, print_list, show_or_say, success
from scitq_bench.cli.resolve import existing_batch
from scitq_bench.client import Client
from scitq_bench.exceptions import NotFound

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
    Column("workflow", "workflow", width=20),
    Column("workflow max", "workflow_maximum_workers", justify="right", long=True),
]


def _limits(function: Any) -> Any:
    for option in reversed([
        click.option("-C", "--concurrency", type=click.IntRange(1, 1024),
                     help="Tasks per worker at once [default: from the tasks' needs]."),
        click.option("--prefetch", type=click.IntRange(0, 10_000), help="Tasks fetched ahead."),
        click.option("--tasks-per-worker", type=click.IntRange(min=1),
                     help="One worker per this many pending tasks."),
        click.option("--minimum-tasks", type=click.IntRange(min=0),
                     help="Recruit only when at least this many tasks wait."),
        click.option("--maximum-workers", type=click.IntRange(0, 10_000),
                     help="Workers alive at once for this recruiter."),
        click.option("--workflow", help="The workflow the batch is a step of: its "
                     "recruiters share the workflow's cap, and pass idle workers along."),
        click.option("--workflow-max-workers", "workflow_maximum_workers",
                     type=click.IntRange(0, 10_000),
                     help="Workers alive at once across the workflow (the smallest of its "
                     "recruiters' values applies; 0: only workers passed along)."),
    ]):
        function = option(function)
    return function


def _given(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


@click.group()
def recruiter() -> None:
    """Recruiters: what to hire for a batch while it has work (tried by rank)."""


@recruiter.command("list")
@click.option("-b", "--batch", help="Only this batch's.")
@long_option
@json_option
@pass_client
def list_recruiters(client: Client, batch: str | None, long: bool, as_json: bool) -> None:
    """List recruiters (-L: also their workflow's cap)."""
    if batch is not None:
        existing_batch(client, batch)
    print_list(client.recruiter_list(batch), RECRUITER_COLUMNS, as_json=as_json, long=long)


@recruiter.command("create")
@click.option("-b", "--batch", required=True, help="The batch to recruit for.")
@click.option("-f", "--flavor", required=True, help="A flavor name, or auto:<protofilters> "
              "(quote it: 'auto:cpu>=8:ram>=32').")
@click.option("-P", "--provider", default="auto", show_default=True)
@click.option("-r", "--region", default="auto", show_default=True)
@click.option("--rank", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--create-batch", is_flag=True,
              help="Create the batch if it does not exist (else a missing batch is refused).")
@_limits
@json_option
@pass_client
def create_recruiter(client: Client, batch: str, flavor: str, provider: str, region: str,
                     rank: int, create_batch: bool, as_json: bool, **limits: Any) -> None:
    """Hire FLAVOR for a batch while it has work. The batch must exist (`batch create
    -n NAME`, or a `launch -b NAME`), unless --create-batch."""
    try:
        existing_batch(client, batch)
    except NotFound:
        if not create_batch:
            raise NotFound(f"no batch named {batch!r}: create it first (`scitq-bench batch "
                           f"create -n {batch}`), or pass --create-batch") from None
        client.batch_create(batch)
        note(f"batch {batch} created (it did not exist)")
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
