"""``bench``: benchmarks imported from Codabench bundles (organizers): list, show,
delete, what their steps run in, and each task's resources."""

from __future__ import annotations

from pathlib import Path

import click

from scitq_bench.cli.common import json_option, pass_client
from scitq_bench.cli.output import (
    Column,
    print_json,
    print_list,
    print_record,
    print_table,
    show_or_say,
    success,
    when,
)
from scitq_bench.client import Client

BENCH_COLUMNS = [
    Column("id", "id", justify="right"),
    Column("key", "key"),
    Column("title", "title", width=50),
    Column("visibility", "visibility"),
    Column("created", lambda b: when(b.get("created_at"))),
]

PHASE_COLUMNS = [
    Column("id", "id", justify="right"),
    Column("index", "index", justify="right"),
    Column("name", "name"),
    Column("start", lambda p: when(p.get("start"))),
    Column("end", lambda p: when(p.get("end")) or "never"),
    Column("max subs", "max_submissions", justify="right"),
    Column("per day", "max_submissions_per_day", justify="right"),
    Column("max MB", "max_submission_mb", justify="right"),
    Column("time limit", lambda p: f"{p['execution_time_limit']}s"
           if p.get("execution_time_limit") else "", justify="right"),
    Column("result only", "accepts_only_result_submissions"),
    Column("hide", lambda p: ", ".join(label for label, key in (
        ("output", "hide_output"), ("prediction", "hide_prediction_output"),
        ("scoring", "hide_score_output")) if p.get(key))),
    Column("tasks", "tasks"),
]

TASK_COLUMNS = [
    Column("id", "id", justify="right"),
    Column("index", "index", justify="right"),
    Column("name", "name"),
    Column("ingestion", "has_ingestion"),
    Column("gpu", "gpu"),
    Column("image", "image"),
    Column("description", "description", width=40),
]

BOARD_COLUMNS = [
    Column("index", "index", justify="right"),
    Column("key", "key"),
    Column("title", "title"),
    Column("sorting", "sorting"),
    Column("computation", lambda c: f"{c['computation']} {c.get('computation_indexes') or ''}"
           .strip() if c.get("computation") else ""),
    Column("precision", "precision", justify="right"),
    Column("hidden", lambda c: "yes" if c.get("hidden") else ""),
]


@click.group()
def bench() -> None:
    """Benchmarks: import Codabench bundles, list, show, delete."""


@bench.command("import")
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.option("--key", help="Short name [default: from the title].")
@click.option("--private", is_flag=True, help="Only its organizers and admins see it.")
@click.option("--run-on-host", is_flag=True,
              help="Run its (trusted) programs sandboxed on the workers' hosts, without an "
                   "image (admin only).")
@json_option
@pass_client
def import_bench(client: Client, bundle: Path, key: str | None, private: bool,
                 run_on_host: bool, as_json: bool) -> None:
    """Import a Codabench bundle: a zip, or a folder (zipped and uploaded). All of it
    or nothing: any error leaves no benchmark behind."""
    created = client.bench_import(bundle, key=key,
                                  visibility="private" if private else "public",
                                  run_on_host=run_on_host)
    if as_json:
        print_json(created)
        return
    phases = ", ".join(f"{p['id']} ({p['name']})" for p in created.get("phases", []))
    success(f"benchmark {created['id']} imported: {created['key']} "
            f"({created['title']}); phases {phases}")


@bench.command("list")
@json_option
@pass_client
def list_benches(client: Client, as_json: bool) -> None:
    """List the benchmarks this token may see."""
    print_list(client.bench_list(), BENCH_COLUMNS, as_json=as_json)


@bench.command("show")
@click.argument("benchmark_id", type=int)
@json_option
@pass_client
def show_bench(client: Client, benchmark_id: int, as_json: bool) -> None:
    """Show a benchmark: its phases (dates, limits), tasks and leaderboards."""
    found = client.bench_get(benchmark_id)
    if as_json:
        print_json(found)
        return
    fields = ("id", "key", "title", "owner", "visibility", "docker_image", "run_on_host",
              "host_environment", "enable_detailed_results", "manage")
    record = {name: found.get(name) for name in fields}
    record["created"] = when(found.get("created_at"))
    print_record(record, title=f"benchmark {benchmark_id}")
    click.echo()
    print_table(found.get("phases", []), PHASE_COLUMNS, title="phases")
    click.echo()
    print_table(found.get("tasks", []), TASK_COLUMNS, title="tasks")
    for board in found.get("leaderboards", []):
        click.echo()
        hidden = ", hidden" if board.get("hidden") else ""
        print_table(board.get("columns", []), BOARD_COLUMNS,
                    title=f"leaderboard {board['key']}: {board['title']} "
                          f"({board['submission_rule']}{hidden})")


@bench.command("task")
@click.argument("benchmark_id", type=int)
@click.argument("index", type=int)
@click.option("--gpu", help="GPUs each step of the task needs: a count, or all.")
@click.option("--image", help="An image for this task ('' for the benchmark's).")
@json_option
@pass_client
def update_bench_task(client: Client, benchmark_id: int, index: int, gpu: str | None,
                      image: str | None, as_json: bool) -> None:
    """Set the resources of task INDEX of a benchmark."""
    if gpu is None and image is None:
        raise click.UsageError("give --gpu and/or --image")
    count: int | str | None = gpu
    if gpu is not None and gpu != "all":
        if not gpu.isdigit():
            raise click.BadParameter(f"{gpu!r} is not a count or all", param_hint="--gpu")
        count = int(gpu)
    answer = client.bench_task_update(benchmark_id, index, gpu=count, image=image)
    task = next(t for t in answer["tasks"] if t["index"] == index)
    show_or_say(task, as_json, f"benchmark {benchmark_id} task {index}: gpu {task['gpu']}, "
                 f"image {task.get('image') or '(the benchmark' + chr(39) + 's)'}")


@bench.command("update")
@click.argument("benchmark_id", type=int)
@click.option("--image", help="The image every step runs in unless its task names one "
              "('' for the default image).")
@click.option("--host-environment", metavar="PATH",
              help="For a benchmark run on the workers' hosts: a virtualenv or conda prefix "
                   "there, its bin/ first on PATH in the sandbox ('' for none).")
@click.option("--priority", metavar="N|none",
              help="The priority of the benchmark's batches, within the server's bounds "
                   "(settings bench_priority_min/max); 'none' for 0.")
@json_option
@pass_client
def update_bench(client: Client, benchmark_id: int, image: str | None,
                 host_environment: str | None, priority: str | None, as_json: bool) -> None:
    """Set what every step of a benchmark runs in, and its batches' priority."""
    if image is None and host_environment is None and priority is None:
        raise click.UsageError("give --image, --host-environment and/or --priority")
    if priority is not None:
        try:
            level = None if priority.lower() == "none" else int(priority)
        except ValueError:
            raise click.BadParameter(f"{priority!r} is not a whole number or 'none'",
                                     param_hint="--priority") from None
        set_to = client.bench_priority(benchmark_id, level)
        if image is None and host_environment is None:
            show_or_say(set_to, as_json, f"benchmark {benchmark_id}: priority "
                        f"{set_to['priority'] if set_to['priority'] is not None else 0} "
                        f"(batches {', '.join(set_to['batches'])})")
            return
    answer = client.bench_update(benchmark_id, docker_image=image,
                                 host_environment=host_environment)
    where = f"on the hosts, environment {answer.get('host_environment') or '(none)'}" \
        if answer.get("run_on_host") else f"image {answer.get('docker_image')}"
    show_or_say(answer, as_json, f"benchmark {benchmark_id}: steps run {where}")


@bench.command("delete")
@click.argument("benchmark_id", type=int)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_client
def delete_bench(client: Client, benchmark_id: int, yes: bool, as_json: bool) -> None:
    """Delete a benchmark with its submissions, their tasks and its files."""
    found = client.bench_get(benchmark_id)
    if not yes:
        click.confirm(f"Delete benchmark {benchmark_id} ({found['key']}) with all its "
                      "submissions?", abort=True, err=True)
    answer = client.bench_delete(benchmark_id)
    show_or_say(answer, as_json, f"benchmark {benchmark_id} deleted")
