# scitq-bench {{ version }}: gunicorn's configuration for the API processes: the settings
# `scitq-bench server run` gives gunicorn (scitq_bench.server.serving.gunicorn_options),
# in a file to read and adjust. Written from the template templates/gunicorn.conf.py,
# rendered by
#   scitq-bench server config gunicorn [--host --port --processes --max-long-polls] \
#     --output /etc/scitq-bench/gunicorn.conf.py
# Two ways to use it:
#   gunicorn -c /etc/scitq-bench/gunicorn.conf.py scitq_bench.server.wsgi:application
#     runs the API alone: run `scitq-bench server scheduler` beside it for the
#     background loops (lease reaper, recruitment);
#   scitq-bench server run --gunicorn-config /etc/scitq-bench/gunicorn.conf.py
#     applies these settings over server run's own, except bind and workers, which
#     stay those of its --host, --port and --processes.
# The server's own settings (database, stores, secrets) come from its environment
# (SCITQ_BENCH_*, the env file), not from this file.
import os

from scitq_bench.server.gunicorn_logging import JsonGunicornLogger
from scitq_bench.server.serving import (  # noqa: F401 (the hooks are set by their names)
    SHORT_CALL_ROOM,
    child_exit,
    on_exit,
    on_starting,
    post_worker_init,
)
from scitq_bench.settings import ServerSettings

bind = ["{{ bind }}"]
{% if processes %}
workers = {{ processes }}
{% else %}
# one per CPU, as `server run` on PostgreSQL; SQLite serves from one process: set 1
workers = os.cpu_count() or 1
{% endif %}
# a waiting long poll holds a greenlet, not a thread
worker_class = "gevent"
# Waiting long polls one process holds (a worker holds two: its claim and its
# heartbeat); one more is answered 503 with Retry-After. The app
# (scitq_bench.server.wsgi) reads the same variable, so both bounds agree; the short
# calls of admins and workers always find room beyond them.
os.environ.setdefault("SCITQ_BENCH_MAX_LONG_POLLS", "{{ max_long_polls }}")
worker_connections = int(os.environ["SCITQ_BENCH_MAX_LONG_POLLS"]) + SHORT_CALL_ROOM
# only long polls run long, and clients retry them
graceful_timeout = 5
timeout = 60
# a thousand workers reconnecting at once
backlog = 4096
# longer than a worker waits between two calls and than load balancers' 60 s: closing
# an idle connection sooner races with the worker's next request on it
keepalive = 75
loglevel = "info"
proc_name = "scitq-bench-server"
# gunicorn >= 25.1 opens a control socket at one fixed path per user; nothing uses it
control_socket_disable = True
# One line per request (method, path without its query string, status, seconds,
# request id); it costs a write per call on a busy server:
#accesslog = "-"
#from scitq_bench.server.gunicorn_logging import ACCESS_TEXT_FORMAT
#access_log_format = ACCESS_TEXT_FORMAT

if ServerSettings.from_env().log_format == "json":  # SCITQ_BENCH_LOG_FORMAT
    logger_class = JsonGunicornLogger
