"""``server run``'s process tree: the API processes and the background process.

    scitq-bench server run          (this supervisor: starts, watches, stops)
      ├─ gunicorn ── N gevent processes serving the API
      └─ background process: leader campaign, reaper, recruitment

The supervisor is plain Python with no threads, so nothing it forks inherits a held
lock. A background process that dies is started again after a short pause (it may
have lost a database it will find again); the API processes ending ends the server.
Both children die with the supervisor, even when it is killed outright
(``PR_SET_PDEATHSIG``), so a killed server leaves nothing running.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger(__name__)

RESTART_PAUSE = 1.0  # seconds before a dead background process is started again
STOP_GRACE = 10.0  # seconds children get to stop before they are killed
PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    """One child process and how to start it again."""

    name: str
    argv: list[str]
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, preexec_fn=_die_with_parent)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


@dataclass
class Supervisor:
    api: Child
    background: Child | None
    stopping: bool = False
    exit_code: int = 0
    _children: dict[int, Child] = field(default_factory=dict)

    def run(self) -> int:
        """Start the children, restart the background one when it dies, and return
        the API processes' exit status when they end."""
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for child in self._all():
                self._start(child)
            while self._children:
                try:
                    pid, status = os.wait()
                except ChildProcessError:
                    break
                self._ended(pid, os.waitstatus_to_exitcode(status))
            return self.exit_code
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _all(self) -> list[Child]:
        return [child for child in (self.api, self.background) if child is not None]

    def _start(self, child: Child) -> None:
        child.start()
        assert child.pid is not None
        self._children[child.pid] = child

    def _ended(self, pid: int, code: int) -> None:
        child = self._children.pop(pid, None)
        if child is None:
            return
        if child.process is not None:
            child.process.returncode = code  # reaped here: Popen must not wait again
        if self.stopping:
            return
        if child is self.api:
            log.error("the API processes ended (exit status %d); stopping", code)
            self.exit_code = code or 1
            self._stop_children()
            return
        log.error("the %s process ended (exit status %d); starting it again in %.0f s",
                  child.name, code, RESTART_PAUSE)
        time.sleep(RESTART_PAUSE)
        if not self.stopping:
            self._start(child)

    def _stop(self, _signum: int, _frame: FrameType | None) -> None:
        if not self.stopping:
            self._stop_children()

    def _stop_children(self) -> None:
        self.stopping = True
        for child in list(self._children.values()):
            _signal(child, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while self._children and time.monotonic() < deadline:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self._children.clear()
                break
            if pid:
                self._ended(pid, os.waitstatus_to_exitcode(status))
            else:
                time.sleep(0.05)
        for child in list(self._children.values()):
            _signal(child, signal.SIGKILL)


def _signal(child: Child, signum: int) -> None:
    if child.process is not None and child.process.returncode is None:
        try:
            child.process.send_signal(signum)
        except ProcessLookupError:
            pass


def _die_with_parent() -> None:
    """In the child, before exec: the kernel kills it when the supervisor dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: children outlive a killed supervisor
        pass


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def supervise(api_argv: list[str], background_argv: list[str] | None) -> int:
    """Run the API processes and, with ``background_argv``, the background process;
    the API processes' exit status."""
    background = Child("background", background_argv) if background_argv else None
    return Supervisor(api=Child("API", api_argv), background=background).run()
