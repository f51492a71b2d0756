"""``server config systemd|gunicorn|nginx|env|prometheus|grafana`` and ``worker config
systemd|env``: the files a production deployment runs with, rendered from the
templates shipped with the package (``scitq_bench.deployment``).

Each prints the file, or writes it with ``--output FILE``: atomically, never over an
existing file without ``--force``, the settings file with mode 0600. Values are
checked first; a bad one is refused with the reason and nothing is written. Nothing
secret is ever written: a database password given in a URL is left out, with a note
saying where it goes.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from scitq_bench.cli.common import cli_state
from scitq_bench.cli.output import note
from scitq_bench.deployment import output
from scitq_bench.deployment.render import KINDS, render
from scitq_bench.deployment.values import (
    DEFAULT_WORKER_USER,
    Values,
    private_paths,
    strip_password,
)
from scitq_bench.exceptions import InvalidInput
from scitq_bench.settings import load_client_settings

F = TypeVar("F", bound=Callable[..., Any])

# the options' defaults are Values' own, shown in --help: written once, in Values
DEFAULTS = Values()
WORKER_ENV_FILE = "/etc/scitq-bench/worker.env"


def _options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several click options as one decorator, in the order given."""

    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


output_options = _options(
    click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
                 help="Write the file there instead of printing it."),
    click.option("--force", is_flag=True, help="Replace --output if it exists."),
)


def unit_options(user: str) -> Callable[[F], F]:
    """Who a unit runs as and what it runs; ``user`` by default."""
    return _options(
        click.option("--user", default=user, show_default=True,
                     help="The dedicated user the service runs as."),
        click.option("--group", help="Its group [default: the user's name]."),
        click.option("--executable", help="The scitq-bench command, an absolute path "
                     "[default: the one running now]."),
    )


server_dir_options = _options(
    click.option("--data-dir", default=DEFAULTS.data_dir, show_default=True,
                 help="The server's data (settings.yaml, the SQLite database if any)."),
    click.option("--log-dir", help="Execution logs [default: <data dir>/logs]."),
    click.option("--store-dir", help="Files of server:// URIs [default: <data dir>/store]."),
)
listen_options = _options(
    click.option("--host", default=DEFAULTS.host, show_default=True,
                 help="Address the API listens on (behind nginx: 127.0.0.1, or this "
                      "host's private address for a remote nginx)."),
    click.option("--port", type=click.IntRange(1, 65535), default=DEFAULTS.port,
                 show_default=True),
    click.option("--processes", type=click.IntRange(min=1),
                 help="API processes [default: one per CPU; on SQLite one, which "
                      "`server run` picks itself when the unit names none]."),
    click.option("--max-long-polls", type=click.IntRange(min=1),
                 default=DEFAULTS.max_long_polls, show_default=True,
                 help="Waiting long polls per process (a worker holds two)."),
)
upstream_option = click.option(
    "--upstream", "upstreams", multiple=True, metavar="HOST:PORT",
    help=f"An API server (repeat for each replica) [default: {DEFAULTS.upstreams[0]}].")


@click.group("config", short_help="Write the server's deployment files.")
def server_config() -> None:
    """Write the files a production server runs with: systemd units, gunicorn's
    configuration, an nginx site, the settings (environment) file, a Prometheus
    configuration and a Grafana dashboard. Each is printed, or written with --output
    (never over an existing file without --force)."""


@server_config.command("systemd", short_help="A systemd unit of the server.")
@click.option("--unit", type=click.Choice(["server", "scheduler", "target"]),
              default="server", show_default=True,
              help="server: the API (`server run --no-reaper`); scheduler: the "
                   "background loops (`server scheduler`); target: both as one.")
@unit_options(DEFAULTS.user)
@click.option("--env-file", default=DEFAULTS.env_file, show_default=True,
              help="The settings file the units read (`server config env` writes it).")
@server_dir_options
@listen_options
@click.option("--gunicorn-config", help="A gunicorn configuration for `server run` "
              "(`server config gunicorn` writes one).")
@output_options
def systemd(unit: str, output: Path | None, force: bool, **options: Any) -> None:
    """One unit per call: render each of server, scheduler and target into
    /etc/systemd/system (scitq-bench-server.service, scitq-bench-scheduler.service,
    scitq-bench.target)."""
    values = _values(options, executable=unit != "target")
    _warn_hidden_paths(values)
    _emit(f"systemd-{unit}", values, output, force)


@server_config.command("gunicorn", short_help="gunicorn's configuration.")
@listen_options
@output_options
def gunicorn(output: Path | None, force: bool, **options: Any) -> None:
    """gunicorn's settings as `server run` sets them, for `gunicorn -c FILE
    scitq_bench.server.wsgi:application` or `server run --gunicorn-config FILE`."""
    _emit("gunicorn", _values(options), output, force)


@server_config.command("nginx", short_help="An nginx site in front of the API.")
@click.option("--public-url", help="The URL users and workers reach the server at "
              "[default: https://<this host's name>].")
@upstream_option
@click.option("--certificate", help="TLS certificate chain [default: Let's Encrypt's "
              "for the public host].")
@click.option("--certificate-key", help="Its private key [default: Let's Encrypt's].")
@click.option("--max-body-size", default=DEFAULTS.max_body_size, show_default=True,
              help="Largest upload (benchmark bundles reach 4 GiB).")
@click.option("--metrics-allow", multiple=True, metavar="ADDRESS[/BITS]",
              help="Who may read /metrics through nginx, besides its token (repeat) "
                   f"[default: {' and '.join(DEFAULTS.metrics_allow)}].")
@click.option("--nginx-log-dir", default=DEFAULTS.nginx_log_dir, show_default=True)
@click.option("--http-port", type=click.IntRange(1, 65535), default=DEFAULTS.http_port,
              show_default=True,
              help="Where plain HTTP is answered with a redirect to the public URL.")
@output_options
def nginx(output: Path | None, force: bool, **options: Any) -> None:
    """An HTTPS site proxying to the API processes, with the timeouts of the workers'
    long polls and streamed uploads and downloads."""
    options["public_url"] = options["public_url"] or f"https://{socket.getfqdn().lower()}"
    _emit("nginx", _values(options), output, force)


@server_config.command("env", short_help="The settings file (environment).")
@server_dir_options
@click.option("--database-url", help="postgresql+psycopg2://USER@HOST/NAME (a password "
              "in it is left out: it goes in PGPASSWORD) [default: SQLite in the data dir].")
@click.option("--public-url", help="The URL workers reach the server at.")
@output_options
def env(output: Path | None, force: bool, **options: Any) -> None:
    """Every setting the server and the scheduler read from their environment, each
    with its default; the secrets are left empty for you to fill in. Written with
    mode 0600."""
    _emit("env-server", _values(options), output, force)


@server_config.command("prometheus", short_help="A Prometheus scrape configuration.")
@upstream_option
@click.option("--metrics-token-file", default=DEFAULTS.metrics_token_file,
              show_default=True, help="Where Prometheus reads the metrics token "
              "(`server token --role metrics`).")
@click.option("--scrape-interval", default=DEFAULTS.scrape_interval, show_default=True)
@output_options
def prometheus(output: Path | None, force: bool, **options: Any) -> None:
    """Prometheus scraping /metrics of every API server directly (one target each)."""
    _emit("prometheus", _values(options), output, force)


@server_config.command("grafana", short_help="A Grafana dashboard.")
@output_options
def grafana(output: Path | None, force: bool) -> None:
    """A dashboard over the server's metrics; import it into Grafana and pick the
    Prometheus data source."""
    _emit("grafana", DEFAULTS, output, force)


@click.group("config", short_help="Write a worker's deployment files.")
def worker_config() -> None:
    """Write the files a worker machine runs with: its systemd unit and its settings
    (environment) file."""


@worker_config.command("systemd", short_help="The worker's systemd unit.")
@click.argument("url", required=False)
@unit_options(DEFAULT_WORKER_USER)
@click.option("--env-file", default=WORKER_ENV_FILE, show_default=True,
              help="The worker's settings file, with its token (`worker config env`).")
@click.option("--name", "worker_name", help="Worker name [default: the host's name].")
@click.option("-C", "--concurrency", type=click.IntRange(1, 1024), default=DEFAULTS.concurrency,
              show_default=True)
@click.option("--work-dir", default=DEFAULTS.work_dir, show_default=True,
              help="Where tasks run.")
@click.option("--engine-group", help="The group of the container engine's socket "
              "(docker); none: no container tasks unless the user may reach it.")
@click.option("--stop-timeout", type=click.IntRange(min=1), default=DEFAULTS.stop_timeout,
              show_default=True,
              help="Seconds a stopping worker gets before what is left is killed.")
@output_options
def worker_systemd(url: str | None, output: Path | None, force: bool,
                   **options: Any) -> None:
    """The unit running `worker run` against URL [default: --server, else the client
    config]; render it into /etc/systemd/system/scitq-bench-worker.service."""
    values = _values({**options, "server_url": _server_url(url)}, executable=True)
    _warn_hidden_paths(values)
    _emit("systemd-worker", values, output, force)


@worker_config.command("env", short_help="The worker's settings file.")
@click.argument("url", required=False)
@output_options
def worker_env(url: str | None, output: Path | None, force: bool) -> None:
    """Every setting a worker reads from its environment, its token left empty for
    you to fill in. Written with mode 0600."""
    _emit("env-worker", _values({"server_url": _server_url(url)}), output, force)


# -- helpers -------------------------------------------------------------------------------


def _values(options: dict[str, Any], *, executable: bool = False) -> Values:
    """The checked values: options not given keep Values' defaults (click gives a
    repeated option as a tuple, as Values keeps it)."""
    given = {key: value for key, value in options.items() if value not in (None, ())}
    if "user" in given and "group" not in given:
        given["group"] = given["user"]
    if "database_url" in given:
        given["database_url"], removed = strip_password(given["database_url"])
        if removed:
            note("note: the database password was left out of the file: put it in "
                 "PGPASSWORD in the env file (mode 0600), or in ~/.pgpass of the "
                 "service's user")
    values = Values(**given)  # every value checked before the executable is looked for
    if executable and not values.executable:
        values = dataclasses.replace(values, executable=default_executable())
    return values


def default_executable() -> str:
    """The scitq-bench command running now, else the one on PATH."""
    running = Path(sys.argv[0])
    if running.name == "scitq-bench" and running.is_file():
        return str(running.resolve())
    found = shutil.which("scitq-bench")
    if found is None:
        raise InvalidInput("cannot tell where the scitq-bench command is: pass --executable")
    return str(Path(found).resolve())


def _server_url(url: str | None) -> str:
    return url.rstrip("/") if url else load_client_settings(cli_state().server).server


def _warn_hidden_paths(values: Values) -> None:
    for path in private_paths(values):
        note(f"warning: {path} is under /home, /root or /run/user, which the unit's "
             "ProtectHome=yes hides from the service: install and keep its files "
             "elsewhere (e.g. /opt/scitq-bench, /var/lib/scitq-bench)")


def _emit(kind: str, values: Values, path: Path | None, force: bool) -> None:
    text = render(kind, values)
    if path is None:
        click.echo(text, nl=False)
        return
    written = output.write(path, text, private=KINDS[kind].private, force=force)
    note(f"wrote {written}" + (" (mode 0600)" if KINDS[kind].private else ""))
