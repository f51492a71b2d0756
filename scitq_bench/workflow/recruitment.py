"""Staffing a step: one recruiter per step batch (rank 1), made on the first run and
updated on the next ones, never duplicated. Recruiters of one workflow share its cap
(``workflow``, ``workflow_maximum_workers``): the server keeps at most that many of
their workers alive together and moves idle ones between the workflow's steps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scitq_bench.workflow.model import StepOptions

if TYPE_CHECKING:
    from scitq_bench.client.api import Client

RANK = 1


def recruiter_fields(options: StepOptions, workflow: str, cap: int | None,
                     debug: bool = False) -> dict[str, Any] | None:
    """What the step's recruiter says; None when the step names no flavor (its tasks
    go to the workers already there)."""
    if not options.flavor:
        return None
    fields: dict[str, Any] = {
        "flavor": options.flavor, "provider": options.provider or "auto",
        "region": options.region or "auto", "concurrency": options.concurrency,
        "prefetch": options.prefetch, "tasks_per_worker": options.workers_tasks,
        "maximum_workers": options.max_workers if options.max_workers is not None
        else (cap or 1),
        "workflow": workflow,
    }
    if cap is not None:
        fields["workflow_maximum_workers"] = cap
        fields["maximum_workers"] = min(fields["maximum_workers"], cap)
    if debug:  # one task at a time, on one worker
        fields.update(concurrency=1, prefetch=0, tasks_per_worker=1, maximum_workers=1)
    return {key: value for key, value in fields.items() if value is not None}


def upsert_recruiter(client: Client, batch: str, fields: dict[str, Any] | None
                     ) -> dict[str, Any] | None:
    """The step's recruiter as ``fields`` say: created, or updated where it differs."""
    if fields is None:
        return None
    existing = [r for r in client.recruiter_list(batch=batch) if r.get("rank") == RANK]
    if not existing:
        rest = {key: value for key, value in fields.items() if key != "flavor"}
        return client.recruiter_create(batch, fields["flavor"], rank=RANK, **rest)
    current = existing[0]
    changes = {key: value for key, value in fields.items() if current.get(key) != value}
    return client.recruiter_update(current["id"], **changes) if changes else current
