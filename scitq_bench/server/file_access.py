"""Who may reach which ``server://`` paths through ``/api/v1/files``.

Admins reach the whole store. A worker token reaches only what the executions its
worker holds now name: it reads their inputs and resources (a folder covers what lies
under it) and writes under their output folder. An execution that ended, or was taken
from the worker (lease expired, re-queued, stopped or cancelled), grants nothing more,
so a worker token cannot read a benchmark's reference data unless it is scoring with
it right now, nor overwrite anybody's submission. Every other token reaches nothing
here: participants and organizers read outputs through the benchmark API.

The grants come from one indexed query (the worker's live executions) per request,
using each execution's snapshot: exactly the URIs the worker was sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scitq_bench.exceptions import Forbidden, InvalidInput
from scitq_bench.server.auth import ADMIN, WORKER, Principal
from scitq_bench.server.queue.models import Execution, Task
from scitq_bench.states import FINAL_TASK_VALUES, LIVE_EXECUTION_VALUES
from scitq_bench.uris import parse_uri


class Access(str, Enum):
    READ = "read"  # download a file, or list a folder
    WRITE = "write"  # upload a file


@dataclass(frozen=True)
class Grants:
    """Store paths (no leading or trailing "/"; "" is the whole store) a worker may read
    (the path itself and what lies under it) and write under."""

    reads: frozenset[str]
    writes: frozenset[str]

    def allows(self, path: str, access: Access) -> bool:
        if access is Access.READ:
            return any(_covers(grant, path) for grant in self.reads)
        return bool(path) and any(_under(grant, path) for grant in self.writes)


def _covers(grant: str, path: str) -> bool:
    return path == grant or _under(grant, path)


def _under(grant: str, path: str) -> bool:
    return grant == "" or path.startswith(grant + "/")


def store_path(raw: str, field: str = "path") -> str:
    """A store path in the form grants are compared in; refuses the forms the store
    itself refuses ("." and ".." parts, empty parts, NUL), so a prefix match cannot be
    walked out of. ``field`` names the request's field in the error."""
    clean = raw.strip("/")
    if clean and any(part in ("", ".", "..") or "\x00" in part for part in clean.split("/")):
        raise InvalidInput(f"{field}: invalid store path {raw!r}", field=field)
    return clean


def worker_grants(session: Session, worker_id: int) -> Grants:
    """What the worker's live executions name: one query on the (worker_id, status)
    index. A task stopped or killed by a user is final at once while its execution
    lives until the worker acknowledges: it grants nothing more either."""
    snapshots = session.scalars(
        select(Execution.snapshot)
        .join(Task, Task.id == Execution.task_id)
        .where(Execution.worker_id == worker_id,
               Execution.status.in_(LIVE_EXECUTION_VALUES),
               Task.status.notin_(sorted(FINAL_TASK_VALUES)))
    ).all()
    reads: set[str] = set()
    writes: set[str] = set()
    for snapshot in filter(None, snapshots):
        reads.update(_server_paths([*(snapshot.get("inputs") or []),
                                    *(snapshot.get("resources") or [])]))
        if snapshot.get("output"):
            writes.update(_server_paths([snapshot["output"]]))
    return Grants(frozenset(reads), frozenset(writes))


def _server_paths(uris: Iterable[Any]) -> Iterable[str]:
    for uri in uris:
        try:
            parsed = parse_uri(uri)
        except InvalidInput:
            continue  # validated when the task was made; never widen access on doubt
        if parsed.scheme == "server":
            yield parsed.path


def require(session: Session, principal: Principal, raw_path: str, access: Access,
            field: str = "path") -> str:
    """The clean store path if ``principal`` may ``access`` it; else Forbidden naming
    the path."""
    path = store_path(raw_path, field)
    if principal.role == ADMIN:
        return path
    if principal.role != WORKER or principal.worker_id is None:
        raise Forbidden(f"a {principal.role} token does not reach server://{path}")
    if not worker_grants(session, principal.worker_id).allows(path, access):
        raise Forbidden(
            f"worker {principal.worker_id} may not {access.value} server://{path}: "
            "no execution it holds now names it")
    return path
