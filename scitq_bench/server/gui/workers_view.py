"""What the workers and jobs pages show of a worker or a moment, worked out here so the
templates only lay it out (and tests can read the figures)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scitq_bench.server.queue.models import Worker, utcnow
from scitq_bench.server.serialize import epoch
from scitq_bench.states import ExecutionStatus as E


@dataclass(frozen=True)
class Moment:
    """A UTC time as a table shows it: text, how long ago, and a number to sort by."""

    text: str
    ago: str
    epoch: float

    def __str__(self) -> str:
        return self.text


def moment(value: datetime | None, now: datetime | None = None) -> Moment | None:
    if value is None:
        return None
    seconds = max(0.0, ((now or utcnow()) - value).total_seconds())
    return Moment(text=value.strftime("%Y-%m-%d %H:%M:%S"), ago=_ago(seconds),
                  epoch=epoch(value))


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def worker_row(worker: Worker, counts: dict[str, int], now: datetime | None = None) -> dict[str, Any]:
    """One worker with its machine, its load and its executions by status."""
    stats = worker.stats or {}
    return {
        "id": worker.id,
        "name": worker.name,
        "hostname": worker.hostname,
        "status": worker.status,
        "batch": worker.batch.name if worker.batch else None,
        "concurrency": worker.concurrency,
        "prefetch": worker.prefetch,
        "flavor": worker.flavor,
        "provider": worker.provider,
        "region": worker.region,
        "recruited": worker.provider is not None,
        "released": worker.released_at is not None,
        "permanent": worker.permanent,
        "cost_per_hour": worker.cost_per_hour,
        "cpus": worker.cpus,
        "load": stats.get("load1"),
        "cpu_percent": stats.get("cpu_percent"),
        "mem_gb": worker.mem_gb,
        "mem_percent": stats.get("mem_percent"),
        "mem_available_gb": stats.get("mem_available_gb"),
        "disk_percent": stats.get("disk_percent"),
        "disk_free_gb": stats.get("disk_free_gb"),
        "gpus": worker.gpus or 0,
        "gpu_model": worker.gpu_model,
        "gpu_mem_gb": worker.gpu_mem_gb,
        "containers": bool(worker.containers),
        "version": worker.version,
        "instance_id": worker.instance_id,
        "pending": counts.get(E.PENDING, 0),
        "accepted": counts.get(E.ACCEPTED, 0),
        "running": counts.get(E.RUNNING, 0),
        "succeeded": counts.get(E.SUCCEEDED, 0),
        "failed": counts.get(E.FAILED, 0) + counts.get(E.TIMEOUT, 0),
        "lost": counts.get(E.LOST, 0),
        "last_contact": moment(worker.last_contact_at, now),
        "created": moment(worker.created_at, now),
        "idle_since": moment(worker.idle_since, now),
        "released_at": moment(worker.released_at, now),
    }
