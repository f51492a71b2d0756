"""Running a program on the worker's own system, in a bubblewrap (``bwrap``) sandbox.

Tasks with the ``codabench`` layout that name no image run this way. The sandbox sees
the host's system folders read-only (``/usr``, ``/bin``, ``/sbin``, ``/lib``,
``/lib64``, ``/etc``; those that are symbolic links on the host are recreated as links),
a fresh ``/proc`` and a minimal ``/dev``, the execution's slots (``SlotDirs.mounts``),
and nothing else: no network, no IPC, PID, UTS or cgroup namespace of the host, and
only the variables the worker sets.

Users: a worker that is not root runs ``bwrap`` as itself, which unshares every
namespace (``--unshare-all``: a user namespace too). A root worker drops to a non-root
user (the containers' user, nobody by default): ``bwrap``, as root, sets up the mounts
(so the work folder's parents need not be open to that user) and unshares every
namespace but the user one, and ``setpriv`` then switches the command to that user with
no capabilities at all (in a user namespace of its own, a root ``bwrap`` could only map
root). Either way ``bwrap`` sets no-new-privileges.

Signals: ``--new-session`` puts the sandbox in a session (and process group) of its own,
so ``SandboxedProcess`` signals that group as well as ``bwrap``'s: pause, resume and
stop reach the command. A SIGKILL of ``bwrap`` ends everything (``--die-with-parent``
kills the sandbox's init, and with it its PID namespace).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import stat
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from scitq_bench.client.worker.executor import Process

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc")
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# every namespace but the user one, for a root bwrap (--unshare-all less --unshare-user-try)
ROOT_NAMESPACES = ("--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                   "--unshare-cgroup-try")
PROBE_TIMEOUT = 30.0


class SandboxUnavailable(Exception):
    """bwrap (or setpriv, for a root worker) is missing, or cannot make a sandbox here."""


@dataclass(frozen=True)
class Tools:
    bwrap: str
    setpriv: str | None = None  # root workers: drops the command to a non-root user


def system_entries(names: Iterable[str] = SYSTEM_DIRS) -> list[tuple[str, str | None]]:
    """(path, link target or None for a folder) for those of ``names`` the host has."""
    entries: list[tuple[str, str | None]] = []
    for name in names:
        if os.path.islink(name):
            entries.append((name, os.readlink(name)))
        elif os.path.isdir(name):
            entries.append((name, None))
    return entries


def build_argv(
    tools: Tools, command: Sequence[str], *, mounts: Sequence[tuple[str, str, bool]],
    env: Mapping[str, str], workdir: str, user: tuple[int, int] | None = None,
    system: Sequence[tuple[str, str | None]] | None = None, devices: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> list[str]:
    """The argv that runs ``command`` in the sandbox. ``mounts``: (host path, path in
    the sandbox, read only), parents first; ``env``: the command's whole environment;
    ``user``: (uid, gid) to drop to, for a root worker (needs ``tools.setpriv``);
    ``devices``: host devices to pass through (GPUs); ``extra``: more of bwrap's
    arguments, after the mounts (a host environment's, ``host_env``)."""
    argv = [tools.bwrap]
    if user is None:
        argv.append("--unshare-all")
    else:
        argv.extend(ROOT_NAMESPACES)
    argv += ["--die-with-parent", "--new-session"]
    for path, target in system_entries() if system is None else system:
        argv += ["--symlink", target, path] if target is not None else ["--ro-bind", path, path]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    for device in devices:
        argv += ["--dev-bind", device, device]
    for source, target, read_only in mounts:
        argv += ["--ro-bind" if read_only else "--bind", source, target]
    argv.extend(extra)
    argv.append("--clearenv")
    for key in sorted(env):
        argv += ["--setenv", key, env[key]]
    argv += ["--chdir", workdir, "--"]
    if user is not None:
        if tools.setpriv is None:
            raise SandboxUnavailable("setpriv is needed to run the sandbox as a non-root user")
        uid, gid = user
        argv += [tools.setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                 "--inh-caps=-all", "--bounding-set=-all", "--"]
    argv.extend(command)
    return argv


def find_tools(as_root: bool) -> Tools:
    """Where bwrap (and, for a root worker, setpriv) are; SandboxUnavailable if not.
    setpriv runs inside the sandbox, so it must live in the system folders shared."""
    bwrap = shutil.which("bwrap") or shutil.which("bwrap", path=SANDBOX_PATH)
    if bwrap is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed on this worker; it runs tasks with the "
            "codabench layout on the host (install the bubblewrap package, or give the "
            "task a container image)")
    setpriv = None
    if as_root:
        setpriv = shutil.which("setpriv", path=SANDBOX_PATH)
        if setpriv is None:
            raise SandboxUnavailable(
                "setpriv (util-linux) is not installed on this worker; a root worker needs "
                "it to run the sandbox as a non-root user")
    return Tools(bwrap, setpriv)


_checked: set[tuple[Tools, tuple[int, int] | None]] = set()
_checked_lock = threading.Lock()


def check(user: tuple[int, int] | None) -> Tools:
    """The tools, once a trivial command ran in a sandbox like the tasks' (the kernel
    may refuse namespaces: better said once, clearly, than as every task's exit code 1).
    Successes are remembered; failures are tried again next time."""
    if user is not None and 0 in user:
        raise SandboxUnavailable("the sandbox never runs tasks as root (uid or gid 0)")
    tools = find_tools(as_root=user is not None)
    key = (tools, user)
    with _checked_lock:
        if key in _checked:
            return tools
    argv = build_argv(tools, ["true"], mounts=[], env={"PATH": SANDBOX_PATH}, workdir="/",
                      user=user)
    try:
        probe = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env={"PATH": SANDBOX_PATH},
                               timeout=PROBE_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailable(f"bwrap could not run: {exc}") from None
    if probe.returncode != 0:
        said = probe.stderr.decode(errors="replace").strip()[-1000:]
        raise SandboxUnavailable(f"bwrap cannot make a sandbox on this worker "
                                 f"(exit {probe.returncode}): {said or 'no message'}")
    with _checked_lock:
        _checked.add(key)
    return tools


def gpu_devices() -> list[str]:
    """The NVIDIA device nodes, for a task given GPUs (CUDA_VISIBLE_DEVICES says which
    of them it may use)."""
    found = []
    for path in sorted(glob.glob("/dev/nvidia*")):
        try:
            if stat.S_ISCHR(os.stat(path).st_mode):
                found.append(path)
        except OSError:
            continue
    return found


class SandboxedProcess(Process):
    """bwrap, with the sandbox in a session of its own: signals go to both process
    groups. SIGTERM goes to the sandbox's group only, once it exists, so the command can
    end on its own (a SIGTERM to bwrap would kill everything at once)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        super().__init__(popen)
        self._inner: int | None = None

    def inner_group(self) -> int | None:
        """The sandbox's process group: that of bwrap's child (the sandbox's init),
        once it made its own session."""
        if self._inner is None and not self.exited:
            for child in _children(self.pid):
                try:
                    group = os.getpgid(child)
                except OSError:
                    continue
                if group != self.pid:
                    self._inner = group
                    break
        return self._inner

    def _signal(self, signum: int) -> None:
        if self.exited:
            return
        inner = self.inner_group()
        groups = [inner] if inner is not None and signum == signal.SIGTERM else \
            [self.pid] + ([inner] if inner is not None else [])
        for group in groups:
            try:
                os.killpg(group, signum)
            except (ProcessLookupError, PermissionError):
                pass


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        pass
    found = []  # kernels without the children file: scan for the parent id
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry))
    return found
