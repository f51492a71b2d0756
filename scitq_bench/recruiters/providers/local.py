"""``local``: "instances" are worker processes on this machine.

Settings (a mapping):

- ``server_url`` (required): the URL the workers talk to;
- ``token`` (required, secret): an enrollment (or admin) token; it reaches the worker
  through its environment (``SCITQ_BENCH_TOKEN``), never its command line;
- ``work_root`` (required): a folder; each worker works in ``<work_root>/<name>`` (its
  log is ``worker.log`` there) and the provider keeps the processes it started in
  ``<work_root>/local-instances.json`` (written atomically, under a file lock);
- ``python`` (default: this interpreter): the Python that runs ``scitq_bench.cli.main``;
- ``concurrency`` (1), ``prefetch`` (0), ``containers`` (false): ``worker run`` options;
- ``extra_args``: more ``worker run`` arguments (a list);
- ``env``: extra environment variables for the workers (a mapping);
- ``grace_seconds`` (10): how long ``delete`` waits after SIGTERM before SIGKILL.

The instance id is ``<pid>-<start>``, the process's start time (in clock ticks since
boot, from ``/proc/<pid>/stat``; psutil's create time elsewhere) after its pid, so that a
reused pid is never taken for our worker. The worker's environment is built from a short
allow-list (PATH, HOME, locale, TMPDIR, virtualenv, container engine variables) plus
``env``: nothing else of the server's environment (its secrets) reaches it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil

from scitq_bench import hostprobe
from scitq_bench.exceptions import InvalidInput
from scitq_bench.recruiters.providers.base import (
    OWNER_TAG,
    CredentialsError,
    Instance,
    InstanceSpec,
    Offer,
    Provider,
    ProviderError,
    as_list,
    require,
)
from scitq_bench.states import InstanceStatus

REGION = "local"
FLAVOR = "local"
REGISTRY = "local-instances.json"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
PASSED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
              "VIRTUAL_ENV", "PYTHONPATH", "DOCKER_HOST", "CONTAINER_HOST",
              "XDG_RUNTIME_DIR")


def start_time(pid: int) -> str | None:
    """When process ``pid`` started (a string that differs for a reused pid), or None
    when there is no such live process (a zombie counts as gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc here: ask psutil
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            return f"{process.create_time():.2f}"
        except psutil.Error:
            return None
    fields = text[text.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X", "x"):
        return None
    return fields[19]


class LocalProvider(Provider):
    name = "local"
    starts_worker = True  # its instances are worker processes

    def __init__(self, config: Mapping[str, Any], identity: str) -> None:
        super().__init__(config, identity)
        require(self.name, config, "server_url", "token", "work_root")
        self._server_url = str(config["server_url"]).rstrip("/")
        self._token = str(config["token"])
        self.work_root = Path(config["work_root"]).absolute()
        self._python = str(config.get("python") or sys.executable)
        self._concurrency = int(config.get("concurrency", 1))
        self._prefetch = int(config.get("prefetch", 0))
        self._containers = bool(config.get("containers", False))
        self._extra_args = as_list(config.get("extra_args"))
        self._env = {str(k): str(v) for k, v in (config.get("env") or {}).items()}
        self._grace = float(config.get("grace_seconds", 10.0))
        self._children: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()

    # -- registry ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _registry(self) -> Iterator[dict[str, Any]]:
        """The registry, locked (threads and processes) while the block runs; what the
        block leaves in it is written back atomically."""
        import fcntl

        self.work_root.mkdir(parents=True, exist_ok=True)
        path = self.work_root / REGISTRY
        with self._lock, open(self.work_root / f".{REGISTRY}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                entries = json.loads(path.read_text()) if path.exists() else {}
            except json.JSONDecodeError as exc:
                raise ProviderError(f"local: {path} is not valid JSON: {exc}") from None
            before = json.dumps(entries, sort_keys=True)
            yield entries
            if json.dumps(entries, sort_keys=True) != before:
                handle, temporary = tempfile.mkstemp(dir=self.work_root, prefix=".registry")
                with os.fdopen(handle, "w") as out:
                    json.dump(entries, out, indent=1, sort_keys=True)
                os.replace(temporary, path)

    # -- processes --------------------------------------------------------------------

    def _alive(self, instance_id: str) -> bool:
        pid, _, start = instance_id.partition("-")
        if not pid.isdigit():
            return False
        child = self._children.get(int(pid))
        if child is not None and child.poll() is not None:  # reap our own zombie
            self._children.pop(int(pid), None)
            return False
        return bool(start) and start_time(int(pid)) == start

    def _worker_env(self, spec: InstanceSpec, work_dir: Path) -> dict[str, str]:
        env = {key: os.environ[key] for key in PASSED_ENV if key in os.environ}
        env.update({key: value for key, value in os.environ.items() if key.startswith("LC_")})
        env.update(self._env)
        env.update(
            SCITQ_BENCH_TOKEN=self._token,
            SCITQ_BENCH_DATA_DIR=str(work_dir / "data"),
            # no client config of the server's user (it may hold an admin token)
            SCITQ_BENCH_CONFIG=str(work_dir / "client.json"),
            PYTHONUNBUFFERED="1",
        )
        env.pop("SCITQ_BENCH_SERVER", None)
        return env

    def _argv(self, spec: InstanceSpec, work_dir: Path) -> list[str]:
        return [
            self._python, "-m", "scitq_bench.cli.main", "worker", "run", self._server_url,
            "--name", spec.name, "--work-dir", str(work_dir / "work"),
            "--concurrency", str(self._concurrency), "--prefetch", str(self._prefetch),
            "--containers" if self._containers else "--no-containers", *self._extra_args,
        ]

    def _instance(self, instance_id: str, entry: Mapping[str, Any], status: str) -> Instance:
        return Instance(self.name, instance_id, entry.get("name", ""), REGION, status,
                        address="127.0.0.1" if status == InstanceStatus.RUNNING.value else None,
                        flavor=FLAVOR, tags=dict(entry.get("tags") or {}))

    # -- interface --------------------------------------------------------------------

    def create(self, spec: InstanceSpec) -> Instance:
        if not NAME.match(spec.name):
            raise InvalidInput(f"local: instance name {spec.name!r} must be letters, "
                               "digits, '.', '_' or '-' (at most 100)")
        if spec.flavor != FLAVOR or spec.region != REGION:
            raise InvalidInput(f"local: only flavor {FLAVOR!r} in region {REGION!r} "
                               f"exists (not {spec.flavor!r} in {spec.region!r})")
        work_dir = self.work_root / spec.name
        work_dir.mkdir(parents=True, exist_ok=True)
        tags = self.owner_tags(spec)
        with self._registry() as entries:
            for instance_id, entry in entries.items():
                if entry.get("name") == spec.name and self._alive(instance_id):
                    raise InvalidInput(f"local: a worker named {spec.name!r} is running")
            with open(work_dir / "worker.log", "ab") as log:
                process = subprocess.Popen(
                    self._argv(spec, work_dir), env=self._worker_env(spec, work_dir),
                    cwd=work_dir, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                )
            start = start_time(process.pid)
            if start is None:  # exited at once
                process.wait()
                raise ProviderError(f"local: worker {spec.name} exited at once "
                                    f"(status {process.returncode}): see "
                                    f"{work_dir / 'worker.log'}")
            self._children[process.pid] = process
            instance_id = f"{process.pid}-{start}"
            entries[instance_id] = {"name": spec.name, "pid": process.pid, "start": start,
                                    "work_dir": str(work_dir), "tags": tags,
                                    "created": time.time()}
            return self._instance(instance_id, entries[instance_id], InstanceStatus.RUNNING.value)

    def state(self, instance_id: str, region: str) -> Instance:
        with self._registry() as entries:
            entry = entries.get(instance_id, {})
        alive = self._alive(instance_id)
        status = InstanceStatus.RUNNING.value if alive else InstanceStatus.GONE.value
        return self._instance(instance_id, entry, status)

    def delete(self, instance_id: str, region: str) -> None:
        pid = instance_id.partition("-")[0]
        if self._alive(instance_id):
            self._signal(int(pid), signal.SIGTERM)
            deadline = time.monotonic() + self._grace
            while self._alive(instance_id) and time.monotonic() < deadline:
                time.sleep(0.1)
            if self._alive(instance_id):
                self._signal(int(pid), signal.SIGKILL)
                deadline = time.monotonic() + 5
                while self._alive(instance_id) and time.monotonic() < deadline:
                    time.sleep(0.05)
        with self._registry() as entries:
            entries.pop(instance_id, None)

    @staticmethod
    def _signal(pid: int, signum: int) -> None:
        """The whole session (the worker and what it runs), else the process alone."""
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def list_owned(self) -> list[Instance]:
        found = []
        with self._registry() as entries:
            for instance_id in list(entries):
                entry = entries[instance_id]
                if not self._alive(instance_id):
                    del entries[instance_id]  # gone: forget it
                elif (entry.get("tags") or {}).get(OWNER_TAG) == self.identity:
                    found.append(self._instance(instance_id, entry, InstanceStatus.RUNNING.value))
        return found

    def offers(self) -> list[Offer]:
        disk = psutil.disk_usage(str(self.work_root if self.work_root.exists() else "/"))
        return [Offer(self.name, REGION, FLAVOR, cpu=hostprobe.cpu_count(),
                      ram_gb=hostprobe.memory_gb(),
                      disk_gb=round(disk.total / hostprobe.GB, 2), cost=0.0)]

    def check(self) -> str:
        try:
            self.work_root.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.work_root, prefix=".check")
            probe.close()
        except OSError as exc:
            raise CredentialsError(f"local: work_root {self.work_root} is not writable: "
                                   f"{exc.strerror}") from None
        return f"local: {os.cpu_count()} CPUs, workers under {self.work_root}"
