"""The swarm's lean HTTP client against a real keep-alive HTTP/1.1 server on loopback:
connections reused, JSON in and out, statuses and headers as sent, a closed connection
replaced, and what it does not read (chunked answers, a silent server) an error of the
call."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from benchmarks import lean_http


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_POST(self) -> None:  # noqa: N802 - the server's name for it
        length = int(self.headers.get("Content-Length", 0))
        received = json.loads(self.rfile.read(length)) if length else None
        self.server.seen.append((self.path, self.headers.get("Authorization"),  # type: ignore[attr-defined]
                                 self.client_address[1], received))
        if self.path.startswith("/busy"):
            self._send(503, b"{}", {"Retry-After": "2"})
        elif self.path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"2\r\n{}\r\n0\r\n\r\n")
        elif self.path.startswith("/close"):
            self._send(200, b'{"closing": true}', {"Connection": "close"})
            self.close_connection = True
        elif self.path.startswith("/silent"):
            self.server.release.wait(5)  # type: ignore[attr-defined]
            self._send(200, b"{}")
        else:
            self._send(200, json.dumps({"path": self.path, "received": received}).encode())

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.seen = []  # type: ignore[attr-defined]
    httpd.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.release.set()  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()


def url(server: ThreadingHTTPServer, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def call(server: ThreadingHTTPServer, path: str, timeout: float = 5) -> lean_http.Answer:
    """One POST on a client of its own."""
    async def post() -> lean_http.Answer:
        client = lean_http.Client()
        try:
            return await client.request("POST", url(server, path), timeout=timeout)
        finally:
            client.close()

    return asyncio.run(post())


def test_calls_reuse_one_connection_and_carry_json_query_and_headers(server) -> None:
    written = []

    async def calls() -> list[lean_http.Answer]:
        client = lean_http.Client()
        try:
            return [await client.request(
                "POST", url(server, "/work"), params={"claim": "1"}, body={"n": n},
                headers={"Authorization": "Bearer t"}, timeout=5,
                written=lambda: written.append(1)) for n in range(3)]
        finally:
            client.close()

    answers = asyncio.run(calls())
    assert [a.status for a in answers] == [200, 200, 200]
    assert [a.json() for a in answers] == [{"path": "/work?claim=1", "received": {"n": n}}
                                           for n in range(3)]
    assert written == [1, 1, 1]
    ports = {port for _path, _auth, port, _body in server.seen}
    assert len(ports) == 1  # one keep-alive connection for the three calls
    assert all(auth == "Bearer t" for _path, auth, _port, _body in server.seen)


def test_a_busy_answer_keeps_its_status_and_retry_after(server) -> None:
    answer = call(server, "/busy")
    assert (answer.status, answer.headers["retry-after"]) == (503, "2")


def test_a_connection_the_server_closes_is_replaced(server) -> None:
    async def calls() -> list[Any]:
        client = lean_http.Client()
        try:
            first = await client.request("POST", url(server, "/close"), timeout=5)
            second = await client.request("POST", url(server, "/after"), timeout=5)
            return [first.json(), second.json()["path"]]
        finally:
            client.close()

    assert asyncio.run(calls()) == [{"closing": True}, "/after"]
    assert len({port for _path, _auth, port, _body in server.seen}) == 2


def test_what_it_cannot_read_or_does_not_get_is_an_error_of_the_call(server) -> None:
    with pytest.raises(lean_http.HttpError, match="chunked"):
        call(server, "/chunked")
    with pytest.raises(TimeoutError):
        call(server, "/silent", timeout=0.3)
