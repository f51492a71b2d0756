"""``batch list|stop|go|delete|priority|network|budget``: the batch screen of scitq."""

from __future__ import annotations

from typing import Any

import click

from scitq_bench.cli.common import json_option, long_option, pass_client
from scitq_bench.cli.output import (
    Column,
    duration,
    print_json,
    print_list,
    print_record,
    show_or_say,
    success,
)
from scitq_bench.cli.resolve import existing_batch
from scitq_bench.client import Client
from scitq_bench.exceptions import NotFound
from scitq_bench.states import FINAL_TASK_VALUES, TaskStatus


def _counts(batch: dict[str, Any]) -> dict[str, int]:
    return batch.get("counts") or {}


def _count(status: str) -> Column:
    return Column(status, lambda b: _counts(b).get(status, 0), justify="right")


def _total(batch: dict[str, Any]) -> int:
    return sum(_counts(batch).values())


def _done(batch: dict[str, Any]) -> str:
    """Share of the batch's tasks that ended (succeeded, failed or cancelled)."""
    total = _total(batch)
    if not total:
        return "-"
    ended = sum(n for status, n in _counts(batch).items() if status in FINAL_TASK_VALUES)
    return f"{100 * ended // total}%"


def _workers(batch: dict[str, Any]) -> int:
    return len(batch.get("workers") or [])


NAME_COLUMNS = [
    Column("batch", "name"),
    Column("status", "status"),
    Column("prio", "priority", justify="right"),
]
FAILED_COLUMN = _count(TaskStatus.FAILED.value)
NETWORK_COLUMN = Column("net", lambda b: "yes" if b.get("network") else "no")
# the daily view: how big, how far, what runs, what went wrong, who works on it
SHORT_COLUMNS = [
    *NAME_COLUMNS,
    NETWORK_COLUMN,
    Column("tasks", _total, justify="right"),
    Column("done", _done, justify="right"),
    _count(TaskStatus.RUNNING.value),
    FAILED_COLUMN,
    Column("workers", _workers, justify="right"),
]
# -L: every count by status, the workers by name, durations and money
BATCH_COLUMNS = [
    *NAME_COLUMNS,
    NETWORK_COLUMN,
    Column("tasks", _total, justify="right"),
    Column("done", _done, justify="right"),
    *(_count(s.value) for s in TaskStatus),
    Column("workers", lambda b: " ".join(b.get("workers") or [])),
    Column("mean", lambda b: duration((b.get("durations") or {}).get("mean")), justify="right"),
    Column("cost", lambda b: f"{b['cost']:.2f}" if b.get("cost") else None, justify="right",
           long=True),
    Column("budget", "budget", justify="right", long=True),
]


def short_columns(batches: list[dict[str, Any]]) -> list[Column]:
    """The daily view's columns; ``failed`` only when some batch has failures, ``net``
    only when some batch lets its tasks use the network."""
    hidden: list[Column] = []
    if not any(_counts(b).get(TaskStatus.FAILED.value) for b in batches):
        hidden.append(FAILED_COLUMN)
    if not any(b.get("network") for b in batches):
        hidden.append(NETWORK_COLUMN)
    return [c for c in SHORT_COLUMNS if not any(c is h for h in hidden)]


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
    """List batches: their tasks, the share that ended (done), those running and
    failed (when any did), and how many workers serve them. -L: every count by
    status, the workers' names, the mean duration of successful runs, cost, budget."""
    found = client.batch_list(name=name)
    columns = BATCH_COLUMNS if long else short_columns(found)
    print_list(found, columns, as_json=as_json, long=long)


@batch.command("show")
@batch_name_option
@json_option
@pass_client
def show_batch(client: Client, name: str, as_json: bool) -> None:
    """Show one batch: its settings, its tasks counted by status, its workers."""
    found = existing_batch(client, name)
    if as_json:
        print_json(found)
        return
    record = {key: value for key, value in found.items() if key != "counts"}
    record["tasks"] = _total(found)
    record["done"] = _done(found)
    record.update({status.value: _counts(found).get(status.value, 0) for status in TaskStatus})
    print_record(record, title=f"batch {name}")


@batch.command("create")
@batch_name_option
@click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first.")
@click.option("--network", is_flag=True, help="Every task of the batch may use the network.")
@json_option
@pass_client
def create_batch(client: Client, name: str, priority: int, network: bool,
                 as_json: bool) -> None:
    """Create an empty batch (`launch -b NAME` also creates its batch)."""
    created = client.batch_create(name, priority=priority, network=network)
    show_or_say(created, as_json, f"batch {name} created")


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
    existing_batch(client, name)
    result = client.batch_stop(name, signal=signal, workers=workers)
    _report(result, as_json, f"batch {name} stopped")


@batch.command("go")
@batch_name_option
@json_option
@pass_client
def go_batch(client: Client, name: str, as_json: bool) -> None:
    """Resume a stopped batch: its paused tasks and workers run again."""
    existing_batch(client, name)
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
    found = existing_batch(client, name)
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
