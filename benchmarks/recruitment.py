"""Recruitment against a simulated provider: cost versus its lower bound, makespan versus
the ideal, on a trace of mixed CPU and GPU tasks.

The server's own code decides (``recruit.engine.plan``, the catalog, protofilters,
claims and reports on a real SQLite database); only the machines are simulated, on a
simulated clock: they boot after a delay, some offers fail for capacity (and are
kept out for a while), spot machines are evicted at their rate, and every machine is
paid from its hiring to its release. Tasks run for their trace duration.

- cost lower bound: every task's hours priced at the cheapest flavor that fits it,
  per slot (the price divided by how many such tasks the flavor runs at once);
- ideal makespan: the longest task, or the work spread over the most slots the caps
  allow, whichever is longer, plus one boot.

    python -m benchmarks.recruitment --tasks 1200

Targets: cost within 1.25x of the lower bound; every task done exactly once; no
machine left running once the idle timeout passed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select  # noqa: E402

from scitq_bench.recruiters.protofilter import Offer  # noqa: E402
from scitq_bench.server.db import Database  # noqa: E402
from scitq_bench.server.migrate import upgrade  # noqa: E402
from scitq_bench.server.queue import reports, scheduling  # noqa: E402
from scitq_bench.server.queue.models import Batch, Execution, Task, Worker  # noqa: E402
from scitq_bench.server.recruit import catalog  # noqa: E402
from scitq_bench.server.recruit.engine import RecruitSettings, plan  # noqa: E402
from scitq_bench.server.recruit.models import Job, Recruiter  # noqa: E402
from scitq_bench.server.schemas import ExecutionEvent  # noqa: E402

FLAVORS = [  # (name, cpu, gpus, price per hour, spot eviction % per hour or None)
    ("c4", 4, 0, 0.20, None), ("c8", 8, 0, 0.38, None), ("c16", 16, 0, 0.74, None),
    ("c8-spot", 8, 0, 0.13, 3.0), ("g1", 8, 1, 1.00, None), ("g2", 16, 2, 1.95, None),
    ("g1-spot", 8, 1, 0.40, 4.0),
]
REGIONS = ("sim-a", "sim-b")
TASK_CPU, TASK_GPU = 2, 1


@dataclass
class Machine:
    worker_id: int
    flavor: str
    price: float
    spot: bool
    hired: datetime
    ready: datetime
    released: datetime | None = None
    running: dict[int, datetime] = field(default_factory=dict)  # execution -> ends at


def offers() -> list[Offer]:
    found = []
    for region_index, region in enumerate(REGIONS):
        for name, cpu, gpus, price, eviction in FLAVORS:
            found.append(Offer(
                provider="sim", region=region, flavor=name, cpu=cpu, ram_gb=cpu * 4.0,
                disk_gb=100, gpu_count=gpus, gpu_model="T4" if gpus else None,
                gpu_mem_gb=16.0 * gpus, tags="G" if gpus else "",
                cost=round(price * (1.0 + 0.05 * region_index), 4), eviction=eviction))
    return found


def trace(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """Mixed work: 80% CPU tasks of 2-15 min, 20% GPU tasks of 5-30 min."""
    tasks = []
    for _ in range(count):
        if rng.random() < 0.2:
            tasks.append({"batch": "gpu", "cpu": TASK_CPU, "gpu": TASK_GPU,
                          "seconds": rng.randint(300, 1800)})
        else:
            tasks.append({"batch": "cpu", "cpu": TASK_CPU, "gpu": 0,
                          "seconds": rng.randint(120, 900)})
    return tasks


def lower_bound(tasks: list[dict[str, Any]]) -> float:
    """Task-hours at the cheapest per-slot price of a flavor that fits each task."""
    total = 0.0
    for task in tasks:
        per_slot = []
        for offer in offers():
            if task["gpu"] and offer.gpu_count < task["gpu"]:
                continue
            if offer.eviction is not None and offer.eviction > 5:
                continue
            slots = offer.cpu // task["cpu"]
            if task["gpu"]:
                slots = min(slots, offer.gpu_count // task["gpu"])
            if slots:
                per_slot.append((offer.cost or 0) / slots)
        total += task["seconds"] / 3600 * min(per_slot)
    return total


def ideal_makespan(tasks: list[dict[str, Any]], max_workers: int) -> float:
    """Per batch, its work over the most slots its cap allows on the flavor holding the
    most of its tasks (or its longest task); the slowest batch sets the end."""
    ends = []
    for batch in {t["batch"] for t in tasks}:
        mine = [t for t in tasks if t["batch"] == batch]
        need_gpu = max(t["gpu"] for t in mine)
        best = 0
        for offer in offers():
            slots = offer.cpu // TASK_CPU
            if need_gpu:
                slots = min(slots, offer.gpu_count // need_gpu)
            best = max(best, slots)
        ends.append(max(max(t["seconds"] for t in mine),
                        sum(t["seconds"] for t in mine) / (best * max_workers)))
    return max(ends)


def simulate(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    tasks = trace(args.tasks, rng)
    with tempfile.TemporaryDirectory(prefix="scitq-bench-recruit-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'sim.db'}"
        upgrade(url)
        db = Database(url)
        try:
            return _run(db, tasks, rng, args)
        finally:
            db.dispose()


def _run(db: Database, tasks: list[dict[str, Any]], rng: random.Random,
         args: argparse.Namespace) -> dict[str, Any]:
    durations: dict[int, int] = {}
    with db.write() as session:
        catalog.upsert_offers(session, "sim", offers())
        for name, flavor, per_worker in (("cpu", "auto:cpu>=4", args.tasks_per_worker),
                                         ("gpu", "auto:tags#G", args.tasks_per_gpu_worker)):
            batch = Batch(name=name)
            session.add(batch)
            session.flush()
            session.add(Recruiter(batch_id=batch.id, rank=1, flavor=flavor, provider="sim",
                                  region="auto", tasks_per_worker=per_worker,
                                  maximum_workers=args.max_workers))
            for task in (t for t in tasks if t["batch"] == name):
                row = Task(batch_id=batch.id, command="simulated", cpu=task["cpu"],
                           gpu=task["gpu"], status="pending")
                session.add(row)
                session.flush()
                durations[row.id] = task["seconds"]
    settings = RecruitSettings(idle_timeout=args.idle_timeout, idle_after_work=args.idle_timeout)
    start = now = datetime(2030, 1, 1)
    step = timedelta(seconds=args.step)
    machines: dict[int, Machine] = {}
    deploys: dict[int, int] = {}  # worker -> its deploy job, until the machine is up
    capacity_failures = evictions = 0
    done_at = None
    while True:
        with db.write() as session:
            result = plan(session, settings, now=now)
            for job_id in result.deploy_jobs:
                job = session.get(Job, job_id)
                worker = session.get(Worker, job.worker_id)
                if rng.random() < args.capacity_failure:
                    capacity_failures += 1
                    catalog.exclude(session, "sim", worker.region, worker.flavor,
                                    now + timedelta(minutes=30))
                    worker.status, worker.released_at, job.status = "failed", now, "failed"
                    continue
                boot = timedelta(seconds=rng.randint(args.boot_min, args.boot_max))
                machines[worker.id] = Machine(worker.id, worker.flavor, worker.cost_per_hour or 0,
                                              job.arguments.get("spot", False), now, now + boot)
                job.status = "running"
                deploys[worker.id] = job.id
            for job_id in result.destroy_jobs:
                job = session.get(Job, job_id)
                machine = machines.get(job.worker_id)
                if machine is not None and machine.released is None:
                    machine.released = now
                session.get(Worker, job.worker_id).released_at = now
                job.status = "succeeded"
        for machine in machines.values():
            if machine.released is not None:
                continue
            if now >= machine.ready:
                if machine.worker_id in deploys:  # booted: the deploy job is done
                    with db.write() as session:
                        session.get(Job, deploys.pop(machine.worker_id)).status = "succeeded"
                _work(db, machine, now, durations, args)
            if machine.spot and now >= machine.ready and \
                    rng.random() < args.eviction_scale * 0.03 * args.step / 3600:
                evictions += 1
                _evict(db, machine, now)
        with db.read() as session:
            left = session.scalar(select(func.count()).select_from(Task).where(
                Task.status != "succeeded"))
            live = sum(1 for m in machines.values() if m.released is None)
        if left == 0 and done_at is None:
            done_at = now
        if done_at is not None and live == 0:
            break
        if now - start > timedelta(hours=args.max_hours):
            break
        now += step
    end = now
    with db.read() as session:
        runs = session.execute(select(Execution.task_id).where(
            Execution.status == "succeeded")).scalars().all()
    cost = sum(((m.released or end) - m.hired).total_seconds() / 3600 * m.price
               for m in machines.values())
    bound = lower_bound(tasks)
    ideal = ideal_makespan(tasks, args.max_workers) + args.boot_max
    makespan = ((done_at or end) - start).total_seconds()
    idle_limit = args.idle_timeout + 2 * args.step
    return {
        "tasks": len(tasks), "machines": len(machines), "capacity_failures": capacity_failures,
        "evictions": evictions, "cost": round(cost, 2), "cost_lower_bound": round(bound, 2),
        "cost_ratio": round(cost / bound, 3), "makespan_h": round(makespan / 3600, 2),
        "ideal_makespan_h": round(ideal / 3600, 2), "makespan_ratio": round(makespan / ideal, 3),
        "every_task_once": len(runs) == len(tasks) == len(set(runs)),
        "left_running": sum(1 for m in machines.values() if m.released is None),
        "released_within_idle_timeout": done_at is not None and
        (end - done_at).total_seconds() <= idle_limit,
    }


def _work(db: Database, machine: Machine, now: datetime, durations: dict[int, int],
          args: argparse.Namespace) -> None:
    """The simulated worker: report what ended, claim what fits."""
    ended = [e for e, end in machine.running.items() if end <= now]
    with db.write() as session:
        worker = session.get(Worker, machine.worker_id)
        if worker.last_contact_at is None:
            worker.status = "running"
        worker.last_contact_at = now
    if ended:
        events = []
        with db.read() as session:
            tasks = dict(session.execute(select(Execution.id, Execution.task_id).where(
                Execution.id.in_(ended))).all())
        for execution_id in ended:
            events.append(ExecutionEvent(execution_id=execution_id, status="succeeded",
                                         return_code=0,
                                         duration=float(durations[tasks[execution_id]])))
            del machine.running[execution_id]
        reports.report(db, machine.worker_id, events)
    with db.read() as session:
        concurrency = session.scalar(select(Worker.concurrency).where(
            Worker.id == machine.worker_id)) or 1
    room = concurrency - len(machine.running)
    if room > 0:
        for payload in scheduling.claim(db, machine.worker_id, room, lease_seconds=1e9):
            machine.running[payload["execution_id"]] = now + timedelta(
                seconds=durations[payload["task_id"]])


def _evict(db: Database, machine: Machine, now: datetime) -> None:
    from scitq_bench.server.queue import workers

    with db.write() as session:
        workers.evict(session, machine.worker_id, "simulated spot interruption")
    machine.running.clear()
    machine.released = now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1200)
    parser.add_argument("--max-workers", type=int, default=12, help="per batch")
    parser.add_argument("--tasks-per-worker", type=int, default=20,
                        help="the CPU recruiter's: one machine per this many pending tasks")
    parser.add_argument("--tasks-per-gpu-worker", type=int, default=5,
                        help="the GPU recruiter's")
    parser.add_argument("--idle-timeout", type=int, default=300, help="seconds")
    parser.add_argument("--boot-min", type=int, default=60)
    parser.add_argument("--boot-max", type=int, default=180)
    parser.add_argument("--capacity-failure", type=float, default=0.1,
                        help="chance a hire fails for capacity")
    parser.add_argument("--eviction-scale", type=float, default=1.0,
                        help="multiplies the spot offers' eviction rate")
    parser.add_argument("--step", type=int, default=15, help="simulated seconds per step")
    parser.add_argument("--max-hours", type=float, default=48)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = simulate(args)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{figures['tasks']} tasks (80% CPU 2-15 min, 20% GPU 5-30 min), {figures['machines']} "
          f"machines hired, {figures['capacity_failures']} capacity failures, "
          f"{figures['evictions']} spot evictions")
    print(f"cost: {figures['cost']:.2f} vs lower bound {figures['cost_lower_bound']:.2f}: "
          f"{figures['cost_ratio']:.3f}x (target <= 1.25x)")
    print(f"makespan: {figures['makespan_h']:.2f} h vs ideal {figures['ideal_makespan_h']:.2f} h: "
          f"{figures['makespan_ratio']:.3f}x")
    print(f"every task done once: {figures['every_task_once']}; machines left running: "
          f"{figures['left_running']}; all given back within the idle timeout: "
          f"{figures['released_within_idle_timeout']}")


if __name__ == "__main__":
    main()
