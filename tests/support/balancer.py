"""A TCP round-robin load balancer for tests: what stands in front of server replicas.

It works on connections, like a TCP-mode proxy: each client connection goes to the
next backend that accepts one (a backend that refuses is skipped), and the bytes flow
both ways untouched until either side closes. A backend that dies mid-request closes
its clients' connections, as a real balancer does; the clients reconnect and land on
a live backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from dataclasses import dataclass, field

CONNECT_TIMEOUT = 2.0  # seconds: a backend that does not accept by then is skipped
CHUNK = 65536


@dataclass
class Balancer:
    """Round-robin over ``backends`` (host, port), served from a thread of its own on
    ``host``:``port`` (0: a free port, see ``url`` once started)."""

    backends: list[tuple[str, int]]
    host: str = "127.0.0.1"
    port: int = 0
    connections: Counter[tuple[str, int]] = field(default_factory=Counter)  # per backend
    refused: int = 0  # client connections no backend accepted
    _links: set[_Link] = field(default_factory=set)
    _next: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None
    _pipes: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def in_flight(self, backend: tuple[str, int]) -> int:
        """Connections to ``backend`` waiting for its answer: a request went there and
        nothing came back yet (HTTP/1.1 without pipelining: a request in progress)."""
        return sum(link.awaiting for link in list(self._links) if link.backend == backend)

    def start(self) -> Balancer:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="balancer",
                                        daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the balancer did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._thread = None

    def _run(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, self.host, self.port, backlog=1024))
        self.port = self._server.sockets[0].getsockname()[1]
        ready.set()
        self._loop.run_forever()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, client_in: asyncio.StreamReader,
                      client_out: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            backend = await self._connect()
            if backend is None:
                self.refused += 1
                return
            backend_in, backend_out, address = backend
            link = _Link(address)
            self._links.add(link)
            try:
                await asyncio.gather(_pump(client_in, backend_out, link, toward_backend=True),
                                     _pump(backend_in, client_out, link, toward_backend=False))
            finally:
                self._links.discard(link)
                backend_out.close()
        finally:
            client_out.close()
            self._pipes.discard(task)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter,
                                      tuple[str, int]] | None:
        """The next backend, round robin, that accepts a connection; None if none does."""
        for _ in range(len(self.backends)):
            address = self.backends[self._next % len(self.backends)]
            self._next += 1
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(*address),
                                                        CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError):
                continue
            self.connections[address] += 1
            return reader, writer, address
        return None


@dataclass(eq=False)
class _Link:
    """One client connection relayed to ``backend``."""

    backend: tuple[str, int]
    awaiting: bool = False  # the last bytes went to the backend: its answer is due


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link,
                toward_backend: bool) -> None:
    """Copy one direction until end of file, then pass the half-close on. A reset on
    either side resets the other: the peer sees the connection die, as it would."""
    try:
        while data := await source.read(CHUNK):
            link.awaiting = toward_backend
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            with contextlib.suppress(OSError):
                sink.write_eof()
    except OSError:
        sink.transport.abort()
