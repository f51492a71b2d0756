"""Deploying and destroying workers on machines with Ansible, through ansible-runner.

``run_playbook`` runs one of the playbooks in ``ansible/`` (or any playbook) against one
host over SSH and returns its status, return code, log and the task that failed;
``deploy_worker`` and ``destroy_worker`` give it the variables of ``deploy.yml`` and
``destroy.yml``.

Secrets (the worker's token, anything named like a token or password) travel only in
the private data directory's ``env/extravars`` file (mode 0600, removed after the run),
never on a command line, and every occurrence of their values in the returned log, the
task names passed to ``on_progress`` and the errors raised is replaced by ``***``.

Host keys are not checked: a machine deployed to is one the provider created moments
ago, with a host key nobody could know beforehand (there is no trusted channel to learn
it), and cloud addresses are reused, so a known_hosts file would only collect stale
keys that refuse the next machine at the same address. Nothing is written to
known_hosts. What authenticates the exchange is the key pair: the machine accepts only
the key the provider installed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

from scitq_bench.exceptions import ScitqBenchError
from scitq_bench.shared_files import shared_dir

log = logging.getLogger("scitq_bench.recruit.deploy")



def _ansible_dir() -> Path:
    """Where the playbooks are: $SCITQ_BENCH_ANSIBLE_DIR, else ansible/ next to the
    package (a source tree), else where the wheel installs them
    (``<prefix>/share/scitq_bench/ansible``)."""
    explicit = os.environ.get("SCITQ_BENCH_ANSIBLE_DIR")
    if explicit:
        return Path(explicit)
    return shared_dir("ansible")


ANSIBLE_DIR = _ansible_dir()
DEPLOY_PLAYBOOK, DESTROY_PLAYBOOK = "deploy.yml", "destroy.yml"
SECRET_NAMES = re.compile(r"token|passw|secret|private_key", re.IGNORECASE)
REDACTED = "***"
FAILED_EVENTS = ("runner_on_failed", "runner_on_unreachable", "runner_item_on_failed")

ProgressCallback = Callable[[int, str], None]
SSH_CONNECT_TIMEOUT = 10  # seconds for one SSH connection attempt (Ansible's default)
CANCEL_POLL = 0.5  # seconds between two looks at ``cancel()`` while the playbook is quiet


class DeployError(ScitqBenchError):
    """A playbook could not be run."""

    code = "deploy_error"


@dataclass
class PlaybookResult:
    status: str  # ansible-runner's: successful, failed, timeout, canceled
    rc: int
    log: str  # the playbook's output, secrets redacted
    failed_task: str | None = None  # the first task that failed (or could not connect)

    @property
    def ok(self) -> bool:
        return self.status == "successful"


class Redactor:
    """Replaces the secrets' values by ``***`` in text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # longest first: a secret containing another is replaced whole
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


def secret_values(extravars: Mapping[str, Any]) -> list[str]:
    """The values of the variables named like secrets (also inside lists and maps)."""
    found: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                collect(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)

    def walk(mapping: Mapping[str, Any]) -> None:
        for key, value in mapping.items():
            if SECRET_NAMES.search(str(key)):
                collect(value)
            elif isinstance(value, Mapping):
                walk(value)

    walk(extravars)
    return found


def resolve_playbook(playbook: str | Path) -> Path:
    """A playbook's path: as given when it exists, else in ``ANSIBLE_DIR``."""
    path = Path(playbook)
    if not path.is_absolute() and not path.exists():
        path = ANSIBLE_DIR / path
    if not path.is_file():
        raise DeployError(f"playbook {playbook} not found (looked in {ANSIBLE_DIR}; set "
                          "SCITQ_BENCH_ANSIBLE_DIR to the folder with deploy.yml)")
    return path.resolve()


def count_tasks(playbook: Path) -> int:
    """How many tasks the playbook starts, counted in its YAML: the plays' tasks, their
    static roles' and imports'. Dynamic includes count as one (their tasks make the
    progress stop short of 100 until the end). At least 1."""
    try:
        plays = yaml.safe_load(playbook.read_text()) or []
    except (OSError, yaml.YAMLError):
        return 1
    total = 0
    for play in plays if isinstance(plays, list) else []:
        if not isinstance(play, dict):
            continue
        if "import_playbook" in play or "ansible.builtin.import_playbook" in play:
            target = play.get("import_playbook") or play.get("ansible.builtin.import_playbook")
            total += count_tasks(playbook.parent / str(target))
            continue
        for role in play.get("roles") or []:
            name = role.get("role") or role.get("name") if isinstance(role, dict) else role
            total += _count_role(playbook.parent, str(name), "main")
        for section in ("pre_tasks", "tasks", "post_tasks"):
            total += _count_list(playbook.parent, play.get(section) or [], playbook.parent)
    return max(total, 1)


def _role_dir(base: Path, name: str) -> Path:
    return Path(name) if Path(name).is_absolute() else base / "roles" / name


def _count_role(base: Path, name: str, tasks_from: str) -> int:
    directory = _role_dir(base, name) / "tasks"
    for candidate in (f"{tasks_from}.yml", f"{tasks_from}.yaml", tasks_from):
        if (directory / candidate).is_file():
            return _count_file(base, directory / candidate)
    return 0


def _count_file(base: Path, path: Path) -> int:
    try:
        tasks = yaml.safe_load(path.read_text()) or []
    except (OSError, yaml.YAMLError):
        return 1
    return _count_list(base, tasks if isinstance(tasks, list) else [], path.parent)


def _count_list(base: Path, tasks: list[Any], here: Path) -> int:
    total = 0
    for task in tasks:
        if not isinstance(task, dict):
            continue
        if "block" in task:
            for part in ("block", "rescue", "always"):
                if part != "rescue":  # rescue runs only after a failure
                    total += _count_list(base, task.get(part) or [], here)
            continue
        imported = task.get("import_tasks") or task.get("ansible.builtin.import_tasks")
        if imported:
            total += _count_file(base, here / str(imported))
            continue
        role = task.get("import_role") or task.get("ansible.builtin.import_role")
        if isinstance(role, dict):
            total += _count_role(base, str(role.get("name")), str(role.get("tasks_from") or "main"))
            continue
        total += 1
    return total


def timing_vars(timeout: float | None, extravars: Mapping[str, Any]) -> dict[str, int]:
    """The playbook's own waits cut to the time the run has, so that no wait outlives
    it: ``playbook_timeout`` (the whole run; the roles bound their downloads and reboots
    with it), ``connect_timeout`` (waiting for SSH) and ``ansible_ssh_timeout`` (one
    SSH connection attempt). A smaller value given in ``extravars`` is kept."""
    if timeout is None:
        return {}
    budget = max(1, int(timeout))

    def capped(name: str, default: int) -> int:
        given = extravars.get(name)
        try:
            value = default if given is None else int(given)
        except (TypeError, ValueError):
            raise DeployError(f"{name} must be a whole number of seconds, not {given!r}") from None
        return max(1, min(budget, value))

    return {"playbook_timeout": budget, "connect_timeout": capped("connect_timeout", budget),
            "ansible_ssh_timeout": capped("ansible_ssh_timeout", SSH_CONNECT_TIMEOUT)}


def _close_ssh_masters(control_dir: Path) -> None:
    """End the SSH connections Ansible kept open for the run (``ControlPersist``): they
    detach from the playbook's process group, so stopping the playbook leaves them."""
    for socket_path in control_dir.iterdir() if control_dir.is_dir() else []:
        try:
            subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={socket_path}", "localhost"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
                           check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("could not close the SSH connection %s: %s", socket_path, exc)
    shutil.rmtree(control_dir, ignore_errors=True)


class _Brake:
    """ansible-runner's cancel callback: true once ``cancel()`` says so or the deadline
    passed, and then it kills the run's whole process tree first. ansible-runner kills
    only the playbook's process group, and Ansible's workers start sessions of their
    own: they, and the SSH clients they started, would run on (a worker in
    ``wait_for_connection`` waits out its own timeout)."""

    def __init__(self, marker: str, timeout: float | None,
                 cancel: Callable[[], bool] | None) -> None:
        self.marker = marker  # in the playbook's command line, and only in this run's
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.cancel = cancel
        self.why: str | None = None  # ansible-runner's status: "canceled" or "timeout"

    def ran_out(self, status: str) -> str:
        """``status``, or "timeout" for a run that failed within the second its waits
        were cut by (``timing_vars`` gives them whole seconds): it ran out of time."""
        near = self.deadline is not None and self.deadline - time.monotonic() < 1.0
        return "timeout" if status == "failed" and near else status

    def __call__(self) -> bool:
        if self.why is None:
            if self.cancel is not None and self.cancel():
                self.why = "canceled"
            elif self.deadline is not None and time.monotonic() >= self.deadline:
                self.why = "timeout"
            if self.why is not None:
                _kill_tree(self.marker)
        return self.why is not None


def _kill_tree(marker: str) -> None:
    """SIGKILL the playbook whose command line holds ``marker`` (a child of this
    process) and all its descendants, stopped first so that none forks away meanwhile."""
    found: list[psutil.Process] = []
    for child in psutil.Process().children():
        try:
            if marker in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    for _ in range(2):  # stop what is there, then what was started meanwhile
        for process in list(found):
            try:
                process.suspend()
                found.extend(c for c in process.children(recursive=True) if c not in found)
            except psutil.Error:
                continue
    for process in found:
        try:
            process.kill()
        except psutil.Error:
            continue


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it may hold secrets)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


class _Progress:
    """Turns runner events into progress: the share of the playbook's tasks started
    before the current one, and its name."""

    def __init__(self, total: int, callback: ProgressCallback | None,
                 redact: Redactor) -> None:
        self.total, self.callback, self.redact = total, callback, redact
        self.started = 0
        self.failed_task: str | None = None
        self.lock = threading.Lock()

    def report(self, percent: int, task: str) -> None:
        if self.callback is None:
            return
        try:
            self.callback(percent, self.redact(task))
        except Exception:  # noqa: BLE001 - a broken callback must not break the deploy
            log.exception("progress callback failed")

    def event(self, event: dict[str, Any]) -> bool:
        kind = event.get("event")
        data = event.get("event_data") or {}
        with self.lock:
            if kind == "playbook_on_task_start":
                percent = min(99, self.started * 100 // self.total)
                self.started += 1
                self.report(percent, _task_label(data))
            elif kind in FAILED_EVENTS and not data.get("ignore_errors"):
                if self.failed_task is None:
                    self.failed_task = self.redact(_task_label(data))
        return True


def _task_label(data: Mapping[str, Any]) -> str:
    """A task as Ansible shows it: ``role : name``."""
    name = str(data.get("task") or data.get("name") or "task")
    role = data.get("role")
    return f"{role} : {name}" if role else name


def run_playbook(
    playbook: str | Path,
    host: str,
    *,
    user: str = "root",
    port: int = 22,
    ssh_key: Path | None = None,
    extravars: Mapping[str, Any],
    on_progress: ProgressCallback | None = None,
    timeout: float | None = None,
    work_dir: Path,
    secrets: Iterable[str] = (),
    cancel: Callable[[], bool] | None = None,
) -> PlaybookResult:
    """Run ``playbook`` (a path, or a name in ``ANSIBLE_DIR``) on ``host`` over SSH.

    ``work_dir`` is ansible-runner's private data directory (created, mode 0700; it
    keeps the run's artifacts, its secrets file is removed at the end). Progress goes to
    ``on_progress(percent, task name)``: 0 first, then at each task, 100 after a
    successful run. ``timeout`` (seconds) bounds the whole run: the playbook's waits
    are cut to it (``timing_vars``) and the run is stopped when it is spent (status
    ``timeout``); ``cancel()`` returning true stops it (status ``canceled``; it is
    asked every ``CANCEL_POLL`` seconds at least). A stopped run's processes are
    killed, the SSH connections it kept open included. Values of extravars named like
    secrets, and ``secrets``, are redacted from the log, the progress and the errors."""
    redact = Redactor([*secret_values(extravars), *secrets])
    try:
        import ansible_runner
    except ImportError:
        raise DeployError("ansible-runner is not installed: pip install ansible-runner "
                          "ansible-core") from None
    path = resolve_playbook(playbook)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    work_dir.chmod(0o700)

    inventory = _write_inventory(work_dir, host, user=user, port=port, ssh_key=ssh_key)
    # Written here rather than given to ansible_runner.run(extravars=...): the runner
    # writes that file only when none exists, and otherwise puts the variables on
    # ansible-playbook's command line, where every user of this machine can read them.
    extravars_file = work_dir / "env" / "extravars"
    _write_private(extravars_file, json.dumps({**extravars, **timing_vars(timeout, extravars)},
                                              default=str))
    # its own folder (short: socket paths are limited), so its connections are found
    control_dir = Path(tempfile.mkdtemp(prefix="sqb-ssh-"))

    progress = _Progress(count_tasks(path), on_progress, redact)
    brake = _Brake(str(inventory), timeout, cancel)
    status: dict[str, str] = {}

    def on_status(data: dict[str, Any], **_: Any) -> None:
        status["status"] = str(data.get("status"))

    progress.report(0, "starting")
    try:
        runner = ansible_runner.run(
            private_data_dir=str(work_dir),
            project_dir=str(path.parent),
            playbook=str(path),
            inventory=str(inventory),
            envvars=_ansible_environment(control_dir),
            ident=uuid.uuid4().hex,
            event_handler=progress.event,
            status_handler=on_status,
            cancel_callback=brake,
            settings={"pexpect_timeout": CANCEL_POLL},
            quiet=True,
        )
        text = runner.stdout.read() if runner.stdout else ""
    except Exception as exc:  # noqa: BLE001 - re-raised redacted: it may quote the secrets
        raise DeployError(redact(f"running {path.name} on {host} failed: {exc}")) from None
    finally:
        extravars_file.unlink(missing_ok=True)
        _close_ssh_masters(control_dir)
    result = PlaybookResult(status=brake.why or brake.ran_out(str(
                                runner.status or status.get("status") or "unknown")),
                            rc=int(runner.rc if runner.rc is not None else -1),
                            log=redact(text), failed_task=progress.failed_task)
    if result.ok:
        progress.report(100, "done")
    elif result.failed_task is None and result.status == "failed":
        result.failed_task = _last_task(result.log)
    return result


def _write_inventory(work_dir: Path, host: str, *, user: str, port: int,
                     ssh_key: Path | None) -> Path:
    """The one-host inventory of a run, private to its owner."""
    hostvars: dict[str, Any] = {
        "ansible_host": host,
        "ansible_port": int(port),
        "ansible_user": user,
        "ansible_python_interpreter": "auto_silent",
        # fresh machines: see the module's docstring
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no "
                                   "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
    }
    if ssh_key is not None:
        hostvars["ansible_ssh_private_key_file"] = str(Path(ssh_key).expanduser().resolve())
    inventory = work_dir / "inventory" / "hosts.json"
    _write_private(inventory, json.dumps({"all": {"hosts": {host: hostvars}}}))
    return inventory


def _ansible_environment(control_dir: Path) -> dict[str, str]:
    """Ansible's settings for an unattended run: this interpreter's tools first on the
    PATH, no colours or retry files, pipelining, and SSH control sockets in
    ``control_dir`` (so that the run's connections can be closed at its end)."""
    binaries = str(Path(sys.executable).parent)
    return {
        "PATH": os.pathsep.join([binaries, os.environ.get("PATH", os.defpath)]),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_FORCE_COLOR": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_SYSTEM_WARNINGS": "False",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
    }


def _last_task(text: str) -> str | None:
    found = re.findall(r"^TASK \[(.+?)\]", text, flags=re.MULTILINE)
    return found[-1] if found else None


def _with_work_dir(work_dir: Path | None, run: Callable[[Path], PlaybookResult]) -> PlaybookResult:
    if work_dir is not None:
        return run(Path(work_dir))
    scratch = Path(tempfile.mkdtemp(prefix="scitq-ansible-"))
    try:
        return run(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def deploy_worker(
    *,
    address: str,
    worker_name: str,
    server_url: str,
    token: str,
    concurrency: int = 1,
    prefetch: int = 0,
    flavor_tags: str | Iterable[str] = "",
    package_path: Path | None = None,
    ssh_key: Path | None = None,
    user: str = "root",
    port: int = 22,
    on_progress: ProgressCallback | None = None,
    timeout: float | None = None,
    work_dir: Path | None = None,
    extravars: Mapping[str, Any] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> PlaybookResult:
    """Install and start a worker named ``worker_name`` on the machine at ``address``
    (``deploy.yml``): it registers with ``server_url`` with ``token`` (an enrollment
    token). Without ``package_path`` the machine downloads the server's own package.
    ``extravars`` adds or overrides playbook variables (worker_home, extra_roles,
    install_container_engine...). ``timeout`` and ``cancel``: as for ``run_playbook``."""
    variables: dict[str, Any] = {
        "server_url": server_url,
        "worker_token": token,
        "worker_name": worker_name,
        "worker_concurrency": int(concurrency),
        "worker_prefetch": int(prefetch),
        "flavor_tags": flavor_tags if isinstance(flavor_tags, str) else "".join(flavor_tags),
    }
    if package_path is not None:
        local = Path(package_path).expanduser().resolve()
        if not local.is_file():
            raise DeployError(f"package {local} not found")
        variables["package_path"] = str(local)
    variables.update(extravars or {})
    return _with_work_dir(work_dir, lambda directory: run_playbook(
        DEPLOY_PLAYBOOK, address, user=user, port=port, ssh_key=ssh_key,
        extravars=variables, on_progress=on_progress, timeout=timeout, work_dir=directory,
        secrets=[token], cancel=cancel))


def destroy_worker(
    *,
    address: str,
    worker_name: str,
    ssh_key: Path | None = None,
    user: str = "root",
    port: int = 22,
    purge: bool = False,
    on_progress: ProgressCallback | None = None,
    timeout: float | None = None,
    work_dir: Path | None = None,
    extravars: Mapping[str, Any] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> PlaybookResult:
    """Stop the worker ``worker_name`` on the machine at ``address`` and remove its
    service and token (``destroy.yml``); ``purge`` also removes its home. ``timeout``
    and ``cancel``: as for ``run_playbook``."""
    variables: dict[str, Any] = {"worker_name": worker_name, "purge": bool(purge)}
    variables.update(extravars or {})
    return _with_work_dir(work_dir, lambda directory: run_playbook(
        DESTROY_PLAYBOOK, address, user=user, port=port, ssh_key=ssh_key,
        extravars=variables, on_progress=on_progress, timeout=timeout, work_dir=directory,
        cancel=cancel))
