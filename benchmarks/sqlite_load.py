"""Many workers against the embedded SQLite database: answers counted by status code.

A real server (one gunicorn process, as `server run` starts it) on SQLite, and N
simulated workers: threads that register, then heartbeat, claim and report over HTTP
(loopback only) for a bounded time, without the client's own retries so that every
answer is counted. A 503 must carry ``Retry-After`` (the simulated worker then waits
that long, as the real one does); any other 5xx is a failure.

    python -m benchmarks.sqlite_load --workers 300 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.stack import Stack  # noqa: E402

API = "/api/v1"


class Tally:
    """Answers by status code, 503s without Retry-After, and transport errors."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.codes: Counter[int] = Counter()
        self.busy_without_retry_after = 0
        self.transport_errors: Counter[str] = Counter()
        self.executions_done = 0

    def answer(self, response: requests.Response) -> None:
        with self.lock:
            self.codes[response.status_code] += 1
            if response.status_code == 503 and "Retry-After" not in response.headers:
                self.busy_without_retry_after += 1

    def transport(self, exc: Exception) -> None:
        with self.lock:
            self.transport_errors[type(exc).__name__] += 1


def simulated_worker(url: str, token: str, index: int, until: float, tally: Tally) -> None:
    """register, then heartbeat / claim / report until ``until``; a 503 is waited out
    for its Retry-After."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"

    def call(path: str, body: dict[str, Any], params: dict[str, Any] | None = None
             ) -> dict[str, Any] | None:
        try:
            response = http.post(f"{url}{API}{path}", json=body, params=params, timeout=120)
        except requests.RequestException as exc:
            tally.transport(exc)
            time.sleep(1)
            return None
        tally.answer(response)
        if response.status_code == 503:
            time.sleep(float(response.headers.get("Retry-After", 1)))
            return None
        return response.json() if response.ok else None

    registered = None
    while registered is None and time.monotonic() < until:
        registered = call("/workers", {"name": f"sim{index}", "concurrency": 2})
    if registered is None:
        return
    http.headers["Authorization"] = f"Bearer {registered['token']}"
    worker_id = registered["worker"]["id"]
    held: list[int] = []
    while time.monotonic() < until:
        call(f"/workers/{worker_id}/heartbeat", {"executions": held})
        claimed = call(f"/workers/{worker_id}/claim", {}, {"max": 2})
        if claimed:
            held.extend(e["execution_id"] for e in claimed["executions"])
        if not held:
            continue
        events = [{"execution_id": e, "status": s, "return_code": 0 if s == "succeeded" else None}
                  for e in held for s in ("running", "succeeded")]
        if call(f"/workers/{worker_id}/report", {"events": events}) is not None:
            with tally.lock:
                tally.executions_done += len(held)
            held = []


def feed(url: str, token: str, tasks: int) -> None:
    """Queue ``tasks`` no-op tasks in chunks (the simulated workers never run them)."""
    for start in range(0, tasks, 1000):
        count = min(1000, tasks - start)
        answer = requests.post(f"{url}{API}/tasks", timeout=300,
                               headers={"Authorization": f"Bearer {token}"},
                               json={"tasks": [{"command": "true", "batch": "load"}] * count})
        answer.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=300, help="simulated workers")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long they run")
    parser.add_argument("--tasks", type=int, default=20_000, help="queued for them to claim")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="scitq-bench-sqlite-load-") as tmp:
        root = Path(tmp)
        stack = Stack(root=root, database_url=f"sqlite:///{root / 'load.db'}",
                      lease_seconds=60)
        stack.init()
        stack.start_server()
        try:
            feed(stack.url, stack.token, args.tasks)
            tally = Tally()
            until = time.monotonic() + args.seconds
            threads = [threading.Thread(target=simulated_worker,
                                        args=(stack.url, stack.token, i, until, tally))
                       for i in range(args.workers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            stack.stop()
            server_log = stack.tail("server.log", 200_000)
    other_5xx = sum(n for code, n in tally.codes.items() if code >= 500 and code != 503)
    figures = {
        "workers": args.workers,
        "seconds": args.seconds,
        "server_threads": args.threads,
        "answers_by_status": {str(k): v for k, v in sorted(tally.codes.items())},
        "requests_per_s": round(sum(tally.codes.values()) / args.seconds, 1),
        "executions_done": tally.executions_done,
        "busy_503": tally.codes.get(503, 0),
        "busy_503_without_retry_after": tally.busy_without_retry_after,
        "other_5xx": other_5xx,
        "transport_errors": dict(tally.transport_errors),
        "database_is_locked_in_server_log": server_log.count("database is locked"),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:34} {value}")
    ok = other_5xx == 0 and tally.busy_without_retry_after == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
