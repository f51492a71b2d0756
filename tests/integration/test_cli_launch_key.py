"""``launch -k KEY``: a script or a shell loop run twice creates each keyed task once."""

from __future__ import annotations

from typing import Any

from tests.support.cli import Invoke, fails, ok


def test_launch_with_a_key_twice_creates_one_task(run: Invoke, live_server: Any) -> None:
    first = int(ok(run("launch", "-b", "keys", "-k", "sample-1", "--", "echo", "one")).output)
    again = int(ok(run("launch", "-b", "keys", "-k", "sample-1", "--", "echo", "changed")).output)
    other = int(ok(run("launch", "-b", "other", "-k", "sample-1", "--", "echo", "one")).output)
    assert again == first and other != first  # a key is unique within its batch only
    tasks = {t["id"]: t for t in live_server.client().task_list()}
    assert len(tasks) == 2
    assert tasks[first]["command"] == "echo one" and tasks[first]["key"] == "sample-1"


def test_launch_refuses_a_key_with_a_newline(run: Invoke, live_server: Any) -> None:
    fails(run("launch", "-k", "a\nb", "--", "true"), "key", "control characters")
    assert live_server.client().task_list() == []
