"""gunicorn's logs in the server's log format (see :mod:`scitq_bench.server.logformat`)."""

from __future__ import annotations

from typing import Any

from gunicorn import glogging

from scitq_bench.server.logformat import JsonFormatter
from scitq_bench.server.request_ids import HEADER, NONE

# gunicorn's access line in text: no query string (it may carry ids); the request id
# comes from the answer's header
ACCESS_TEXT_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(L)s %({x-request-id}o)s'


class JsonGunicornLogger(glogging.Logger):
    """gunicorn's logger, writing its error log and its access log as JSON lines."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in (*self.error_log.handlers, *self.access_log.handlers):
            handler.setFormatter(JsonFormatter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.cfg.accesslog:
            return
        headers = {name.lower(): value for name, value in (resp.headers or [])}
        status = getattr(resp, "status_code", None) or str(resp.status).split(" ", 1)[0]
        fields = {
            "remote": environ.get("REMOTE_ADDR", "-"),
            "method": environ.get("REQUEST_METHOD", "-"),
            "path": environ.get("PATH_INFO", "-"),  # never the query string: it may hold ids
            "status": int(status),
            "seconds": round(request_time.total_seconds(), 6),
            "bytes": getattr(resp, "sent", None),
            "request_id": headers.get(HEADER.lower(), NONE),
        }
        message = f'{fields["method"]} {fields["path"]} {fields["status"]}'
        self.access_log.info(message, extra={"fields": fields})
