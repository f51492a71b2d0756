"""Tables of recruitment. They share the queue's declarative base (one metadata, one
migration history).

A flavor is a machine type of a provider; its metrics are per region (price, spot
eviction rate). Quotas limit what may run per provider and region. A recruiter, ranked
within its batch, says what to hire for that batch; a job is one deploy or destroy of
one machine, with its progress and log. The machine itself is a ``worker`` row (with
its provider's instance id and its price).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from scitq_bench.server.queue.models import Base, utcnow
from scitq_bench.states import JobStatus


class Flavor(Base):
    __tablename__ = "flavor"
    __table_args__ = (UniqueConstraint("provider", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(50), index=True)
    name: Mapped[str] = mapped_column(String(100))
    cpu: Mapped[int] = mapped_column(Integer)
    ram_gb: Mapped[float] = mapped_column(Float)
    disk_gb: Mapped[float] = mapped_column(Float, default=0.0)
    gpu_model: Mapped[str | None] = mapped_column(String(100))
    gpu_count: Mapped[int] = mapped_column(Integer, default=0)
    gpu_mem_gb: Mapped[float] = mapped_column(Float, default=0.0)  # per GPU
    tags: Mapped[str] = mapped_column(String(20), default="")  # G GPU, M metal, N NVMe
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class FlavorMetric(Base):
    """A flavor in one region: whether it is offered, its price, its eviction rate
    (spot), and until when it is kept out after a capacity failure."""

    __tablename__ = "flavor_metric"
    __table_args__ = (UniqueConstraint("flavor_id", "region", "spot"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    flavor_id: Mapped[int] = mapped_column(ForeignKey("flavor.id", ondelete="CASCADE"),
                                           index=True)
    region: Mapped[str] = mapped_column(String(100))
    spot: Mapped[bool] = mapped_column(Boolean, default=False)  # the preemptible offer
    cost: Mapped[float | None] = mapped_column(Float)  # per hour
    eviction: Mapped[float | None] = mapped_column(Float)  # % per hour; None: not spot
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    excluded_until: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Quota(Base):
    """What may run at once with a provider in a region (None: no limit)."""

    __tablename__ = "quota"
    __table_args__ = (UniqueConstraint("provider", "region"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(50))
    region: Mapped[str] = mapped_column(String(100))
    max_cpus: Mapped[int | None] = mapped_column(Integer)
    max_instances: Mapped[int | None] = mapped_column(Integer)
    preferred: Mapped[bool] = mapped_column(Boolean, default=False)


class Recruiter(Base):
    """What to hire for a batch while it has work: tried in rank order."""

    __tablename__ = "recruiter"
    __table_args__ = (UniqueConstraint("batch_id", "rank"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"),
                                          index=True)
    rank: Mapped[int] = mapped_column(Integer, default=1)
    flavor: Mapped[str] = mapped_column(String(500))  # a flavor name, or auto:<filters>
    provider: Mapped[str] = mapped_column(String(50), default="auto")
    region: Mapped[str] = mapped_column(String(100), default="auto")
    concurrency: Mapped[int | None] = mapped_column(Integer)  # None: from task needs
    prefetch: Mapped[int] = mapped_column(Integer, default=0)
    tasks_per_worker: Mapped[int | None] = mapped_column(Integer)  # a worker per N tasks
    minimum_tasks: Mapped[int] = mapped_column(Integer, default=0)
    maximum_workers: Mapped[int] = mapped_column(Integer, default=1)
    # recruiters of one workflow (its steps' batches) keep at most
    # ``workflow_maximum_workers`` recruited workers alive together
    workflow: Mapped[str | None] = mapped_column(String(200), index=True)
    workflow_maximum_workers: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Job(Base):
    """One deploy or destroy of one machine."""

    __tablename__ = "job"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # deploy | destroy
    worker_id: Mapped[int | None] = mapped_column(
        ForeignKey("worker.id", ondelete="SET NULL"), index=True)
    # pending, running, then succeeded, failed or cancelled: see recruit/transitions.py
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.PENDING.value, index=True)
    progress: Mapped[int] = mapped_column(Integer, default=0)  # percent
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    arguments: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    log: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime)
    cancelled_by: Mapped[str | None] = mapped_column(String(200))  # who asked
