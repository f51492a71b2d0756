"""Two symmetric "sides" of a server, each with its own organizer owning a public
benchmark, a participant with a result submission to it, and a worker holding that
submission's live scoring execution: the fixture world of the authorization tests,
where a token is tried on its own side's records and on the other side's."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scitq_bench.uris import parse_uri
from tests.support.bundles import make_bundle, make_submission

_worlds = itertools.count(1)


@dataclass(frozen=True)
class Side:
    organizer_token: str
    organizer_account_id: int
    benchmark_id: int
    benchmark_key: str
    phase_id: int
    leaderboard_key: str
    participant_token: str
    participant_account_id: int
    submission_id: int
    submission_path: str  # the submission's zip in the store
    worker_id: int
    worker_token: str
    execution_id: int
    task_id: int
    batch_id: int
    reference_path: str  # the benchmark's reference data: an input of the execution
    output_path: str  # the execution's output folder in the store


@dataclass(frozen=True)
class World:
    mine: Side
    other: Side


def _ok(answer: Any, status: int = 200) -> Any:
    assert answer.status_code == status, (answer.status_code, answer.get_data(as_text=True))
    return answer.json


def _account(api: Any, name: str, role: str) -> tuple[int, str]:
    answer = _ok(api.post("/accounts", json={"name": name, "role": role}), 201)
    return answer["account"]["id"], answer["token"]


def _store_input(inputs: list[str], action: str) -> str:
    """The store path of the input fetched with ``|...|mv:<action>``."""
    for uri in inputs:
        if uri.endswith(f"|mv:{action}"):
            return parse_uri(uri).path
    raise AssertionError(f"no input for {action} in {inputs}")


def build_side(api: Any, root: Path, label: str) -> Side:
    """One side, built start to end before the next so its worker claims only its own
    submission's scoring task."""
    organizer_id, organizer = _account(api, f"org-{label}", "organizer")
    bundle = make_bundle(root / label, title=f"Competition {label}")
    bench = _ok(api.post(f"/benchmarks?key={label}", data=bundle.read_bytes(), token=organizer,
                         headers={"Content-Type": "application/zip"}), 201)
    phase_id = bench["phases"][0]["id"]
    participant_id, participant = _account(api, f"part-{label}", "participant")
    submission_zip = make_submission(root / label / "sub", "result", 40)
    submission = _ok(api.post(f"/phases/{phase_id}/submissions", data=submission_zip.read_bytes(),
                              token=participant, headers={"Content-Type": "application/zip"}),
                     201)
    registered = _ok(api.post("/workers", json={"name": f"worker-{label}", "concurrency": 50,
                                                "containers": True}), 201)
    worker_id, worker_token = registered["worker"]["id"], registered["token"]
    claimed = _ok(api.post(f"/workers/{worker_id}/claim?max=50", token=worker_token))
    [execution] = [e for e in claimed["executions"]
                   if e["name"].startswith(f"submission {submission['id']} ")]
    batch = _ok(api.get(f"/tasks/{execution['task_id']}"))["batch"]
    [batch_id] = [b["id"] for b in _ok(api.get("/batches"))["batches"] if b["name"] == batch]
    return Side(
        organizer_token=organizer, organizer_account_id=organizer_id,
        benchmark_id=bench["id"], benchmark_key=bench["key"], phase_id=phase_id,
        leaderboard_key=bench["leaderboards"][0]["key"],
        participant_token=participant, participant_account_id=participant_id,
        submission_id=submission["id"],
        submission_path=_store_input(execution["inputs"], "input/res"),
        worker_id=worker_id, worker_token=worker_token,
        execution_id=execution["execution_id"], task_id=execution["task_id"],
        batch_id=batch_id,
        reference_path=_store_input(execution["inputs"], "input/ref"),
        output_path=parse_uri(execution["output"]).path,
    )


def build_world(api: Any, root: Path) -> World:
    """A fresh world on the same server each call (names never collide)."""
    number = next(_worlds)
    return World(mine=build_side(api, root, f"a{number}"),
                 other=build_side(api, root, f"b{number}"))
