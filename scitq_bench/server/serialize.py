"""Models to JSON-ready dicts; never includes secrets."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from scitq_bench.server.queue.models import Batch, Execution, Signal, Worker
from scitq_bench.server.schemas import gpu_label


def iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def epoch(value: datetime) -> float:
    """Seconds since 1970 of a stored time (naive, in UTC): the x of a chart point."""
    return value.replace(tzinfo=timezone.utc).timestamp()


def task_dict(task: Any, requires: list[int] | None = None, batch_name: str | None = None) -> dict[str, Any]:
    return {
        "id": task.id,
        "name": task.name,
        "key": task.key,
        "batch": batch_name if batch_name is not None else task.batch.name,
        "status": task.status,
        "status_reason": task.status_reason,
        "command": task.command,
        "shell": task.shell,
        "container": task.container,
        "container_options": task.container_options,
        "network": bool(task.network),
        "layout": task.layout,
        "score_keys": task.score_keys,
        "inputs": task.inputs or [],
        "resources": task.resources or [],
        "output": task.output,
        "retry": task.retries_allowed,
        "retries_used": task.retries_used,
        "losses": task.losses,
        "download_timeout": task.download_timeout,
        "run_timeout": task.run_timeout,
        "cpu": task.cpu,
        "mem": task.mem,
        "gpu": gpu_label(task.gpu),
        "priority": task.priority,
        "requires": requires if requires is not None else [],
        "created_at": iso(task.created_at),
        "modified_at": iso(task.modified_at),
    }


def execution_dict(execution: Execution, log_sizes: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "id": execution.id,
        "task_id": execution.task_id,
        "worker_id": execution.worker_id,
        "attempt": execution.attempt,
        "status": execution.status,
        "return_code": execution.return_code,
        "error": execution.error,
        "reason": execution.reason,
        "scores": execution.scores,
        "created_at": iso(execution.created_at),
        "started_at": iso(execution.started_at),
        "finished_at": iso(execution.finished_at),
        "lease_deadline": iso(execution.lease_deadline),
        "duration": execution.duration,
        "output_files": execution.output_files or [],
        "snapshot": execution.snapshot or {},
        "log_sizes": log_sizes or {},
    }


def worker_dict(worker: Worker, live: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "id": worker.id,
        "name": worker.name,
        "hostname": worker.hostname,
        "status": worker.status,
        "concurrency": worker.concurrency,
        "prefetch": worker.prefetch,
        "batch": worker.batch.name if worker.batch else None,
        "cpus": worker.cpus,
        "mem_gb": worker.mem_gb,
        "gpus": worker.gpus,
        "gpu_model": worker.gpu_model,
        "gpu_mem_gb": worker.gpu_mem_gb,
        "containers": bool(worker.containers),
        "stats": worker.stats or {},
        "last_contact_at": iso(worker.last_contact_at),
        "created_at": iso(worker.created_at),
        "flavor": worker.flavor,
        "provider": worker.provider,
        "region": worker.region,
        "permanent": worker.permanent,
        "version": worker.version,
        "instance_id": worker.instance_id,
        "cost_per_hour": worker.cost_per_hour,
        "recruiter_id": worker.recruiter_id,
        "idle_since": iso(worker.idle_since),
        "released_at": iso(worker.released_at),
        "executions": live or {},
    }


def batch_dict(batch: Batch, summary: dict[str, Any] | None = None) -> dict[str, Any]:
    result = {
        "id": batch.id,
        "name": batch.name,
        "status": batch.status,
        "priority": batch.priority,
        "network": bool(batch.network),
        "budget": batch.budget,
        "created_at": iso(batch.created_at),
    }
    result.update(summary or {})
    return result


def signal_dict(signal: Signal | Any) -> dict[str, Any]:
    """A signal, from its model or a row with the same names."""
    return {"id": signal.id, "execution_id": signal.execution_id, "signal": signal.signal}
