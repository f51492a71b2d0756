"""The whole recruitment loop with the ``local`` provider: tasks are queued, the
recruiter hires worker processes (real workers, recruited and given back like
machines), they run every task once, sit idle, and are given back: nothing is left
running."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import select

from scitq_bench.server.db import Database
from scitq_bench.server.queue.models import Worker
from scitq_bench.server.recruit import catalog
from scitq_bench.server.recruit.models import Job
from scitq_bench.server.recruit.runtime import build
from tests.support.stack import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def recruitment(live_server: Any) -> Any:
    settings = dataclasses.replace(live_server.settings, public_url=live_server.url, recruitment={
        "interval": 0.3, "idle_timeout": 4, "idle_after_work": 1.5, "deploy_timeout": 60,
        "providers": {"local": {"grace_seconds": 5}},
    })
    db = Database(settings.database_url)
    runtime = build(settings, db, live_server.url)
    with db.write() as session:
        catalog.ensure_local_flavor(session, settings.data_dir)
    yield runtime, db
    runtime.engine.stop()
    with db.read() as session:  # whatever happened, leave no worker process behind
        names = list(session.scalars(select(Worker.name).where(Worker.permanent.is_(False))))
    for process in psutil.process_iter(["cmdline"]):
        if any(name in " ".join(process.info["cmdline"] or []) for name in names):
            process.kill()
    db.dispose()


def worker_processes(names: list[str]) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "worker" in cmdline and any(f"--name {name}" in cmdline for name in names):
            found.append(process)
    return found


def test_queue_to_workers_to_nothing_left(live_server, recruitment) -> None:
    runtime, db = recruitment
    client = live_server.client()
    answer = client._json("POST", "/recruiters", json={  # noqa: SLF001 - no client method yet
        "batch": "auto", "flavor": "local", "provider": "local", "region": "local",
        "concurrency": 2, "tasks_per_worker": 6, "maximum_workers": 2})
    assert answer["maximum_workers"] == 2
    tasks = client.tasks_create([{"command": "sleep 0.3", "batch": "auto"}
                                 for _ in range(12)])
    runtime.engine.start()
    done = client.join(tasks, timeout=120, interval=0.3)
    assert {t["status"] for t in done} == {"succeeded"}
    with db.read() as session:
        hired = list(session.scalars(select(Worker).where(Worker.permanent.is_(False))))
        names, ids = [w.name for w in hired], {w.id for w in hired}
        assert len(hired) == 2 and {w.provider for w in hired} == {"local"}
        assert all(w.recruiter_id is not None and w.instance_id for w in hired)
    runs = client.execution_list(batch="auto", limit=100)
    assert len(runs) == 12 and len({r["task_id"] for r in runs}) == 12  # each task once
    assert {r["worker_id"] for r in runs} <= ids
    # idle, then given back: records released, processes gone
    wait_until(lambda: all(w["released_at"] for w in _hired(db)), timeout=60,
               what="idle workers given back")
    wait_until(lambda: not worker_processes(names), timeout=30, what="worker processes gone")

    def job_rows() -> list[tuple[Any, ...]]:
        with db.read() as session:
            return [(j.kind, j.status, j.progress, j.error, j.log)
                    for j in session.scalars(select(Job).order_by(Job.id))]

    # a destroy job records the release first and its own end just after
    wait_until(lambda: all(j[1] in ("succeeded", "failed") for j in job_rows()), timeout=30,
               what="jobs ended")
    jobs = job_rows()
    kinds = [j[0] for j in jobs]
    assert kinds.count("deploy") == 2 and kinds.count("destroy") == 2
    assert {j[1] for j in jobs} == {"succeeded"}, jobs
    assert all(j[2] == 100 for j in jobs)
    local = runtime.runner.providers("local")
    assert local.list_owned() == []
    # more passes: nothing is hired again with no work left
    passes = counted_passes(runtime.engine)
    wait_until(lambda: len(passes) >= 2, timeout=30, what="two more recruitment passes")
    assert len(_hired(db)) == 2


def counted_passes(engine: Any) -> list[Any]:
    """The plans of the recruitment passes ``engine`` runs from now on."""
    plans: list[Any] = []
    run_once = engine.run_once

    def counted() -> Any:
        plans.append(run_once())
        return plans[-1]

    engine.run_once = counted
    return plans


def _hired(db: Database) -> list[dict[str, Any]]:
    with db.read() as session:
        return [{"name": w.name, "released_at": w.released_at}
                for w in session.scalars(select(Worker).where(Worker.permanent.is_(False)))]


def test_orphan_instances_are_found_and_deleted(live_server, recruitment) -> None:
    from scitq_bench.recruiters.providers.base import InstanceSpec

    runtime, _ = recruitment
    local = runtime.runner.providers("local")
    orphan = local.create(InstanceSpec(name="nobody-knows-me", flavor="local", region="local"))
    assert [i.instance_id for i in local.list_owned()] == [orphan.instance_id]
    found = runtime.engine.reconcile()
    assert found == [f"local/local/{orphan.instance_id} (nobody-knows-me)"]
    wait_until(lambda: local.state(orphan.instance_id, "local").status == "gone", timeout=30,
               what="the orphan gone")
    assert runtime.engine.reconcile() == []
