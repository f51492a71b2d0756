"""``task list|show|output|relaunch|update|delete|signal`` (tasks are created by
``launch``, as scitq-launch does)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

import click

from scitq_bench.cli.common import (
    GpuCount,
    json_option,
    long_option,
    pass_client,
    status_option,
    stream_options,
)
from scitq_bench.cli.execution import execution_columns, worker_names
from scitq_bench.cli.logs import copy_logs, selected_streams
from scitq_bench.cli.output import (
    Column,
    note,
    print_json,
    print_list,
    print_record,
    print_table,
    show_or_say,
    success,
    when,
)
from scitq_bench.cli.resolve import existing_batch, parse_ids, resolve_task, statuses
from scitq_bench.client import Client
from scitq_bench.exceptions import ScitqBenchError
from scitq_bench.states import FINAL_TASK_VALUES, RequestedTaskStatus, Signal, TaskStatus

DEFAULT_LIMIT = 50  # tasks a bare `task list` shows: the newest ones
PAGE = 1000  # tasks asked at once by `task list --all`

SHORT_LIST = 5  # longer lists are summed up by `task show` (not with -L)
LISTED = {"requires": "tasks", "inputs": "URIs", "resources": "URIs"}

TASK_COLUMNS = [
    Column("id", "id", justify="right"),
    Column("name", "name", width=30),
    Column("status", "status"),
    Column("batch", "batch"),
    Column("command", "command", width=50),
    Column("container", "container", long=True),
    Column("container options", "container_options", long=True),
    Column("network", lambda t: "yes" if t.get("network") else None, long=True),
    Column("inputs", "inputs", long=True),
    Column("resources", "resources", long=True),
    Column("output", "output", long=True),
    Column("shell", "shell", long=True),
    Column("retry", lambda t: f"{t.get('retries_used', 0)}/{t.get('retry', 0)}", long=True),
    Column("priority", "priority", long=True, justify="right"),
    Column("requires", "requires", long=True),
    Column("cpu", "cpu", long=True, justify="right"),
    Column("mem", "mem", long=True, justify="right"),
    Column("gpu", "gpu", long=True, justify="right"),
    Column("timeouts", lambda t: _timeouts(t), long=True),
    Column("reason", "status_reason", long=True),
    Column("waiting", "waiting", long=True),
    Column("created", lambda t: when(t.get("created_at"))),
    Column("modified", lambda t: when(t.get("modified_at")), long=True),
]


def summarized(task: dict[str, Any]) -> dict[str, Any]:
    """The task with each long list as one short line: a thousand prerequisites would
    otherwise print as a screenful of ids."""
    short = dict(task)
    for key, noun in LISTED.items():
        values = task.get(key)
        if isinstance(values, list) and len(values) > SHORT_LIST:
            short[key] = summary(values, noun)
    return short


def summary(values: list[Any], noun: str) -> str:
    """``1,000 tasks (1, 2, 3, ... 1000; -L for all)``: the count, the first three and
    the last."""
    first = ", ".join(str(v) for v in values[:3])
    return f"{len(values):,} {noun} ({first}, ... {values[-1]}; -L for all)"


def _timeouts(task: dict[str, Any]) -> str:
    parts = [f"{label} {task[key]:g}s" for label, key in
             (("download", "download_timeout"), ("run", "run_timeout")) if task.get(key)]
    return ", ".join(parts)


def task_id_option(multiple: bool = False) -> Any:
    if multiple:
        return click.option("-i", "--id", "ids", multiple=True, metavar="ID[,ID...]",
                            help="Task id (repeat or comma-separate for several).")
    return click.option("-i", "--id", "task_id", type=int, required=True, help="Task id.")


def task_selector(multiple: bool = False, narrow: bool = True) -> Any:
    """``-i ID`` or ``-n NAME`` (scitq-manage's pair: give one of them); with
    ``narrow``, ``-b BATCH`` picks among several tasks of that name."""

    def decorate(function: Any) -> Any:
        if narrow:
            function = click.option("-b", "--batch", metavar="BATCH",
                                    help="With -n: the task of that name in this batch.")(function)
        function = click.option("-n", "--name", metavar="NAME",
                                help="Task name (matched exactly).")(function)
        if multiple:
            return click.option("-i", "--id", "ids", multiple=True, metavar="ID[,ID...]",
                                help="Task id (repeat or comma-separate for several).")(function)
        return click.option("-i", "--id", "task_id", type=int, help="Task id.")(function)

    return decorate


@click.group(short_help="List, inspect, change, relaunch and signal tasks.")
def task() -> None:
    """Tasks: list, inspect, change, relaunch, signal (create them with `launch`)."""


@task.command("list")
@click.option("-b", "--batch", help="Only this batch's tasks.")
@status_option("tasks")
@click.option("-n", "--name", help="Only tasks of this name ('%' is a wildcard).")
@task_id_option(multiple=True)
@click.option("--limit", type=click.IntRange(min=1),
              help=f"At most this many tasks, newest first [default: {DEFAULT_LIMIT}].")
@click.option("--all", "show_all", is_flag=True, help="Every task, newest first.")
@long_option
@json_option
@pass_client
def list_tasks(client: Client, batch: str | None, status: str | None, name: str | None,
               ids: tuple[str, ...], limit: int | None, show_all: bool, long: bool,
               as_json: bool) -> None:
    """List tasks, newest first: the last 50 unless --limit N or --all (stderr says
    how many more there are). The command is truncated unless -L."""
    if show_all and limit is not None:
        raise click.UsageError("--all lists every task: not with --limit")
    if batch is not None:
        existing_batch(client, batch)
    filters: dict[str, Any] = dict(batch=batch, status=statuses(status), name=name,
                                   ids=parse_ids(ids) or None)
    if show_all:
        found, total = _every_task(client, filters), None
    else:
        found, total = client.task_page(**filters, limit=limit or DEFAULT_LIMIT,
                                        newest_first=True)
    print_list(found, TASK_COLUMNS, as_json=as_json, long=long)
    if total is not None and total > len(found):
        note(f"{len(found):,} of {total:,} tasks shown (newest first); "
             "--all or --limit N for more")


def _every_task(client: Client, filters: dict[str, Any]) -> list[dict[str, Any]]:
    """Every matching task, newest first, a page at a time; a task created meanwhile
    shifts the pages, so ids already seen are skipped."""
    seen: dict[int, dict[str, Any]] = {}
    offset = 0
    while True:
        page, total = client.task_page(**filters, limit=PAGE, offset=offset, newest_first=True)
        for found in page:
            seen.setdefault(found["id"], found)
        offset += len(page)
        if len(page) < PAGE or (total is not None and offset >= total):
            return list(seen.values())


@task.command("show")
@task_id_option()
@long_option
@json_option
@pass_client
def show_task(client: Client, task_id: int, long: bool, as_json: bool) -> None:
    """Show one task with all its fields and its executions; long lists (requires,
    inputs, resources) are summed up unless -L or --json."""
    record = client.task_get(task_id)
    executions = client.task_executions(task_id)
    if as_json:
        print_json({"task": record, "executions": executions})
        return
    print_record(record if long else summarized(record), title=f"task {task_id}")
    if executions:
        click.echo()
        print_table(executions, execution_columns(worker_names(client)), title="executions")
    else:
        click.echo("\nno executions yet")


@task.command("output", short_help="Print the logs of a task's latest execution.")
@task_selector()
@stream_options
@pass_client
def task_output(client: Client, task_id: int | None, name: str | None, batch: str | None,
                stdout_only: bool, stderr_only: bool, follow: bool) -> None:
    """Print the logs of the task's latest execution as raw bytes: its stdout to
    stdout and its stderr to stderr by default; -o or -e prints just one, to stdout.
    With -f, waits for the task to start and prints until its execution ends."""
    _only_with_name(batch, name)
    task_id = resolve_task(client, task_id, name, batch)
    client.task_get(task_id)  # a clear "not found" before any output

    def fetch(stream: str, offset: int, limit: int, wait: float) -> tuple[bytes, int, str]:
        return client.task_output(task_id, stream, offset, limit, wait)

    def gone() -> bool:
        """No execution yet: stop following only if none will ever come."""
        return client.task_get(task_id)["status"] in FINAL_TASK_VALUES

    copy_logs(fetch, selected_streams(stdout_only, stderr_only), follow=follow, gone=gone)


def _only_with_name(batch: str | None, name: str | None) -> None:
    if batch is not None and name is None:
        raise click.UsageError("-b narrows -n NAME here: give -n too (or -i ID alone)")


def _named(client: Client, ids: tuple[str, ...], name: str | None,
           batch: str | None) -> list[int] | None:
    """The task of ``-n NAME`` (narrowed by ``-b``) as a list of one id; None when no
    name is given. A name with ids is refused: one way of naming tasks at a time."""
    if name is None:
        return None
    if ids:
        raise click.UsageError("give tasks by id (-i) or by name (-n), not both")
    return [resolve_task(client, None, name, batch)]


@task.command("relaunch")
@task_selector(multiple=True, narrow=False)
@click.option("-b", "--batch", help="Relaunch the tasks of this batch that are in -S "
              "(with -n: the task of that name in this batch).")
@click.option("-S", "--status", "status", metavar="STATUS[,STATUS...]",
              help="With -b: which tasks to relaunch [default: failed].")
@pass_client
def relaunch_tasks(client: Client, ids: tuple[str, ...], name: str | None, batch: str | None,
                   status: str | None) -> None:
    """Run finished tasks again (failed, succeeded or cancelled ones), given by id
    (-i), by name (-n) or by batch (-b, with -S). A failed task whose prerequisite is
    relaunched too comes back with it (to waiting)."""
    named = _named(client, ids, name, batch)
    if named is not None:
        if status:
            raise click.UsageError("-S selects tasks of a batch: not with -n")
        _each(named, lambda i: client.task_relaunch(i), "relaunched")
        return
    task_ids = parse_ids(ids)
    if batch:
        existing_batch(client, batch)
        chosen = statuses(status) or [TaskStatus.FAILED.value]
        task_ids += _without_followers(client.task_list(batch=batch, status=chosen))
    elif status:
        raise click.UsageError("-S selects tasks of a batch: give -b too")
    if not task_ids:
        if batch:
            success(f"no task of batch {batch!r} to relaunch")
            return
        raise click.UsageError("give task ids with -i, or a batch with -b")
    _each(task_ids, lambda i: client.task_relaunch(i), "relaunched")


def _without_followers(tasks: list[dict[str, Any]]) -> list[int]:
    """Ids of ``tasks`` less the failed ones with a failed prerequisite among them:
    relaunching that prerequisite brings them back."""
    failed = {t["id"] for t in tasks if t["status"] == TaskStatus.FAILED.value}
    kept = []
    for task in tasks:
        leader = next((p for p in task.get("requires", ()) if p in failed), None)
        if task["id"] in failed and leader is not None:
            success(f"task {task['id']} comes back with its prerequisite task {leader}")
            continue
        kept.append(task["id"])
    return kept


def _each(task_ids: list[int], action: Callable[[int], Any], done: str) -> None:
    """Apply ``action`` to every task, report each one, and fail at the end (exit 1)
    if any was refused, so one bad id does not stop the rest."""
    failures = []
    for task_id in dict.fromkeys(task_ids):
        try:
            action(task_id)
        except ScitqBenchError as exc:
            failures.append(str(exc))
            continue
        success(f"task {task_id} {done}")
    if len(failures) == 1:
        raise ScitqBenchError(failures[0])
    if failures:
        raise ScitqBenchError(f"{len(failures)} task(s) failed:\n  " + "\n  ".join(failures))


@task.command("update")
@task_selector(narrow=False)
@click.option("-c", "--command", help="New command line.")
@click.option("-d", "--container", help="New container image ('' for none).")
@click.option("-O", "--container-options", help="New container options ('' for none).")
@click.option("-N", "--new-name", "new_name", help="New task name.")
@click.option("-b", "--batch", help="Move the task to this batch (created if need be).")
@click.option("-j", "--input", "inputs", multiple=True, metavar="URI",
              help="New inputs, replacing the old ones (repeatable; space-separated lists "
                   "too; '' for none).")
@click.option("--no-input", "no_input", is_flag=True, help="Remove every input.")
@click.option("-r", "--resource", "resources", multiple=True, metavar="URI",
              help="New resources, replacing the old ones (repeatable; '' for none).")
@click.option("--no-resource", "no_resource", is_flag=True, help="Remove every resource.")
@click.option("-o", "--output", metavar="URI", help="New output location ('' for none).")
@click.option("-R", "--requires", metavar="ID[,ID...]",
              help="New prerequisite task ids, comma- or space-separated ('' for none).")
@click.option("--shell/--no-shell", default=None, help="Run through /bin/sh -c or not.")
@click.option("--network/--no-network", default=None,
              help="Let the task use the network, or not (its batch may also allow it).")
@click.option("--gpu", type=GpuCount(), help="GPUs needed: a count, or 'all' of the worker's.")
@click.option("--retry", type=click.IntRange(0, 100), help="Retries allowed.")
@click.option("--priority", type=int, help="Higher runs first.")
@click.option("--download-timeout", type=click.FloatRange(min=0, min_open=True),
              help="Seconds allowed to fetch inputs.")
@click.option("--run-timeout", type=click.FloatRange(min=0, min_open=True),
              help="Seconds allowed to run.")
@click.option("-S", "--status", type=click.Choice(get_args(RequestedTaskStatus)),
              help="Hold a queued task back (paused) or queue it again (pending; a "
                   "finished task is relaunched).")
@json_option
@pass_client
def update_task(client: Client, task_id: int | None, name: str | None, as_json: bool,
                **changes: Any) -> None:
    """Change a task's fields or status; its batch, inputs, resources, output and
    prerequisites only while it does not run. -S pending queues a paused task again,
    or relaunches a finished one (as in scitq-manage)."""
    fields = _update_fields(changes)
    if not fields:
        raise click.UsageError("nothing to update: give at least one field to change")
    task_id = resolve_task(client, task_id, name, narrow=False)
    status = fields.get("status")
    if status == TaskStatus.PENDING.value and \
            client.task_get(task_id)["status"] in FINAL_TASK_VALUES:
        del fields["status"]
        if fields:
            client.task_update(task_id, **fields)
        updated = client.task_relaunch(task_id)
        show_or_say(updated, as_json, f"task {task_id} relaunched (status {updated['status']})")
        return
    updated = client.task_update(task_id, **fields)
    show_or_say(updated, as_json, f"task {task_id} updated (status {updated['status']})")


def _update_fields(changes: dict[str, Any]) -> dict[str, Any]:
    """The PATCH body from the options: '' clears a field, --no-input/--no-resource
    clear a list (and may not come with new values)."""
    inputs, resources = changes.pop("inputs"), changes.pop("resources")
    no_input, no_resource = changes.pop("no_input"), changes.pop("no_resource")
    requires = changes.pop("requires")
    fields = {key: value for key, value in changes.items() if value is not None}
    if "new_name" in fields:
        fields["name"] = fields.pop("new_name")
    for key in ("container", "container_options", "output"):
        if fields.get(key) == "":
            fields[key] = None  # '' clears the field
    for key, values, none, flag in (("inputs", inputs, no_input, "--no-input"),
                                    ("resources", resources, no_resource, "--no-resource")):
        if none and values:
            raise click.UsageError(f"{flag} removes them all: not with new values")
        if none or values:
            fields[key] = [uri for value in values for uri in value.split()]
    if requires is not None:
        fields["requires"] = parse_ids(requires.split(), "--requires")
    return fields


@task.command("delete")
@task_selector(multiple=True)
@pass_client
def delete_tasks(client: Client, ids: tuple[str, ...], name: str | None,
                 batch: str | None) -> None:
    """Delete tasks (with their executions and logs), given by id or by name (to
    delete a whole batch: `batch delete -n BATCH`)."""
    _only_with_name(batch, name)
    task_ids = _named(client, ids, name, batch) or parse_ids(ids)
    if not task_ids:
        raise click.UsageError("say which tasks to delete: by id (-i) or by name (-n)")
    _each(task_ids, client.task_delete, "deleted")


@task.command("signal", short_help="Pause, resume, stop or kill running tasks.")
@task_id_option(multiple=True)
@click.argument("signal", type=click.Choice([s.value for s in Signal]))
@pass_client
def signal_tasks(client: Client, ids: tuple[str, ...], signal: str) -> None:
    """Pause (SIGSTOP), resume (SIGCONT), stop (SIGTERM) or kill (SIGKILL) the running
    execution of tasks."""
    task_ids = parse_ids(ids)
    if not task_ids:
        raise click.UsageError("give the task ids to signal with -i")
    _each(task_ids, lambda i: client.task_signal(i, signal), f"sent {signal}")
