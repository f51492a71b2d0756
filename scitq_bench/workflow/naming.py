"""Names and keys: how a declared step and task are found again on the server.

A step is the batch ``<workflow>.<step>``. A task is found in its batch by its key:
the ``key`` given, else its ``name``, else a hash of what it does (step, command,
container, inputs, resources, output). The same script declares the same keys, so a
second run finds every task the first one created instead of creating it again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

from scitq_bench.workflow.errors import WorkflowError

# the server's batch names (schemas.NAME_PATTERN); the workflow's own separator "."
# is kept out of step names so that ``<workflow>.<step>`` reads back unambiguously
_NAME = re.compile(r"^[A-Za-z0-9_:@+-][A-Za-z0-9_.:@+ -]*$")
_STEP = re.compile(r"^[A-Za-z0-9_:@+-][A-Za-z0-9_:@+ -]*$")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
MAX_BATCH = 200
MAX_KEY = 255
HASH_PREFIX = "h-"


def check_workflow_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > MAX_BATCH - 2:
        raise WorkflowError(f"workflow name {name!r}: use letters, digits and _ . : @ + - "
                            f"(at most {MAX_BATCH - 2} characters)")
    return name


def batch_name(workflow: str, step: str) -> str:
    """The batch of a step: ``<workflow>.<step>``."""
    if not isinstance(step, str) or not _STEP.match(step):
        raise WorkflowError(f"step name {step!r}: use letters, digits and _ : @ + - "
                            "(no '.', which separates the workflow from the step)")
    name = f"{workflow}.{step}"
    if len(name) > MAX_BATCH:
        raise WorkflowError(f"batch name {name!r} is longer than {MAX_BATCH} characters")
    return name


def step_of_batch(workflow: str, batch: str) -> str | None:
    """The step a batch name belongs to in ``workflow``, or None."""
    prefix = f"{workflow}."
    if not batch.startswith(prefix):
        return None
    step = batch[len(prefix):]
    return step if _STEP.match(step) else None


def task_key(step: str, *, key: str | None, name: str | None, command: str,
             container: str | None, inputs: Sequence[str], resources: Sequence[str],
             output: str | None) -> str:
    """The key a task is found by: ``key``, else ``name``, else a hash of what it does
    (an unnamed task changed is a new task; the old one stays until ``clean``)."""
    chosen = key if key is not None else name
    if chosen is None:
        what = json.dumps([step, command, container, list(inputs), list(resources), output])
        chosen = HASH_PREFIX + hashlib.sha256(what.encode()).hexdigest()[:16]
    if not isinstance(chosen, str) or not chosen.strip():
        raise WorkflowError(f"step {step!r}: a task's key must be a non-empty text, "
                            f"got {chosen!r}")
    if len(chosen) > MAX_KEY:
        raise WorkflowError(f"step {step!r}: key {chosen[:40]!r}... is longer than "
                            f"{MAX_KEY} characters")
    return chosen


def path_segment(key: str) -> str:
    """A key as one folder name: kept when it is plain, else its plain characters plus
    a short hash (so two keys never share a folder)."""
    safe = _SAFE.sub("_", key).strip(".") or "_"
    if safe == key:
        return key
    return f"{safe[:200]}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
