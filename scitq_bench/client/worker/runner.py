"""One execution, from claim to final event: download, wait for a run slot, run (a
process, a sandboxed process or a container), flush logs, read scores, upload.

``ExecutionRunner.execute`` runs on the execution's own thread and returns the final
event (None when the execution was dropped); nothing on this path sleeps, it waits on
conditions. The agent (``agent``) owns the threads, the held executions and the
reports; the runner gets what it needs in its constructor.

The execution's logs open when something is first written to them: a long download
or upload writes its progress into its stderr (``progress.TransferProgress``), shipped
live like the command's own output; an execution that only runs its command opens
them when it starts (prefetched executions waiting for a slot hold none). Resources come from the worker's cache (``cache``), linked into the
execution's own ``resource`` folder.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scitq_bench import hostprobe
from scitq_bench.client.api import Client
from scitq_bench.client.serverstore import ServerStore
from scitq_bench.client.worker import host_env, sandbox
from scitq_bench.client.worker.cache import CachedResource, ResourceCache, link_tree
from scitq_bench.client.worker.container import (
    CODABENCH,
    LAYOUTS,
    ContainerDefaults,
    ContainerRun,
    ContainerSpec,
    SlotDirs,
    build_spec,
    prepare_slots,
)
from scitq_bench.client.worker.engine import Engine, ImagePullFailed
from scitq_bench.client.worker.executor import (
    CommandError,
    Process,
    Supervised,
    build_argv,
    cpu_share,
    expand_task_variables,
    task_environment,
)
from scitq_bench.client.worker.gpus import cuda_visible_devices, device_request_ids
from scitq_bench.client.worker.held import CANCELLED, DROP, Held, RunGate, Slot
from scitq_bench.client.worker.keeper import Keeper
from scitq_bench.client.worker.logship import ExecutionLogs
from scitq_bench.client.worker.progress import (
    PROGRESS_INTERVAL,
    TransferProgress,
    local_size,
    shown,
)
from scitq_bench.client.worker.reporter import ACCEPTED, RUNNING, Event, Reporter
from scitq_bench.client.worker.scores import ScoresRefused, read_scores
from scitq_bench.client.worker.transfer import (
    Aborted,
    Deadline,
    DownloadTimedOut,
    TransferError,
    fetch,
    resource_version,
    upload,
)
from scitq_bench.client.worker.workdir import RESOURCE, ExecutionDirs
from scitq_bench.container_options import parse_container_options
from scitq_bench.exceptions import ScitqBenchError, ServerUnreachable
from scitq_bench.hostprobe import GB
from scitq_bench.states import ExecutionStatus
from scitq_bench.storage import copying
from scitq_bench.storage.base import Progress
from scitq_bench.storage.config import StorageConfig
from scitq_bench.storage.stores import Stores
from scitq_bench.uris import parse_uri

log = logging.getLogger("scitq_bench.worker")

SUCCEEDED, FAILED, TIMEOUT, REFUSED = (ExecutionStatus.SUCCEEDED.value, ExecutionStatus.FAILED.value,
                                      ExecutionStatus.TIMEOUT.value, ExecutionStatus.REFUSED.value)
# what a sandboxed command and a container see of the task's environment
SANDBOX_VARIABLES = ("CPU", "SCITQ_BENCH_EXECUTION_ID", "SCITQ_BENCH_TASK_ID",
                     "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")
CONTAINER_VARIABLES = ("CPU", "SCITQ_BENCH_EXECUTION_ID", "SCITQ_BENCH_TASK_ID")
INPUT_FETCH_FAILED, OUTPUT_UPLOAD_FAILED = "input_fetch_failed", "output_upload_failed"


@dataclass(frozen=True)
class RunnerSettings:
    """The worker's settings that running a task reads (fixed while it runs)."""

    name: str
    cache_dir: Path  # the resource cache (``cache``)
    log_cap: int
    kill_grace: float
    container_defaults: ContainerDefaults
    has_gpus: bool
    environment: dict[str, str]  # the worker's environment that processes inherit
    cache_max_bytes: int = 20 * GB
    storage: StorageConfig = field(default_factory=StorageConfig)
    progress_interval: float = PROGRESS_INTERVAL


@dataclass
class _Exit:
    """How a command ended, for the work done after its run slot is released."""

    code: int
    timed_out: bool
    started: float
    ended: float
    logs: ExecutionLogs
    out_of_memory: bool = False


class ExecutionRunner:
    """Runs held executions to their final event. ``concurrency`` is read at each
    launch (the server may change it). The final log flush retries while the server is
    away until ``out_of_time`` (the worker is stopping and out of time); ``finished``,
    set once the worker's shutdown is over, cuts the waits between its tries short."""

    def __init__(self, settings: RunnerSettings, *, io: Client, reporter: Reporter,
                 gate: RunGate, dirs: ExecutionDirs, engine: Engine | None,
                 keeper: Keeper | None, concurrency: Callable[[], int],
                 out_of_time: Callable[[], bool], finished: threading.Event) -> None:
        self.settings = settings
        self._io = io
        self._stores = Stores(settings.storage, server=ServerStore(io))
        self._cache = ResourceCache(settings.cache_dir, settings.cache_max_bytes,
                                    self._fetch_resource, self._resource_version)
        self._reporter = reporter
        self._gate = gate
        self._dirs = dirs
        self.engine = engine
        self._keeper = keeper
        self._concurrency = concurrency
        self._out_of_time = out_of_time
        self._finished = finished

    # -- the pipeline --------------------------------------------------------------------

    def execute(self, held: Held) -> Event | None:
        """Run ``held`` to its final event; None when it was dropped. Every byte written
        to its logs (the command's, transfers' progress) is shipped before the final
        event, in one flush."""
        self._dirs.create(held.id)
        resources: list[CachedResource] = []
        try:
            final = self._pipeline(held, resources)
        finally:
            self._cache.release(resources)
        if final is not None and held.logs is not None:
            self._flush_logs(held, held.logs)
        return final

    def _logs(self, held: Held) -> ExecutionLogs:
        """The execution's logs, opened on first use."""
        with held.lock:
            if held.logs is None:
                held.logs = ExecutionLogs(held.directory, self.settings.log_cap)
            return held.logs

    def close(self) -> None:
        """The worker stopped: its cache's locks and its stores' connections go."""
        self._cache.close()
        self._stores.close()

    def _pipeline(self, held: Held, resources: list[CachedResource]) -> Event | None:
        refused = self._refusal(held)
        if refused is not None:
            return refused
        if fetches(held.payload):
            self._reporter.put(Event(held.id, ACCEPTED))
            failed = self._prepare(held, resources)
            if failed is not None:
                return failed
            if held.abandoned:
                return self._abandoned(held)
        try:
            slot = self._gate.acquire(lambda: held.abandoned, _gpu_count(held.payload),
                                      place=held.place)
        except ValueError as exc:
            return final_event(held, FAILED, error=str(exc), reason="not_enough_gpus")
        if slot is None:
            return self._abandoned(held)
        try:
            ran = self._run(held, slot)
        finally:
            self._gate.release(slot)  # the slot and its GPUs are free once it ended
        return self._finish(held, ran) if isinstance(ran, _Exit) else ran

    def _refusal(self, held: Held) -> Event | None:
        """The final event of an execution this worker cannot run at all."""
        image, layout = held.payload.get("container"), held.payload.get("layout")
        if image and self.engine is None:
            return final_event(held, FAILED, error="this worker has no container engine",
                               reason="no_container_engine")
        if layout not in LAYOUTS:
            return final_event(held, FAILED,
                               error=f"this worker does not know the layout {layout!r}",
                               reason="unknown_layout")
        if layout == CODABENCH and not image:
            try:  # before downloading: a worker without the sandbox cannot run it
                sandbox.check(self._sandbox_user())
            except sandbox.SandboxUnavailable as exc:
                return final_event(held, FAILED, error=f"sandbox_unavailable: {exc}",
                                   reason="sandbox_unavailable")
            try:
                host_env.host_environment(held.payload.get("host_environment"),
                                          sandbox.SANDBOX_PATH)
            except host_env.HostEnvironmentMissing as exc:
                return final_event(held, FAILED, error=f"host_environment_missing: {exc}",
                                   reason="host_environment_missing")
        return None

    def _prepare(self, held: Held, resources: list[CachedResource]) -> Event | None:
        """Download what the execution needs, and its image before the run timer starts;
        the final event when that failed."""
        image = held.payload.get("container")
        deadline = Deadline(held.payload.get("download_timeout"), lambda: held.abandoned)
        try:
            self._download(held, deadline, resources)
            if image and self.engine is not None:
                self.engine.ensure_image(image, lambda: held.abandoned)
        except Aborted:
            return self._abandoned(held)
        except DownloadTimedOut as exc:
            return final_event(held, TIMEOUT, error=str(exc))
        except TransferError as exc:
            return final_event(held, FAILED, error=f"download failed: {exc}",
                               reason=INPUT_FETCH_FAILED)
        except ImagePullFailed as exc:
            return final_event(held, FAILED, error=f"image_pull_failed: {image}: {exc}",
                               reason="image_pull_failed")
        return None

    def _download(self, held: Held, deadline: Deadline,
                  resources: list[CachedResource]) -> None:
        """Resources from the cache (pinned in ``resources`` until the execution
        ends), linked into the execution's folder in the order the task lists them
        (a later one's file replaces an earlier one's); then the inputs."""
        for uri in held.payload.get("resources") or []:
            with self._progress(held, "fetch", uri) as progress:
                resources.append(self._cache.acquire(uri, deadline, progress))
        for resource in resources:
            try:
                link_tree(resource.data, held.directory / RESOURCE)
            except OSError as exc:
                raise TransferError(f"{shown(resource.uri)}: cannot place it in the "
                                    f"execution's folder: {exc.strerror or exc}") from None
        for uri in held.payload.get("inputs") or []:
            with self._progress(held, "fetch", uri) as progress:
                fetch(self._io, uri, held.directory / "input", deadline,
                      stores=self._stores, progress=progress)

    def _fetch_resource(self, uri: str, destination: Path, deadline: Deadline,
                        progress: Progress | None) -> None:
        fetch(self._io, uri, destination, deadline, stores=self._stores, progress=progress)

    def _resource_version(self, uri: str, deadline: Deadline) -> str | None:
        return resource_version(self._io, uri, deadline, stores=self._stores)

    def _stored_size(self, uri: str) -> int:
        """The bytes a URI names in its store (one listing)."""
        location = parse_uri(uri).location
        return sum(entry.size for _, entry in copying.iter_entries(self._stores, location))

    @contextmanager
    def _progress(self, held: Held, verb: str, uri: str) -> Iterator[Progress]:
        """A transfer's progress, written to the execution's stderr log."""
        logs = self._logs(held)
        output = held.directory / "output"
        total = (lambda: self._stored_size(uri)) if verb == "fetch" else \
            (lambda: local_size(output))
        progress = TransferProgress(logs.stderr_fd, verb, uri,
                                    self.settings.progress_interval, total)
        try:
            yield progress
        except BaseException:
            progress.finish(ok=False)
            raise
        progress.finish(ok=True)

    def _abandoned(self, held: Held) -> Event | None:
        """The final event of an execution given up before its command started."""
        if held.reason == DROP:
            return None
        if held.reason == CANCELLED:
            return final_event(held, CANCELLED, error="cancelled before it started")
        return final_event(held, REFUSED, error="the worker stopped before running it")

    # -- running -------------------------------------------------------------------------

    def _run(self, held: Held, slot: Slot) -> Event | _Exit | None:
        """Start the command and wait for its end, in a run slot. An Event when it
        could not start, None when dropped."""
        started = self._start(held, slot)
        if not isinstance(started, tuple):
            return started
        process, logs = started
        self._reporter.put(Event(held.id, RUNNING, at=process.started))
        code, timed_out = process.wait_until_done(held.payload.get("run_timeout"),
                                                  self.settings.kill_grace)
        ended = time.monotonic()
        out_of_memory = isinstance(process, ContainerRun) and process.out_of_memory
        process.cleanup()
        self._unwatch(process)
        if held.reason == DROP:
            return None
        return _Exit(code, timed_out, process.started, ended, logs, out_of_memory)

    def _start(self, held: Held, slot: Slot) -> tuple[Supervised, ExecutionLogs] | Event | None:
        """The started command (now on ``held``) and its logs, or the final event
        when it could not start (None when dropped)."""
        try:
            argv = build_argv(held.payload["command"], bool(held.payload.get("shell")))
        except CommandError as exc:
            return final_event(held, FAILED, return_code=exc.return_code, error=str(exc))
        logs = self._logs(held)
        with held.lock:
            if held.abandoned:
                return self._abandoned(held)
            try:
                process = self._launch(held, argv, slot, logs)
            except CommandError as exc:
                return final_event(held, FAILED, return_code=exc.return_code, error=str(exc))
            except sandbox.SandboxUnavailable as exc:
                return final_event(held, FAILED, error=f"sandbox_unavailable: {exc}",
                                   reason="sandbox_unavailable")
            held.process = process
        return process, logs

    def _launch(self, held: Held, argv: list[str], slot: Slot,
                logs: ExecutionLogs) -> Supervised:
        """Start the task as a process, or in a container when it names an image.
        Raises CommandError when it cannot start."""
        payload = held.payload
        cpu = int(payload.get("cpu") or cpu_share(self._concurrency()))
        env = task_environment({} if payload.get("container") else self.settings.environment,
                               held.directory, held.directory / RESOURCE, cpu, held.id,
                               int(payload["task_id"]))
        if not payload.get("shell"):
            argv = expand_task_variables(argv, self._seen_variables(held, env))
        if payload.get("container"):
            return self._start_container(held, argv, slot, logs, env, cpu)
        if self.settings.has_gpus:  # a task sees exactly its own GPUs, none if it asked none
            env.update(CUDA_VISIBLE_DEVICES=cuda_visible_devices(list(slot.gpus)),
                       CUDA_DEVICE_ORDER="PCI_BUS_ID")
        if payload.get("layout") == CODABENCH:
            return self._watched(self._start_sandboxed(held, argv, slot, logs, env))
        return self._watched(Process.start(argv, held.directory, env, logs.stdout_fd,
                                           logs.stderr_fd))

    @staticmethod
    def _seen_variables(held: Held, env: dict[str, str]) -> dict[str, str]:
        """The task variables as the run sees them: the host's paths for a process, the
        mounted ones in a container or the codabench sandbox."""
        payload = held.payload
        if not payload.get("container") and payload.get("layout") != CODABENCH:
            return env
        slots = SlotDirs.for_execution(held.directory, held.directory / RESOURCE,
                                       payload.get("layout"))
        return {**slots.environment(), "CPU": env["CPU"]}

    def _watched(self, process: Process) -> Process:
        """The keeper ends the process's session if this worker dies before it does."""
        if self._keeper is not None:
            self._keeper.watch_process(process.pid)
        return process

    def _unwatch(self, process: Supervised) -> None:
        """After ``cleanup``: nothing of the run is left for the keeper to end."""
        if self._keeper is None:
            return
        if isinstance(process, Process):
            self._keeper.forget_process(process.pid)
        elif isinstance(process, ContainerRun):
            self._keeper.forget_container(process.container.name)

    def _sandbox_user(self) -> tuple[int, int] | None:
        """Who a sandboxed command runs as: a root worker drops to the containers' user
        (nobody unless set); any other worker runs it as itself (None)."""
        if os.geteuid() != 0:
            return None
        _, uid, gid = self.settings.container_defaults.resolved_user()
        if uid is None:  # only numeric users are accepted; be safe anyway
            return (65534, 65534)
        return (uid, gid if gid is not None else uid)

    def _start_sandboxed(self, held: Held, argv: list[str], slot: Slot, logs: ExecutionLogs,
                         env: dict[str, str]) -> Process:
        """The codabench layout on the host: the command in a bwrap sandbox that sees
        the same /app, /tmp and /resource as a container would, and only the task's
        variables."""
        user = self._sandbox_user()
        tools = sandbox.check(user)  # checked before the download; remembered since
        slots = SlotDirs.for_execution(held.directory, held.directory / RESOURCE, CODABENCH)
        prepare_slots(slots, *(user or (os.getuid(), os.getgid())))
        inside = {key: value for key, value in env.items() if key in SANDBOX_VARIABLES}
        inside.update(slots.environment(), PATH=sandbox.SANDBOX_PATH, HOME="/tmp")
        found = host_env.host_environment(held.payload.get("host_environment"),
                                          sandbox.SANDBOX_PATH)
        inside = host_env.apply(inside, found)
        devices = sandbox.gpu_devices() if slot.gpus else []
        workdir = slots.workdir()
        assert workdir is not None
        command = sandbox.build_argv(tools, argv, mounts=slots.mounts(), env=inside,
                                     workdir=workdir, user=user, devices=devices,
                                     extra=found.bwrap_args())
        return sandbox.SandboxedProcess.start(command, Path("/"), {"PATH": sandbox.SANDBOX_PATH},
                                              logs.stdout_fd, logs.stderr_fd)

    def _start_container(self, held: Held, argv: list[str], slot: Slot, logs: ExecutionLogs,
                         env: dict[str, str], cpu: int) -> ContainerRun:
        assert self.engine is not None
        spec = self._container_spec(held, argv, slot, env, cpu)
        if self._keeper is not None:  # before it exists: a death while creating it counts
            self._keeper.watch_container(spec.name)
        try:
            return ContainerRun.start(self.engine.client, spec, logs.stdout_fd, logs.stderr_fd)
        except Exception as exc:  # noqa: BLE001 - the engine's words go to the user
            if self._keeper is not None:
                self._keeper.forget_container(spec.name)
            message = str(getattr(exc, "explanation", None) or exc)
            code = 127 if "not found" in message and "executable" in message else 125
            raise CommandError(f"container did not start: {message}", code) from None

    def _container_spec(self, held: Held, argv: list[str], slot: Slot, env: dict[str, str],
                        cpu: int) -> ContainerSpec:
        """What the container is created with; CommandError for refused options."""
        payload = held.payload
        network = bool(payload.get("network"))
        try:
            options = parse_container_options(payload.get("container_options"),
                                              network_allowed=network)
        except ScitqBenchError as exc:
            raise CommandError(f"container options refused: {exc}", 125) from None
        defaults = self.settings.container_defaults
        user, uid, gid = defaults.resolved_user()
        slots = SlotDirs.for_execution(held.directory, held.directory / RESOURCE,
                                       payload.get("layout"))
        prepare_slots(slots, uid, gid)
        task_env = {key: value for key, value in env.items() if key in CONTAINER_VARIABLES}
        return build_spec(
            image=payload["container"], argv=argv, options=options, slots=slots,
            task_env=task_env, worker=self.settings.name, execution_id=held.id,
            task_id=int(payload["task_id"]), network_allowed=network, user=user,
            mem_gb=payload.get("mem") or defaults.mem_gb or self._default_mem_gb(),
            cpus=float(cpu), pids_limit=defaults.pids_limit,
            gpu_ids=device_request_ids(list(slot.gpus)),
        )

    def _default_mem_gb(self) -> float | None:
        total = hostprobe.memory_gb()
        return round(total / max(1, self._concurrency()), 3) if total else None

    # -- after the command ---------------------------------------------------------------

    def _finish(self, held: Held, ran: _Exit) -> Event:
        """After the command: the scores, the outputs, then the event (``execute``
        ships every log byte, the upload's progress lines included, before it)."""
        payload = held.payload
        status, reason, error = self._outcome(held, ran)
        scores = None
        if status == SUCCEEDED and payload.get("score_keys") is not None:
            try:  # before the upload; the output goes up whatever the scores say
                scores = read_scores(held.directory / "output", payload["score_keys"])
            except ScoresRefused as exc:
                status, reason, error = FAILED, exc.reason, f"{exc.reason}: {exc}"
        output_files: list[str] = []
        if payload.get("output") and status != CANCELLED:
            output_files, status, reason, error = self._upload(held, status, reason, error)
        if payload.get("container") and self.engine is not None:
            self.engine.images.touch(payload["container"])
        fields: dict[str, Any] = {"return_code": ran.code, "error": error,
                                  "output_files": output_files,
                                  "duration": round(ran.ended - ran.started, 3)}
        if reason:
            fields["reason"] = reason
        if scores is not None and status == SUCCEEDED:
            fields["scores"] = scores
        return Event(held.id, status, at=ran.ended, fields=fields)

    def _outcome(self, held: Held, ran: _Exit) -> tuple[str, str | None, str | None]:
        """The status, reason and error of an execution whose command ran."""
        if ran.timed_out:
            return TIMEOUT, None, f"run timed out after {held.payload.get('run_timeout'):g} s"
        if ran.out_of_memory:
            return FAILED, "out_of_memory", "out of memory: killed at its memory limit"
        if held.abandoned:
            stopped = "cancelled on request" if held.reason == CANCELLED else "the worker stopped"
            return CANCELLED, None, stopped
        return (SUCCEEDED if ran.code == 0 else FAILED), None, None

    def _upload(self, held: Held, status: str, reason: str | None,
                error: str | None) -> tuple[list[str], str, str | None, str | None]:
        """Send the outputs; a failed upload fails a succeeded execution, gives the
        reason unless it had one, and its error (naming the URI) adds to the
        execution's own."""
        uri = held.payload["output"]
        try:
            with self._progress(held, "upload", uri) as progress:
                files = upload(self._io, held.directory / "output", uri, stores=self._stores,
                               progress=progress)
        except TransferError as exc:
            status = FAILED if status == SUCCEEDED else status
            return [], status, reason or OUTPUT_UPLOAD_FAILED, \
                "; ".join(filter(None, [error, f"output upload failed: {exc}"]))
        return files, status, reason, error

    def _flush_logs(self, held: Held, logs: ExecutionLogs) -> None:
        """Every byte goes out before the final event; while the server is away, keep
        trying (unless the worker is stopping and out of time)."""
        delay = 0.2
        while True:
            try:
                logs.ship(self._io, held.id, retry_for=2.0)
                return
            except ServerUnreachable as exc:
                log.warning("execution %s: cannot ship logs yet: %s", held.id, exc)
            if self._out_of_time() or held.reason == DROP:
                return
            self._finished.wait(delay)
            delay = min(delay * 2, 10.0)


def final_event(held: Held, status: str, *, return_code: int | None = None,
                error: str | None = None, reason: str | None = None) -> Event:
    """A final event for an execution whose command did not run to its end."""
    fields: dict[str, Any] = {"return_code": return_code, "error": error}
    if reason:
        fields["reason"] = reason
    return Event(held.id, status, fields=fields)


def fetches(payload: dict[str, Any]) -> bool:
    """Whether the execution downloads something (inputs, resources, an image) before
    it can run; those that do not go straight to the run gate."""
    return bool(payload.get("inputs") or payload.get("resources") or payload.get("container"))


def _gpu_count(payload: dict[str, Any]) -> int:
    """GPUs asked for: a count, or -1 for all of the worker's."""
    gpu = payload.get("gpu") or 0
    return -1 if gpu == "all" else int(gpu)
