"""Container engines for worker tests against a real engine: one per worker name, and
the containers a worker left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scitq_bench.client.worker.container import LABEL_WORKER
from scitq_bench.client.worker.engine import Engine


def engine_for(docker_client: Any, tmp_path: Path, name: str, **options: Any) -> Engine:
    """An engine for worker ``name`` (its state under ``tmp_path``), quick to give up
    pulling."""
    settings = {"pull_attempts": 2, "pull_backoff": 0.1, **options}
    return Engine(docker_client, name, tmp_path / f"state-{name}", **settings)


def containers_of(docker_client: Any, worker: str) -> list[Any]:
    """The containers labelled as the worker's, stopped ones included."""
    return docker_client.containers.list(all=True, filters={"label": f"{LABEL_WORKER}={worker}"})
