"""The API's serving processes: gunicorn with gevent workers.

A gevent worker serves each request on a greenlet, so a long poll waiting for work
costs some memory, not a thread: ten thousand idle workers fit in one process, and
an admin's call is never queued behind them. Database I/O cooperates through
psycopg2's wait callback; SQLite calls are short and block the process briefly.

These processes only serve HTTP. The background loops (lease reaper, recruitment
and its deploy jobs, which run Ansible and provider SDKs in threads) run in the
background process next to them (see :mod:`scitq_bench.server.background`), never
here, where threads are greenlets.

Run as ``python -m scitq_bench.server.serving`` by ``scitq-bench server run``'s
supervisor; settings come from the environment and the options below.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# requests a process serves at once beyond its long polls: the admins' and the
# workers' short calls always find room
SHORT_CALL_ROOM = 1000
# waiting long polls one process holds by default (`server run --max-long-polls`)
DEFAULT_MAX_LONG_POLLS = 10_000
KEEPALIVE_SECONDS = 75


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    host: str
    port: int
    processes: int
    max_long_polls: int  # per process; one more is answered 503 with Retry-After
    access_log: str | None = None
    log_format: str = "text"  # or "json": gunicorn's logs as the server's (logformat)
    config_file: Path | None = None  # gunicorn settings over these (gunicorn_config)


def local_url(host: str, port: int) -> str:
    """The URL clients on this machine use to reach a server bound to ``host``."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def gunicorn_options(options: ServeOptions, when_ready: Callable[[Any], None]) -> dict[str, Any]:
    """gunicorn's settings for the API processes."""
    from scitq_bench.server.gunicorn_logging import ACCESS_TEXT_FORMAT, JsonGunicornLogger
    from scitq_bench.server.logformat import JSON

    settings: dict[str, Any] = {
        "bind": [bind_address(options.host, options.port)],
        "workers": options.processes,
        "worker_class": "gevent",
        "worker_connections": options.max_long_polls + SHORT_CALL_ROOM,
        "graceful_timeout": 5,  # only long-polls run long, and clients retry them
        "timeout": 60,
        "backlog": 4096,  # a thousand workers reconnecting at once
        # an idle keep-alive connection stays open longer than a worker waits between
        # two calls (and than load balancers' usual 60 s): closing it sooner races
        # with the worker's next request on it, which then fails and is sent again
        "keepalive": KEEPALIVE_SECONDS,
        "loglevel": "info",
        "proc_name": "scitq-bench-server",
        "when_ready": when_ready,
        "on_starting": on_starting,
        "post_worker_init": post_worker_init,
        "child_exit": child_exit,
        "on_exit": on_exit,
        # gunicorn >= 25.1 opens a control socket at one fixed path per user: two servers
        # on a machine would clash, and nothing here uses it
        "control_socket_disable": True,
    }
    if options.access_log:
        settings.update(accesslog=options.access_log, access_log_format=ACCESS_TEXT_FORMAT)
    if options.log_format == JSON:
        settings["logger_class"] = JsonGunicornLogger
    return settings


# gunicorn's server hooks, here and in templates/gunicorn.conf.py alike


def on_starting(_arbiter: Any) -> None:
    """In gunicorn's master, before any API process: the folder where the processes'
    metrics meet, emptied of a previous run's."""
    from scitq_bench.server.metrics import prepare_multiprocess_dir

    prepare_multiprocess_dir()


def post_worker_init(_worker: Any) -> None:
    """psycopg2 blocks in C; its wait callback hands the wait to gevent's hub."""
    import psycopg2.extensions

    psycopg2.extensions.set_wait_callback(gevent_wait_callback)


def child_exit(_arbiter: Any, worker: Any) -> None:
    """An API process ended: its live gauges (long polls waiting) no longer count."""
    from scitq_bench.server.metrics import process_ended

    process_ended(worker.pid)


def on_exit(_arbiter: Any) -> None:
    """gunicorn stops: remove the metrics folder if ``on_starting`` made it."""
    from scitq_bench.server.metrics import remove_multiprocess_dir

    remove_multiprocess_dir()


def gevent_wait_callback(connection: Any, timeout: float | None = None) -> None:
    """Wait for a psycopg2 connection's socket the gevent way."""
    import psycopg2.extensions
    from gevent.socket import wait_read, wait_write

    while True:
        state = connection.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        if state == psycopg2.extensions.POLL_READ:
            wait_read(connection.fileno(), timeout=timeout)
        elif state == psycopg2.extensions.POLL_WRITE:
            wait_write(connection.fileno(), timeout=timeout)
        else:
            raise psycopg2.OperationalError(f"unexpected poll state {state!r}")


def serve(settings: Any, options: ServeOptions) -> None:
    """Run gunicorn in the foreground until it is told to stop."""
    from gunicorn.app.base import BaseApplication

    class EmbeddedGunicorn(BaseApplication):
        """gunicorn configured from our options, not from its command line."""

        def __init__(self, factory: Callable[[], Any], values: dict[str, Any]) -> None:
            self.factory = factory
            self.values = values
            super().__init__()

        def load_config(self) -> None:
            for key, value in self.values.items():
                if key in self.cfg.settings:  # settings of newer gunicorns are skipped
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return self.factory()  # in each worker process, after the fork

    def when_ready(_arbiter: Any) -> None:
        print(f"scitq-bench server listening on {local_url(options.host, options.port)} "
              f"({options.processes} API process(es))", flush=True)

    def factory() -> Any:
        from scitq_bench.server.app import create_serving_app

        return create_serving_app(settings, max_long_polls=options.max_long_polls)

    values = gunicorn_options(options, when_ready)
    if options.config_file is not None:
        from scitq_bench.server.gunicorn_config import apply

        values = apply(values, options.config_file)
    EmbeddedGunicorn(factory, values).run()


def main(argv: list[str] | None = None) -> None:
    from scitq_bench.server.logformat import configure as configure_logging
    from scitq_bench.settings import ServerSettings

    parser = argparse.ArgumentParser(prog="python -m scitq_bench.server.serving")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--max-long-polls", type=int, required=True)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--access-log")
    parser.add_argument("--gunicorn-config", type=Path)
    args = parser.parse_args(argv)
    settings = ServerSettings.from_env(args.data_dir)
    configure_logging(settings.log_format)
    serve(settings, ServeOptions(host=args.host, port=args.port, processes=args.processes,
                                 max_long_polls=args.max_long_polls,
                                 access_log=args.access_log, log_format=settings.log_format,
                                 config_file=args.gunicorn_config))


if __name__ == "__main__":
    main(sys.argv[1:])
