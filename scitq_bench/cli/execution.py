"""``execution list|output``: the attempts at running tasks."""

from __future__ import annotations

from typing import Any

import click

from scitq_bench.cli.common import json_option, pass_client, status_option, stream_options
from scitq_bench.cli.logs import copy_logs, selected_streams
from scitq_bench.cli.output import Column, duration, print_list, when
from scitq_bench.cli.resolve import existing_batch, statuses, worker_id_of
from scitq_bench.client import Client


def execution_columns(workers: dict[int, str] | None = None) -> list[Column]:
    """Columns shared with ``task show``; ``workers`` maps ids to names when known."""
    names = workers or {}

    def worker_label(record: dict[str, Any]) -> Any:
        worker_id = record.get("worker_id")
        return names.get(worker_id, worker_id) if worker_id is not None else None

    return [
        Column("id", "id", justify="right"),
        Column("task", "task_id", justify="right"),
        Column("attempt", "attempt", justify="right"),
        Column("worker", worker_label),
        Column("status", "status"),
        Column("rc", "return_code", justify="right"),
        Column("started", lambda r: when(r.get("started_at"))),
        Column("finished", lambda r: when(r.get("finished_at")), long=True),
        Column("duration", lambda r: duration(r.get("duration")), justify="right"),
        Column("reason", "reason"),
        Column("error", "error", width=60),
        Column("outputs", "output_files", long=True),
    ]


def worker_names(client: Client) -> dict[int, str]:
    return {w["id"]: w["name"] for w in client.worker_list()}


@click.group()
def execution() -> None:
    """Executions: each attempt at running a task."""


@execution.command("list")
@click.option("-t", "--task", "task_id", type=int, help="Only this task's executions.")
@click.option("-w", "--worker", metavar="ID|NAME", help="Only this worker's executions.")
@status_option("executions")
@click.option("-b", "--batch", help="Only executions of this batch's tasks.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many.")
@click.option("-L", "--long", is_flag=True, help="Show every column.")
@json_option
@pass_client
def list_executions(client: Client, task_id: int | None, worker: str | None, status: str | None,
                    batch: str | None, limit: int | None, long: bool, as_json: bool) -> None:
    """List executions."""
    if batch is not None:
        existing_batch(client, batch)
    found = client.execution_list(
        task=task_id, worker=worker_id_of(client, worker) if worker else None,
        status=statuses(status), batch=batch, limit=limit,
    )
    columns = execution_columns(None if as_json else worker_names(client))
    print_list(found, columns, as_json=as_json, long=long)


def _refuse_task_id(_ctx: click.Context, _param: click.Parameter, value: int | None) -> None:
    """scitq-manage's ``execution output -i`` takes a task id; here an id would name an
    execution: never print another object's logs than the one meant."""
    if value is not None:
        raise click.UsageError(
            f"-i is ambiguous here: scitq-manage reads it as a task id, here it would be an "
            f"execution id. Give -x {value} for execution {value}, or "
            f"`task output -i {value}` for the latest execution of task {value}")


@execution.command("output", short_help="Print an execution's logs.")
@click.option("-x", "--execution", "execution_id", type=int, metavar="ID",
              help="Execution id (see `execution list` or `task show`).")
@click.option("-i", "--id", type=int, expose_value=False, callback=_refuse_task_id,
              metavar="ID", help="Refused: use -x ID (an execution) or `task output -i ID`.")
@stream_options
@pass_client
def execution_output(client: Client, execution_id: int | None, stdout_only: bool,
                     stderr_only: bool, follow: bool) -> None:
    """Print an execution's logs as raw bytes: its stdout to stdout and its stderr to
    stderr by default; -o or -e prints just one of them, to stdout."""
    if execution_id is None:
        raise click.UsageError("say which execution: -x ID (or `task output -i TASK_ID` "
                               "for a task's latest execution)")
    client.execution_get(execution_id)  # a clear "not found" before any output

    def fetch(stream: str, offset: int, limit: int, wait: float) -> tuple[bytes, int, str]:
        return client.execution_log(execution_id, stream, offset, limit, wait)

    copy_logs(fetch, selected_streams(stdout_only, stderr_only), follow=follow)
