"""Deploy and destroy jobs: one machine each, run in background threads.

A deploy creates the instance with its provider (tagged as ours), waits for it to run,
installs the worker with Ansible unless the provider starts workers itself (``local``),
and waits for the worker to register under the name chosen for it. A destroy runs the
destroy playbook where one was deployed, then gives the instance back. Either way the
job row records status, progress, attempts and a log a user can read; a machine is
never left without a record: the worker row exists before the instance does, and a
failed deploy deletes what it created.

``deploy_timeout`` bounds a whole job, every step of it together (Ansible's own waits
are cut to what is left), and a user may cancel a job: either way the job stops in the
step it was in (a playbook's processes are killed), says which, and gives its machine
back. A cancel is seen through this process's ``cancel`` or, from any process, through
the job's status in the database.

Where several processes serve (see ``server/background.py``), jobs run in the leader's
process only: the others' runners ``dispatch`` (wake the leader), and the leader picks
up every pending job on that wake-up and on each pass. A leader that loses its lead
abandons its jobs where they stand, without their cleanup: they are left running in the
database, and the next leader's recovery gives their machines back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Select, case, func, select, update
from sqlalchemy.orm import Session, aliased

from scitq_bench.exceptions import ScitqBenchError
from scitq_bench.recruiters.providers.base import (
    CapacityError,
    InstanceSpec,
    Provider,
    ProviderError,
)
from scitq_bench.server import auth
from scitq_bench.server.db import Database
from scitq_bench.server.queue import transitions
from scitq_bench.server.queue.models import Worker, utcnow
from scitq_bench.server.recruit import catalog
from scitq_bench.server.recruit.models import Job
from scitq_bench.server.recruit.transitions import move_job
from scitq_bench.states import InstanceStatus, WorkerStatus
from scitq_bench.states import JobStatus as J

log = logging.getLogger("scitq_bench.recruit")

DEPLOY, DESTROY = "deploy", "destroy"
CANCEL_CHECK = 1.0  # seconds between two looks at the database for a cancel
ABANDONED = "this server stopped leading; the next leader recovers the job"


class JobStopped(ScitqBenchError):
    """A job stopped before its end: its time ran out, or a user cancelled it."""

    code = "job_stopped"


class JobControl:
    """One running job's clock and brakes: the time left of ``timeout`` seconds, the
    step it is in, and whether it must stop (spent, or cancelled: this process's event,
    or the job's status in the database, looked at every ``CANCEL_CHECK`` seconds; or
    abandoned: ``leading`` says, as often, that this process no longer leads)."""

    def __init__(self, job_id: int, timeout: float,
                 cancelled_by: Callable[[int], str | None],
                 leading: Callable[[], bool] | None = None) -> None:
        self.job_id, self.timeout = job_id, timeout
        self.deadline = time.monotonic() + timeout
        self.step = "start"
        self.event = threading.Event()
        self.lost = False  # abandoned: this process no longer leads
        self._cancelled_by = cancelled_by
        self._leading = leading
        self._who: str | None = None
        self._checked = 0.0
        self._led = 0.0

    def abandoned(self, at_once: bool = False) -> bool:
        """Whether this process stopped leading (asked every ``CANCEL_CHECK`` seconds,
        or now with ``at_once``, before a cleanup): the job then stops where it stands,
        without its cleanup, which the next leader's recovery does."""
        now = time.monotonic()
        due = at_once or now - self._led >= CANCEL_CHECK
        if not self.lost and self._leading is not None and due:
            self._led = now
            self.lost = not self._leading()
        return self.lost

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def cancelled(self) -> str | None:
        """Who cancelled the job, None while nobody did."""
        now = time.monotonic()
        if self._who is None and (self.event.is_set() or now - self._checked >= CANCEL_CHECK):
            self._checked = now
            self._who = self._cancelled_by(self.job_id)
        return self._who

    def reason(self) -> str | None:
        """Why the job must stop now, None while it may go on."""
        if self.abandoned():
            return ABANDONED
        who = self.cancelled()
        if who is not None:
            return f"cancelled by {who}"
        if self.remaining() <= 0:
            return f"timed out after {self.timeout:.0f} s"
        return None

    def should_stop(self) -> bool:
        return self.reason() is not None

    def stopped(self, reason: str | None = None) -> JobStopped:
        return JobStopped(f"{reason or self.reason() or 'stopped'} in step '{self.step}'")

    def check(self) -> None:
        """Raise ``JobStopped`` when the job must stop."""
        if self.should_stop():
            raise self.stopped()

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, less when the time runs out or a cancel comes."""
        self.event.wait(min(seconds, self.remaining()))
        self.check()


@dataclass
class JobSettings:
    deploy_timeout: float = 900.0  # a whole job, every step together
    boot_poll: float = 2.0
    exclusion: float = 1800.0  # seconds an offer stays out after a capacity failure
    ssh_user: str = "root"
    ssh_key: Path | None = None
    package_path: Path | None = None  # the worker package Ansible installs
    # playbook variables for every deploy and destroy (extra_roles, worker_home, ...)
    ansible_vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobRunner:
    """Runs jobs in a small thread pool; ``providers(name)`` builds a provider.

    ``dispatch``: jobs run elsewhere (the leader); submitting or cancelling one calls it
    to wake the leader instead. ``leading``: this runner serves a leader; it says
    whether this process still leads (asked before a job starts, and every
    ``CANCEL_CHECK`` seconds while it runs)."""

    db: Database
    providers: Callable[[str], Provider]
    server_url: str
    enroll_token: Callable[[str], str]  # a token for the machine named so
    settings: JobSettings = field(default_factory=JobSettings)
    workers: int = 4
    dispatch: Callable[[], None] | None = None
    leading: Callable[[], bool] | None = None

    def __post_init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="job")
        self._running: set[int] = set()
        self._controls: dict[int, JobControl] = {}
        self._given_back: set[int] = set()  # cancelled destroys whose give-back started
        self._abandoned = False
        self._lock = threading.Lock()

    def submit(self, job_id: int) -> None:
        if self.dispatch is not None:
            self.dispatch()
            return
        with self._lock:
            if job_id in self._running or self._abandoned:
                return
            self._running.add(job_id)
        if not self._spawn(self._run, job_id):
            with self._lock:
                self._running.discard(job_id)

    def cancel(self, job_id: int, was: str) -> None:
        """The job was just marked cancelled in the database, from status ``was``: a
        running one here stops at once (elsewhere, within ``CANCEL_CHECK`` s); a
        pending destroy gives its machine back without its playbook (a pending deploy
        holds no machine yet)."""
        if self.dispatch is not None:  # the leader sees the status, and gives back
            self.dispatch()
            return
        with self._lock:
            control = self._controls.get(job_id)
        if control is not None:
            control.event.set()
        elif was == J.PENDING:
            self._spawn(self._give_back_cancelled, job_id)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _spawn(self, function: Callable[..., Any], *args: Any) -> bool:
        """Run ``function`` in the pool; False once the pool was shut down (the work
        stays in the database for whoever runs jobs next)."""
        try:
            self._pool.submit(function, *args)
        except RuntimeError:
            return False
        return True

    def busy(self) -> int:
        with self._lock:
            return len(self._running)

    def running(self) -> set[int]:
        """The jobs this runner has taken and not finished."""
        with self._lock:
            return set(self._running)

    def abandon(self) -> None:
        """This process no longer leads: no job starts any more, and running ones stop
        where they stand, leaving their state to the next leader's recovery."""
        with self._lock:
            self._abandoned = True
            controls = list(self._controls.values())
        for control in controls:
            control.lost = True
            control.event.set()
        self.shutdown()

    def pick_up(self) -> None:
        """The leader's pass over jobs other processes queued or cancelled: start every
        pending job not running here, stop at once running ones cancelled elsewhere, and
        give back the machines of destroys cancelled before they started."""
        if self._abandoned:
            return
        mine = self.running()
        with self.db.read() as session:
            pending = list(session.scalars(select(Job.id).where(Job.status == J.PENDING.value)
                                           .order_by(Job.id)))
            cancelled = set(session.scalars(select(Job.id).where(
                Job.status == J.CANCELLED.value, Job.id.in_(mine))))
            undone = list(session.scalars(holding_cancelled(Job.id)
                                          .where(Job.kind == DESTROY)))
        for job_id in pending:
            if job_id not in mine:
                self.submit(job_id)
        with self._lock:
            stopping = [self._controls[j] for j in cancelled if j in self._controls]
            give_back = [] if self._abandoned else [
                j for j in undone if j not in self._running | self._given_back]
            self._given_back.update(give_back)
        for control in stopping:
            control.event.set()
        for job_id in give_back:
            self._spawn(self._give_back_cancelled, job_id)

    def _still_leading(self) -> bool:
        return not self._abandoned and (self.leading is None or self.leading())

    # -- one job ---------------------------------------------------------------------

    def _run(self, job_id: int) -> None:
        control: JobControl | None = None
        try:
            if not self._still_leading():  # a leader resumed from a freeze starts nothing
                return
            job = self._start(job_id)
            if job is None:
                return
            kind, arguments, worker_id = job
            control = JobControl(job_id, self.settings.deploy_timeout, self._cancelled_by,
                                 self._still_leading)
            with self._lock:
                self._controls[job_id] = control
            if kind == DEPLOY:
                self._deploy(control, worker_id, arguments)
            else:
                self._destroy(control, worker_id, arguments)
                self._finish(job_id, J.SUCCEEDED)
        except Exception as exc:  # noqa: BLE001 - any failure ends the job, said in its log
            if control is not None and control.abandoned(at_once=True):
                self._left(job_id, control)
            else:
                log.warning("job %s failed: %s", job_id, exc)
                self._finish(job_id, J.FAILED, error=str(exc))
        finally:
            with self._lock:
                self._running.discard(job_id)
                self._controls.pop(job_id, None)

    def _left(self, job_id: int, control: JobControl) -> None:
        """An abandoned job stays running in the database, for the next leader."""
        log.warning("job %s left in step '%s': %s", job_id, control.step, ABANDONED)
        try:
            self.note(job_id, f"left in step '{control.step}': {ABANDONED}")
        except Exception as exc:  # noqa: BLE001 - the database may be what was lost
            log.debug("job %s: could not say so in its log: %s", job_id, exc)

    def _start(self, job_id: int) -> tuple[str, dict[str, Any], int | None] | None:
        """Move the job to running (guarded: a cancel may have come first, and a job
        submitted twice, by a plan and a pick-up, runs once: a failed job runs again
        only once a retry made it pending)."""
        with self.db.write() as session:
            if not move_job(session, job_id, J.RUNNING, only_from=[J.PENDING], values={
                    "progress": 0, "attempts": Job.attempts + 1, "error": None}):
                return None
            job = session.get(Job, job_id)
            assert job is not None
            return job.kind, dict(job.arguments or {}), job.worker_id

    def _cancelled_by(self, job_id: int) -> str | None:
        """Who cancelled the job (its database row says), None while nobody did."""
        with self.db.read() as session:
            row = session.execute(select(Job.status, Job.cancelled_by).where(
                Job.id == job_id)).first()
        if row is None:  # deleted under it: nothing to carry on for
            return "a user"
        return (row.cancelled_by or "a user") if row.status == J.CANCELLED else None

    def note(self, job_id: int, line: str, progress: int | None = None) -> None:
        """Append to the job's log (and move its progress)."""
        with self.db.write() as session:
            append_log(session, job_id, line, progress)

    def _finish(self, job_id: int, status: J, error: str | None = None) -> bool:
        """End a running job; False when it was no longer running (cancelled: the
        cancel stands, the error says where it stopped)."""
        if error:
            self.note(job_id, error if error.startswith("cancelled") else f"failed: {error}")
        values: dict[str, Any] = {"error": error}
        if status == J.SUCCEEDED:
            values["progress"] = 100
        with self.db.write() as session:
            if move_job(session, job_id, status, only_from=[J.RUNNING], values=values):
                return True
            if error:
                session.execute(update(Job).where(Job.id == job_id,
                                                  Job.status == J.CANCELLED.value)
                                .values(error=error)
                                .execution_options(synchronize_session=False))
            return False

    # -- deploy ----------------------------------------------------------------------

    def _deploy(self, control: JobControl, worker_id: int | None,
                arguments: dict[str, Any]) -> None:
        assert worker_id is not None
        job_id = control.job_id
        name, provider_name = arguments["name"], arguments["provider"]
        region, flavor = arguments["region"], arguments["flavor"]
        provider = self.providers(provider_name)
        self.note(job_id, f"creating {flavor} in {provider_name}/{region}", 5)
        control.step = "create the instance"
        try:
            instance = provider.create(InstanceSpec(
                name=name, flavor=flavor, region=region, spot=bool(arguments.get("spot"))))
        except CapacityError as exc:
            until = utcnow() + timedelta(seconds=self.settings.exclusion)
            with self.db.write() as session:
                catalog.exclude(session, provider_name, region, flavor, until)
            self.note(job_id, f"offer {provider_name}/{region}/{flavor} refused for capacity: "
                      f"{exc}; kept out until {until:%H:%M} UTC")
            self._fail_worker(worker_id)
            raise
        self._record_instance(worker_id, instance.instance_id)
        self.note(job_id, f"instance {instance.instance_id} created", 20)
        try:
            control.check()  # a cancel or the clock, while the provider created it
            address = self._wait_running(control, provider, instance.instance_id, region)
            self._remember_address(job_id, address)
            if not provider.starts_worker:
                self._install(control, name, address, arguments)
            self._wait_registered(control, worker_id)
            self.note(job_id, f"worker {name} is up", 100)
            if not self._finish(job_id, J.SUCCEEDED):
                raise control.stopped(f"cancelled by {control.cancelled() or 'a user'}")
        except BaseException:
            if not control.abandoned(at_once=True):  # else the next leader gives it back
                self.note(job_id, f"giving instance {instance.instance_id} back")
                _quietly(provider.delete, instance.instance_id, region)
                self._fail_worker(worker_id)
            raise

    def _remember_address(self, job_id: int, address: str | None) -> None:
        """Where the machine answers: its destroy job will need it."""
        with self.db.write() as session:
            job = session.get(Job, job_id)
            if job is not None:
                job.arguments = {**(job.arguments or {}), "address": address}

    def _record_instance(self, worker_id: int, instance_id: str) -> None:
        with self.db.write() as session:
            session.execute(update(Worker).where(Worker.id == worker_id)
                            .values(instance_id=instance_id))

    def _wait_running(self, control: JobControl, provider: Provider, instance_id: str,
                      region: str) -> str | None:
        control.step = "wait for the instance to run"
        while True:
            state = provider.state(instance_id, region)
            if state.status == InstanceStatus.RUNNING:
                self.note(control.job_id,
                          f"instance running at {state.address or 'this machine'}", 40)
                return state.address
            if state.status == InstanceStatus.GONE:
                raise ProviderError(f"instance {instance_id} disappeared while starting")
            control.wait(self.settings.boot_poll)

    def _install(self, control: JobControl, name: str, address: str | None,
                 arguments: dict[str, Any]) -> None:
        from scitq_bench.recruiters.deploy import deploy_worker

        if not address:
            raise ProviderError("the instance has no address to deploy to")
        job_id = control.job_id
        self.note(job_id, f"deploying the worker on {address} with Ansible", 45)
        control.step = "start Ansible"

        def progress(percent: int, task: str) -> None:
            if percent < 100 and task != "starting":
                control.step = task
            self.note(job_id, f"ansible: {task}", 45 + percent * 45 // 100)

        result = deploy_worker(
            address=address, worker_name=name, server_url=self.server_url,
            token=self.enroll_token(name), concurrency=int(arguments.get("concurrency") or 1),
            prefetch=int(arguments.get("prefetch") or 0),
            flavor_tags=str(arguments.get("tags") or ""),
            package_path=self.settings.package_path, ssh_key=self.settings.ssh_key,
            user=self.settings.ssh_user,
            extravars=_merge(self.settings.ansible_vars, _worker_options(arguments)),
            on_progress=progress, timeout=control.remaining(), cancel=control.should_stop,
        )
        _raise_unless_done(control, result, "deploy")

    def _wait_registered(self, control: JobControl, worker_id: int) -> None:
        control.step = "wait for the worker to register"
        started = utcnow()
        while True:
            with self.db.read() as session:
                contact = session.scalar(select(Worker.last_contact_at).where(
                    Worker.id == worker_id))
            if contact is not None and contact >= started:
                self.note(control.job_id, "the worker registered", 95)
                self._revoke_machine_token(worker_id)
                return
            control.wait(min(1.0, self.settings.boot_poll))

    def _revoke_machine_token(self, worker_id: int) -> None:
        """The machine's enrollment token served its purpose: the worker has its own."""
        with self.db.write() as session:
            name = session.scalar(select(Worker.name).where(Worker.id == worker_id))
            if name is not None:  # a worker deleted meanwhile has no token left to revoke
                auth.revoke_machine_token(session, name)

    def _fail_worker(self, worker_id: int) -> None:
        with self.db.write() as session:
            fail_worker(session, worker_id)

    # -- destroy ---------------------------------------------------------------------

    def _destroy(self, control: JobControl, worker_id: int | None,
                 arguments: dict[str, Any]) -> None:
        """Stop the worker with the destroy playbook (bounded, cancellable), then give
        the instance back whatever the playbook did."""
        job_id = control.job_id
        provider = self.providers(arguments["provider"])
        if not provider.starts_worker and arguments.get("address"):
            from scitq_bench.recruiters.deploy import destroy_worker

            self.note(job_id, f"stopping the worker on {arguments['address']}", 20)
            control.step = "stop the worker with Ansible"
            result = destroy_worker(address=arguments["address"],
                                    worker_name=arguments["name"],
                                    ssh_key=self.settings.ssh_key, user=self.settings.ssh_user,
                                    extravars=dict(self.settings.ansible_vars),
                                    timeout=control.remaining(), cancel=control.should_stop)
            if result.status != "successful":
                why = control.reason() or f"destroy playbook {result.status}"
                if control.abandoned(at_once=True):
                    raise control.stopped(why)
                self.note(job_id, f"{why}; deleting the instance anyway")
        control.step = "give the machine back"
        self._give_back(job_id, worker_id, arguments)
        who = control.cancelled()
        if who is not None:  # the machine is back, as a cancel wants; the cancel stands
            raise control.stopped(f"cancelled by {who}")

    def _give_back_cancelled(self, job_id: int) -> None:
        """A destroy cancelled before it started: the machine goes back at once."""
        with self.db.read() as session:
            job = session.get(Job, job_id)
            if job is None or job.kind != DESTROY or job.status != J.CANCELLED:
                return
            worker_id, arguments = job.worker_id, dict(job.arguments or {})
        try:
            self._give_back(job_id, worker_id, arguments)
        except Exception as exc:  # noqa: BLE001 - said in the job's log
            log.warning("job %s: giving the machine back failed: %s", job_id, exc)
            self.note(job_id, f"giving the machine back failed: {exc}")

    def _give_back(self, job_id: int, worker_id: int | None, arguments: dict[str, Any]) -> None:
        """Delete the instance and close the worker's record."""
        provider_name, region = arguments["provider"], arguments["region"]
        instance_id = arguments.get("instance_id")
        provider = self.providers(provider_name)
        if instance_id:
            self.note(job_id, f"giving instance {instance_id} back", 60)
            provider.delete(instance_id, region)
        with self.db.write() as session:
            worker = session.get(Worker, worker_id) if worker_id else None
            if worker is not None:
                worker.released_at = worker.released_at or utcnow()
                if worker.status != WorkerStatus.EVICTED.value:
                    transitions.move_worker(session, worker.id, WorkerStatus.OFFLINE)
        self.note(job_id, "machine given back", 100)


def holding_cancelled(*columns: Any) -> Select[Any]:
    """``columns`` of the cancelled jobs whose machine is still held: the newest job
    about its worker (a later one says more about the machine), the worker not
    released."""
    later = aliased(Job)
    newest = select(func.max(later.id)).where(later.worker_id == Job.worker_id)
    return (select(*columns).select_from(Job).join(Worker, Worker.id == Job.worker_id)
            .where(Job.status == J.CANCELLED.value, Worker.released_at.is_(None),
                   Job.id == newest.scalar_subquery()))


def fail_worker(session: Session, worker_id: int) -> None:
    """A deploy that failed, or was cancelled before it started: the worker's record
    stays, failed and released (one released already stays as it is)."""
    worker = session.get(Worker, worker_id)
    if worker is not None and worker.released_at is None:
        transitions.move_worker(session, worker.id, WorkerStatus.FAILED)
        worker.released_at = utcnow()


def append_log(session: Session, job_id: int, line: str, progress: int | None = None) -> None:
    """Append a dated line to a job's log, and move its progress forward: one UPDATE,
    so that the job's thread and a user's cancel never lose each other's lines."""
    values: dict[str, Any] = {"log": func.coalesce(Job.log, "") + f"{utcnow():%H:%M:%S} {line}\n"}
    if progress is not None:
        target = min(100, progress)
        values["progress"] = case((Job.progress < target, target), else_=Job.progress)
    session.execute(update(Job).where(Job.id == job_id).values(**values)
                    .execution_options(synchronize_session=False))


def _raise_unless_done(control: JobControl, result: Any, playbook: str) -> None:
    """A playbook that did not succeed ends the job: stopped (the clock or a cancel,
    naming the step), or failed at a task."""
    if result.ok:
        return
    if result.status in ("canceled", "timeout") or control.should_stop():
        raise control.stopped(control.reason() or
                              f"timed out after {control.timeout:.0f} s")
    raise ProviderError(f"{playbook} playbook {result.status} at "
                        f"{result.failed_task or 'an unknown task'}")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Playbook variables: the settings', then the machine's own (list variables such
    as ``worker_extra_args`` add up)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = [*merged[key], *value]
        else:
            merged[key] = value
    return merged


def _worker_options(arguments: dict[str, Any]) -> dict[str, Any]:
    """``worker run`` options the machine needs: a spot machine watches its provider's
    metadata service for an interruption notice."""
    extra: list[str] = []
    if arguments.get("spot") and arguments.get("provider") in ("aws", "azure"):
        extra += ["--spot", str(arguments["provider"])]
    return {"worker_extra_args": extra} if extra else {}


def _quietly(function: Callable[..., Any], *args: Any) -> None:
    try:
        function(*args)
    except Exception as exc:  # noqa: BLE001 - cleanup after a failure: say, do not mask it
        log.warning("cleanup failed: %s", exc)
