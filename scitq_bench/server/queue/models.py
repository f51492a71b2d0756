"""SQLAlchemy 2.0 typed models. Columns that claims or lists filter on are indexed."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql import false, text

from scitq_bench.states import BatchStatus, ExecutionStatus, TaskStatus, WorkerStatus

LIVE_EXECUTION_SQL = "status IN ('pending', 'accepted', 'running')"


def utcnow() -> datetime:
    """Naive UTC: both SQLite and PostgreSQL store it the same way."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Batch(Base):
    __tablename__ = "batch"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=BatchStatus.RUNNING.value)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # every task of the batch may use the network
    network: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    budget: Mapped[float | None] = mapped_column(Float)  # recruiting stops once spent

    tasks: Mapped[list[Task]] = relationship(back_populates="batch", passive_deletes=True)


class Worker(Base):
    __tablename__ = "worker"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    hostname: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=WorkerStatus.RUNNING.value, index=True)
    concurrency: Mapped[int] = mapped_column(Integer, default=1)
    prefetch: Mapped[int] = mapped_column(Integer, default=0)
    batch_id: Mapped[int | None] = mapped_column(
        ForeignKey("batch.id", ondelete="SET NULL"), index=True
    )
    cpus: Mapped[int | None] = mapped_column(Integer)
    mem_gb: Mapped[float | None] = mapped_column(Float)
    gpus: Mapped[int] = mapped_column(Integer, default=0)
    gpu_model: Mapped[str | None] = mapped_column(String(200))
    gpu_mem_gb: Mapped[float | None] = mapped_column(Float)  # per GPU
    # it has a container engine: only such workers are sent tasks with a container
    containers: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_contact_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    flavor: Mapped[str | None] = mapped_column(String(100))
    provider: Mapped[str | None] = mapped_column(String(50))
    region: Mapped[str | None] = mapped_column(String(100))
    permanent: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[str | None] = mapped_column(String(40))
    # a recruited machine: the provider's id for it, its price, who hired it, since when
    # it has nothing to do (the idle timeout), when it was given back
    instance_id: Mapped[str | None] = mapped_column(String(200), index=True)
    cost_per_hour: Mapped[float | None] = mapped_column(Float)
    recruiter_id: Mapped[int | None] = mapped_column(
        ForeignKey("recruiter.id", ondelete="SET NULL"), index=True)
    idle_since: Mapped[datetime | None] = mapped_column(DateTime)
    released_at: Mapped[datetime | None] = mapped_column(DateTime)

    batch: Mapped[Batch | None] = relationship()


class Task(Base):
    __tablename__ = "task"

    id: Mapped[int] = mapped_column(primary_key=True)
    # indexed by ux_task_batch_key and ix_task_claim (below), which both start with it
    batch_id: Mapped[int] = mapped_column(ForeignKey("batch.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(255), index=True)
    command: Mapped[str] = mapped_column(Text)
    shell: Mapped[bool] = mapped_column(Boolean, default=False)
    container: Mapped[str | None] = mapped_column(String(500))
    container_options: Mapped[str | None] = mapped_column(Text)
    inputs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    resources: Mapped[list[Any]] = mapped_column(JSON, default=list)
    output: Mapped[str | None] = mapped_column(String(1000))
    retries_allowed: Mapped[int] = mapped_column(Integer, default=0)
    retries_used: Mapped[int] = mapped_column(Integer, default=0)
    losses: Mapped[int] = mapped_column(Integer, default=0)  # lost/refused runs, not spent
    download_timeout: Mapped[float | None] = mapped_column(Float)
    run_timeout: Mapped[float | None] = mapped_column(Float)
    cpu: Mapped[int | None] = mapped_column(Integer)
    mem: Mapped[float | None] = mapped_column(Float)
    gpu: Mapped[int] = mapped_column(Integer, default=0)  # GPU_ALL (-1): all the worker's
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # indexed by ix_task_claim (below), which starts with it
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.PENDING.value)
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    # the task may use the network (its batch may also grant it)
    network: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # "codabench": the run sees /app/... (program, input_data, input/ref, ...) instead
    # of the standard slots; see docs/benchmarks.md
    layout: Mapped[str | None] = mapped_column(String(16))
    # codabench layout on the host: an environment on the worker (virtualenv, conda)
    host_environment: Mapped[str | None] = mapped_column(String(500))
    # when set, the worker reads scores.json/scores.txt after the run: the keys allowed
    score_keys: Mapped[list[Any] | None] = mapped_column(JSON)
    # the caller's own name for the task, unique within its batch: creating a task
    # whose key exists returns the existing one (a re-run script submits nothing twice)
    key: Mapped[str | None] = mapped_column(String(255))

    batch: Mapped[Batch] = relationship(back_populates="tasks")


# Claims walk this index in order (pending tasks of one batch, highest priority first,
# oldest first) and stop at their LIMIT instead of sorting every pending task. It is the
# only index on the status: with another on the status alone, PostgreSQL read every
# pending task and sorted them whenever its statistics lagged behind the queue (a batch
# just created), and each task's moves (status changes are not HOT updates) wrote one
# more index entry.
Index("ix_task_claim", Task.status, Task.batch_id, Task.priority.desc(), Task.id)
Index("ux_task_batch_key", Task.batch_id, Task.key, unique=True)


class Requirement(Base):
    """``task_id`` may only start once ``prerequisite_id`` has succeeded."""

    __tablename__ = "requirement"
    __table_args__ = (UniqueConstraint("task_id", "prerequisite_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"), index=True)
    prerequisite_id: Mapped[int] = mapped_column(
        ForeignKey("task.id", ondelete="CASCADE"), index=True
    )


class Execution(Base):
    """One attempt at running a task on a worker."""

    __tablename__ = "execution"
    __table_args__ = (
        Index("ix_execution_task_status", "task_id", "status"),
        Index("ix_execution_worker_status", "worker_id", "status"),
        Index("ix_execution_status_lease", "status", "lease_deadline"),
        # The database itself refuses a second live execution of the same task.
        Index(
            "uq_execution_one_live_per_task", "task_id", unique=True,
            sqlite_where=text(LIVE_EXECUTION_SQL), postgresql_where=text(LIVE_EXECUTION_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"))
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("worker.id", ondelete="SET NULL"))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default=ExecutionStatus.PENDING.value)
    lease_deadline: Mapped[datetime | None] = mapped_column(DateTime)
    return_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    # short machine-readable failure reason from the worker (image_pull_failed, ...)
    reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    duration: Mapped[float | None] = mapped_column(Float)  # seconds the command ran
    output_files: Mapped[list[Any]] = mapped_column(JSON, default=list)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # what ran exactly
    scores: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # read by the worker


class Signal(Base):
    """A request to a worker about one execution; delivered until acknowledged."""

    __tablename__ = "signal"
    __table_args__ = (Index("ix_signal_worker_ack", "worker_id", "acknowledged_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    execution_id: Mapped[int] = mapped_column(ForeignKey("execution.id", ondelete="CASCADE"))
    worker_id: Mapped[int] = mapped_column(ForeignKey("worker.id", ondelete="CASCADE"))
    signal: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime)


class ApiToken(Base):
    """Only the SHA-256 of a token is stored; the token itself is shown once."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # admin|worker|enroll|participant|organizer
    worker_id: Mapped[int | None] = mapped_column(
        ForeignKey("worker.id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

