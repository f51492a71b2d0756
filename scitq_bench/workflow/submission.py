"""Sending declared tasks: each step's batch made if missing, its tasks created with
their keys. The server answers a key it already has with the task it has, so sending
again is how a task is found again: a re-run creates nothing twice."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from scitq_bench.exceptions import Conflict, NotFound
from scitq_bench.workflow.errors import WorkflowError
from scitq_bench.workflow.model import Step, Task

if TYPE_CHECKING:
    from scitq_bench.client.api import Client

log = logging.getLogger("scitq_bench.workflow")
CHUNK = 500  # tasks per request: one transaction each, all or none


def ensure_batch(client: Client, name: str, priority: int = 0,
                 stopped: bool = False) -> dict[str, Any]:
    """The batch ``name``, made when missing; stopped first when ``stopped`` (before
    any task of it exists, so that none starts)."""
    try:
        batch = client.batch_find(name)
    except NotFound:
        try:
            batch = client.batch_create(name, priority)
        except Conflict:  # made meanwhile, by a task or another run
            batch = client.batch_find(name)
    if stopped and batch.get("status") != "paused":
        client.batch_stop(batch["id"])
    return batch


def payload(task: Task, debug: bool = False) -> dict[str, Any]:
    """The task as ``POST /tasks`` takes it; its prerequisites must have been sent."""
    missing = [t for t in task.depends if t.id is None]
    if missing:
        raise WorkflowError(f"task {task.step.name}/{task.key} needs "
                            f"{missing[0].step.name}/{missing[0].key}, not sent yet")
    options = task.options
    body: dict[str, Any] = {
        "command": task.command, "batch": task.step.batch, "name": task.name[:255],
        "key": task.key, "inputs": list(task.inputs), "resources": list(task.resources),
        "output": None if task.output is None else str(task.output),
        "requires": sorted({t.id for t in task.depends if t.id is not None}),
    }
    for option in ("container", "container_options", "shell", "retry", "download_timeout",
                   "run_timeout", "cpu", "mem", "priority"):
        value = getattr(options, option)
        if value is not None:
            body[option] = value
    if debug:
        body["retry"] = 0
    return body


def send(client: Client, tasks: Sequence[Task], debug: bool = False) -> list[dict[str, Any]]:
    """Create (or find, by key) ``tasks``, in order; each one's ``id`` is set. A task
    found with another command than declared is kept as it is, with a warning."""
    answers: list[dict[str, Any]] = []
    for group in _groups(tasks):
        found = client.tasks_create([payload(task, debug) for task in group])
        for task, answer in zip(group, found, strict=True):
            if answer.get("key") not in (None, task.key):
                raise WorkflowError(f"the server answered task {task.step.name}/{task.key} "
                                    f"with key {answer.get('key')!r}")
            task.id = int(answer["id"])
            if answer.get("command") not in (None, task.command):
                log.warning("task %s/%s (id %s) exists with another command; kept as it is "
                            "(give the new one another key, or clean the workflow)",
                            task.step.name, task.key, task.id)
        answers.extend(found)
    return answers


def _groups(tasks: Sequence[Task]) -> Iterator[list[Task]]:
    """Runs of at most CHUNK tasks, none needing another of its own run (a request
    can only name prerequisites that already have ids)."""
    group: list[Task] = []
    inside: set[int] = set()
    for task in tasks:
        if len(group) >= CHUNK or any(id(t) in inside for t in task.depends):
            yield group
            group, inside = [], set()
        group.append(task)
        inside.add(id(task))
    if group:
        yield group


def send_step(client: Client, step: Step, priority: int = 0, stopped: bool = False,
              debug: bool = False) -> list[dict[str, Any]]:
    """The step's batch made (stopped when asked), then all its tasks sent."""
    ensure_batch(client, step.batch, priority, stopped)
    return send(client, step.tasks, debug)
