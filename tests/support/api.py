"""Helpers for tests of the HTTP API through the Flask test client (``api`` fixture):
registering workers, creating tasks, benchmark accounts, bundles and submissions, and
a worker played through the worker API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# GET /package builds the worker wheel with pip from the source tree: a subprocess that
# takes a while and may reach a package index. tests/integration/test_recruitment.py
# covers it. Everything else is fuzzed, deploys included: this app has no recruitment
# (no public_url), so nothing can start a worker, a cloud machine or Ansible.
EXCLUDED = {("GET", "/api/v1/package")}


def register(api: Any, name: str = "w1", **fields: Any) -> tuple[int, str]:
    answer = api.post("/workers", json={"name": name, "concurrency": 2, **fields})
    assert answer.status_code == 201, answer.json
    return answer.json["worker"]["id"], answer.json["token"]


def create(api: Any, **fields: Any) -> dict[str, Any]:
    answer = api.post("/tasks", json={"command": "true", **fields})
    assert answer.status_code == 201, answer.json
    return answer.json["tasks"][0]


def account(api: Any, name: str, role: str = "participant") -> str:
    answer = api.post("/accounts", json={"name": name, "role": role})
    assert answer.status_code == 201, answer.json
    return answer.json["token"]


def import_bundle(api: Any, path: Path, token: str = "default", query: str = "") -> Any:
    return api.post(f"/benchmarks{query}", data=path.read_bytes(), token=token,
                    headers={"Content-Type": "application/zip"})


def submit(api: Any, phase_id: int, token: str, path: Path | None = None,
           query: str = "") -> Any:
    data = path.read_bytes() if path is not None else b""
    return api.post(f"/phases/{phase_id}/submissions{query}", data=data, token=token,
                    headers={"Content-Type": "application/zip"})


class FakeWorker:
    """Plays a worker through the API: claims everything, reports what it is told."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.id, self.token = register(api, "bench-worker", concurrency=50, containers=True)

    def claim(self) -> list[dict[str, Any]]:
        answer = self.api.post(f"/workers/{self.id}/claim?max=50", token=self.token)
        assert answer.status_code == 200, answer.json
        return answer.json["executions"]

    def finish(self, execution: dict[str, Any], status: str = "succeeded",
               **fields: Any) -> dict[str, Any]:
        event = {"execution_id": execution["execution_id"], "status": status,
                 "duration": 0.1, **fields}
        answer = self.api.post(f"/workers/{self.id}/report", token=self.token,
                               json={"events": [event]})
        assert answer.status_code == 200 and answer.json["results"][0]["ok"], answer.json
        return answer.json
