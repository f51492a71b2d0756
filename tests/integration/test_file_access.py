"""Least privilege on the server:// store (SQLite and PostgreSQL): an enrollment token
only registers workers, a worker token reaches only the paths its live executions name,
and benchmark accounts never reach the store. Each attack here once worked."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from scitq_bench.server.queue import scheduling
from scitq_bench.server.queue.models import utcnow
from scitq_bench.server.setup import create_token
from tests.support.access_world import Side, World, build_world


@pytest.fixture
def world(api: Any, tmp_path: Path) -> World:
    return build_world(api, tmp_path)


def _put(api: Any, path: str, token: str, data: bytes = b"forged") -> Any:
    return api.put(f"/files/{path}", data=data, token=token)


def _refused(answer: Any, path: str) -> None:
    assert answer.status_code == 403, answer.get_data()[:200]
    assert path in answer.json["message"]


def test_an_enrollment_token_only_registers_workers(api, settings, world) -> None:
    enroll = create_token(settings, "enroll")
    side = world.mine
    assert api.get("/files", token=enroll).status_code == 403
    assert api.get(f"/files/{side.reference_path}", token=enroll).status_code == 403
    assert _put(api, side.submission_path, enroll).status_code == 403
    for method, path in [
        ("GET", f"/workers/{side.worker_id}"),
        ("POST", f"/workers/{side.worker_id}/heartbeat"),
        ("POST", f"/workers/{side.worker_id}/claim"),
        ("POST", f"/workers/{side.worker_id}/report"),
        ("POST", f"/workers/{side.worker_id}/evicted"),
        ("PUT", f"/executions/{side.execution_id}/logs/stdout"),
        ("GET", f"/executions/{side.execution_id}"),
    ]:
        assert api.call(method, path, token=enroll, json={}).status_code == 403, (method, path)
    assert api.post("/workers", json={"name": "enrolled"}, token=enroll).status_code == 201
    assert api.get(f"/files/{side.submission_path}").data.startswith(b"PK")  # untouched


def test_a_worker_reads_only_its_live_executions_inputs(api, world) -> None:
    mine, other = world.mine, world.other
    own = api.get(f"/files/{mine.reference_path}", token=mine.worker_token)
    assert own.status_code == 200 and own.data.startswith(b"PK")
    _refused(api.get(f"/files/{other.reference_path}", token=mine.worker_token),
             other.reference_path)
    _refused(api.get(f"/files/{mine.output_path}/x", token=other.worker_token),
             mine.output_path)


def test_a_worker_lists_only_what_it_may_read(api, world) -> None:
    mine, other = world.mine, world.other
    listed = api.get(f"/files?prefix={mine.reference_path}", token=mine.worker_token)
    assert listed.status_code == 200
    assert [f["path"] for f in listed.json["files"]] == [mine.reference_path]
    assert api.get("/files", token=mine.worker_token).status_code == 403
    folder = mine.reference_path.rsplit("/", 1)[0]  # its benchmark's folder: more than it needs
    _refused(api.get(f"/files?prefix={folder}", token=mine.worker_token), folder)
    _refused(api.get(f"/files?prefix={other.reference_path}", token=mine.worker_token),
             other.reference_path)


def test_a_worker_writes_only_under_its_live_executions_output(api, world) -> None:
    mine, other = world.mine, world.other
    written = _put(api, f"{mine.output_path}/scores.json", mine.worker_token, b"{}")
    assert written.status_code == 201, written.json
    for victim in (mine.submission_path, other.submission_path, mine.reference_path,
                   f"{other.output_path}/scores.json", mine.output_path,
                   f"{mine.output_path}-x/scores.json"):
        _refused(_put(api, victim, mine.worker_token), victim)
    assert api.get(f"/files/{mine.submission_path}").data.startswith(b"PK")  # untouched
    assert api.get(f"/files/{other.submission_path}").data.startswith(b"PK")


def test_a_worker_cannot_walk_out_of_its_output(api, world) -> None:
    mine = world.mine
    escape = f"{mine.output_path}/../../../{mine.submission_path}"
    assert _put(api, escape, mine.worker_token).status_code in (400, 403, 404)
    assert api.get(f"/files/{mine.submission_path}").data.startswith(b"PK")


@pytest.mark.parametrize("role", ["participant", "organizer"])
def test_benchmark_accounts_never_reach_the_store(api, world, role) -> None:
    side = world.mine
    token = side.participant_token if role == "participant" else side.organizer_token
    assert api.get("/files", token=token).status_code == 403
    assert api.get(f"/files/{side.reference_path}", token=token).status_code == 403
    assert _put(api, side.submission_path, token).status_code == 403


def _report_success(api: Any, side: Side) -> None:
    event = {"execution_id": side.execution_id, "status": "succeeded", "duration": 0.1}
    answer = api.post(f"/workers/{side.worker_id}/report", token=side.worker_token,
                      json={"events": [event]})
    assert answer.status_code == 200 and answer.json["results"][0]["ok"], answer.json


def _reap(api: Any, side: Side) -> None:
    db = api.flask.application.extensions["scitq_bench"].db
    result = scheduling.reap(db, 30.0, now=utcnow() + timedelta(hours=1))
    assert result["lost"] >= 1


def _cancel_submission(api: Any, side: Side) -> None:
    answer = api.post(f"/submissions/{side.submission_id}/cancel", token=side.participant_token)
    assert answer.status_code == 200, answer.json


def _evict(api: Any, side: Side) -> None:
    answer = api.post(f"/workers/{side.worker_id}/evicted", token=side.worker_token)
    assert answer.status_code == 200 and answer.json["requeued"] == 1, answer.json


ENDINGS: dict[str, Callable[[Any, Side], None]] = {
    "reported": _report_success, "lease reaped": _reap,
    "submission cancelled": _cancel_submission, "evicted": _evict,
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_nothing_once_the_execution_ended_or_was_taken(api, world, ending) -> None:
    side = world.mine
    output = f"{side.output_path}/scores.json"
    assert api.get(f"/files/{side.reference_path}", token=side.worker_token).status_code == 200
    ENDINGS[ending](api, side)
    _refused(api.get(f"/files/{side.reference_path}", token=side.worker_token),
             side.reference_path)
    _refused(_put(api, output, side.worker_token), output)


def test_admins_reach_everything(api, world) -> None:
    other = world.other
    assert api.get(f"/files/{other.reference_path}").status_code == 200
    assert len(api.get("/files").json["files"]) >= 6
    assert _put(api, "anywhere/at/all.txt", api.token).status_code == 201


def test_a_worker_cannot_write_the_log_of_an_execution_without_a_worker(api, world) -> None:
    """Once a worker record is deleted its executions have no worker: another worker
    is refused (403), not told about the execution (409)."""
    mine, other = world.mine, world.other
    _report_success(api, mine)
    assert api.delete(f"/workers/{mine.worker_id}").status_code in (200, 204)
    answer = api.put(f"/executions/{mine.execution_id}/logs/stdout?offset=0", data=b"forged",
                     token=other.worker_token)
    assert answer.status_code == 403, answer.json
    assert api.put(f"/executions/{mine.execution_id}/logs/stdout?offset=0",
                   data=b"x").status_code == 409  # the admin learns why
