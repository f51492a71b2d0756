"""Autoscaling: every few seconds, look at the queue and the machines, and act.

One pass (``plan``), in one transaction:

1. idleness: a recruited worker holding no execution is idle since then;
2. for each running batch with pending work, its recruiters in rank order top up to
   what they want (a worker per ``tasks_per_worker`` pending tasks, at most
   ``maximum_workers`` alive), first by recycling idle recruited workers of other
   batches whose flavor fits, then by hiring the cheapest offer that fits (protofilter
   or flavor name, provider, region, quotas, exclusions), within the global caps on
   workers and spend per hour and the batch's budget; recruiters sharing a
   ``workflow`` keep at most its ``workflow_maximum_workers`` alive together: an idle
   worker of another of its steps is passed along first (the count stays), and one
   from outside, recycled or hired, only under that cap;
3. idle workers nobody needs are given back after the idle timeout (shorter once they
   have worked).

Hiring and giving back are jobs (``jobs.JobRunner``), started after the commit.

The loop runs in one process: inside the server (``start``), or in the leader of the
background processes (``start_leading``: see ``server/background.py``), which also
picks up the jobs other processes queued. On PostgreSQL a plan holds an advisory lock
for its transaction, so that two processes never plan at once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scitq_bench.recruiters import protofilter as pf
from scitq_bench.server.db import Database
from scitq_bench.server.leader import exclusive_plan
from scitq_bench.server.notify import JOBS, Notifier
from scitq_bench.server.queue import transitions
from scitq_bench.server.queue.costs import batch_cost
from scitq_bench.server.queue.models import Batch, Execution, Task, Worker, utcnow
from scitq_bench.server.recruit import catalog
from scitq_bench.server.recruit.jobs import (
    DEPLOY,
    DESTROY,
    JobRunner,
    append_log,
    holding_cancelled,
)
from scitq_bench.server.recruit.models import Flavor, FlavorMetric, Job, Recruiter
from scitq_bench.server.recruit.transitions import move_job
from scitq_bench.states import (
    LIVE_EXECUTION_VALUES,
    LIVE_JOB_VALUES,
    BatchStatus,
    InstanceStatus,
    TaskStatus,
    WorkerStatus,
)
from scitq_bench.states import JobStatus as J

log = logging.getLogger("scitq_bench.recruit")

ANY_FLAVOR = "eviction>=0:tags~%"  # mentions both: lifts the default filters
PICK_UP = 1.0  # seconds between the leader's looks for jobs other processes queued
DESTROY_ATTEMPTS = 3  # an interrupted destroy runs again until it was tried so often


@dataclass
class RecruitSettings:
    interval: float = 5.0
    idle_timeout: float = 600.0  # a recruited worker that never worked
    idle_after_work: float = 120.0  # one that has worked and has nothing left
    max_workers: int | None = None  # recruited workers alive at once, all batches
    max_cost_per_hour: float | None = None  # their summed price
    # providers this server has settings for (None: any in the catalog); an offer of
    # another one could be listed but never deployed
    providers: frozenset[str] | None = None


@dataclass
class Plan:
    deploy_jobs: list[int] = field(default_factory=list)
    destroy_jobs: list[int] = field(default_factory=list)
    recycled: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def alive(query: Any) -> Any:
    """Recruited workers (machines we hired: not ``permanent``) that exist: not given
    back, not failed or evicted. They count toward caps and maximums."""
    return query.where(Worker.permanent.is_(False), Worker.released_at.is_(None),
                       Worker.status.notin_(catalog.GONE_STATUSES))


def plan(session: Session, settings: RecruitSettings, now: datetime | None = None) -> Plan:
    now = now or utcnow()
    result = Plan()
    busy = _mark_idleness(session, now)
    for batch in session.scalars(select(Batch).where(Batch.status == BatchStatus.RUNNING.value)
                                 .order_by(Batch.priority.desc(), Batch.id)):
        recruiters = list(session.scalars(select(Recruiter).where(
            Recruiter.batch_id == batch.id).order_by(Recruiter.rank)))
        if recruiters:
            _staff(session, batch, recruiters, settings, now, result)
    _give_back_idle(session, settings, now, busy, result)
    _release_evicted(session, result)
    return result


def _release_evicted(session: Session, result: Plan) -> None:
    """A reclaimed spot machine is gone or going: make sure, and close its record."""
    for worker in session.scalars(select(Worker).where(
            Worker.permanent.is_(False), Worker.released_at.is_(None),
            Worker.status == WorkerStatus.EVICTED.value)):
        if session.scalar(select(func.count()).select_from(Job).where(
                Job.worker_id == worker.id, Job.kind == DESTROY)):
            continue
        result.destroy_jobs.append(destroy(session, worker, "evicted by its provider").id)


def _mark_idleness(session: Session, now: datetime) -> set[int]:
    """Set or clear ``idle_since``; returns the ids of workers holding executions."""
    busy = {worker_id for worker_id in session.scalars(select(Execution.worker_id).where(
        Execution.status.in_(LIVE_EXECUTION_VALUES), Execution.worker_id.is_not(None)))
        if worker_id is not None}  # none is: the query leaves them out
    for worker in session.scalars(alive(select(Worker))):
        if worker.id in busy:
            worker.idle_since = None
        elif worker.idle_since is None and worker.last_contact_at is not None:
            worker.idle_since = now
    return busy


def _pending(session: Session, batch_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Task).where(
        Task.batch_id == batch_id, Task.status == TaskStatus.PENDING.value)) or 0


def _staff(session: Session, batch: Batch, recruiters: list[Recruiter],
           settings: RecruitSettings, now: datetime, result: Plan) -> None:
    remaining = _pending(session, batch.id)
    for recruiter in recruiters:
        if remaining <= 0 or remaining < recruiter.minimum_tasks:
            return
        have = session.scalar(alive(select(func.count()).select_from(Worker)).where(
            Worker.recruiter_id == recruiter.id)) or 0
        per = recruiter.tasks_per_worker
        wanted = recruiter.maximum_workers if not per else min(
            recruiter.maximum_workers, math.ceil(remaining / per))
        need = max(0, wanted - have)
        remaining -= (have + need) * per if per else remaining
        for _ in range(need):
            if not _take_one(session, batch, recruiter, settings, now, result):
                break


def _take_one(session: Session, batch: Batch, recruiter: Recruiter,
              settings: RecruitSettings, now: datetime, result: Plan) -> bool:
    """One more worker for the recruiter: recycled or hired. In a workflow, an idle
    worker of one of its other steps comes first (passing it along keeps the count),
    and a worker from outside, recycled or hired, only under the workflow's cap."""
    if recruiter.workflow is None:
        return _recycle(session, batch, recruiter, result) or \
            _hire(session, batch, recruiter, settings, now, result)
    if _recycle(session, batch, recruiter, result, within=recruiter.workflow):
        return True
    cap = _workflow_cap(session, recruiter.workflow)
    if cap is not None and _workflow_workers(session, recruiter.workflow) >= cap:
        result.notes.append(f"batch {batch.name}, recruiter {recruiter.rank}: workflow "
                            f"{recruiter.workflow} has its {cap} worker(s)")
        return False
    return _recycle(session, batch, recruiter, result) or \
        _hire(session, batch, recruiter, settings, now, result)


def _workflow_recruiters(workflow: str) -> Any:
    return select(Recruiter.id).where(Recruiter.workflow == workflow)


def _workflow_cap(session: Session, workflow: str) -> int | None:
    """The smallest cap its recruiters state (None: none states one)."""
    return session.scalar(select(func.min(Recruiter.workflow_maximum_workers))
                          .where(Recruiter.workflow == workflow))


def _workflow_workers(session: Session, workflow: str) -> int:
    """Recruited workers alive for any recruiter of the workflow."""
    return session.scalar(alive(select(func.count()).select_from(Worker)).where(
        Worker.recruiter_id.in_(_workflow_recruiters(workflow)))) or 0


def _spec(recruiter: Recruiter) -> tuple[pf.Protofilter | None, str | None]:
    """(protofilter, flavor name): one of them says what fits."""
    if recruiter.flavor.startswith("auto"):
        return pf.parse(recruiter.flavor, require_auto=True), None
    return None, recruiter.flavor


def _where(value: str | None) -> str | None:
    return None if value in (None, "", "auto") else value


def _recycle(session: Session, batch: Batch, recruiter: Recruiter, result: Plan,
             within: str | None = None) -> bool:
    """Give this batch an idle recruited worker of another batch whose flavor fits
    (``within``: one serving a recruiter of that workflow)."""
    protofilter, name = _spec(recruiter)
    query = alive(select(Worker)).where(
        Worker.idle_since.is_not(None), Worker.status == WorkerStatus.RUNNING.value,
        (Worker.batch_id != batch.id) | Worker.batch_id.is_(None))
    if within is not None:
        query = query.where(Worker.recruiter_id.in_(_workflow_recruiters(within)))
    candidates = session.scalars(query.order_by(Worker.idle_since))
    for worker in candidates:
        if _where(recruiter.provider) not in (None, worker.provider):
            continue
        if _where(recruiter.region) not in (None, worker.region):
            continue
        offer = offer_of(session, worker)
        fits = (offer is not None and protofilter.matches(offer)) if protofilter else \
            worker.flavor == name
        if not fits:
            continue
        worker.batch_id, worker.recruiter_id = batch.id, recruiter.id
        worker.concurrency = recruiter.concurrency or _derived_concurrency(session, batch,
                                                                            offer)
        worker.prefetch, worker.idle_since = recruiter.prefetch, None
        result.recycled.append(worker.id)
        result.notes.append(f"recycled worker {worker.name} for batch {batch.name}")
        return True
    return False


def offer_of(session: Session, worker: Worker) -> pf.Offer | None:
    """The catalog's description of the machine a worker runs on."""
    row = session.execute(
        select(Flavor, FlavorMetric).join(FlavorMetric, FlavorMetric.flavor_id == Flavor.id)
        .where(Flavor.provider == worker.provider, Flavor.name == worker.flavor,
               FlavorMetric.region == worker.region)).first()
    return None if row is None else catalog.offer_from(*row)


@dataclass(frozen=True)
class Refusal:
    """Why no machine is hired, and which field of a deploy request it is about (a
    form shows it there)."""

    reason: str
    field: str = "flavor"

    def __str__(self) -> str:
        return self.reason


def _hire(session: Session, batch: Batch, recruiter: Recruiter, settings: RecruitSettings,
          now: datetime, result: Plan) -> bool:
    outcome = hire(session, settings, batch=batch, flavor=recruiter.flavor,
                   provider=recruiter.provider, region=recruiter.region,
                   concurrency=recruiter.concurrency, prefetch=recruiter.prefetch,
                   recruiter=recruiter, now=now)
    if isinstance(outcome, Refusal):
        result.notes.append(f"batch {batch.name}, recruiter {recruiter.rank}: {outcome}")
        return False
    result.deploy_jobs.append(outcome.id)
    return True


def hire(session: Session, settings: RecruitSettings, *, batch: Batch | None, flavor: str,
         provider: str, region: str, concurrency: int | None, prefetch: int,
         recruiter: Recruiter | None = None, now: datetime | None = None,
         name: str | None = None, permanent: bool = False) -> Job | Refusal:
    """Choose the cheapest offer that fits and queue its deploy: the worker row first
    (so no machine ever lacks a record), then the job. Returns the job, or why not."""
    now = now or utcnow()
    reason = _within_caps(session, batch, settings) or _unknown(session, flavor, provider,
                                                                region)
    if reason:
        return reason
    if settings.providers is not None and _where(provider) not in (None, *settings.providers):
        return Refusal(f"provider {provider!r} is not configured on this server (configured: "
                       f"{', '.join(sorted(settings.providers))}; see docs/recruitment.md)",
                       "provider")
    named = not flavor.startswith("auto")
    # a flavor asked by name is wanted whatever the default filters (metal, spot) say
    protofilter = pf.parse(ANY_FLAVOR if named else flavor, require_auto=not named)
    offers = catalog.find_offers(session, protofilter=protofilter, provider=_where(provider),
                                 region=_where(region), now=now)
    if named:
        offers = [o for o in offers if o.flavor == flavor]
    if settings.providers is not None:
        offers = [o for o in offers if o.provider in settings.providers]
    if settings.max_cost_per_hour is not None:
        spent = _hourly_spend(session)
        offers = [o for o in offers if spent + (o.cost or 0) <= settings.max_cost_per_hour]
    if not offers:
        return Refusal(f"no offer fits {flavor} ({provider}/{region}): nothing matches, or "
                       "quotas, exclusions after capacity failures, or the spend cap leave "
                       "none")
    offer = offers[0]
    label = batch.name if batch is not None else "pool"
    if name is not None and session.scalar(select(Worker.id).where(Worker.name == name)):
        return Refusal(f"a worker named {name!r} exists already", "name")
    worker = Worker(
        name=name or f"{label}-{offer.provider}-{uuid.uuid4().hex[:8]}",
        status=WorkerStatus.OFFLINE.value,
        batch_id=batch.id if batch is not None else None,
        recruiter_id=recruiter.id if recruiter is not None else None,
        provider=offer.provider, region=offer.region, flavor=offer.flavor,
        cost_per_hour=offer.cost, cpus=offer.cpu, mem_gb=offer.ram_gb, gpus=offer.gpu_count,
        permanent=permanent, prefetch=prefetch, stats={},
        concurrency=concurrency or _derived_concurrency(session, batch, offer),
    )
    session.add(worker)
    session.flush()
    job = Job(kind=DEPLOY, worker_id=worker.id, status=J.PENDING.value, arguments={
        "name": worker.name, "provider": offer.provider, "region": offer.region,
        "flavor": offer.flavor, "tags": offer.tags,
        "spot": offer.spot or offer.eviction is not None,
        "concurrency": worker.concurrency, "prefetch": worker.prefetch, "batch": label,
    }, log=f"deploy {offer.flavor} ({offer.provider}/{offer.region}, "
            f"{offer.cost if offer.cost is not None else '?'}/h) for {label}\n")
    session.add(job)
    session.flush()
    return job


def _unknown(session: Session, flavor: str, provider: str, region: str) -> Refusal | None:
    """What the catalog has never heard of, named, with what it knows instead."""
    providers = sorted(set(session.scalars(select(Flavor.provider))))
    if _where(provider) and provider not in providers:
        return Refusal(f"unknown provider {provider!r}: the catalog has none of its flavors "
                       f"(providers: {', '.join(providers) or 'none'}; run `flavor update`)",
                       "provider")
    where = select(FlavorMetric.region).join(Flavor)
    if _where(provider):
        where = where.where(Flavor.provider == provider)
    if _where(region):
        regions = sorted(set(session.scalars(where)))
        if region not in regions:
            return Refusal(f"unknown region {region!r} for {provider}: regions "
                           f"{', '.join(regions)}", "region")
    if not flavor.startswith("auto"):
        names = select(Flavor.name).where(Flavor.name == flavor)
        if _where(provider):
            names = names.where(Flavor.provider == provider)
        if session.scalar(names) is None:
            return Refusal(f"unknown flavor {flavor!r} for {provider} (see `flavor list`)")
    return None


def _within_caps(session: Session, batch: Batch | None,
                 settings: RecruitSettings) -> Refusal | None:
    """Why no machine may be hired now, if so."""
    if settings.max_workers is not None:
        count = session.scalar(alive(select(func.count()).select_from(Worker))) or 0
        if count >= settings.max_workers:
            return Refusal(f"the global cap of {settings.max_workers} workers is reached",
                           "_form")
    if batch is not None and batch.budget is not None and \
            batch_cost(session, batch.id) >= batch.budget:
        return Refusal(f"batch {batch.name} has spent its budget of {batch.budget:g}", "batch")
    return None


def _hourly_spend(session: Session) -> float:
    spent = session.scalar(alive(select(func.coalesce(func.sum(Worker.cost_per_hour), 0.0))))
    return float(spent or 0.0)


def _derived_concurrency(session: Session, batch: Batch | None, offer: Any) -> int:
    """As many of the batch's most demanding pending tasks as the flavor holds (cpu,
    memory, GPUs), at least one; without needs stated, one per CPU."""
    if offer is None:
        return 1
    if batch is None:
        return max(1, offer.cpu)
    need = session.execute(select(func.max(Task.cpu), func.max(Task.mem), func.max(Task.gpu))
                           .where(Task.batch_id == batch.id,
                                  Task.status == TaskStatus.PENDING.value)).one()
    limits = [offer.cpu // need[0] if need[0] else offer.cpu]
    if need[1]:
        limits.append(int(offer.ram_gb // need[1]))
    if need[2] and need[2] > 0:
        limits.append(offer.gpu_count // need[2])
    return max(1, min(limits))


def _give_back_idle(session: Session, settings: RecruitSettings, now: datetime,
                    busy: set[int], result: Plan) -> None:
    worked = set(session.scalars(select(Execution.worker_id).where(
        Execution.worker_id.is_not(None)).distinct()))
    for worker in session.scalars(alive(select(Worker)).where(
            Worker.idle_since.is_not(None), Worker.permanent.is_(False))):
        if worker.id in busy or worker.id in result.recycled:
            continue
        timeout = settings.idle_after_work if worker.id in worked else settings.idle_timeout
        if worker.idle_since + timedelta(seconds=timeout) > now:
            continue
        if session.scalar(select(func.count()).select_from(Job).where(
                Job.worker_id == worker.id, Job.status.in_(LIVE_JOB_VALUES))):
            continue
        result.destroy_jobs.append(destroy(session, worker, "idle").id)
        result.notes.append(f"giving back idle worker {worker.name}")


def destroy(session: Session, worker: Worker, why: str) -> Job:
    """Stop giving the worker work, and queue the job that gives its machine back."""
    if worker.status == WorkerStatus.RUNNING.value:
        transitions.move_worker(session, worker.id, WorkerStatus.PAUSED)
    deployed = session.scalar(select(Job.arguments).where(
        Job.worker_id == worker.id, Job.kind == DEPLOY).order_by(Job.id.desc()).limit(1))
    job = Job(kind=DESTROY, worker_id=worker.id, status=J.PENDING.value, arguments={
        "name": worker.name, "provider": worker.provider, "region": worker.region,
        "instance_id": worker.instance_id, "address": (deployed or {}).get("address"),
    }, log=f"destroy {worker.name} ({why})\n")
    session.add(job)
    session.flush()
    return job


def reconcile(db: Database, providers: Callable[[str], Any], names: list[str]) -> list[str]:
    """Instances carrying our tag that no live worker record knows (by name or instance
    id): a crash between hiring and recording, or a record deleted by hand. They are
    deleted, and reported."""
    with db.read() as session:
        rows = session.execute(select(Worker.name, Worker.instance_id).where(
            Worker.released_at.is_(None))).all()
    known_names = {r.name for r in rows}
    known_ids = {r.instance_id for r in rows if r.instance_id}
    orphans = []
    for name in names:
        provider = providers(name)
        for instance in provider.list_owned():
            if instance.status == InstanceStatus.GONE or instance.name in known_names or \
                    instance.instance_id in known_ids:
                continue
            orphans.append(f"{name}/{instance.region}/{instance.instance_id} ({instance.name})")
            try:
                provider.delete(instance.instance_id, instance.region)
            except Exception as exc:  # noqa: BLE001 - report it, try the others
                log.warning("could not delete orphan %s: %s", orphans[-1], exc)
    if orphans:
        log.warning("deleted %d orphan instance(s): %s", len(orphans), ", ".join(orphans))
    return orphans


class Engine:
    """The loop: plans in the database, then hands jobs to the runner."""

    def __init__(self, db: Database, runner: JobRunner, settings: RecruitSettings,
                 refresh_catalogs: Callable[[], None] | None = None,
                 catalog_interval: float = 6 * 3600.0,
                 reconcile: Callable[[], list[str]] | None = None,
                 reconcile_interval: float = 600.0) -> None:
        self.db, self.runner, self.settings = db, runner, settings
        self.refresh_catalogs = refresh_catalogs
        self.catalog_interval = catalog_interval
        self._last_refresh = 0.0
        self.reconcile = reconcile
        self.reconcile_interval = reconcile_interval
        self._last_reconcile = time.monotonic()  # not at start: deploys may be recovering
        self.leading: Callable[[], bool] | None = None  # set when it runs for a leader
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def recover(self) -> None:
        """At start or takeover: jobs an earlier process left running were cut short:
        fail them, and give back what their deploys created; run an interrupted destroy
        again. A job cancelled while it ran whose machine was not given back yet (the
        server stopped in between) gets a destroy job too. Pending jobs start."""
        with self.db.write() as session:
            self._interrupt(session, lambda: ())  # none is this process's yet
            held = session.execute(holding_cancelled(Job, Worker)).all()
            for job, worker in held:
                destroy(session, worker, f"job {job.id} was cancelled before its machine "
                                         "was given back")
            pending = list(session.scalars(select(Job.id).where(Job.status == J.PENDING.value)))
        for job_id in pending:
            self.runner.submit(job_id)

    def recover_strays(self, keep: Callable[[], Collection[int]]) -> None:
        """A leader's later passes: running jobs ``keep`` does not name were left by
        another process (a leader that resumed from a freeze, for a moment): they were
        interrupted. Pending jobs are the pick-up's."""
        with self.db.write() as session:
            self._interrupt(session, keep)

    def _interrupt(self, session: Session, keep: Callable[[], Collection[int]]) -> None:
        """Take the running jobs ``keep`` does not name for interrupted. ``keep`` is
        read once they are locked, so a job that starts meanwhile is never taken for
        one."""
        running = list(session.scalars(self.db.lock_for_update(
            select(Job).where(Job.status == J.RUNNING.value))))
        mine = set(keep())
        for job in running:
            if job.id not in mine:
                _interrupted(session, job)

    def run_once(self) -> Plan:
        with self.db.write() as session:
            exclusive_plan(session)
            if self.leading is not None and not self.leading():
                return Plan()  # it lost its lead while it waited for the lock
            result = plan(session, self.settings)
        for job_id in result.deploy_jobs + result.destroy_jobs:
            self.runner.submit(job_id)
        for note in result.notes:
            log.info("recruitment: %s", note)
        return result

    def run_forever(self) -> None:
        while not self._stop.wait(self.settings.interval):
            self._maybe_refresh_catalogs()
            self._last_reconcile = _run_if_due(self.reconcile, self._last_reconcile,
                                               self.reconcile_interval, "reconciling instances")
            try:
                self.run_once()
            except Exception:  # keep recruiting through transient errors
                log.exception("recruitment pass failed")

    def _maybe_refresh_catalogs(self) -> None:
        """The providers' flavors and prices, on a schedule (they change slowly)."""
        self._last_refresh = _run_if_due(self.refresh_catalogs, self._last_refresh,
                                         self.catalog_interval, "catalog refresh")

    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self.run_forever, name="recruiter", daemon=True)
        self._thread.start()

    def start_leading(self, leading: Callable[[], bool], notifier: Notifier | None = None,
                      tick: float = PICK_UP) -> None:
        """The loop of the background processes' leader: recover what the previous
        leader left, then every ``tick`` seconds (at once when ``notifier`` wakes
        ``JOBS``) pick up the jobs other processes queued, and plan every
        ``interval``. ``leading`` is asked before each pass, and in the plan's
        transaction once it holds the plan's lock: a pass never runs in a process that
        lost its lead."""
        self.leading = leading
        self._thread = threading.Thread(target=self._lead, args=(leading, notifier, tick),
                                        name="recruiter", daemon=True)
        self._thread.start()

    def _lead(self, leading: Callable[[], bool], notifier: Notifier | None,
              tick: float) -> None:
        while not self._stop.is_set():
            try:
                if leading():
                    self.recover()
                break
            except Exception:  # the database is away: try again
                log.exception("recovering jobs failed")
                self._stop.wait(tick)
        planned = time.monotonic() - self.settings.interval  # plan at once
        while not self._stop.is_set():
            seen = notifier.version(JOBS) if notifier is not None else 0
            if not leading():
                return
            try:
                self.runner.pick_up()
                if time.monotonic() - planned >= self.settings.interval:
                    planned = time.monotonic()
                    self._pass(self.runner.running)
            except Exception:  # keep recruiting through transient errors
                log.exception("recruitment pass failed")
            if notifier is not None:
                notifier.wait(JOBS, seen, tick)
            else:
                self._stop.wait(tick)

    def _pass(self, keep: Callable[[], Collection[int]]) -> None:
        """One leader's pass: side jobs when due, jobs some other process left running
        (a leader that resumed from a freeze, for a moment), then the plan."""
        self._maybe_refresh_catalogs()
        self._last_reconcile = _run_if_due(self.reconcile, self._last_reconcile,
                                           self.reconcile_interval, "reconciling instances")
        self.recover_strays(keep)
        self.run_once()

    def stop(self, abandon: bool = False) -> None:
        """Stop the loop and the runner; with ``abandon`` (the lead is lost), running
        jobs stop where they stand, left to the next leader."""
        self._stop.set()
        if abandon:
            self.runner.abandon()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.runner.shutdown()


def _interrupted(session: Session, job: Job) -> None:
    """A job whose process stopped or lost its lead while it ran: a deploy fails and its
    machine is given back; a destroy runs again (up to ``DESTROY_ATTEMPTS`` tries)."""
    if job.kind == DESTROY and job.attempts < DESTROY_ATTEMPTS:
        if move_job(session, job.id, J.PENDING, only_from=[J.RUNNING]):
            append_log(session, job.id, "interrupted (its server stopped or lost its lead); "
                                        "it runs again")
        return
    if not move_job(session, job.id, J.FAILED, only_from=[J.RUNNING],
                    values={"error": "interrupted by a server restart"}):
        return
    if job.kind == DEPLOY and job.worker_id is not None:
        worker = session.get(Worker, job.worker_id)
        if worker is not None and worker.released_at is None:
            destroy(session, worker, "its deploy was interrupted")


def _run_if_due(job: Callable[[], Any] | None, last: float, interval: float,
                what: str) -> float:
    """Run a side job of the recruitment loop once ``interval`` s have passed since
    ``last``; returns when it last ran. A failure is logged, never raised: a stale
    catalog or a missed orphan must not stop recruiting."""
    now = time.monotonic()
    if job is None or now - last < interval:
        return last
    try:
        job()
    except Exception:  # noqa: BLE001
        log.exception("%s failed", what)
    return now
