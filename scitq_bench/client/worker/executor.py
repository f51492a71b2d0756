"""Starting a task's command and controlling it while it runs.

``Supervised`` is what processes and containers share (pause bookkeeping, timeouts,
terminate-then-kill). A process runs in its own session (``start_new_session``), so
pause, stop and kill reach the whole tree it spawns, and stragglers left behind can be
cleaned up.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import signal
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path

from scitq_bench import hostprobe

# the worker's own settings and credentials, never a task's: every scitq_bench
# setting, its token and SCITQ_BENCH_STORAGE_CONFIG included (the runner sets the
# SCITQ_BENCH_* a task is meant to see), and what configures the storage SDKs
HIDDEN_PREFIXES = ("SCITQ_BENCH_", "AWS_", "AZURE_")
HIDDEN_VARIABLES = frozenset({"GOOGLE_APPLICATION_CREDENTIALS"})


class CommandError(Exception):
    """The command could not be started; ``return_code`` follows the shell's convention."""

    def __init__(self, message: str, return_code: int) -> None:
        super().__init__(message)
        self.return_code = return_code


def build_argv(command: str, shell: bool) -> list[str]:
    """The argv to execute: the user's own command through ``/bin/sh -c`` when they asked
    for a shell, else split like a shell would, never interpreted."""
    if shell:
        return ["/bin/sh", "-c", command]
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise CommandError(f"cannot parse command: {exc}", 2) from None
    if not argv:
        raise CommandError("empty command", 2)
    return argv


TASK_VARIABLES = ("INPUT", "OUTPUT", "RESOURCE", "TEMP", "CPU")
_VARIABLE = re.compile(r"\$(?:\{(" + "|".join(TASK_VARIABLES) + r")\}|("
                       + "|".join(TASK_VARIABLES) + r")(?![A-Za-z0-9_]))")


def expand_task_variables(argv: list[str], values: Mapping[str, str]) -> list[str]:
    """``$INPUT``, ``${OUTPUT}``, ... in the words of a plain (non-shell) command
    replaced by what the run sees, as a shell would have done for these variables
    only: nothing else is interpreted, no word is split or globbed."""
    def value(match: re.Match[str]) -> str:
        return values[match.group(1) or match.group(2)]

    return [_VARIABLE.sub(value, word) for word in argv]


def base_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The worker's environment minus its credentials and settings: tasks must never
    see the token, nor what lets the worker read and write storage (a task gets its
    data through its inputs, resources and output)."""
    source = os.environ if environ is None else environ
    return {key: value for key, value in source.items()
            if key not in HIDDEN_VARIABLES and not key.startswith(HIDDEN_PREFIXES)}


def task_environment(base: Mapping[str, str], execution_dir: Path, resource_dir: Path,
                     cpu: int, execution_id: int, task_id: int) -> dict[str, str]:
    """What a task can rely on: where its data lives and how many CPUs are its share.
    ``resource_dir`` is the execution's own (``<execution_dir>/resource``, linked from
    the worker's cache): a task sees only the resources it named."""
    env = dict(base)
    env.update(
        INPUT=str(execution_dir / "input"),
        OUTPUT=str(execution_dir / "output"),
        RESOURCE=str(resource_dir),
        TEMP=str(execution_dir / "tmp"),
        CPU=str(cpu),
        SCITQ_BENCH_EXECUTION_ID=str(execution_id),
        SCITQ_BENCH_TASK_ID=str(task_id),
    )
    return env


def cpu_share(concurrency: int, cpus: int | None = None) -> int:
    """CPUs each of ``concurrency`` parallel tasks may use (at least one)."""
    return max(1, (cpus or hostprobe.cpu_count()) // max(1, concurrency))


def exit_code(returncode: int) -> int:
    """Popen's negative "killed by signal N" as the shell's 128+N."""
    return 128 - returncode if returncode < 0 else returncode


class Supervised(ABC):
    """What the worker controls while a task runs, process or container: pause
    bookkeeping (a paused task does not use up its run timeout) and the
    terminate-then-kill escalation. Subclasses say how to signal and how to wait."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._paused_since: float | None = None
        self._paused_total = 0.0
        self._killer: threading.Timer | None = None

    # -- what subclasses provide --------------------------------------------------------

    @property
    @abstractmethod
    def exited(self) -> bool: ...

    @abstractmethod
    def _suspend(self) -> None: ...

    @abstractmethod
    def _continue(self) -> None: ...

    @abstractmethod
    def _ask_to_end(self) -> None:
        """SIGTERM, or the engine's equivalent."""

    @abstractmethod
    def _force_end(self) -> None:
        """SIGKILL, or the engine's equivalent."""

    @abstractmethod
    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code (shell convention: 128+N when killed by signal N), or None if
        still running after ``timeout`` seconds."""

    @abstractmethod
    def _release(self) -> None:
        """After the exit: free what the run held."""

    # -- state -----------------------------------------------------------------------

    def active_seconds(self, now: float | None = None) -> float:
        """Seconds since start, minus the time spent paused."""
        now = time.monotonic() if now is None else now
        with self._lock:
            paused = self._paused_total
            if self._paused_since is not None:
                paused += now - self._paused_since
        return now - self.started - paused

    # -- control -----------------------------------------------------------------------

    def pause(self) -> None:
        with self._lock:
            if self._paused_since is None:
                self._paused_since = time.monotonic()
        if not self.exited:
            self._suspend()

    def resume(self) -> None:
        if not self.exited:
            self._continue()
        with self._lock:
            if self._paused_since is not None:
                self._paused_total += time.monotonic() - self._paused_since
                self._paused_since = None

    @property
    def paused(self) -> bool:
        with self._lock:
            return self._paused_since is not None

    def terminate(self, grace: float) -> None:
        """Ask it to end (resuming it, so a paused task can act on it), kill it after
        ``grace`` seconds if it is still there. Idempotent."""
        if not self.exited:
            self._ask_to_end()
        self.resume()
        with self._lock:
            if self._killer is not None:
                return
            self._killer = threading.Timer(grace, self.kill)
            self._killer.daemon = True
            self._killer.start()

    def kill(self) -> None:
        if not self.exited:
            self._force_end()
        self.resume()

    # -- waiting -----------------------------------------------------------------------

    def wait_until_done(self, run_timeout: float | None, grace: float) -> tuple[int, bool]:
        """Wait for the exit, terminating once it has been active (not paused) for
        ``run_timeout`` seconds. Returns (exit code, timed out)."""
        timed_out = False
        while True:
            if run_timeout is None or timed_out:
                code = self.wait()
                break
            remaining = run_timeout - self.active_seconds()
            if remaining <= 0:
                timed_out = True
                self.terminate(grace)
                continue
            code = self.wait(remaining)
            if code is not None:
                break
        assert code is not None
        return code, timed_out

    def cleanup(self) -> None:
        """After the exit: cancel the kill timer and release what the run held."""
        with self._lock:
            killer, self._killer = self._killer, None
        if killer is not None:
            killer.cancel()
        self._release()


class Process(Supervised):
    """One running command in its own session: signals reach its whole process group,
    and stragglers it leaves behind are killed at cleanup."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        super().__init__()
        self.popen = popen
        self.pid = popen.pid
        self._pidfd = _pidfd_open(popen.pid)

    @classmethod
    def start(cls, argv: Sequence[str], cwd: Path, env: Mapping[str, str],
              stdout: int, stderr: int) -> Process:
        """Spawn ``argv``; a missing executable becomes CommandError(127)."""
        try:
            popen = subprocess.Popen(
                list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=stdout,
                stderr=stderr, start_new_session=True,
            )
        except FileNotFoundError:
            raise CommandError(f"command not found: {argv[0]}", 127) from None
        except PermissionError:
            raise CommandError(f"permission denied: {argv[0]}", 126) from None
        except OSError as exc:
            raise CommandError(f"cannot execute {argv[0]}: {exc.strerror or exc}", 126) from None
        return cls(popen)

    @property
    def exited(self) -> bool:
        return self.popen.returncode is not None

    def _signal(self, signum: int) -> None:
        if self.exited:
            return
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def _suspend(self) -> None:
        self._signal(signal.SIGSTOP)

    def _continue(self) -> None:
        self._signal(signal.SIGCONT)

    def _ask_to_end(self) -> None:
        self._signal(signal.SIGTERM)

    def _force_end(self) -> None:
        self._signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int | None:
        """Uses a pidfd when the kernel has them: woken by the exit itself, no polling."""
        if timeout is None:
            return exit_code(self.popen.wait())
        if self._pidfd is not None and not self.exited:
            ready, _, _ = select.select([self._pidfd], [], [], max(0.0, timeout))
            if not ready:
                return None
            return exit_code(self.popen.wait())
        try:
            return exit_code(self.popen.wait(timeout=max(0.0, timeout)))
        except subprocess.TimeoutExpired:
            return None

    def _release(self) -> None:
        """Kill what the command left running in its group; close the pidfd."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


def _pidfd_open(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return opener(pid)
    except OSError:
        return None
