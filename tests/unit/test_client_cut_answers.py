"""An answer cut short (the server died while sending it) is retried like a broken
connection, and no exception of the HTTP library leaves the client: a worker's threads
handle the client's own errors only."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from scitq_bench.client import Client
from scitq_bench.exceptions import ServerUnreachable


class _CutOnce(BaseHTTPRequestHandler):
    """The first answer promises a body and closes after half of it; then whole ones."""

    calls: list[str]
    cut_every: bool = False

    def do_POST(self) -> None:  # noqa: N802 (the http.server API)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.calls.append(self.path)
        body = json.dumps({"results": [], "executions": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.cut_every or len(self.calls) == 1:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(cut_every: bool) -> Iterator[tuple[str, list[str]]]:
    calls: list[str] = []
    handler = type("H", (_CutOnce,), {"calls": calls, "cut_every": cut_every})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", calls
    server.shutdown()
    server.server_close()


@pytest.fixture
def cut_once() -> Iterator[tuple[str, list[str]]]:
    yield from _serve(cut_every=False)


@pytest.fixture
def cut_always() -> Iterator[tuple[str, list[str]]]:
    yield from _serve(cut_every=True)


def test_an_answer_cut_short_is_sent_again(cut_once: tuple[str, list[str]]) -> None:
    url, calls = cut_once
    results, claimed = Client(url, "token", retry_for=5).report_and_claim(1, [], 1)
    assert (results, claimed) == ([], [])
    assert calls == ["/api/v1/workers/1/report?claim=1"] * 2


def test_answers_cut_short_until_the_budget_is_spent_raise_the_clients_error(
        cut_always: tuple[str, list[str]]) -> None:
    url, calls = cut_always
    with pytest.raises(ServerUnreachable, match="IncompleteRead|Connection broken"):
        Client(url, "token", retry_for=0.5).report_and_claim(1, [], 1)
    assert len(calls) >= 2
