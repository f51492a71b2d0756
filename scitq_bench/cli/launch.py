"""``launch``: create one task, mirroring scitq-launch."""

from __future__ import annotations

import shlex
from typing import Any

import click

from scitq_bench.cli.common import GpuCount, pass_client
from scitq_bench.cli.output import print_json
from scitq_bench.cli.resolve import parse_ids
from scitq_bench.client import Client

positive = click.FloatRange(min=0, min_open=True)


def _uris(values: tuple[str, ...]) -> list[str]:
    """Repeated options, each possibly a space-separated list (as in scitq-launch)."""
    return [uri for value in values for uri in value.split()]


def task_payload(command: tuple[str, ...], **options: Any) -> dict[str, Any]:
    """The TaskCreate body; options left out take the server's defaults."""
    line = command[0] if len(command) == 1 else shlex.join(command)
    payload: dict[str, Any] = {"command": line}
    for key in ("name", "key", "batch", "container", "container_options", "output", "retry",
                "download_timeout", "run_timeout", "cpu", "mem", "gpu", "priority"):
        if options.get(key) is not None:
            payload[key] = options[key]
    for key in ("inputs", "resources"):
        if options.get(key):
            payload[key] = _uris(options[key])
    if options.get("requires"):
        payload["requires"] = parse_ids(options["requires"], "--requires")
    for flag in ("shell", "paused", "network"):
        if options.get(flag):
            payload[flag] = True
    return payload


def check_payload(payload: dict[str, Any]) -> None:
    """Validate as the server would (for the dry run, which sends nothing)."""
    from scitq_bench.server.schemas import TaskCreate, parse_body

    parse_body(TaskCreate, payload)


@click.command(context_settings={"allow_interspersed_args": False},
               short_help="Create a task (everything after -- is the command).")
@click.option("-b", "--batch", default="default", show_default=True, help="Batch of the task.")
@click.option("-n", "--name", help="Task name.")
@click.option("-k", "--key", help="Your own name for the task, unique in its batch: "
              "launching a key that exists prints that task and creates nothing.")
@click.option("-d", "--container", help="Container image to run the command in.")
@click.option("-O", "--container-options", metavar="OPTIONS",
              help="Container options (allow-list: --gpus, --shm-size, -e, --network, -w, "
                   "--entrypoint, --pids-limit).")
@click.option("--network", is_flag=True,
              help="Let the task use the network (its batch may also allow it).")
@click.option("-i", "--input", "inputs", multiple=True, metavar="URI",
              help="Input fetched into /input (repeatable; space-separated lists too).")
@click.option("-r", "--resource", "resources", multiple=True, metavar="URI",
              help="Resource fetched into /resource, shared between tasks (repeatable).")
@click.option("-o", "--output", metavar="URI", help="Where /output is copied at the end.")
@click.option("--retry", type=click.IntRange(0, 100), help="Retries allowed on failure.")
@click.option("--requires", multiple=True, metavar="TASK_ID",
              help="Run only after this task succeeded (repeatable, or comma-separated).")
@click.option("--download-timeout", type=positive, help="Seconds allowed to fetch inputs.")
@click.option("--run-timeout", type=positive, help="Seconds allowed to run.")
@click.option("--shell", is_flag=True, help="Run the command through /bin/sh -c.")
@click.option("--cpu", type=click.IntRange(min=1), help="CPUs needed.")
@click.option("--mem", type=positive, help="GB of memory needed.")
@click.option("--gpu", type=GpuCount(), help="GPUs needed: a count, or 'all' of the worker's.")
@click.option("--priority", type=int, help="Higher runs first.")
@click.option("--paused", is_flag=True, help="Create the task held back (status paused).")
@click.option("-t", "--test", "dry_run", is_flag=True,
              help="Dry run: validate and print the JSON that would be sent; create nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the created task as JSON.")
@click.argument("command", nargs=-1, required=True, metavar="-- COMMAND...")
def launch(command: tuple[str, ...], dry_run: bool, as_json: bool, **options: Any) -> None:
    """Create a task running COMMAND (everything after --; several words are joined
    with shell quoting) and print its id."""
    payload = task_payload(command, **options)
    if dry_run:
        check_payload(payload)
        print_json({"tasks": [payload]})
        return
    _create(payload, as_json)


@pass_client
def _create(client: Client, payload: dict[str, Any], as_json: bool) -> None:
    created = client.tasks_create([payload])[0]
    if as_json:
        print_json(created)
    else:
        click.echo(created["id"])

