"""A fake instance metadata service (AWS IMDSv2 and Azure scheduled events) on a
loopback port, for spot interruption tests: ``interrupt()`` makes it post a notice."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "imds-token"


class FakeMetadata:
    def __init__(self) -> None:
        self.interrupted = False
        self.seen_tokens: list[str | None] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:  # noqa: N802 - the http.server API
                if self.path == "/latest/api/token":
                    self._send(200, TOKEN)
                else:
                    self._send(404)

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/latest/meta-data/spot/instance-action":
                    fake.seen_tokens.append(self.headers.get("X-aws-ec2-metadata-token"))
                    if fake.interrupted:
                        self._send(200, json.dumps({"action": "terminate",
                                                    "time": "2026-11-21T09:00:00Z"}))
                    else:
                        self._send(404)
                elif self.path.startswith("/metadata/scheduledevents"):
                    if self.headers.get("Metadata") != "true":
                        self._send(400)
                        return
                    events = [{"EventId": "E1", "EventType": "Preempt",
                               "NotBefore": "Sat, 21 Nov 2026 09:00:00 GMT"}] \
                        if fake.interrupted else []
                    self._send(200, json.dumps({"DocumentIncarnation": 1, "Events": events}))
                else:
                    self._send(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def interrupt(self) -> None:
        self.interrupted = True

    def stop(self) -> None:
        self.server.shutdown()
