"""Why a queued task waits: which of its needs (a container engine, GPUs, CPUs,
memory, its batch) no worker that is up can meet.

A claim hands a task only to a running worker that meets all its needs
(``scheduling._claim_statement``); a task no such worker can take waits in silence
until one comes. This module answers, from what workers report, why: the task view,
the task API and the benchmark pages (``server.bench.readiness``) all ask it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from scitq_bench.server.queue.models import Batch, Task, Worker
from scitq_bench.states import BatchStatus, TaskStatus, WorkerStatus

# statuses of a task still in the queue, not yet handed to any worker
QUEUED_STATUSES = (TaskStatus.PENDING.value, TaskStatus.WAITING.value)


@dataclass(frozen=True)
class Needs:
    """What a worker must have to take a task. ``gpu`` -1 asks for every GPU of the
    worker (at least one); ``batches`` None: any batch (workers bound to a batch only
    take that batch's tasks)."""

    container: bool = False
    gpu: int = 0
    cpu: int | None = None
    mem: float | None = None
    batches: frozenset[int] | None = None


@dataclass(frozen=True)
class Capacity:
    """What a worker that is up reported about itself."""

    name: str
    containers: bool
    gpus: int
    cpus: int | None
    mem_gb: float | None
    batch_id: int | None


def needs_of(task: Task) -> Needs:
    return Needs(container=bool(task.container), gpu=task.gpu or 0, cpu=task.cpu,
                 mem=task.mem, batches=frozenset({task.batch_id}))


def up_workers(session: Session) -> list[Capacity]:
    """Workers that take tasks now (running, not given back)."""
    rows = session.execute(select(
        Worker.name, Worker.containers, Worker.gpus, Worker.cpus, Worker.mem_gb,
        Worker.batch_id).where(Worker.status == WorkerStatus.RUNNING.value,
                               Worker.released_at.is_(None))).all()
    return [Capacity(name=r.name, containers=bool(r.containers), gpus=r.gpus or 0,
                     cpus=r.cpus, mem_gb=r.mem_gb, batch_id=r.batch_id) for r in rows]


def can_take(worker: Capacity, needs: Needs) -> bool:
    """The claim's rules, in Python: unknown CPUs or memory do not limit."""
    if worker.batch_id is not None and needs.batches is not None \
            and worker.batch_id not in needs.batches:
        return False
    if needs.container and not worker.containers:
        return False
    if needs.gpu != 0 and worker.gpus < max(needs.gpu, 1):
        return False
    if needs.cpu is not None and worker.cpus is not None and needs.cpu > worker.cpus:
        return False
    return not (needs.mem is not None and worker.mem_gb is not None
                and needs.mem > worker.mem_gb)


def _gpu_words(gpu: int) -> str:
    if gpu in (-1, 1):
        return "a GPU"
    return f"{gpu} GPUs"


def blocker(needs: Needs, workers: Sequence[Capacity]) -> str | None:
    """Why no worker of ``workers`` can take a task with these needs; None when one
    can. Names the first need none of them meets, in the order a person would
    fix it: a worker at all, its batch, a container engine, GPUs, CPUs, memory."""
    if not workers:
        return "no worker is up"
    if any(can_take(w, needs) for w in workers):
        return None
    free = [w for w in workers if w.batch_id is None or needs.batches is None
            or w.batch_id in needs.batches]
    if not free:
        return "every worker that is up is bound to another batch"
    named: list[str] = []
    pool = free
    for words, meets in _wanted(needs):
        named.append(words)
        pool = [w for w in pool if meets(w)]
        if not pool:
            alone = not any(meets(w) for w in free)
            return f"no worker with {words if alone else ' and '.join(named)} is up"
    return "no worker that is up can take it"  # not reached: can_take said none


def _wanted(needs: Needs) -> list[tuple[str, Callable[[Capacity], bool]]]:
    """The needs a worker may lack, as words and tests, in the order they are named."""
    found: list[tuple[str, Callable[[Capacity], bool]]] = []
    if needs.container:
        found.append(("a container engine", lambda w: w.containers))
    if needs.gpu != 0:
        found.append((_gpu_words(needs.gpu), lambda w: w.gpus >= max(needs.gpu, 1)))
    if needs.cpu is not None:
        cpu = needs.cpu
        found.append((f"{cpu} CPUs", lambda w: w.cpus is None or w.cpus >= cpu))
    if needs.mem is not None:
        mem = needs.mem
        found.append((f"{mem:g} GB of memory", lambda w: w.mem_gb is None or w.mem_gb >= mem))
    return found


def why_waiting(session: Session, task: Task,
                workers: Sequence[Capacity] | None = None) -> str | None:
    """Why a queued task cannot be taken now, or None (it is not queued, or a worker
    that is up can take it)."""
    return why_waiting_many(session, [task], workers).get(task.id)


def why_waiting_many(session: Session, tasks: Iterable[Task],
                     workers: Sequence[Capacity] | None = None) -> dict[int, str]:
    """``why_waiting`` of several tasks, reading the workers and batches once: {task
    id: reason} for those that cannot be taken."""
    queued = [t for t in tasks if t.status in QUEUED_STATUSES]
    if not queued:
        return {}
    found = up_workers(session) if workers is None else list(workers)
    paused = set(session.scalars(select(Batch.id).where(
        Batch.id.in_({t.batch_id for t in queued}),
        Batch.status == BatchStatus.PAUSED.value)))
    reasons: dict[int, str] = {}
    for task in queued:
        reason = "its batch is paused" if task.batch_id in paused \
            else blocker(needs_of(task), found)
        if reason is not None:
            reasons[task.id] = reason
    return reasons
