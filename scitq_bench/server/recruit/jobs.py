"""Deploy and destroy jobs: one machine each, run in background threads.

A deploy creates the instance with its provider (tagged as ours), waits for it to run,
installs the worker with Ansible unless the provider starts workers itself (``local``),
and waits for the worker to register under the name chosen for it. A destroy runs the
destroy playbook where one was deployed, then gives the instance back. Either way the
job row records status, progress, attempts and a log a user can read; a machine is
never left without a record: the worker row exists before the instance does, and a
failed deploy deletes what it created.
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

from sqlalchemy import select, update

from scitq_bench.recruit.providers.base import (
    CapacityError,
    InstanceSpec,
    Provider,
    ProviderError,
)
from scitq_bench.server import auth, transitions
from scitq_bench.server.db import Database
from scitq_bench.server.models import Worker, utcnow
from scitq_bench.server.recruit import catalog
from scitq_bench.server.recruit.models import Job
from scitq_bench.states import WorkerStatus

log = logging.getLogger("scitq_bench.recruit")

DEPLOY, DESTROY = "deploy", "destroy"
PENDING, RUNNING, SUCCEEDED, FAILED = "pending", "running", "succeeded", "failed"


@dataclass
class JobSettings:
    deploy_timeout: float = 900.0  # the watchdog: a machine that never comes up
    boot_poll: float = 2.0
    exclusion: float = 1800.0  # seconds an offer stays out after a capacity failure
    ssh_user: str = "root"
    ssh_key: Path | None = None
    package_path: Path | None = None  # the worker package Ansible installs
    # playbook variables for every deploy and destroy (extra_roles, worker_home, ...)
    ansible_vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobRunner:
    """Runs jobs in a small thread pool; ``providers(name)`` builds a provider."""

    db: Database
    providers: Callable[[str], Provider]
    server_url: str
    enroll_token: Callable[[str], str]  # a token for the machine named so
    settings: JobSettings = field(default_factory=JobSettings)
    workers: int = 4

    def __post_init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="job")
        self._running: set[int] = set()
        self._lock = threading.Lock()

    def submit(self, job_id: int) -> None:
        with self._lock:
            if job_id in self._running:
                return
            self._running.add(job_id)
        self._pool.submit(self._run, job_id)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def busy(self) -> int:
        with self._lock:
            return len(self._running)

    # -- one job ---------------------------------------------------------------------

    def _run(self, job_id: int) -> None:
        try:
            job = self._start(job_id)
            if job is None:
                return
            kind, arguments, worker_id = job
            if kind == DEPLOY:
                self._deploy(job_id, worker_id, arguments)
            else:
                self._destroy(job_id, worker_id, arguments)
            self._finish(job_id, SUCCEEDED)
        except Exception as exc:  # noqa: BLE001 - any failure ends the job, said in its log
            log.warning("job %s failed: %s", job_id, exc)
            self._finish(job_id, FAILED, error=str(exc))
        finally:
            with self._lock:
                self._running.discard(job_id)

    def _start(self, job_id: int) -> tuple[str, dict[str, Any], int | None] | None:
        with self.db.write() as session:
            job = session.get(Job, job_id)
            if job is None or job.status not in (PENDING, FAILED):
                return None
            job.status, job.progress, job.attempts = RUNNING, 0, job.attempts + 1
            job.error = None
            return job.kind, dict(job.arguments or {}), job.worker_id

    def note(self, job_id: int, line: str, progress: int | None = None) -> None:
        """Append to the job's log (and move its progress)."""
        stamp = utcnow().strftime("%H:%M:%S")
        with self.db.write() as session:
            job = session.get(Job, job_id)
            if job is None:
                return
            job.log = (job.log or "") + f"{stamp} {line}\n"
            if progress is not None:
                job.progress = max(job.progress, min(100, progress))

    def _finish(self, job_id: int, status: str, error: str | None = None) -> None:
        if error:
            self.note(job_id, f"failed: {error}")
        with self.db.write() as session:
            job = session.get(Job, job_id)
            if job is not None:
                job.status, job.error = status, error
                if status == SUCCEEDED:
                    job.progress = 100

    # -- deploy ----------------------------------------------------------------------

    def _deploy(self, job_id: int, worker_id: int | None, arguments: dict[str, Any]) -> None:
        assert worker_id is not None
        name, provider_name = arguments["name"], arguments["provider"]
        region, flavor = arguments["region"], arguments["flavor"]
        provider = self.providers(provider_name)
        self.note(job_id, f"creating {flavor} in {provider_name}/{region}", 5)
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
            address = self._wait_running(job_id, provider, instance.instance_id, region)
            self._remember_address(job_id, address)
            if not provider.starts_worker:
                self._install(job_id, name, address, arguments)
            self._wait_registered(job_id, worker_id)
        except BaseException:
            self.note(job_id, f"giving instance {instance.instance_id} back")
            _quietly(provider.delete, instance.instance_id, region)
            self._fail_worker(worker_id)
            raise
        self.note(job_id, f"worker {name} is up", 100)

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

    def _wait_running(self, job_id: int, provider: Provider, instance_id: str,
                      region: str) -> str | None:
        deadline = time.monotonic() + self.settings.deploy_timeout
        while True:
            state = provider.state(instance_id, region)
            if state.status == "running":
                self.note(job_id, f"instance running at {state.address or 'this machine'}", 40)
                return state.address
            if state.status == "gone":
                raise ProviderError(f"instance {instance_id} disappeared while starting")
            if time.monotonic() > deadline:
                raise ProviderError(f"instance {instance_id} not running after "
                                    f"{self.settings.deploy_timeout:.0f} s")
            time.sleep(self.settings.boot_poll)

    def _install(self, job_id: int, name: str, address: str | None,
                 arguments: dict[str, Any]) -> None:
        from scitq_bench.recruit.deploy import deploy_worker

        if not address:
            raise ProviderError("the instance has no address to deploy to")
        self.note(job_id, f"deploying the worker on {address} with Ansible", 45)
        result = deploy_worker(
            address=address, worker_name=name, server_url=self.server_url,
            token=self.enroll_token(name), concurrency=int(arguments.get("concurrency") or 1),
            prefetch=int(arguments.get("prefetch") or 0),
            flavor_tags=str(arguments.get("tags") or ""),
            package_path=self.settings.package_path, ssh_key=self.settings.ssh_key,
            user=self.settings.ssh_user,
            extravars=_merge(self.settings.ansible_vars, _worker_options(arguments)),
            on_progress=lambda percent, task: self.note(
                job_id, f"ansible: {task}", 45 + percent * 45 // 100),
        )
        if result.status != "successful":
            raise ProviderError(f"deploy playbook {result.status} at "
                                f"{result.failed_task or 'an unknown task'}")

    def _wait_registered(self, job_id: int, worker_id: int) -> None:
        deadline = time.monotonic() + self.settings.deploy_timeout
        started = utcnow()
        while time.monotonic() < deadline:
            with self.db.read() as session:
                contact = session.scalar(select(Worker.last_contact_at).where(
                    Worker.id == worker_id))
            if contact is not None and contact >= started:
                self.note(job_id, "the worker registered", 95)
                self._revoke_machine_token(worker_id)
                return
            time.sleep(min(1.0, self.settings.boot_poll))
        raise ProviderError(f"the worker did not register within "
                            f"{self.settings.deploy_timeout:.0f} s")

    def _revoke_machine_token(self, worker_id: int) -> None:
        """The machine's enrollment token served its purpose: the worker has its own."""
        with self.db.write() as session:
            name = session.scalar(select(Worker.name).where(Worker.id == worker_id))
            auth.revoke_machine_token(session, name)

    def _fail_worker(self, worker_id: int) -> None:
        """The deploy failed: the record stays, failed and released."""
        with self.db.write() as session:
            worker = session.get(Worker, worker_id)
            if worker is not None:
                transitions.move_worker(session, worker.id, WorkerStatus.FAILED)
                worker.released_at = utcnow()

    # -- destroy ---------------------------------------------------------------------

    def _destroy(self, job_id: int, worker_id: int | None, arguments: dict[str, Any]) -> None:
        provider_name, region = arguments["provider"], arguments["region"]
        instance_id = arguments.get("instance_id")
        provider = self.providers(provider_name)
        if not provider.starts_worker and arguments.get("address"):
            from scitq_bench.recruit.deploy import destroy_worker

            self.note(job_id, f"stopping the worker on {arguments['address']}", 20)
            result = destroy_worker(address=arguments["address"],
                                    worker_name=arguments["name"],
                                    ssh_key=self.settings.ssh_key, user=self.settings.ssh_user,
                                    extravars=dict(self.settings.ansible_vars))
            if result.status != "successful":
                self.note(job_id, f"destroy playbook {result.status}; deleting the instance "
                          "anyway")
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
