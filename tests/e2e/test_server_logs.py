"""A real ``server run`` writing JSON lines: its own log and its access log, each line an
object, the request id of a call the same in the answer and the access log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests.support.stack import Stack, wait_until

pytestmark = pytest.mark.e2e


def json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_json_logs_with_request_ids(tmp_path: Path) -> None:
    stack = Stack(root=tmp_path / "stack", database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
                  access_log=True, extra_env={"SCITQ_BENCH_LOG_FORMAT": "json"})
    stack.init()
    try:
        stack.start_server()
        answer = requests.get(f"{stack.url}/api/v1/batches?name=secret-looking", timeout=10,
                              headers={"Authorization": f"Bearer {stack.token}",
                                       "X-Request-Id": "trace-0042"})
        assert answer.status_code == 200 and answer.headers["X-Request-Id"] == "trace-0042"
        made = requests.get(f"{stack.url}/readyz", timeout=10).headers["X-Request-Id"]
        access = stack.root / "access.log"
        wait_until(lambda: access.exists() and made in access.read_text(), 10,
                   what="the probe's access line")
        lines = json_lines(access)
        call = next(line for line in lines if line["request_id"] == "trace-0042")
        assert call["method"] == "GET" and call["path"] == "/api/v1/batches"
        assert call["status"] == 200 and call["seconds"] >= 0 and call["logger"] == "gunicorn.access"
        assert "secret-looking" not in access.read_text()  # no query strings
        assert any(line["request_id"] == made and line["path"] == "/readyz" for line in lines)
        own = [line for line in (stack.root / "server.log").read_text().splitlines()
               if line.startswith("{")]
        parsed = [json.loads(line) for line in own]
        assert parsed and all({"time", "level", "logger", "message"} <= set(p) for p in parsed)
        assert any(p["logger"].startswith("gunicorn") for p in parsed)
    finally:
        stack.stop()
