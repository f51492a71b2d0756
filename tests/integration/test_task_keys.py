"""Tasks created with a key, on both databases: submitting again returns the tasks that
exist (unchanged) instead of creating them twice, also when two callers race."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import func, select

from scitq_bench.server.queue import tasks as queue_tasks
from scitq_bench.server.queue.models import Task
from scitq_bench.server.queue.tasks import commit_create, create_tasks, get_or_create_batch
from scitq_bench.server.schemas import TaskCreate


def _bulk(api: Any, tasks: list[dict[str, Any]]) -> Any:
    return api.post("/tasks", json={"tasks": tasks})


def test_resubmitting_keys_returns_the_same_tasks(api) -> None:
    first = _bulk(api, [{"command": "a", "key": "s1"}, {"command": "b", "key": "s2"}])
    assert first.status_code == 201, first.json
    assert first.json["created"] == 2 and first.json["existing"] == []
    ids = [t["id"] for t in first.json["tasks"]]
    assert [t["key"] for t in first.json["tasks"]] == ["s1", "s2"]
    again = _bulk(api, [{"command": "a", "key": "s1"}, {"command": "b", "key": "s2"}])
    assert again.status_code == 200, again.json
    assert [t["id"] for t in again.json["tasks"]] == ids
    assert again.json["created"] == 0 and again.json["existing"] == ids
    single = api.post("/tasks", json={"command": "a", "key": "s1"})
    assert single.status_code == 200 and single.json["tasks"][0]["id"] == ids[0]
    assert len(api.get("/tasks").json["tasks"]) == 2


def test_mixed_new_and_existing_keep_the_request_order(api) -> None:
    old = _bulk(api, [{"command": "old", "key": "k2"}]).json["tasks"][0]["id"]
    answer = _bulk(api, [{"command": "n1", "key": "k1"}, {"command": "x", "key": "k2"},
                         {"command": "plain"}, {"command": "n3", "key": "k3"},
                         {"command": "same key, other batch", "key": "k2", "batch": "b2"}])
    assert answer.status_code == 201, answer.json
    tasks = answer.json["tasks"]
    assert [t["command"] for t in tasks] == ["n1", "old", "plain", "n3",
                                             "same key, other batch"]
    assert tasks[1]["id"] == old and answer.json["existing"] == [old]
    assert answer.json["created"] == 4
    assert tasks[4]["batch"] == "b2" and tasks[4]["id"] != old
    assert len({t["id"] for t in tasks}) == 5
    assert [t["id"] for t in api.get("/tasks?key=k2&batch=default").json["tasks"]] == [old]
    assert len(api.get("/tasks?key=k2").json["tasks"]) == 2
    assert api.get("/tasks?key=nope").json["tasks"] == []


def test_an_existing_task_is_not_changed(api) -> None:
    base = api.post("/tasks", json={"command": "base"}).json["tasks"][0]["id"]
    first = api.post("/tasks", json={"command": "one", "key": "k", "priority": 1,
                                     "retry": 2}).json["tasks"][0]
    again = api.post("/tasks", json={"command": "two", "key": "k", "priority": 9,
                                     "requires": [base], "paused": True,
                                     "output": "file:///tmp/x"})
    assert again.status_code == 200, again.json
    task = again.json["tasks"][0]
    assert task["id"] == first["id"]
    for field in ("command", "priority", "retry", "requires", "status", "output"):
        assert task[field] == first[field], field
    assert task["command"] == "one" and task["requires"] == [] and task["status"] == "pending"
    # an existing task's spec is not checked either: its prerequisites are ignored
    unknown = api.post("/tasks", json={"command": "x", "key": "k", "requires": [999999]})
    assert unknown.status_code == 200 and unknown.json["tasks"][0]["id"] == first["id"]


def test_a_key_twice_in_one_request_is_refused(api) -> None:
    answer = _bulk(api, [{"command": "a", "key": "x"}, {"command": "b", "key": "x"},
                         {"command": "c", "key": "y"}, {"command": "d", "key": "x"}])
    assert answer.status_code == 400
    assert answer.json["message"] == "tasks.1.key: 'x' repeats tasks.0"
    assert api.get("/tasks").json["tasks"] == []  # all or nothing
    other_batch = _bulk(api, [{"command": "a", "key": "x"},
                              {"command": "b", "key": "x", "batch": "other"}])
    assert other_batch.status_code == 201 and other_batch.json["created"] == 2


def test_bad_keys_are_refused_naming_the_field(api) -> None:
    for key in ("", "a\nb", "tab\there", "x" * 256):
        answer = _bulk(api, [{"command": "a"}, {"command": "b", "key": key}])
        assert answer.status_code == 400, key
        assert answer.json["message"].startswith("tasks.1.key: "), answer.json
    assert api.post("/tasks", json={"command": "a", "key": 5}).status_code == 400
    assert api.post("/tasks", json={"command": "a", "key": "é ü/ok"}).status_code == 201


def test_failed_request_creates_nothing_even_with_keys(api) -> None:
    answer = _bulk(api, [{"command": "a", "key": "k1"},
                         {"command": "b", "key": "k2", "requires": [424242]}])
    assert answer.status_code == 400 and "424242" in answer.json["message"]
    assert api.get("/tasks").json["tasks"] == []


def _count(db: Any, key: str) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(Task).where(Task.key == key))


def test_concurrent_requests_on_the_same_keys_make_each_task_once(live_server, db) -> None:
    """Real HTTP, two callers at once: one task per key, and both get its id."""
    keys = [f"race-{n}" for n in range(8)]
    barrier = threading.Barrier(2)
    answers: list[list[int]] = []
    failures: list[BaseException] = []

    def submit() -> None:
        client = live_server.client()
        try:
            barrier.wait(timeout=10)
            tasks = client.tasks_create([{"command": "true", "key": k} for k in keys])
            answers.append([t["id"] for t in tasks])
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    for _round in range(3):
        answers.clear()
        threads = [threading.Thread(target=submit) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not failures, failures
        assert len(answers) == 2 and answers[0] == answers[1]
        assert all(_count(db, key) == 1 for key in keys)
        keys = [f"{key}-again" for key in keys]


def test_a_key_inserted_by_an_open_transaction_is_found_once_it_commits(
        live_server, db, monkeypatch) -> None:
    """The second caller's insert meets the first one's uncommitted row (PostgreSQL:
    the unique index breaks when it commits, and the creation runs again; SQLite: the
    write lock waits): it answers the committed task."""
    ctx = live_server.app.extensions["scitq_bench"]
    spec = TaskCreate(command="true", key="held")
    answers: list[Any] = []
    runs: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        runs.append(1)
        return create_tasks(*args, **kwargs)

    monkeypatch.setattr(queue_tasks, "create_tasks", counted)
    with db.write() as session:  # the batch exists: the key is what the two meet on
        get_or_create_batch(session, spec.batch)

    def second() -> None:
        answers.append(commit_create(ctx, [spec], describe=lambda _s, rows: [
            (row.id, row.new) for row in rows]))

    with db.write() as session:
        (mine,) = create_tasks(db, session, [spec])
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)  # the second caller is inside its insert (or waiting to write)
        assert answers == []
    thread.join(timeout=30)
    assert answers == [[(mine.id, False)]]
    assert _count(db, "held") == 1
    assert len(runs) == (1 if db.is_sqlite else 2)
