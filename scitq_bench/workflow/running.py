"""``Workflow.run``: send, staff and follow a workflow, in one of two modes.

Normal: every step's tasks are sent at once (the server starts each task when its
prerequisites succeeded) and the run is followed until every task ended.

Debug: steps one at a time, and within a step tasks one at a time: a task is sent
only when the one before it succeeded, so nothing runs after a failure. The batches of
later steps are stopped until their turn. A failed task holds the workflow: every batch
stopped, the task kept as it failed, and ``WorkflowHeld`` raised naming it.

Either way a second run of the same script finds what the first made (by batch and
key), and a KeyboardInterrupt stops only the following, never the work.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.panel import Panel

from scitq_bench.exceptions import NotFound
from scitq_bench.workflow import housekeeping, submission
from scitq_bench.workflow.display import FINAL, LiveDisplay, StepState, table
from scitq_bench.workflow.errors import HeldTask, WorkflowError, WorkflowHeld
from scitq_bench.workflow.model import Step, Task
from scitq_bench.workflow.recruitment import recruiter_fields, upsert_recruiter

if TYPE_CHECKING:
    from scitq_bench.client.api import Client
    from scitq_bench.workflow.workflow import Workflow

TAIL_LINES = 20
DEBUG_POLL = 0.5  # seconds: a debug run waits on one task at a time


@dataclass
class FailedTask:
    step: str
    key: str
    id: int
    name: str | None
    status_reason: str | None


@dataclass
class StepResult:
    name: str
    batch: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def succeeded(self) -> int:
        return self.counts.get("succeeded", 0)

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)


@dataclass
class RunResult:
    """How each step ended, and the tasks that failed."""

    workflow: str
    steps: dict[str, StepResult]
    failed: list[FailedTask]

    @property
    def ok(self) -> bool:
        return all(step.succeeded == step.total for step in self.steps.values())


def run(wf: Workflow, *, refresh: float, progress: bool, retry_failed: bool) -> RunResult:
    if not wf.steps:
        raise WorkflowError(f"workflow {wf.name!r} declares no step")
    display = LiveDisplay(wf.name, progress)
    try:
        if wf.debug:
            _run_debug(wf, display, refresh, retry_failed)
        else:
            _submit(wf)
            if retry_failed:
                _relaunch_failed(wf)
            _follow(wf, display, refresh)
    except KeyboardInterrupt:
        display.stop()
        display.console.print(
            f"Interrupted: workflow {wf.name!r} goes on on the server (nothing was stopped). "
            "Run the same script again to follow it: what exists is found by its keys and "
            "nothing is created twice. To remove it: Workflow("
            f"{wf.name!r}).clean().", soft_wrap=True)
        raise
    finally:
        display.stop()
    result = results(wf.client, wf.name, list(wf.steps.values()))
    states = [StepState(name, step.batch, step.counts) for name, step in result.steps.items()]
    display.print(table(wf.name, states, title=f"workflow {wf.name}: "
                        + ("all succeeded" if result.ok else f"{len(result.failed)} failed")))
    for failed in result.failed[:20]:
        display.console.print(f"failed: {failed.step}/{failed.key} (task {failed.id})"
                              + (f": {failed.status_reason}" if failed.status_reason else ""),
                              soft_wrap=True)
    return result


def _submit(wf: Workflow) -> None:
    """Every step's batch (going again if stopped), recruiter and tasks."""
    for step in wf.steps.values():
        batch = submission.ensure_batch(wf.client, step.batch, wf.priority)
        if batch.get("status") == "paused":
            wf.client.batch_go(batch["id"])  # held by a debug run, or stopped: go on
        upsert_recruiter(wf.client, step.batch, recruiter_fields(
            wf.staffing(step), wf.name, wf.max_workflow_workers))
        submission.send(wf.client, step.tasks)


def _relaunch_failed(wf: Workflow) -> list[int]:
    """Relaunch each declared task that failed on its own (its prerequisites did not
    fail): those that failed because of it come back with it."""
    client = wf.client
    status: dict[int | None, str] = {
        t.id: t.status for t in housekeeping.stored_tasks(client, wf.name, list(wf.steps))}
    relaunched = []
    for step in wf.steps.values():
        for task in step.tasks:
            if task.id is None or status.get(task.id) != "failed":
                continue
            if any(status.get(p.id) in ("failed", "cancelled") for p in task.depends):
                continue
            client.task_relaunch(task.id)
            relaunched.append(task.id)
    return relaunched


def step_states(client: Client, steps: Sequence[Step]) -> list[StepState]:
    states = []
    for step in steps:
        try:
            batch: dict[str, Any] | None = client.batch_find(step.batch)
        except NotFound:
            batch = None
        states.append(StepState.of(step.name, batch))
    return states


def _follow(wf: Workflow, display: LiveDisplay, refresh: float) -> None:
    steps = list(wf.steps.values())
    while True:
        states = step_states(wf.client, steps)
        display.update(states)
        if all(state.done for state in states):
            return
        time.sleep(refresh)


def _run_debug(wf: Workflow, display: LiveDisplay, refresh: float,
               retry_failed: bool) -> None:
    client = wf.client
    steps = list(wf.steps.values())
    batches = {step.name: submission.ensure_batch(client, step.batch, wf.priority,
                                                  stopped=True) for step in steps}
    for step in steps:
        client.batch_go(batches[step.name]["id"])
        upsert_recruiter(client, step.batch, recruiter_fields(
            wf.staffing(step), wf.name, wf.max_workflow_workers, debug=True))
        for task in step.tasks:
            answer = submission.send(client, [task], debug=True)[0]
            if answer["status"] in ("failed", "cancelled") and retry_failed:
                assert task.id is not None
                client.task_relaunch(task.id)
            state = _wait(client, task, steps, display, min(refresh, DEBUG_POLL))
            if state["status"] != "succeeded":
                _hold(wf, steps, task, state, display)


def _wait(client: Client, task: Task, steps: Sequence[Step], display: LiveDisplay,
          poll: float) -> dict[str, Any]:
    assert task.id is not None
    while True:
        state = client.task_get(task.id)
        display.update(step_states(client, steps),
                       f"debug: {task.step.name}/{task.key} (task {task.id}) {state['status']}")
        if state["status"] in FINAL:
            return state
        time.sleep(poll)


def _hold(wf: Workflow, steps: Sequence[Step], task: Task, state: dict[str, Any],
          display: LiveDisplay) -> None:
    """Stop every batch of the workflow, show the failed task, raise WorkflowHeld."""
    client = wf.client
    for step in steps:
        batch = client.batch_find(step.batch)
        if batch.get("status") != "paused":
            client.batch_stop(batch["id"])
    assert task.id is not None
    held = HeldTask(step=task.step.name, key=task.key, id=task.id, command=state["command"],
                    status_reason=state.get("status_reason"),
                    stdout_tail=_tail(housekeeping.read_log(client, task.id, "stdout")),
                    stderr_tail=_tail(housekeeping.read_log(client, task.id, "stderr")))
    error = WorkflowHeld(wf.name, held)
    display.stop()
    display.console.print(Panel(
        f"command: {escape(held.command)}\n\n[bold]stderr (end)[/]\n"
        f"{escape(held.stderr_tail) or '-'}\n\n[bold]stdout (end)[/]\n"
        f"{escape(held.stdout_tail) or '-'}",
        title=f"task {held.id} ({held.step}/{held.key}) failed", expand=False),
        markup=True)
    display.console.print(str(error), soft_wrap=True)
    raise error


def _tail(data: bytes) -> str:
    return "\n".join(data.decode(errors="replace").splitlines()[-TAIL_LINES:])


def results(client: Client, workflow: str, steps: Sequence[Step]) -> RunResult:
    """Each step's counts, and its failed tasks, as the server has them now."""
    by_step: dict[str, StepResult] = {}
    for state in step_states(client, steps):
        by_step[state.name] = StepResult(state.name, state.batch, state.counts)
    failed = [FailedTask(t.step, t.key, t.id, t.name, t.status_reason)
              for t in housekeeping.stored_tasks(client, workflow, [s.name for s in steps],
                                                 status="failed")]
    return RunResult(workflow, by_step, failed)
