"""What a workflow raises: a mistake in the script (``WorkflowError``, before anything
reaches the server), or a debug run stopped on a failed task (``WorkflowHeld``)."""

from __future__ import annotations

from dataclasses import dataclass


class WorkflowError(ValueError):
    """The script declares something that cannot run: a bad name, a duplicate key, an
    input that names no output. Raised at declaration, so nothing half-made is sent."""


@dataclass
class HeldTask:
    """The failed task a debug run stopped on, as it is on the server."""

    step: str
    key: str
    id: int
    command: str
    status_reason: str | None
    stdout_tail: str
    stderr_tail: str


class WorkflowHeld(RuntimeError):
    """A debug run stopped on a failed task: every batch of the workflow is stopped and
    the task is kept as it failed, so that it can be looked at; the message says how
    to go on."""

    def __init__(self, workflow: str, task: HeldTask) -> None:
        self.workflow = workflow
        self.task = task
        super().__init__(
            f"workflow {workflow!r} is held: task {task.id} ({task.step}/{task.key}) failed"
            + (f": {task.status_reason}" if task.status_reason else "")
            + f". Its batches are stopped. Relaunch it with `scitq-bench task relaunch -i "
            f"{task.id}` and run the script again, or run it again with "
            "run(retry_failed=True)")
