"""Turning what users type (``-i ID | -n NAME``, comma lists) into server objects."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click

from scitq_bench.client import Client
from scitq_bench.exceptions import InvalidInput, NotFound


def split_values(values: str | Iterable[str] | None) -> list[str]:
    """``"a,b" -> ["a", "b"]``; repeated options and commas may be mixed."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def parse_ids(values: str | Iterable[str] | None, option: str = "-i") -> list[int]:
    """Ids from repeated and/or comma-separated options; bad ones are usage errors."""
    ids = []
    for text in split_values(values):
        try:
            ids.append(int(text))
        except ValueError:
            raise click.BadParameter(f"{text!r} is not an id (a whole number)",
                                     param_hint=f"'{option}'") from None
    return ids


def statuses(value: str | None) -> list[str] | None:
    """Comma-separated statuses, or None for no filter (the server checks the names)."""
    found = split_values(value)
    return found or None


def one_of(object_id: int | None, name: str | None, what: str) -> None:
    """``-i ID`` or ``-n NAME``: exactly one."""
    if object_id is None and name is None:
        raise click.UsageError(f"say which {what}: by id (-i) or by name (-n)")
    if object_id is not None and name is not None:
        raise click.UsageError(f"give the {what} by id (-i) or by name (-n), not both")


def resolve_worker(client: Client, worker_id: int | None, name: str | None) -> dict[str, Any]:
    """The worker given by ``-i`` or ``-n`` (exact name; the server treats % as a wildcard)."""
    one_of(worker_id, name, "worker")
    if worker_id is not None:
        return client.worker_get(worker_id)
    matches = [w for w in client.worker_list(name=name) if w["name"] == name]
    if not matches:
        raise NotFound(f"worker {name!r} not found")
    return matches[0]


def worker_id_of(client: Client, value: str) -> int:
    """A worker given by id or by name (for filters such as ``execution list -w``)."""
    if value.isdigit():
        return int(value)
    return resolve_worker(client, None, value)["id"]


def resolve_task(client: Client, task_id: int | None, name: str | None,
                 batch: str | None = None, *, narrow: bool = True) -> int:
    """The task given by ``-i ID`` or ``-n NAME`` (exactly one), as scitq-manage takes
    it. A name is matched exactly (the server reads % as a wildcard); several tasks of
    that name are an error listing their ids. ``batch`` narrows the name (``-b``);
    ``narrow`` says whether this command offers ``-b`` for that."""
    one_of(task_id, name, "task")
    if task_id is not None:
        return task_id
    assert name is not None
    try:
        return int(client.task_find(name, batch)["id"])
    except InvalidInput as exc:
        ids = (exc.details or {}).get("task_ids") if isinstance(exc.details, dict) else None
        if not ids:
            raise
        where = f" in batch {batch!r}" if batch is not None else ""
        hint = " or -b BATCH to narrow" if narrow and batch is None else ""
        raise InvalidInput(f"{len(ids)} tasks are named {name!r}{where} (ids "
                           f"{', '.join(str(i) for i in ids)}): give -i ID{hint}",
                           details=exc.details) from None


def existing_batch(client: Client, name: str) -> dict[str, Any]:
    """The batch named ``name``, or NotFound saying so: a filter on a batch that does
    not exist is a typo, not an empty answer."""
    try:
        return client.batch_find(name)
    except NotFound:
        raise NotFound(f"no batch named {name!r} (`scitq-bench batch list` shows them)",
                       details={"name": name}) from None
