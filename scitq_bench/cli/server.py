"""``server init|run|scheduler|token``: the server side, run where the database is.

Server modules are imported inside the commands so that client commands never load
Flask or SQLAlchemy.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click

from scitq_bench.cli.output import note
from scitq_bench.exceptions import ScitqBenchError
from scitq_bench.settings import DEFAULT_PORT, ServerSettings, write_client_config

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path),
    help="Server data (database, logs, file store) [default: $SCITQ_BENCH_DATA_DIR or "
         "~/.scitq_bench]; $SCITQ_BENCH_DATABASE_URL selects another database.")


@contextmanager
def database_errors(hint: str = "") -> Iterator[None]:
    """Database failures (unreachable PostgreSQL, unwritable SQLite file) as one line."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ScitqBenchError(f"database error: {reason}{hint}") from None


def local_url(host: str, port: int) -> str:
    """The URL clients on this machine use to reach a server bound to ``host``."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@click.group(short_help="Initialise, run and administer the server.")
def server() -> None:
    """The server: initialise it, run it, run its lease reaper, mint tokens."""


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


@server.command("run", short_help="Serve the API (gunicorn).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@data_dir_option
@click.option("--threads", type=click.IntRange(min=1), default=64, show_default=True,
              help="Requests served at the same time (each long-poll holds one).")
@click.option("--debug", is_flag=True, help="Use Flask's development server instead.")
@click.option("--no-reaper", is_flag=True,
              help="Do not expire leases here (run `server scheduler` separately).")
@click.option("--access-log", type=click.Path(dir_okay=False, allow_dash=True),
              help="Log every request (method, path, status, seconds) to this file, "
                   "or '-' for standard output. Off by default: it costs a write per call.")
def run(host: str, port: int, data_dir: Path | None, threads: int, debug: bool,
        no_reaper: bool, access_log: str | None) -> None:
    """Serve the API (gunicorn, one process with THREADS threads: the in-process
    long-poll wake-ups need every request in the same process)."""
    from scitq_bench.server.migrate import upgrade

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    url = local_url(host, port)
    settings = ServerSettings.from_env(data_dir, run_reaper=not no_reaper)
    if settings.public_url is None:  # recruited local workers reach it there
        settings = dataclasses.replace(settings, public_url=url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with database_errors():
        upgrade(settings.database_url)  # fail here, with one line, rather than in gunicorn
    if debug:
        from scitq_bench.server.app import create_app

        with database_errors():
            app = create_app(settings)
        click.echo(f"scitq-bench server (debug) listening on {url}")
        app.run(host=host, port=port, debug=True, threaded=True, use_reloader=False)
        return
    _serve_with_gunicorn(settings, host, port, threads, url, access_log)


ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(L)s'  # no query string: it may carry ids


def _serve_with_gunicorn(settings: ServerSettings, host: str, port: int, threads: int,
                         url: str, access_log: str | None = None) -> None:
    from gunicorn.app.base import BaseApplication

    from scitq_bench.server.app import create_app

    class EmbeddedGunicorn(BaseApplication):  # type: ignore[misc]
        """gunicorn configured from our options, not from its command line."""

        def __init__(self, factory: Callable[[], Any], options: dict[str, Any]) -> None:
            self.factory = factory
            self.options = options
            super().__init__()

        def load_config(self) -> None:
            for key, value in self.options.items():
                if key in self.cfg.settings:  # settings of newer gunicorns are skipped
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return self.factory()  # in the worker process, so the reaper thread lives there

    def when_ready(_arbiter: Any) -> None:
        click.echo(f"scitq-bench server listening on {url}")

    options = {
        "bind": [bind_address(host, port)],
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads,
        "graceful_timeout": 5,  # only long-polls run long, and clients retry them
        "timeout": 60,
        "loglevel": "info",
        "proc_name": "scitq-bench-server",
        "when_ready": when_ready,
        # gunicorn >= 25.1 opens a control socket at one fixed path per user: two servers
        # on a machine would clash, and nothing here uses it
        "control_socket_disable": True,
    }
    if access_log:
        options.update(accesslog=access_log, access_log_format=ACCESS_LOG_FORMAT)
    EmbeddedGunicorn(lambda: create_app(settings), options).run()


@server.command("scheduler", short_help="Run the lease reaper alone.")
@data_dir_option
def scheduler(data_dir: Path | None) -> None:
    """Run the lease reaper alone, in the foreground (for servers run with --no-reaper):
    executions whose worker went silent are marked lost and their tasks queued again."""
    from scitq_bench.server.db import Database
    from scitq_bench.server.reaper import Reaper

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    settings = ServerSettings.from_env(data_dir)
    db = Database(settings.database_url, busy_timeout=settings.database_busy_timeout)
    reaper = Reaper(db, settings.lease_seconds, settings.reaper_interval)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        reaper.stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with database_errors():
            reaper.grant_grace()  # the server was away: its workers are not to blame
        note(f"scitq-bench scheduler: reaping leases of {settings.lease_seconds:g}s "
             f"every {settings.reaper_interval:g}s")
        reaper.run_forever()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        db.dispose()


@server.command("token", short_help="Mint an admin or enrollment token.")
@click.option("--role", type=click.Choice(["admin", "enroll"]), required=True,
              help="admin: everything; enroll: may only register workers.")
@click.option("--name", help="A label to recognise the token by.")
@data_dir_option
def token(role: str, name: str | None, data_dir: Path | None) -> None:
    """Mint a token directly in the database (run on the server); printed once."""
    from scitq_bench.server.setup import create_token

    with database_errors(" (is the server initialised? see `scitq-bench server init`)"):
        minted = create_token(ServerSettings.from_env(data_dir), role, name=name)
    click.echo(minted)
