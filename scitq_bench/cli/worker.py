"""``worker run|list|update|delete|deploy|undeploy``: run a worker here; list, change
and delete workers; hire machines from a provider for them now, and give them back."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from types import FrameType
from typing import Any, get_args

import click

from scitq_bench.cli.common import cli_state, json_option, long_option, pass_client, status_option
from scitq_bench.cli.config import worker_config
from scitq_bench.cli.output import (
    Column,
    format_value,
    print_json,
    print_list,
    show_or_say,
    success,
    when,
)
from scitq_bench.cli.resolve import resolve_worker, statuses
from scitq_bench.client import Client
from scitq_bench.exceptions import InvalidInput, ScitqBenchError, Unauthorized
from scitq_bench.settings import default_data_dir
from scitq_bench.states import RequestedWorkerStatus
from scitq_bench.storage.config import StorageConfig


def _running(worker: dict[str, Any]) -> int:
    return sum((worker.get("executions") or {}).values())


def _stats(worker: dict[str, Any]) -> str:
    stats = worker.get("stats") or {}
    return " ".join(f"{k}={format_value(v)}" for k, v in sorted(stats.items()))


WORKER_COLUMNS = [
    Column("id", "id", justify="right"),
    Column("name", "name"),
    Column("status", "status"),
    Column("batch", "batch"),
    Column("concurrency", "concurrency", justify="right"),
    Column("prefetch", "prefetch", justify="right"),
    Column("live", _running, justify="right"),
    Column("hostname", "hostname", long=True),
    Column("cpus", "cpus", long=True, justify="right"),
    Column("mem GB", "mem_gb", long=True, justify="right"),
    Column("gpus", "gpus", long=True, justify="right"),
    Column("gpu model", "gpu_model", long=True),
    Column("gpu mem GB", "gpu_mem_gb", long=True, justify="right"),
    Column("containers", "containers", long=True),
    Column("stats", _stats, long=True),
    Column("flavor", "flavor", long=True),
    Column("provider", "provider", long=True),
    Column("region", "region", long=True),
    Column("permanent", "permanent", long=True),
    Column("version", "version", long=True),
    Column("created", lambda w: when(w.get("created_at")), long=True),
    Column("last contact", lambda w: when(w.get("last_contact_at"))),
]


def worker_selector(function: Any) -> Any:
    """``-i ID | -n NAME``, resolved by ``resolve_worker``."""
    function = click.option("-n", "--name", help="Worker name.")(function)
    return click.option("-i", "--id", "worker_id", type=int, help="Worker id.")(function)


@click.group()
def worker() -> None:
    """Workers: run one here, or list, change and delete them."""


worker.add_command(worker_config)


@worker.command("run", short_help="Run a worker on this machine.")
@click.argument("url", required=False)
@click.option("-C", "--concurrency", type=click.IntRange(0, 1024), default=1,
              show_default=True, help="Tasks run at the same time.")
@click.option("--prefetch", type=click.IntRange(0, 10_000), default=0, show_default=True,
              help="Tasks fetched ahead (inputs downloaded) beyond those running.")
@click.option("--name", help="Worker name [default: this host's name].")
@click.option("--batch", help="Only run tasks of this batch.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where tasks run [default: <data dir>/worker-<name>].")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where resources are kept between tasks and restarts [default: "
              "<work dir>/cache]; worker processes may share one.")
@click.option("--cache-max-gb", type=click.FloatRange(min=0), default=20.0,
              show_default=True, metavar="GB",
              help="Resources kept at most; those used least recently go first, never "
              "one in use (0: kept only while tasks use them).")
@click.option("--containers/--no-containers", default=True, show_default=True,
              help="Run container tasks, when a container engine answers.")
@click.option("--docker-host", envvar="DOCKER_HOST",
              help="The engine's API (Docker, or Podman's service) [default: $DOCKER_HOST, "
              "else /var/run/docker.sock or /run/podman/podman.sock].")
@click.option("--container-user", metavar="UID[:GID]",
              help="Numeric user containers run as [default: 65534 (nobody) for a root "
              "worker, else the worker's own user]; never 0.")
@click.option("--container-mem", type=click.FloatRange(min=0, min_open=True), metavar="GB",
              help="Memory limit of a container whose task gives none [default: this "
              "machine's memory / concurrency].")
@click.option("--container-pids", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Process limit of a container.")
@click.option("--image-max-idle", type=click.FloatRange(min=0), default=168.0,
              show_default=True, metavar="HOURS",
              help="Images unused this long may be pruned when the disk is full.")
@click.option("--prune-threshold", type=click.FloatRange(0, 100), default=80.0,
              show_default=True, metavar="PERCENT",
              help="Disk use of the engine's storage above which idle images are pruned.")
@click.option("--spot", type=click.Choice(["aws", "azure"]),
              help="A spot machine of this provider: watch its metadata service for an "
              "interruption notice, and give the work back when one comes.")
@click.option("--metadata-url", default="http://169.254.169.254", show_default=True,
              help="The instance metadata service (for --spot).")
def run_worker(url: str | None, concurrency: int, prefetch: int, name: str | None,
               batch: str | None, work_dir: Path | None, cache_dir: Path | None,
               cache_max_gb: float, containers: bool,
               docker_host: str | None, container_user: str | None,
               container_mem: float | None, container_pids: int, image_max_idle: float,
               prune_threshold: float, spot: str | None, metadata_url: str) -> None:
    """Run a worker on this machine against the server at URL (default: --server or the
    client config). Needs an admin or enrollment token (--token, $SCITQ_BENCH_TOKEN or
    the client config). SIGTERM or Ctrl-C stops it. Storage credentials come from the
    storage settings file ($SCITQ_BENCH_STORAGE_CONFIG) and the SDKs' own
    configuration; tasks never see them."""
    try:
        from scitq_bench.client.worker.agent import WorkerAgent
        from scitq_bench.client.worker.container import ContainerDefaults
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("scitq_bench.client.worker"):
            raise ScitqBenchError("the worker agent (scitq_bench.client.worker) is not "
                                  "available in this installation") from None
        raise
    state = cli_state()
    client = Client(url or state.server, state.token, timeout=state.timeout,
                    retry_for=state.retry_seconds)  # each call; the worker insists for ever
    if not client.token:
        raise Unauthorized("worker run needs an admin or enrollment token: pass --token, "
                           "set SCITQ_BENCH_TOKEN, or run `scitq-bench server init` here "
                           "(or `scitq-bench server token --role enroll` on the server)")
    storage = StorageConfig.load()  # a bad settings file stops the worker here
    name = name or socket.gethostname()
    work_dir = work_dir or default_data_dir() / f"worker-{name}"
    defaults = ContainerDefaults(user=_container_user(container_user),
                                 pids_limit=container_pids, mem_gb=container_mem)
    engine = _engine(containers, docker_host, name, work_dir, image_max_idle, prune_threshold)
    from scitq_bench.client.worker.interruption import reader

    agent = WorkerAgent(client, name=name, concurrency=concurrency, prefetch=prefetch,
                        batch=batch, work_dir=work_dir, engine=engine,
                        container_defaults=defaults,
                        spot_notice=reader(spot, metadata_url) if spot else None,
                        cache_dir=cache_dir, cache_max_gb=cache_max_gb, storage=storage)

    def stop(signum: int, _frame: FrameType | None) -> None:
        # os.write: a buffered print could re-enter a write the signal interrupted
        os.write(2, f"worker {name}: {signal.Signals(signum).name}, stopping\n".encode())
        agent.stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        click.echo(f"worker {name} working for {client.server} in {work_dir}", err=True)
        agent.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _container_user(text: str | None) -> str | None:
    """Numeric UID[:GID], never root: isolation must not be one option away."""
    if text is None:
        return None
    uid, _, gid = text.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise InvalidInput(f"--container-user: {text!r} is not UID or UID:GID (numbers)")
    if int(uid) == 0 or (gid and int(gid) == 0):
        raise InvalidInput("--container-user: containers never run as root (uid or gid 0)")
    return text


def _engine(enabled: bool, docker_host: str | None, name: str, work_dir: Path,
            image_max_idle: float, prune_threshold: float) -> Any:
    """The container engine to use, or None (processes only)."""
    if not enabled:
        return None
    from scitq_bench.client.worker.engine import Engine, connect, resolve_host

    client = connect(docker_host)
    if client is None:
        click.echo("no container engine: container tasks will go to other workers", err=True)
        return None
    return Engine(client, name, work_dir.absolute() / "state",
                  image_max_idle=image_max_idle * 3600, prune_threshold=prune_threshold / 100,
                  host=resolve_host(docker_host))


@worker.command("list")
@click.option("-n", "--name", help="Only workers of this name ('%' is a wildcard).")
@click.option("-b", "--batch", help="Only workers serving this batch.")
@status_option("workers")
@long_option
@json_option
@pass_client
def list_workers(client: Client, name: str | None, batch: str | None, status: str | None,
                 long: bool, as_json: bool) -> None:
    """List workers."""
    found = client.worker_list(name=name, status=statuses(status))
    if batch is not None:
        found = [w for w in found if w.get("batch") == batch]
    print_list(found, WORKER_COLUMNS, as_json=as_json, long=long)


def _refuse_flavor(_ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """scitq-manage's ``worker update -f`` rewrites the flavor on record; here the
    flavor is what the machine is, so changing it would be a lie: say what to do."""
    if value is not None:
        raise click.UsageError(
            "a worker's flavor cannot be changed: it is the machine it runs on. Hire a "
            f"machine of flavor {value!r} with `worker deploy -f {value}`, then delete this "
            "worker")


@worker.command("update")
@worker_selector
@click.option("-C", "-c", "--concurrency", type=click.IntRange(0, 1024),
              help="Tasks at the same time.")
@click.option("-p", "--prefetch", type=click.IntRange(0, 10_000), help="Tasks fetched ahead.")
@click.option("-b", "--batch", help="Only run this batch's tasks ('' for any batch).")
@click.option("-S", "--status", type=click.Choice(get_args(RequestedWorkerStatus)),
              help="Pause the worker (it takes no new task) or let it run again.")
@click.option("-f", "--flavor", expose_value=False, callback=_refuse_flavor,
              help="Refused: a worker's flavor is the machine it runs on.")
@json_option
@pass_client
def update_worker(client: Client, worker_id: int | None, name: str | None,
                  concurrency: int | None, prefetch: int | None, batch: str | None,
                  status: str | None, as_json: bool) -> None:
    """Change a worker's concurrency, prefetch, batch or status."""
    fields = {k: v for k, v in (("concurrency", concurrency), ("prefetch", prefetch),
                                ("batch", batch), ("status", status)) if v is not None}
    if not fields:
        raise click.UsageError("nothing to update: give -C, -p, -b or -S")
    target = resolve_worker(client, worker_id, name)
    updated = client.worker_update(target["id"], **fields)
    show_or_say(updated, as_json, f"worker {updated['name']} (id {updated['id']}) updated")


@worker.command("delete")
@worker_selector
@click.option("--force", is_flag=True, help="Also when it holds live executions (they are "
              "queued again).")
@pass_client
def delete_worker(client: Client, worker_id: int | None, name: str | None, force: bool) -> None:
    """Delete a worker record (a running agent is refused from then on)."""
    target = resolve_worker(client, worker_id, name)
    client.worker_delete(target["id"], force=force)
    success(f"worker {target['name']} (id {target['id']}) deleted")


@worker.command("deploy")
@click.option("-f", "--flavor", required=True,
              help="A flavor name, or auto:<protofilters> (quote it).")
@click.option("-P", "--provider", default="auto", show_default=True)
@click.option("-r", "--region", default="auto", show_default=True)
@click.option("-b", "--batch", help="The batch the workers serve [default: any, recycled].")
@click.option("-N", "-n", "--number", type=click.IntRange(1, 1000), default=1,
              show_default=True, help="How many workers.")
@click.option("-C", "--concurrency", type=click.IntRange(1, 1024),
              help="Tasks each worker runs at once [default: from the flavor and the batch's "
                   "task needs].")
@click.option("-p", "--prefetch", type=click.IntRange(0, 10_000), default=0,
              show_default=True, help="Tasks fetched ahead.")
@json_option
@pass_client
def deploy(client: Client, flavor: str, provider: str, region: str, batch: str | None,
           number: int, concurrency: int | None, prefetch: int, as_json: bool) -> None:
    """Hire NUMBER machines now: the cheapest offers that fit, deployed by jobs (follow
    them with `job list`)."""
    if provider != "auto":
        configured = [p["name"] for p in client.provider_list()]
        if provider not in configured:
            raise InvalidInput(
                f"provider {provider!r} is not configured on this server (configured: "
                f"{', '.join(configured) or 'none'}): see `provider list`")
    jobs = client.worker_deploy(flavor, provider=provider, region=region, batch=batch,
                                number=number, concurrency=concurrency, prefetch=prefetch)
    if as_json:
        print_json(jobs)
        return
    for job in jobs:
        args = job["arguments"]
        success(f"job {job['id']}: deploying {args['name']} ({args['flavor']} in "
                f"{args['provider']}/{args['region']})")


@worker.command("undeploy")
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
