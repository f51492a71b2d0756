"""``batch list|stop|go|delete|priority|network|budget``: the batch screen of scitq."""

from __future__ import annotations

from typing import Any

import click

from scitq_bench.cli.common import json_option, long_option, pass_client
from scitq_bench.cli.output import Column, blank_zero, duration, print_json, print_list, success
from scitq_bench.client import Client
from scitq_bench.exceptions import NotFound
from scitq_bench.states import TaskStatus


def _count(status: str) -> Column:
    return Column(status, lambda b: blank_zero((b.get("counts") or {}).get(status, 0)),
                  justify="right")


BATCH_COLUMNS = [
    Column("batch", "name"),
    Column("status", "status"),
    Column("prio", "priority", justify="right"),
    Column("net", lambda b: "yes" if b.get("network") else None),
    *(_count(s.value) for s in TaskStatus),
    Column("workers", lambda b: " ".join(b.get("workers") or [])),
    Column("mean", lambda b: duration((b.get("durations") or {}).get("mean")), justify="right"),
    Column("cost", lambda b: f"{b['cost']:.2f}" if b.get("cost") else None, justify="right",
           long=True),
    Column("budget", "budget", justify="right", long=True),
]

batch_name_option = click.option("-n", "--name", required=True, help="Batch name.")


@click.group()
def batch() -> None:
    """Batches: counts by status, stop and go, delete."""


@batch.command("list", short_help="List batches with task counts by status.")
@click.option("-n", "--name", help="Only this batch.")
@long_option
@json_option
@pass_client
def list_batches(client: Client, name: str | None, long: bool, as_json: bool) -> None:
    """List batches with their tasks counted by status, their workers and the mean
    duration of their successful runs (-L: also their cost and budget)."""
    print_list(client.batch_list(name=name), BATCH_COLUMNS, as_json=as_json, long=long)


@batch.command("stop")
@batch_name_option
@click.option("--signal", "signal", type=click.Choice(["none", "pause", "stop", "kill"]),
              default="none", show_default=True,
              help="What to do to running tasks: leave them, suspend them, or end them "
                   "(stopped or killed tasks run again on `batch go`).")
@click.option("--workers", is_flag=True, help="Also pause the batch's workers.")
@json_option
@pass_client
def stop_batch(client: Client, name: str, signal: str, workers: bool, as_json: bool) -> None:
    """Pause a batch: none of its tasks starts until `batch go`."""
    result = client.batch_stop(name, signal=signal, workers=workers)
    _report(result, as_json, f"batch {name} stopped")


@batch.command("go")
@batch_name_option
@json_option
@pass_client
def go_batch(client: Client, name: str, as_json: bool) -> None:
    """Resume a stopped batch: its paused tasks and workers run again."""
    result = client.batch_go(name)
    _report(result, as_json, f"batch {name} running again")


@batch.command("priority")
@batch_name_option
@click.argument("priority", type=int)
@pass_client
def batch_priority(client: Client, name: str, priority: int) -> None:
    """Set a batch's priority (higher runs first)."""
    client.batch_update(name, priority)
    success(f"batch {name} priority set to {priority}")


@batch.command("budget")
@batch_name_option
@click.argument("amount")
@json_option
@pass_client
def batch_budget(client: Client, name: str, amount: str, as_json: bool) -> None:
    """Stop recruiting for a batch once its tasks cost AMOUNT (in the providers'
    currency), or `none` to remove the budget."""
    value: float | None = None
    if amount.lower() != "none":
        try:
            value = float(amount)
        except ValueError:
            raise click.BadParameter(f"{amount!r} is not a number nor 'none'",
                                     param_hint="AMOUNT") from None
    updated = client.batch_update(name, budget=value)
    if as_json:
        print_json(updated)
    else:
        success(f"batch {name} budget: {'none' if value is None else f'{value:g}'}")


@batch.command("network")
@batch_name_option
@click.argument("state", type=click.Choice(["on", "off"]))
@json_option
@pass_client
def batch_network(client: Client, name: str, state: str, as_json: bool) -> None:
    """Let every task of a batch use the network (on), or only the tasks that have
    network themselves (off). `on` creates the batch if it does not exist yet, so that
    its tasks can be launched with --network in their container options."""
    try:
        found = client.batch_find(name)
    except NotFound:
        if state == "off":
            raise
        updated, done = client.batch_create(name, network=True), "created with network on"
    else:
        updated, done = client.batch_update(found["id"], network=state == "on"), f"network {state}"
    if as_json:
        print_json(updated)
    else:
        success(f"batch {name} {done}")


@batch.command("delete")
@batch_name_option
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_client
def delete_batch(client: Client, name: str, yes: bool, as_json: bool) -> None:
    """Delete a batch with all its tasks, executions and logs."""
    found = client.batch_find(name)
    total = sum((found.get("counts") or {}).values())
    if not yes:
        click.confirm(f"Delete batch {name!r} and its {total} task(s)?", abort=True, err=True)
    result = client.batch_delete(found["id"])
    _report(result, as_json, f"batch {name} deleted with its {total} task(s)")


def _report(result: dict[str, Any], as_json: bool, message: str) -> None:
    if as_json:
        print_json(result)
        return
    details = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in result.items()
                        if k != "deleted")
    success(f"{message}" + (f" ({details})" if details else ""))
