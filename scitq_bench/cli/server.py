"""``server init|run|scheduler|token``: the server side, run where the database is.

Server modules are imported inside the commands so that client commands never load
Flask or SQLAlchemy.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import click

from scitq_bench.cli.config import server_config
from scitq_bench.cli.output import note
from scitq_bench.exceptions import ScitqBenchError
from scitq_bench.server.serving import DEFAULT_MAX_LONG_POLLS, local_url
from scitq_bench.settings import DEFAULT_PORT, ServerSettings, write_client_config

data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path),
    help="Server data (database, logs, file store) [default: $SCITQ_BENCH_DATA_DIR or "
         "~/.scitq_bench]; $SCITQ_BENCH_DATABASE_URL selects another database.")


@contextmanager
def database_errors(hint: str = "") -> Iterator[None]:
    """Database failures (unreachable PostgreSQL, unwritable SQLite file) as one line."""
    from sqlalchemy.exc import SQLAlchemyError

    from scitq_bench.server.db import error_reason

    try:
        yield
    except SQLAlchemyError as exc:
        raise ScitqBenchError(f"database error: {error_reason(exc)}{hint}") from None


@click.group(short_help="Initialise, run and administer the server.")
def server() -> None:
    """The server: initialise it, run it, run its lease reaper, mint tokens."""


server.add_command(server_config)


@server.command("init", short_help="Create the schema and the first admin token.")
@data_dir_option
@click.option("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}", show_default=True,
              help="URL the CLI on this machine will use to reach the server.")
@click.option("--new-token", is_flag=True,
              help="Server already initialised: mint one more admin token.")
def init(data_dir: Path | None, url: str, new_token: bool) -> None:
    """Create the database schema and the first admin token, and write the client
    config so the CLI on this machine works without exporting anything."""
    from scitq_bench.server.setup import init_server

    settings = ServerSettings.from_env(data_dir)
    with database_errors():
        token = init_server(settings, new_token=new_token)
    path = write_client_config(url.rstrip("/"), token)
    click.echo(f"Server initialised in {settings.data_dir}")
    click.echo("Admin token (shown only this once; it is stored nowhere else but the "
               "client config below):")
    click.echo(f"  {token}")
    click.echo(f"Client config written to {path} (mode 0600): server {url.rstrip('/')}")


@server.command("run", short_help="Serve the API and run the background loops.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@data_dir_option
@click.option("--processes", type=click.IntRange(min=1),
              help="API processes [default: the number of CPUs on PostgreSQL; SQLite "
                   "serves from one process].")
@click.option("--max-long-polls", type=click.IntRange(min=1), default=DEFAULT_MAX_LONG_POLLS,
              show_default=True,
              help="Waiting long polls one process holds (a worker holds two); one more "
                   "is answered 503 with Retry-After.")
@click.option("--debug", is_flag=True, help="Use Flask's development server instead.")
@click.option("--no-reaper", is_flag=True,
              help="Run no background loops here (run `server scheduler` separately).")
@click.option("--access-log", type=click.Path(dir_okay=False, allow_dash=True),
              help="Log every request (method, path, status, seconds) to this file, "
                   "or '-' for standard output. Off by default: it costs a write per call.")
@click.option("--gunicorn-config", type=click.Path(dir_okay=False, path_type=Path),
              help="A gunicorn configuration file (`server config gunicorn` writes one) "
                   "whose settings replace the defaults, but for bind and workers.")
def run(host: str, port: int, data_dir: Path | None, processes: int | None,
        max_long_polls: int, debug: bool, no_reaper: bool, access_log: str | None,
        gunicorn_config: Path | None) -> None:
    """Serve the API from gevent processes (a waiting long poll holds no thread) and
    run the background loops (lease reaper, recruitment) in a process of their own,
    under a leader elected across every replica on the database. Any number of
    replicas on other hosts may serve the same PostgreSQL database behind a load
    balancer; SQLite serves from one process on one host."""
    from scitq_bench.server.logformat import configure as configure_logging
    from scitq_bench.server.migrate import upgrade

    url = local_url(host, port)
    settings = ServerSettings.from_env(data_dir, run_reaper=not no_reaper)
    configure_logging(settings.log_format)
    if settings.public_url is None:  # recruited local workers reach it there
        settings = dataclasses.replace(settings, public_url=url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with database_errors():
        upgrade(settings.database_url)  # fail here, with one line, rather than in a child
    if debug:
        from scitq_bench.server.app import create_app

        with database_errors():
            app = create_app(settings)
        click.echo(f"scitq-bench server (debug) listening on {url}")
        app.run(host=host, port=port, debug=True, threaded=True, use_reloader=False)
        return
    processes = _process_count(settings, processes)
    if gunicorn_config is not None:  # its mistakes in one line here, not in a child
        from scitq_bench.server.gunicorn_config import read

        read(gunicorn_config)
    raise SystemExit(_supervise(settings, host, port, processes, max_long_polls,
                                access_log, gunicorn_config, background=not no_reaper))


def _process_count(settings: ServerSettings, asked: int | None) -> int:
    """PostgreSQL: as asked, else one per CPU. SQLite: one (its wake-ups stay in the
    process, and its writers take turns on one file)."""
    from sqlalchemy.engine import make_url

    if make_url(settings.database_url).get_backend_name() == "sqlite":
        if asked not in (None, 1):
            raise ScitqBenchError("--processes above 1 needs PostgreSQL: SQLite serves "
                                  "from one process")
        return 1
    return asked or os.cpu_count() or 1


def _supervise(settings: ServerSettings, host: str, port: int, processes: int,
               max_long_polls: int, access_log: str | None, gunicorn_config: Path | None,
               *, background: bool) -> int:
    from scitq_bench.server.supervisor import python_module, supervise

    api = python_module(
        "scitq_bench.server.serving", "--host", host, "--port", str(port),
        "--processes", str(processes), "--max-long-polls", str(max_long_polls),
        "--data-dir", str(settings.data_dir),
        *(["--access-log", access_log] if access_log else []),
        *(["--gunicorn-config", str(gunicorn_config.absolute())] if gunicorn_config else []))
    loops = python_module("scitq_bench.cli.main", "server", "scheduler",
                          "--data-dir", str(settings.data_dir))
    if settings.public_url:  # both children read it: workers are told it, recruits use it
        os.environ.setdefault("SCITQ_BENCH_PUBLIC_URL", settings.public_url)
    return supervise(api, loops if background else None)


@server.command("scheduler", short_help="Run the background loops (reaper, recruitment).")
@data_dir_option
def scheduler(data_dir: Path | None) -> None:
    """Run the background loops in the foreground, under leadership: the lease reaper
    (executions whose worker went silent are marked lost and their tasks queued again)
    and, where the server knows its public URL, recruitment and its jobs. Any number
    may run, here or on other hosts sharing the database: one leads and runs the loops,
    the others stand by and take over if it dies or freezes."""
    import threading

    from scitq_bench.server.background import run_background
    from scitq_bench.server.leader import process_name
    from scitq_bench.server.logformat import configure as configure_logging
    from scitq_bench.server.migrate import upgrade

    settings = ServerSettings.from_env(data_dir)
    configure_logging(settings.log_format)
    stop = threading.Event()
    me = process_name()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    def on_change(leading: bool) -> None:
        note(f"scitq-bench scheduler {me}: " + ("leading: running the background loops"
                                                if leading else "no longer leading"))

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with database_errors():
            upgrade(settings.database_url)
        recruits = " and recruitment" if settings.public_url and settings.run_recruiter else ""
        note(f"scitq-bench scheduler {me}: reaping leases of {settings.lease_seconds:g}s "
             f"every {settings.reaper_interval:g}s{recruits} while leading; campaigning")
        with database_errors():
            run_background(settings, stop, on_change=on_change)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@server.command("token", short_help="Mint an admin, enrollment or metrics token.")
@click.option("--role", type=click.Choice(["admin", "enroll", "metrics"]), required=True,
              help="admin: everything; enroll: may only register workers; metrics: may "
                   "only read /metrics (give it to Prometheus).")
@click.option("--name", help="A label to recognise the token by.")
@data_dir_option
def token(role: str, name: str | None, data_dir: Path | None) -> None:
    """Mint a token directly in the database (run on the server); printed once."""
    from scitq_bench.server.setup import create_token

    with database_errors(" (is the server initialised? see `scitq-bench server init`)"):
        minted = create_token(ServerSettings.from_env(data_dir), role, name=name)
    click.echo(minted)


# ``server backup`` and ``server restore`` add themselves to the group (they use the
# options above): imported last, so either module may be imported first
import scitq_bench.cli.server_backup  # noqa: E402, F401
