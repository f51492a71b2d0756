"""How the server's processes write their logs: lines of text for a terminal, or JSON
lines for a log pipeline (``log_format: json``), each carrying the id of the request it
was written for. gunicorn's own logs (its error log and the access log) follow the same
format through ``gunicorn_logging.JsonGunicornLogger``."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from scitq_bench.server.request_ids import NONE, RequestIdFilter
from scitq_bench.settings import LOG_FORMATS

TEXT, JSON = LOG_FORMATS
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the
    request id when there is one, the exception when there is one, and the ``fields``
    a record carries (``extra={"fields": {...}}``)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", NONE)
        if request_id != NONE:
            entry["request_id"] = request_id
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _utc(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def configure(log_format: str = TEXT, level: int = logging.INFO) -> None:
    """This process logs to standard error in ``log_format``, request ids included."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == JSON else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
