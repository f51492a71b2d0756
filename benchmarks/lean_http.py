"""A lean HTTP/1.1 client on asyncio for the simulated workers of ``swarm.py``.

The simulated workers share the machine with the servers they measure: what their
client spends is taken from the servers, and while their one event loop is busy, the
answers that came wait unread and count as the servers' latency. aiohttp spent 1.1 to
1.3 ms of CPU per simulated task (three calls), most of it in the bursts the benchmark
is about, and its loop stalled for up to a third of a second there. This client does only
what the swarm needs: keep-alive connections to loopback servers, a request written in
one piece, an answer with a ``Content-Length`` (what the API sends) read into bytes.
Anything else (a chunked answer, a malformed one) is an error of the call.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

HEAD_END = b"\r\n\r\n"
LARGEST_HEAD = 64 << 10


class HttpError(Exception):
    """No answer: the connection failed or closed, or the answer could not be read."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Answer] | None = None
        self.closed = False
        self.reusable = True  # False once an answer said ``Connection: close``
        self._head: tuple[int, dict[str, str], int] | None = None  # status, headers, length

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(HttpError(f"connection closed: {exc}" if exc else "connection closed"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            self._answer_if_complete()
        except HttpError as error:
            self._fail(error)
            self.close()

    def send(self, request: bytes) -> asyncio.Future[Answer]:
        if self.closed or self.transport is None:
            raise HttpError("connection closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self._head = None
        self.transport.write(request)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)

    def _answer_if_complete(self) -> None:
        if self.waiter is None or self.waiter.done():
            raise HttpError("data with no request in flight")
        if self._head is None:
            end = self.buffer.find(HEAD_END)
            if end < 0:
                if len(self.buffer) > LARGEST_HEAD:
                    raise HttpError("answer head too large")
                return
            self._head = _parse_head(bytes(self.buffer[:end]))
            del self.buffer[:end + len(HEAD_END)]
        status, headers, length = self._head
        if len(self.buffer) < length:
            return
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        if headers.get("connection", "").lower() == "close":
            self.reusable = False
        self.waiter.set_result(Answer(status, headers, body))


def _parse_head(head: bytes) -> tuple[int, dict[str, str], int]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise HttpError("chunked answers are not read by this client")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError as exc:
        raise HttpError(f"bad Content-Length {headers['content-length']!r}") from exc
    return int(parts[1]), headers, length


class Client:
    """Keep-alive connections to HTTP servers, pooled per host and port."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        # (method, URL, query, headers) -> (host, port, the request's head): each
        # simulated worker repeats the same few calls
        self._heads: dict[tuple[Any, ...], tuple[str, int, bytes]] = {}

    async def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                      params: dict[str, str] | None = None, body: Any = None,
                      timeout: float, written: Any = None) -> Answer:
        """One call, answered within ``timeout`` seconds or ``TimeoutError``; ``HttpError``
        or ``OSError`` when no answer came. ``written()`` is called once the request is
        written."""
        key = (method, url, *(params or {}).items(), *(headers or {}).items())
        head = self._heads.get(key)
        if head is None:
            head = self._heads[key] = _head(method, url, headers or {}, params)
        host, port, start = head
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        connection = self._idle_connection(host, port)
        if connection is None:
            connection = await asyncio.wait_for(self._new_connection(host, port), timeout)
        try:
            waiter = connection.send(_request(start, body))
            # a timer on the answer rather than a task per call (``wait_for``)
            timer = loop.call_at(deadline, _time_out, waiter, timeout)
            if written is not None:
                written()
            try:
                answer = await waiter
            finally:
                timer.cancel()
        except BaseException:
            connection.close()  # its state is unknown: never reused
            self._open.discard(connection)
            raise
        if connection.reusable and not connection.closed:
            self._idle.setdefault((host, port), []).append(connection)
        else:
            connection.close()
            self._open.discard(connection)
        return answer

    def close(self) -> None:
        for connection in self._open:
            connection.close()
        self._open.clear()
        self._idle.clear()

    def _idle_connection(self, host: str, port: int) -> _Connection | None:
        idle = self._idle.get((host, port))
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection
            self._open.discard(connection)
        return None

    async def _new_connection(self, host: str, port: int) -> _Connection:
        _, connection = await asyncio.get_running_loop().create_connection(
            _Connection, host, port)
        self._open.add(connection)
        return connection


def _time_out(waiter: asyncio.Future[Answer], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError(f"no answer within {timeout:g} s"))


def _head(method: str, url: str, headers: dict[str, str], params: dict[str, str] | None,
          ) -> tuple[str, int, bytes]:
    """(host, port, the request's head, its last line not ended)."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{urlencode(params)}" if params else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}",
             *(f"{name}: {value}" for name, value in headers.items())]
    return parts.hostname or "127.0.0.1", parts.port or 80, "\r\n".join(lines).encode("latin-1")


def _request(start: bytes, body: Any) -> bytes:
    """The request's bytes: its head, then ``body`` as JSON."""
    if body is None:
        return start + b"\r\nContent-Length: 0" + HEAD_END
    payload = json.dumps(body, separators=(",", ":")).encode()
    return b"".join((start, b"\r\nContent-Type: application/json\r\nContent-Length: ",
                     str(len(payload)).encode(), HEAD_END, payload))
