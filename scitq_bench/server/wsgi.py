"""The API as a WSGI application, for running gunicorn (or another WSGI server)
directly instead of ``scitq-bench server run``::

    gunicorn -c /etc/scitq-bench/gunicorn.conf.py scitq_bench.server.wsgi:application

It is the app of one of ``server run``'s API processes (it migrates the schema when it
starts, as they do), and it serves requests only. The background loops (lease reaper,
recruitment) are not here: run ``scitq-bench server scheduler`` beside it (the
scheduler's systemd unit), or the executions of dead workers are never reaped.

Settings come from the environment (``SCITQ_BENCH_*``, ``settings.yaml`` in the data
dir), as for every server command; ``SCITQ_BENCH_MAX_LONG_POLLS`` bounds the waiting
long polls of one process (templates/gunicorn.conf.py sets it to match gunicorn's
``worker_connections``). Importing this module builds the app, so only a WSGI server
should import it, in each of its processes after the fork.
"""

from __future__ import annotations

import os

from flask import Flask

from scitq_bench.exceptions import InvalidInput
from scitq_bench.server.serving import DEFAULT_MAX_LONG_POLLS
from scitq_bench.settings import ServerSettings

MAX_LONG_POLLS_ENV = "SCITQ_BENCH_MAX_LONG_POLLS"


def max_long_polls() -> int:
    """``SCITQ_BENCH_MAX_LONG_POLLS``, a whole number of at least 1, else the default."""
    text = os.environ.get(MAX_LONG_POLLS_ENV) or str(DEFAULT_MAX_LONG_POLLS)
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(f"{MAX_LONG_POLLS_ENV} must be a whole number of at least 1, "
                           f"got {text!r}")
    return int(text)


def build() -> Flask:
    """The serving app, with the settings and the log format of the environment."""
    from scitq_bench.server.app import create_serving_app
    from scitq_bench.server.logformat import configure as configure_logging

    settings = ServerSettings.from_env()
    configure_logging(settings.log_format)
    return create_serving_app(settings, max_long_polls=max_long_polls())


application = build()
