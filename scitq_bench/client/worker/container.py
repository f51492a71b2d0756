"""Running a task in a container, through any Docker-API engine (Docker, or Podman's
Docker-compatible service), isolated by default.

A container gets the task's data slots at fixed places (``/input`` and ``/resource``
read-only, ``/output`` and ``/tmp`` writable; or, for the ``codabench`` layout, ``/app``
and its subfolders, see ``SlotDirs``), no network unless the task or its batch allows
it, memory, CPU and pids limits, a non-root user, no capabilities and
no-new-privileges. What a user may add is limited to the parsed ``ContainerOptions``
(validated again here: the server's check is not the only line of defence).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scitq_bench.client.worker.executor import Supervised
from scitq_bench.container_options import ContainerOptions

log = logging.getLogger("scitq_bench.worker")

INPUT, OUTPUT, RESOURCE, TEMP = "/input", "/output", "/resource", "/tmp"
CODABENCH = "codabench"
LAYOUTS = (None, CODABENCH)
APP = "/app"
APP_MOUNTS = ("output", "shared")  # mounted inside /app: mount points in the input folder
LABEL_WORKER = "scitq_bench.worker"
LABEL_EXECUTION = "scitq_bench.execution"
LABEL_TASK = "scitq_bench.task"
WAIT_RETRY = 1.0  # seconds between attempts to wait on a container after an API error
LOG_DRAIN = 10.0  # seconds to let the log stream finish after the exit
OOM_EXIT = 137  # killed by SIGKILL


@dataclass
class ContainerSpec:
    """Everything the engine needs to create one task's container."""

    image: str
    argv: list[str]
    name: str
    labels: dict[str, str]
    environment: dict[str, str]
    mounts: list[tuple[str, str, bool]]  # (host path, container path, read only)
    user: str
    network: str
    mem_bytes: int | None
    nano_cpus: int | None
    pids_limit: int
    shm_bytes: int | None = None
    workdir: str | None = None
    entrypoint: list[str] | None = None
    gpu_ids: list[str] = field(default_factory=list)

    def create_arguments(self) -> dict[str, Any]:
        """Keyword arguments for ``docker``'s ``containers.create``."""
        from docker.types import DeviceRequest, Mount

        arguments: dict[str, Any] = dict(
            image=self.image, command=self.argv, name=self.name, labels=self.labels,
            environment=self.environment, user=self.user, network_mode=self.network,
            mounts=[Mount(target, source, type="bind", read_only=read_only)
                    for source, target, read_only in self.mounts],
            pids_limit=self.pids_limit, cap_drop=["ALL"],
            security_opt=["no-new-privileges"], detach=True, stdin_open=False, tty=False,
        )
        if self.mem_bytes is not None:
            arguments.update(mem_limit=self.mem_bytes, memswap_limit=self.mem_bytes)
        if self.nano_cpus is not None:
            arguments["nano_cpus"] = self.nano_cpus
        if self.shm_bytes is not None:
            arguments["shm_size"] = self.shm_bytes
        if self.workdir is not None:
            arguments["working_dir"] = self.workdir
        if self.entrypoint is not None:
            arguments["entrypoint"] = self.entrypoint
        if self.gpu_ids:
            arguments["device_requests"] = [
                DeviceRequest(device_ids=list(self.gpu_ids), capabilities=[["gpu"]])
            ]
        return arguments


@dataclass
class ContainerDefaults:
    """What a worker gives a container when the task does not say: the user it runs as
    (None: nobody (65534) for a root worker, the worker's own user otherwise), a pids
    limit, and memory (None: the machine's memory divided by the concurrency)."""

    user: str | None = None
    pids_limit: int = 1024
    mem_gb: float | None = None

    def resolved_user(self) -> tuple[str, int | None, int | None]:
        """(user for the engine, uid, gid) -- uid/gid None when given by name."""
        user = self.user
        if user is None:
            user = "65534:65534" if os.geteuid() == 0 else f"{os.getuid()}:{os.getgid()}"
        uid_text, _, gid_text = user.partition(":")
        if not uid_text.isdigit() or (gid_text and not gid_text.isdigit()):
            return user, None, None
        uid = int(uid_text)
        return user, uid, int(gid_text) if gid_text else uid


@dataclass
class SlotDirs:
    """The host side of the data slots of one execution, and where a run sees them.

    The standard layout: ``/input`` and ``/resource`` read-only, ``/output`` and
    ``/tmp`` writable. The ``codabench`` layout: the input folder, writable (it is this
    execution's own copy), at ``/app`` -- so what the inputs placed in ``program``,
    ``input_data``, ``input/ref``, ``input/res``, ``ingested_program`` or
    ``ingestion_program`` shows up under ``/app`` -- with the output at ``/app/output``,
    a fresh ``shared`` folder at ``/app/shared``, the scratch folder at ``/tmp`` and the
    resources, read-only, at ``/resource``. ``resource`` is the execution's own folder
    (``<directory>/resource``, its resources linked from the worker's cache): a run
    sees no other execution's resources."""

    input: Path
    output: Path
    tmp: Path
    resource: Path
    layout: str | None = None
    shared: Path | None = None  # codabench: the host folder behind /app/shared

    @classmethod
    def for_execution(cls, directory: Path, resource: Path,
                      layout: str | None = None) -> SlotDirs:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}")
        return cls(input=directory / "input", output=directory / "output",
                   tmp=directory / "tmp", resource=resource, layout=layout,
                   shared=directory / "shared" if layout == CODABENCH else None)

    @property
    def codabench(self) -> bool:
        return self.layout == CODABENCH

    def mounts(self) -> list[tuple[str, str, bool]]:
        """(host path, path in the run, read only), parents before what they hold."""
        if not self.codabench:
            return [(str(self.input), INPUT, True), (str(self.resource), RESOURCE, True),
                    (str(self.output), OUTPUT, False), (str(self.tmp), TEMP, False)]
        assert self.shared is not None
        return [(str(self.input), APP, False), (str(self.output), f"{APP}/output", False),
                (str(self.shared), f"{APP}/shared", False), (str(self.tmp), TEMP, False),
                (str(self.resource), RESOURCE, True)]

    def environment(self) -> dict[str, str]:
        """The slot variables, as the run sees them. Codabench: ``INPUT`` is
        ``/app/input_data`` when the inputs made that folder (an ingestion), else
        ``/app/input`` (scoring: ``ref`` and ``res`` below it)."""
        if not self.codabench:
            return dict(INPUT=INPUT, OUTPUT=OUTPUT, RESOURCE=RESOURCE, TEMP=TEMP)
        data = "input_data" if _is_dir(self.input / "input_data") else "input"
        return dict(INPUT=f"{APP}/{data}", OUTPUT=f"{APP}/output", RESOURCE=RESOURCE,
                    TEMP=TEMP)

    def workdir(self) -> str | None:
        """Codabench: ``/app/program`` when the inputs made it, else ``/app``."""
        if not self.codabench:
            return None
        return f"{APP}/program" if _is_dir(self.input / "program") else APP


def _is_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def build_spec(
    *, image: str, argv: list[str], options: ContainerOptions, slots: SlotDirs,
    task_env: Mapping[str, str], worker: str, execution_id: int, task_id: int,
    network_allowed: bool, user: str, mem_gb: float | None, cpus: float | None,
    pids_limit: int, gpu_ids: list[str],
) -> ContainerSpec:
    """The container for one execution: the slots of its layout, the process
    executor's variables (pointing at the slots), and the limits. User options only add
    what the allow-list permits; the network stays off unless allowed."""
    environment = dict(options.env)
    environment.update(task_env)
    environment.update(slots.environment())
    network = "none"
    if network_allowed:
        network = options.network or "bridge"
    return ContainerSpec(
        image=image, argv=argv, name=container_name(worker, execution_id),
        labels={LABEL_WORKER: worker, LABEL_EXECUTION: str(execution_id),
                LABEL_TASK: str(task_id)},
        environment=environment,
        mounts=slots.mounts(),
        user=user, network=network,
        mem_bytes=None if mem_gb is None else int(mem_gb * (1 << 30)),
        nano_cpus=None if cpus is None else int(cpus * 1e9),
        pids_limit=options.pids_limit or pids_limit, shm_bytes=options.shm_size,
        workdir=options.workdir or slots.workdir(), entrypoint=options.entrypoint, gpu_ids=list(gpu_ids),
    )


def container_name(worker: str, execution_id: int) -> str:
    """Unique per worker and execution, and a valid container name."""
    safe = "".join(c if c.isalnum() or c in "_.-" else "-" for c in worker)
    return f"scitq-bench-{safe}-{execution_id}"


def prepare_slots(slots: SlotDirs, uid: int | None, gid: int | None) -> None:
    """Writable slots belong to the run's user; the others only need to be readable by
    it (downloads are made world-readable). Codabench: the input folder, mounted at
    ``/app``, is writable too, and holds the mount points of ``/app/output`` and
    ``/app/shared`` (made before mounting: nothing creates them inside the run)."""
    writable = [slots.output, slots.tmp]
    if slots.codabench:
        assert slots.shared is not None
        slots.input.mkdir(parents=True, exist_ok=True)
        for name in APP_MOUNTS:
            _mount_point(slots.input / name)
        writable.append(slots.shared)
    for path in writable:
        path.mkdir(parents=True, exist_ok=True)
        _own(path, uid, gid)
    readable = [slots.resource] if slots.codabench else [slots.input, slots.resource]
    for path in readable:
        path.mkdir(parents=True, exist_ok=True)
        _make_readable(path)
    if slots.codabench:
        _make_writable(slots.input, uid, gid)


def _own(path: Path, uid: int | None, gid: int | None) -> None:
    if uid is not None and os.geteuid() == 0:
        os.chown(path, uid, gid if gid is not None else uid)
    path.chmod(0o770 if uid is not None else 0o777)


def _mount_point(path: Path) -> None:
    """An empty folder at ``path``, whatever the inputs put there (a file or a link
    would move or break the mount); a real folder stays, hidden by the mount."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    path.mkdir(exist_ok=True)


def _make_readable(root: Path) -> None:
    """Open the tree to reading; a mode that allows it already is left alone (the
    resources are hard links to the worker's cache, read-only for all already)."""
    for directory, _subdirs, files in os.walk(root):
        _add_bits(directory, 0o555)
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                _add_bits(path, 0o444)


def _add_bits(path: str, bits: int) -> None:
    mode = os.stat(path).st_mode
    if mode & bits != bits:
        os.chmod(path, mode | bits)


def _make_writable(root: Path, uid: int | None, gid: int | None) -> None:
    """The whole tree to the run's user (a root worker gives it away; links are
    changed themselves, never what they point to), or open to all when the user is
    unknown. Nothing runs yet: the tree is the worker's own download."""
    give = uid is not None and os.geteuid() == 0
    group = gid if gid is not None else uid
    dir_bits, file_bits = (0o770, 0o660) if uid is not None else (0o777, 0o666)

    def adopt(path: str, bits: int) -> None:
        if os.path.islink(path):
            if give:
                os.chown(path, uid, group, follow_symlinks=False)  # type: ignore[arg-type]
            return
        if give:
            os.chown(path, uid, group)  # type: ignore[arg-type]
        os.chmod(path, os.stat(path).st_mode | bits)

    adopt(str(root), dir_bits)
    for directory, subdirs, files in os.walk(root):  # links to folders are not entered
        for name in subdirs:
            adopt(os.path.join(directory, name), dir_bits)
        for name in files:
            adopt(os.path.join(directory, name), file_bits)


class ContainerRun(Supervised):
    """One running container: logs pumped live into the execution's log files, the
    exit code from the engine, pause/unpause/stop/kill mapped onto the engine."""

    def __init__(self, container: Any, api: Any, stdout_fd: int, stderr_fd: int,
                 mem_bytes: int | None) -> None:
        super().__init__()
        self.container = container
        self._mem_bytes = mem_bytes
        self._exit: int | None = None
        self._done = threading.Event()
        self._stop_requested = False
        self._stream = api.attach(container.id, stdout=True, stderr=True, stream=True,
                                  logs=True, demux=True)
        self._pump = threading.Thread(target=self._pump_logs, args=(stdout_fd, stderr_fd),
                                      name=f"logs-{container.name}", daemon=True)

    @classmethod
    def start(cls, client: Any, spec: ContainerSpec, stdout_fd: int, stderr_fd: int) -> ContainerRun:
        """Create, attach (before start, so no output is missed) and start."""
        container = client.containers.create(**spec.create_arguments())
        try:
            run = cls(container, client.api, stdout_fd, stderr_fd, spec.mem_bytes)
            container.start()
        except BaseException:
            _remove(container)
            raise
        run.started = time.monotonic()
        run._pump.start()
        threading.Thread(target=run._wait_exit, name=f"wait-{container.name}",
                         daemon=True).start()
        return run

    # -- engine side --------------------------------------------------------------------

    def _pump_logs(self, stdout_fd: int, stderr_fd: int) -> None:
        try:
            for out, err in self._stream:
                if out:
                    _write_all(stdout_fd, out)
                if err:
                    _write_all(stderr_fd, err)
        except Exception as exc:  # noqa: BLE001 - the stream broke; the exit still counts
            log.warning("container %s: log stream ended early: %s", self.container.name, exc)

    def _wait_exit(self) -> None:
        while True:
            try:
                answer = self.container.wait()
                self._exit = int(answer.get("StatusCode", -1))
                break
            except Exception as exc:  # noqa: BLE001 - the engine may be restarting
                status = self._status()
                if status in ("exited", "dead", None):
                    self._exit = self._inspected_exit_code()
                    break
                log.warning("container %s: wait failed, retrying: %s", self.container.name, exc)
                self._done.wait(WAIT_RETRY)
        self._done.set()

    def _status(self) -> str | None:
        try:
            self.container.reload()
            return str(self.container.status)
        except Exception:  # noqa: BLE001
            return None

    def _inspected_exit_code(self) -> int:
        try:
            return int(self.container.attrs["State"]["ExitCode"])
        except (KeyError, TypeError, ValueError):
            return OOM_EXIT

    def _call(self, action: str, *args: Any, **kwargs: Any) -> None:
        """Control calls race with the exit: an engine error on an ended container is
        not worth reporting."""
        try:
            getattr(self.container, action)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            if not self.exited:
                log.warning("container %s: %s failed: %s", self.container.name, action, exc)

    # -- Supervised ----------------------------------------------------------------------

    @property
    def exited(self) -> bool:
        return self._done.is_set()

    def _suspend(self) -> None:
        self._call("pause")

    def _continue(self) -> None:
        if self.paused:
            self._call("unpause")

    def _ask_to_end(self) -> None:
        self._stop_requested = True
        self._continue()
        self._call("kill", signal="SIGTERM")

    def _force_end(self) -> None:
        self._stop_requested = True
        self._continue()
        self._call("kill", signal="SIGKILL")

    def wait(self, timeout: float | None = None) -> int | None:
        if not self._done.wait(timeout):
            return None
        self._pump.join(LOG_DRAIN)
        assert self._exit is not None
        return self._exit

    @property
    def out_of_memory(self) -> bool:
        """Whether the engine killed it at its memory limit. Docker says so
        (``OOMKilled``); some engines do not, so a SIGKILL nobody here sent, to a
        container with a memory limit, counts too."""
        if self._exit != OOM_EXIT or self._stop_requested:
            return False  # only a SIGKILL nobody here sent can be the memory limit
        try:
            self.container.reload()
            if self.container.attrs["State"].get("OOMKilled"):
                return True
        except Exception:  # noqa: BLE001
            pass
        return self._mem_bytes is not None

    def _release(self) -> None:
        try:
            self._stream.close()
        except Exception:  # noqa: BLE001
            pass
        _remove(self.container)


def _remove(container: Any) -> None:
    try:
        container.remove(force=True)
    except Exception as exc:  # noqa: BLE001
        if "no such container" not in str(exc).lower():
            log.warning("could not remove container %s: %s", container.name, exc)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
