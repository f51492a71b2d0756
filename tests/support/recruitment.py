"""Recruitment test doubles and helpers: a provider whose machines never come up, a
runner that only records, the offers of a fake provider, recruiters with pending
work, and jobs with their worker read back from the database."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import select

from scitq_bench.recruiters.protofilter import Offer
from scitq_bench.recruiters.providers.base import Instance, InstanceSpec
from scitq_bench.server.db import Database
from scitq_bench.server.queue.models import Batch, Task, Worker
from scitq_bench.server.queue.tasks import get_or_create_batch
from scitq_bench.server.recruit import catalog
from scitq_bench.server.recruit.models import Job, Recruiter

OFFERS = [
    Offer(provider="fake", region="r1", flavor="small", cpu=2, ram_gb=4, cost=0.10),
    Offer(provider="fake", region="r2", flavor="small", cpu=2, ram_gb=4, cost=0.12),
    Offer(provider="fake", region="r1", flavor="big", cpu=16, ram_gb=64, cost=0.80),
    Offer(provider="fake", region="r1", flavor="gpu", cpu=8, ram_gb=32, gpu_count=2,
          gpu_mem_gb=48, tags="G", cost=2.0),
    Offer(provider="fake", region="r1", flavor="cheap-spot", cpu=16, ram_gb=64, cost=0.05,
          eviction=20.0),
]


def setup(session: Any, pending: int = 10, **recruiter: Any) -> tuple[Batch, Recruiter]:
    catalog.upsert_offers(session, "fake", OFFERS)
    batch = get_or_create_batch(session, "b")
    session.flush()
    fields = {"flavor": "auto:cpu>=2", "provider": "fake", "region": "auto",
              "maximum_workers": 3, **recruiter}
    rec = Recruiter(batch_id=batch.id, rank=1, **fields)
    session.add(rec)
    for _ in range(pending):
        session.add(Task(batch_id=batch.id, command="true", status="pending"))
    session.flush()
    return batch, rec


def hired(session: Any) -> list[Worker]:
    return list(session.scalars(select(Worker).where(Worker.permanent.is_(False))
                                .order_by(Worker.id)))


class RecordingRunner:
    """Stands for the job runner: records what would run."""

    def __init__(self) -> None:
        self.submitted: list[int] = []

    def submit(self, job_id: int) -> None:
        self.submitted.append(job_id)


class NeverUp:
    """A provider whose instances stay pending: a deploy waits for them until stopped."""

    name = "fake"
    starts_worker = False

    def __init__(self) -> None:
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.lock = threading.Lock()

    def create(self, spec: InstanceSpec) -> Instance:
        with self.lock:
            self.created.append(f"i-{len(self.created) + 1}")
            return Instance("fake", self.created[-1], spec.name, spec.region, "pending")

    def state(self, instance_id: str, region: str) -> Instance:
        return Instance("fake", instance_id, "x", region, "pending")

    def delete(self, instance_id: str, region: str) -> None:
        with self.lock:
            self.deleted.append(instance_id)


def add_job(db: Database, kind: str, *, instance_id: str | None = None,
            status: str = "pending") -> tuple[int, int]:
    """A recruited worker and one job about it: (job id, worker id)."""
    with db.write() as session:
        worker = Worker(name=f"hired-{kind}-{time.monotonic_ns()}", status="offline",
                        provider="fake", region="r1", flavor="small", instance_id=instance_id)
        session.add(worker)
        session.flush()
        job = Job(kind=kind, worker_id=worker.id, status=status, arguments={
            "name": worker.name, "provider": "fake", "region": "r1", "flavor": "small",
            "instance_id": instance_id})
        session.add(job)
        session.flush()
        return job.id, worker.id


def job_of(db: Database, job_id: int) -> Job:
    with db.read() as session:
        job = session.get(Job, job_id)
        session.expunge(job)
        return job


def worker_of(db: Database, worker_id: int) -> Worker:
    with db.read() as session:
        worker = session.get(Worker, worker_id)
        session.expunge(worker)
        return worker
