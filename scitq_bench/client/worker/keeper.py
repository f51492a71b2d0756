"""The keeper: no task outlives its worker.

Tasks run in sessions of their own (so that pause, stop and kill reach a task's whole
tree), which also means a worker that dies (SIGKILL, the OOM killer, a crash) would
leave them running while the server re-queues their executions: two copies of a task,
its side effects twice. A process cannot act after SIGKILL, so another one watches.

One keeper process per worker, started once when the worker starts (no cost per task
but two short writes on a pipe). It holds the read end of a pipe whose only write end
is the worker's; the worker writes one line as each task starts and one as it ends:
``+P <pgid>`` / ``-P <pgid>`` for a process (its process group and session: the task
leads both), ``+C <name>`` / ``-C <name>`` for a container (written before the container
is created). When the worker is gone, however it died, the kernel closes its end and
the keeper reads EOF: it stops (SIGSTOP), then SIGKILLs, every process of the
registered groups and sessions and every descendant of those (a task's child that moved
to a group or session of its own), removes the containers through the engine, and
exits. Those processes are gone within milliseconds, the containers within about a
second.

The keeper runs in a session of its own, so a signal to the worker's process group
(``killpg`` of the local provider, Ctrl-C in a terminal) does not take it along; it
ignores SIGTERM, SIGINT and SIGHUP and ends only at EOF, so it never outlives its
worker. Under systemd (``KillMode=mixed``) the worker's end leaves the keeper its stop
timeout to finish before the unit's cgroup is killed.

The keeper also journals what is registered, in the worker's state folder: each line
it reads is appended with the task's process start time (so a reused pid is never
taken for a task; a process already gone when its line is read is not registered),
after the machine's boot id and the engine's address. If the keeper
itself was killed with its worker, the next worker started under that name and work
folder reads the journal (``reap``) and kills what is still there before it registers
(registering re-queues those executions). Containers also carry the worker's name as a
label and are removed through the engine at that start (``Engine.remove_orphans``).

This file runs as a script (``python -I keeper.py``): the standard library only, so it
starts in a few tens of milliseconds; the Docker client is imported only once a
container is registered.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROCESS, CONTAINER = "P", "C"
STARTED, ENDED = "+", "-"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
COMPACT_AT = 1 << 20  # journal bytes past which it is rewritten with the live entries only
KILL_ROUNDS = 10  # scans of /proc: a task forking while it is killed needs another
GONE_WAIT = 1.0  # seconds to wait for killed processes to exit, per round
REMOVE_TIMEOUT = 20.0  # seconds for the engine to remove the containers
CLOSE_WAIT = 30.0  # seconds the worker waits for its keeper to finish after EOF
READ_SIZE = 1 << 16


def _say(message: str) -> None:
    """The keeper's own log line, on the worker's standard error."""
    try:
        os.write(2, f"keeper: {message}\n".encode())
    except OSError:
        pass


# -- processes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcInfo:
    """What /proc/PID/stat says about a process that matters here."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    start: int  # clock ticks after boot: a reused pid has another
    zombie: bool


def proc_info(pid: int) -> ProcInfo | None:
    """The process ``pid``, or None when there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    fields = text[text.rfind(b")") + 2:].split()  # the name may hold spaces and ')'
    try:
        return ProcInfo(pid, int(fields[1]), int(fields[2]), int(fields[3]),
                        int(fields[19]), fields[0] in (b"Z", b"X"))
    except (IndexError, ValueError):
        return None


def proc_table() -> dict[int, ProcInfo]:
    """Every process of this machine (of this PID namespace)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = proc_info(int(entry))
            if info is not None:
                table[info.pid] = info
    return table


def start_time(pid: int) -> int | None:
    info = proc_info(pid)
    return None if info is None or info.zombie else info.start


def boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return "unknown"


def doomed(table: Mapping[int, ProcInfo], groups: Mapping[int, int]) -> set[int]:
    """The live processes of the registered groups and sessions, and their descendants.
    ``groups``: pgid (which is also the sid: each task leads its session) -> the
    leader's start time. A group whose id now belongs to a process started at another
    time is someone else's (the pid was reused); when the leader is gone, only
    processes started after it can be its group's."""
    valid: dict[int, int] = {}
    for group, start in groups.items():
        leader = table.get(group)
        if leader is None or leader.start == start:
            valid[group] = start
    members = set()
    for info in table.values():
        for group in (info.pgid, info.sid):
            if group in valid and info.start >= valid[group]:
                members.add(info.pid)
                break
    children: dict[int, list[int]] = {}
    for info in table.values():
        children.setdefault(info.ppid, []).append(info.pid)
    found, todo = set(), list(members)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, ()))
    found.discard(os.getpid())
    return {pid for pid in found if not table[pid].zombie}


def kill_groups(groups: Mapping[int, int]) -> int:
    """SIGKILL everything ``doomed`` finds, all of it frozen first: a shell whose
    child is killed before it would run its next line (the task's side effect) if it
    were still running. Scans again until nothing is left; waits until they are gone.
    Returns how many processes were killed."""
    killed: set[int] = set()
    for _ in range(KILL_ROUNDS):
        frozen = _freeze(groups)
        if not frozen:
            break
        _send(frozen, signal.SIGKILL)
        killed |= frozen
        _wait_gone(frozen, GONE_WAIT)
    return len(killed)


def _freeze(groups: Mapping[int, int]) -> set[int]:
    """SIGSTOP every doomed process, scanning again until a scan finds none new (one
    may fork while the others are being stopped; a stopped one forks no more)."""
    frozen: set[int] = set()
    for _ in range(KILL_ROUNDS):
        found = doomed(proc_table(), groups) - frozen
        if not found:
            break
        _send(found, signal.SIGSTOP)
        frozen |= found
    return frozen


def _send(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _wait_gone(pids: Iterable[int], timeout: float) -> None:
    """Until each of ``pids`` has exited (a zombie has), or ``timeout`` seconds."""
    left = set(pids)
    deadline = time.monotonic() + timeout
    delay = 0.001
    while left and time.monotonic() < deadline:
        left = {pid for pid in left if start_time(pid) is not None}
        if left:
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


# -- containers --------------------------------------------------------------------------


class Containers:
    """Removal of containers through the engine, with the Docker client imported and
    connected ahead of need (``prepare``) so that the removal at EOF starts at once."""

    def __init__(self, host: str | None) -> None:
        self.host = host
        self._api: Any = None

    def prepare(self) -> None:
        if self._api is not None or self.host is None:
            return
        try:
            import docker

            self._api = docker.APIClient(base_url=self.host, timeout=int(REMOVE_TIMEOUT))
        except Exception as exc:  # noqa: BLE001 - said, then tried again at removal
            _say(f"cannot reach the container engine at {self.host}: {exc}")

    def remove(self, names: Iterable[str]) -> int:
        """Force-remove (kill) each container, in parallel; returns how many went."""
        names = sorted(names)
        if not names:
            return 0
        self.prepare()
        if self._api is None:
            _say(f"{len(names)} container(s) not removed: no engine ({', '.join(names)})")
            return 0
        removed: list[str] = []
        threads = [threading.Thread(target=self._remove_one, args=(name, removed), daemon=True)
                   for name in names]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + REMOVE_TIMEOUT
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return len(removed)

    def _remove_one(self, name: str, removed: list[str]) -> None:
        """SIGKILL first: a forced removal may ask politely and wait (Podman does, for
        the container's stop timeout), and a shell as PID 1 ignores SIGTERM."""
        try:
            self._api.kill(name, "SIGKILL")
        except Exception:  # noqa: BLE001 - not running, or gone: the removal says
            pass
        try:
            self._api.remove_container(name, force=True)
            removed.append(name)
        except Exception as exc:  # noqa: BLE001 - the engine's words, or already gone
            if "no such container" not in str(exc).lower() and "404" not in str(exc):
                _say(f"could not remove container {name}: {exc}")


# -- the registry and its journal --------------------------------------------------------


@dataclass
class Registry:
    """What runs now: process groups with their leader's start time, containers."""

    groups: dict[int, int] = field(default_factory=dict)
    containers: set[str] = field(default_factory=set)

    def apply(self, line: str, start: int | None = None) -> bool:
        """One ``+P``/``-P``/``+C``/``-C`` line; False when it is not one, or when it
        registers a process without its start time (it had ended already: its group
        is the worker's to clean, and its pid may be reused)."""
        what, _, value = line.partition(" ")
        value = value.split(" ", 1)[0]
        if what == STARTED + PROCESS and value.isdigit():
            if start is None:
                return False
            self.groups[int(value)] = start
        elif what == ENDED + PROCESS and value.isdigit():
            self.groups.pop(int(value), None)
        elif what == STARTED + CONTAINER and value:
            self.containers.add(value)
        elif what == ENDED + CONTAINER and value:
            self.containers.discard(value)
        else:
            return False
        return True

    def lines(self) -> list[str]:
        return ([f"{STARTED}{PROCESS} {group} {start}" for group, start in self.groups.items()]
                + [f"{STARTED}{CONTAINER} {name}" for name in sorted(self.containers)])


@dataclass
class Leftovers:
    """What a journal says was running when its keeper stopped writing."""

    boot: str
    docker_host: str | None
    registry: Registry


def read_journal(path: Path) -> Leftovers | None:
    """The journal at ``path`` replayed, or None when there is none."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    boot, host, registry = "unknown", None, Registry()
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        if key == "boot":
            boot = rest.strip()
        elif key == "docker":
            host = rest.strip() if rest.strip() not in ("", "-") else None
        elif key == STARTED + PROCESS:
            parts = rest.split()
            start = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
            registry.apply(line, start)
        else:
            registry.apply(line)
    return Leftovers(boot, host, registry)


class Journal:
    """The registry on disk, append-only (one write per batch of lines read), rewritten
    with the live entries alone once it grows past ``COMPACT_AT`` bytes."""

    def __init__(self, path: Path, docker_host: str | None) -> None:
        self.path = path
        self.header = [f"boot {boot_id()}", f"docker {docker_host or '-'}"]
        self._fd = -1
        self.size = 0
        self.rewrite(Registry())

    def rewrite(self, registry: Registry) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        data = "".join(f"{line}\n" for line in self.header + registry.lines()).encode()
        temporary.write_bytes(data)
        os.replace(temporary, self.path)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.size = len(data)

    def append(self, lines: list[str], registry: Registry) -> None:
        if not lines:
            return
        data = "".join(f"{line}\n" for line in lines).encode()
        os.write(self._fd, data)
        self.size += len(data)
        if self.size > COMPACT_AT:
            self.rewrite(registry)

    def remove(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def reap(path: Path) -> tuple[int, int]:
    """Kill what the journal at ``path`` says a previous keeper left running (its
    processes, on this boot only; its containers, through the engine it names), then
    delete the journal. Returns (processes killed, containers removed)."""
    found = read_journal(path)
    if found is None:
        return 0, 0
    killed = 0
    if found.boot == boot_id() and found.registry.groups:
        killed = kill_groups(found.registry.groups)
    removed = Containers(found.docker_host).remove(found.registry.containers)
    path.unlink(missing_ok=True)
    return killed, removed


# -- the keeper process ------------------------------------------------------------------


def serve(fd: int, journal: Journal, containers: Containers) -> Registry:
    """Read registrations from ``fd`` until EOF; returns what was live then."""
    registry = Registry()
    pending = b""
    while True:
        data = os.read(fd, READ_SIZE)
        if not data:
            return registry
        *complete, pending = (pending + data).split(b"\n")
        written = []
        for raw in complete:
            line = raw.decode(errors="replace")
            start = None
            if line.startswith(STARTED + PROCESS + " "):
                value = line[3:]
                start = start_time(int(value)) if value.isdigit() else None
            if registry.apply(line, start):
                written.append(f"{line} {start}" if start is not None else line)
                if line.startswith(STARTED + CONTAINER):
                    containers.prepare()
        journal.append(written, registry)


def end_all(registry: Registry, containers: Containers) -> tuple[int, int]:
    """Kill the processes and remove the containers, both at once."""
    removal: list[int] = []
    remover = threading.Thread(
        target=lambda: removal.append(containers.remove(registry.containers)), daemon=True)
    remover.start()
    killed = kill_groups(registry.groups) if registry.groups else 0
    remover.join(REMOVE_TIMEOUT + 1)
    return killed, (removal[0] if removal else 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Ends a worker's tasks when it dies.")
    parser.add_argument("--journal", type=Path, required=True)
    parser.add_argument("--docker-host")
    parser.add_argument("--worker", default="?")
    args = parser.parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)  # only EOF ends the keeper
    journal = Journal(args.journal, args.docker_host)
    containers = Containers(args.docker_host)
    registry = serve(0, journal, containers)
    killed, removed = end_all(registry, containers)
    journal.remove()
    if killed or removed:
        _say(f"worker {args.worker} is gone: killed {killed} task process(es), removed "
             f"{removed} container(s)")
    return 0


# -- the worker's side -------------------------------------------------------------------


class Keeper:
    """The worker's handle on its keeper: registers tasks as they start and end (a
    short write on a pipe), starts a new keeper if this one died, and lets it finish
    when the worker stops (``close``)."""

    def __init__(self, journal: Path, worker: str, docker_host: str | None = None) -> None:
        self.journal = journal
        self.worker = worker
        self.docker_host = docker_host
        self._lock = threading.Lock()
        self._live: dict[str, None] = {}  # registered lines, in order
        self._process: subprocess.Popen[bytes] | None = None
        self._fd = -1
        self._closed = False

    @classmethod
    def start(cls, journal: Path, worker: str, docker_host: str | None = None) -> Keeper:
        keeper = cls(journal, worker, docker_host)
        keeper._spawn()
        return keeper

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _spawn(self) -> None:
        """A keeper in a session of its own (signals to the worker's group miss it);
        ``-I``: no user site, no script folder on the path, nothing from PYTHON*."""
        argv = [sys.executable, "-I", str(Path(__file__).resolve()), "--journal",
                str(self.journal), "--worker", self.worker]
        if self.docker_host:
            argv += ["--docker-host", self.docker_host]
        self._process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         start_new_session=True, close_fds=True)
        assert self._process.stdin is not None
        self._fd = self._process.stdin.fileno()

    def watch_process(self, pgid: int) -> None:
        self._send(f"{PROCESS} {pgid}", True)

    def forget_process(self, pgid: int) -> None:
        self._send(f"{PROCESS} {pgid}", False)

    def watch_container(self, name: str) -> None:
        self._send(f"{CONTAINER} {_checked_name(name)}", True)

    def forget_container(self, name: str) -> None:
        self._send(f"{CONTAINER} {_checked_name(name)}", False)

    def _send(self, key: str, live: bool) -> None:
        """``key``: what is registered (``P <pgid>``, ``C <name>``), the line's sign
        aside; the live keys are what a replacement keeper is given."""
        data = f"{STARTED if live else ENDED}{key}\n".encode()
        with self._lock:
            if self._closed:
                return
            if live:
                self._live[key] = None
            else:
                self._live.pop(key, None)
            try:
                os.write(self._fd, data)  # under PIPE_BUF: one atomic write
            except OSError as exc:
                self._replace(exc)

    def _replace(self, error: OSError) -> None:
        """Call with the lock held: the keeper died (it never exits on its own while the
        pipe is open); a new one gets everything live."""
        _say(f"the keeper of worker {self.worker} is gone ({error}): starting another")
        self._close_pipe()
        try:
            self._spawn()
            lines = [f"{STARTED}{key}\n" for key in self._live]
            for start in range(0, len(lines), 256):
                os.write(self._fd, "".join(lines[start:start + 256]).encode())
        except OSError as exc:
            _say(f"cannot start a keeper for worker {self.worker}: {exc}")

    def _close_pipe(self) -> None:
        if self._process is not None and self._process.stdin is not None:
            try:
                self._process.stdin.close()
            except OSError:
                pass
        self._fd = -1

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        """The worker is stopping: EOF for the keeper, which ends what is still
        registered and exits; wait for that."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._close_pipe()
        if self._process is None:
            return
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            _say(f"the keeper of worker {self.worker} did not finish in {timeout:g} s")


def _checked_name(name: str) -> str:
    """Container names are one word on one line of the protocol."""
    if not name or any(c.isspace() for c in name):
        raise ValueError(f"container name {name!r} must be one word without spaces")
    return name


if __name__ == "__main__":
    sys.exit(main())
