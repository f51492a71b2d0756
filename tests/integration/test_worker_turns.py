"""The worker protocol's turns at the database, through the API (both databases): a
call that finds every turn of its process taken waits, then is answered 503 with
Retry-After; other calls do not wait for turns; a turn's size is at most the pool."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from scitq_bench.server.app import create_app
from scitq_bench.server.turns import Turns
from scitq_bench.settings import ServerSettings
from tests.conftest import ApiClient

BOUND = 0.3  # seconds a call waits for a turn in these tests


@pytest.fixture
def held_turns(app: Any) -> Iterator[threading.Event]:
    """Every turn of the app's process taken (one, held by a thread) until the event
    is set."""
    context = app.extensions["scitq_bench"]
    context.turns = Turns(1, timeout=BOUND)
    release, holding = threading.Event(), threading.Event()

    def hold() -> None:
        with context.turns.take(hands_out_work=True):
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert holding.wait(5)
    yield release
    release.set()
    thread.join(5)


def busy(answer: Any) -> None:
    assert answer.status_code == 503, answer.json
    assert answer.json["error"] == "busy"
    assert int(answer.headers["Retry-After"]) >= 1
    assert "no turn" in answer.json["message"]


def test_worker_calls_wait_for_a_turn_then_are_busy_and_admin_calls_do_not_wait(
        api: ApiClient, held_turns: threading.Event) -> None:
    answer = api.post("/workers", json={"name": "w1", "concurrency": 2})
    assert answer.status_code == 201, answer.json  # registering takes no turn
    worker, token = answer.json["worker"]["id"], answer.json["token"]
    assert api.post("/tasks", json={"command": "true"}).status_code == 201
    calls = {
        "claim": lambda: api.post(f"/workers/{worker}/claim?max=1", token=token),
        "report": lambda: api.post(f"/workers/{worker}/report?claim=1", token=token,
                                   json={"events": []}),
        "heartbeat": lambda: api.post(f"/workers/{worker}/heartbeat", token=token,
                                      json={"stats": {}, "executions": []}),
    }
    for call in calls.values():
        busy(call())
    assert api.get("/tasks").status_code == 200  # admins' calls take no turn
    held_turns.set()  # the turn comes back: the same calls go through
    claimed = calls["claim"]()
    assert claimed.status_code == 200, claimed.json
    assert len(claimed.json["executions"]) == 1  # nothing was claimed while refused
    assert calls["report"]().status_code == 200
    assert calls["heartbeat"]().status_code == 200


def test_turns_are_at_most_the_pool(settings: ServerSettings, admin_token: str) -> None:
    for wanted, pool, slots in ((50, 20, 20), (3, 20, 3)):
        app = create_app(dataclasses.replace(settings, worker_transactions=wanted,
                                             database_pool_size=pool), start_reaper=False)
        try:
            turns = app.extensions["scitq_bench"].turns
            assert turns.slots == slots
            # a heartbeat is passed for a sixth of the lease at most: its renewals stay
            # well within the lease
            assert turns.bookkeeping_yield == settings.lease_seconds / 6
        finally:
            app.extensions["scitq_bench"].db.dispose()
