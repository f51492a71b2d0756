"""Before a submission waits in silence, on both databases: the benchmark answer warns
when no worker that is up can run its steps (none up, none with a container engine,
none with the GPUs), a queued submission and any queued task say why they wait; a
benchmark's priority within the server's bounds reaches its batches; participants see
the submissions they have left; ``on_leaderboard`` is what the board shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scitq_bench.exceptions import InvalidInput
from scitq_bench.server.bench import standing
from scitq_bench.settings import ServerSettings
from tests.support.api import FakeWorker, account, create, import_bundle, register, submit
from tests.support.bundles import make_bundle, make_submission


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> ServerSettings:
    return ServerSettings(
        data_dir=tmp_path / "data", database_url=database_url, lease_seconds=30.0,
        reaper_interval=0.2, run_reaper=False, claim_max_wait=5.0,
        bench_priority_min=-5, bench_priority_max=5,
    )


@pytest.fixture
def bench(api: Any, tmp_path: Path) -> dict[str, Any]:
    answer = import_bundle(api, make_bundle(tmp_path))
    assert answer.status_code == 201, answer.json
    return answer.json


def _warnings(api: Any, bench_id: int, token: str = "default") -> list[str]:
    answer = api.get(f"/benchmarks/{bench_id}", token=token)
    assert answer.status_code == 200, answer.json
    return [w["reason"] for w in answer.json["readiness"]["warnings"]]


def test_a_benchmark_warns_until_a_worker_can_run_its_steps(api, bench, tmp_path) -> None:
    alice = account(api, "alice")
    assert _warnings(api, bench["id"], alice) == ["no worker is up"]
    sub = submit(api, bench["phases"][0]["id"], alice, make_submission(tmp_path, "result", 1))
    assert sub.status_code == 201, sub.json
    seen = api.get(f"/submissions/{sub.json['id']}", token=alice).json
    assert seen["waiting"] == "queued: no worker is up"

    register(api, "plain", containers=False)
    assert _warnings(api, bench["id"], alice) == ["no worker with a container engine is up"]
    seen = api.get(f"/submissions/{sub.json['id']}", token=alice).json
    assert seen["waiting"] == "queued: no worker with a container engine is up"
    task_id = seen["attempts_detail"][0]["runs"][0]["scoring_task"]["id"]
    task = api.get(f"/tasks/{task_id}").json
    assert task["waiting"] == "no worker with a container engine is up"
    listed = api.get(f"/tasks?id={task_id}").json["tasks"]
    assert listed[0]["waiting"] == task["waiting"]

    register(api, "engine", containers=True)
    answer = api.get(f"/benchmarks/{bench['id']}", token=alice).json
    assert answer["readiness"] == {"ready": True, "warnings": []}
    assert api.get(f"/submissions/{sub.json['id']}", token=alice).json["waiting"] is None
    assert api.get(f"/tasks/{task_id}").json["waiting"] is None


def test_a_step_asking_for_a_gpu_no_worker_has_says_so(api, bench, tmp_path) -> None:
    register(api, "engine", containers=True)
    assert api.patch(f"/benchmarks/{bench['id']}/tasks/0", json={"gpu": 2}).status_code == 200
    assert _warnings(api, bench["id"]) == ["no worker with 2 GPUs is up"]
    register(api, "one-gpu", containers=False, gpus=2)
    # GPUs on one worker, the engine on another: neither runs the step
    assert _warnings(api, bench["id"]) == ["no worker with a container engine and 2 GPUs is up"]
    register(api, "both", containers=True, gpus=4)
    assert _warnings(api, bench["id"]) == []


def test_any_queued_task_says_why_no_worker_takes_it(api) -> None:
    register(api, "small", gpus=1, cpus=4)
    gpu = create(api, gpu=2)
    assert api.get(f"/tasks/{gpu['id']}").json["waiting"] == "no worker with 2 GPUs is up"
    cpus = create(api, cpu=16)
    assert api.get(f"/tasks/{cpus['id']}").json["waiting"] == "no worker with 16 CPUs is up"
    image = create(api, container="alpine:3")
    assert api.get(f"/tasks/{image['id']}").json["waiting"] == \
        "no worker with a container engine is up"
    fits = create(api, gpu=1)
    assert api.get(f"/tasks/{fits['id']}").json["waiting"] is None
    paused = create(api, batch="held")
    batch_id = api.get("/batches?name=held").json["batches"][0]["id"]
    assert api.post(f"/batches/{batch_id}/stop", json={}).status_code == 200
    assert api.get(f"/tasks/{paused['id']}").json["waiting"] == "its batch is paused"


def test_priority_within_the_servers_bounds_reaches_the_batches(api, bench) -> None:
    carol = account(api, "carol", role="organizer")
    answer = api.put(f"/benchmarks/{bench['id']}/priority", json={"priority": 4})
    assert answer.status_code == 200, answer.json
    batch = bench["phases"][0]["batch"]
    assert api.get(f"/batches?name={batch}").json["batches"][0]["priority"] == 4
    assert api.get(f"/benchmarks/{bench['id']}").json["priority"] == 4
    refused = api.put(f"/benchmarks/{bench['id']}/priority", json={"priority": 6})
    assert refused.status_code == 400
    assert "-5 to 5" in refused.json["message"]
    assert api.get(f"/batches?name={batch}").json["batches"][0]["priority"] == 4
    # an organizer who does not own it, and participants, may not
    assert api.put(f"/benchmarks/{bench['id']}/priority", json={"priority": 1},
                   token=carol).status_code in (403, 404)
    assert api.put(f"/benchmarks/{bench['id']}/priority", json={"priority": None}
                   ).status_code == 200
    assert api.get(f"/batches?name={batch}").json["batches"][0]["priority"] == 0


def test_the_bounds_are_server_settings(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SCITQ_BENCH_BENCH_PRIORITY_MIN", "-3")
    (tmp_path / "settings.yaml").write_text("bench_priority_max: 7\n")
    found = ServerSettings.from_env(tmp_path)
    assert (found.bench_priority_min, found.bench_priority_max) == (-3, 7)
    monkeypatch.setenv("SCITQ_BENCH_BENCH_PRIORITY_MIN", "9")
    with pytest.raises(InvalidInput, match="bench_priority_min"):
        ServerSettings.from_env(tmp_path)


def test_participants_see_the_submissions_they_have_left(api, bench, tmp_path) -> None:
    phase = bench["phases"][0]["id"]
    assert api.patch(f"/phases/{phase}", json={"max_submissions": 3,
                                               "max_submissions_per_day": 2}
                     ).status_code == 200
    alice = account(api, "alice")
    left = api.get(f"/benchmarks/{bench['id']}", token=alice).json["phases"][0]["remaining"]
    assert (left["total_left"], left["today_left"]) == (3, 2)
    assert submit(api, phase, alice, make_submission(tmp_path / "a")).status_code == 201
    left = api.get(f"/benchmarks/{bench['id']}", token=alice).json["phases"][0]["remaining"]
    assert (left["used"], left["total_left"], left["today_left"]) == (1, 2, 1)
    assert left["resets_at"].endswith("T00:00:00Z") or "T00:00:00" in left["resets_at"]
    assert submit(api, phase, alice, make_submission(tmp_path / "b")).status_code == 201
    left = api.get(f"/benchmarks/{bench['id']}", token=alice).json["phases"][0]["remaining"]
    assert left["today_left"] == 0
    assert submit(api, phase, alice, make_submission(tmp_path / "c")).status_code == 409
    # bob's counts are his own
    bob = account(api, "bob")
    left = api.get(f"/benchmarks/{bench['id']}", token=bob).json["phases"][0]["remaining"]
    assert (left["total_left"], left["today_left"]) == (3, 2)


def test_on_leaderboard_is_what_the_board_shows(api, bench, tmp_path) -> None:
    alice = account(api, "alice")
    phase = bench["phases"][0]["id"]
    board_key = bench["leaderboards"][0]["key"]
    ids = []
    for n, score in enumerate((10.0, 20.0)):
        answer = submit(api, phase, alice, make_submission(tmp_path / str(n), "result", score))
        assert answer.status_code == 201, answer.json
        ids.append(answer.json["id"])
    worker = FakeWorker(api)
    for execution in worker.claim():
        task_id = execution["task_id"]
        owner = next(i for i in ids if api.get(f"/submissions/{i}", token=alice).json[
            "attempts_detail"][0]["runs"][0]["scoring_task"]["id"] == task_id)
        worker.finish(execution, scores={"score": 10.0 if owner == ids[0] else 20.0})
    rows = api.get(f"/phases/{phase}/leaderboards/{board_key}", token=alice).json["rows"]
    shown = {r["submission_id"] for r in rows}
    assert len(shown) == 1  # one per participant under the bundle's rule
    for submission_id in ids:
        one = api.get(f"/submissions/{submission_id}", token=alice).json
        assert one["on_leaderboard"] == (submission_id in shown), (submission_id, shown)
    listed = api.get(f"/submissions?phase={phase}", token=alice).json
    assert {s["id"] for s in listed if s["on_leaderboard"]} == shown


def test_standings_give_the_rank_the_board_shows(api, bench, db, tmp_path) -> None:
    phase = bench["phases"][0]["id"]
    board_key = bench["leaderboards"][0]["key"]
    owners = {name: account(api, name) for name in ("alice", "bob", "carl")}
    ids = {name: submit(api, phase, token, make_submission(tmp_path / name)).json["id"]
           for name, token in owners.items()}
    values = {ids["alice"]: 10.0, ids["bob"]: 30.0, ids["carl"]: 20.0}
    worker = FakeWorker(api)
    tasks = {api.get(f"/submissions/{i}").json["attempts_detail"][0]["runs"][0][
        "scoring_task"]["id"]: i for i in values}
    for execution in worker.claim():
        worker.finish(execution, scores={"score": values[tasks[execution["task_id"]]]})
    rows = api.get(f"/phases/{phase}/leaderboards/{board_key}").json["rows"]
    with db.read() as session:
        found = standing.standings(session, bench["id"], phase, list(values), False)
    for row in rows:
        assert found[row["submission_id"]]["rank"] == row["rank"]
        assert found[row["submission_id"]]["score"] == row["display"]["0"]["score"]
    assert [found[ids[n]]["rank"] for n in ("bob", "carl", "alice")] == [1, 2, 3]


def test_task_show_says_why_a_task_waits(live_server, run) -> None:
    client = live_server.client()
    client.worker_register(name="cpu-only", concurrency=1, containers=True)
    task = client.task_create("true", gpu=1)
    shown = run("task", "show", "-i", task["id"])
    assert shown.exit_code == 0, shown.output
    assert "no worker with a GPU is up" in shown.output
    listed = run("task", "list", "-L")
    assert "no worker with a GPU is up" in listed.output
