"""A CPU cap per process, through a cgroup of its own (Linux, as root).

Scale-out is about adding capacity: two API processes should serve twice what one
does when each is the bottleneck. On a small machine the server, PostgreSQL and the
simulated workers share the same cores, so an uncapped process is never the bottleneck
alone and a 1-to-2 comparison measures the machine, not the server. Capping each API
process at a fraction of a core (``cpu.cfs_quota_us`` under cgroup v1, ``cpu.max``
under v2) leaves the database and the client the rest: the comparison then says whether
the processes' capacities add up, i.e. whether anything serializes them.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

V1_ROOT = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


class CapUnavailable(Exception):
    """No writable cgroup CPU controller here: the message says what is missing."""


@dataclass
class CpuCaps:
    """Processes each capped at ``cores`` of a core, until ``release``."""

    cores: float
    groups: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0 < self.cores:
            raise CapUnavailable(f"a CPU cap must be above 0 cores, got {self.cores}")
        if os.geteuid() != 0:
            raise CapUnavailable("capping a process's CPU needs root (cgroups)")
        if not (V1_ROOT / "cpu.cfs_quota_us").exists() and not self._v2():
            raise CapUnavailable("no cgroup CPU controller: neither /sys/fs/cgroup/cpu "
                                 "(v1) nor cpu in /sys/fs/cgroup/cgroup.controllers (v2)")

    @staticmethod
    def _v2() -> bool:
        controllers = V2_ROOT / "cgroup.controllers"
        return controllers.exists() and "cpu" in controllers.read_text().split()

    def cap(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into a capped group of its own."""
        quota = max(1000, int(self.cores * PERIOD_US))
        if (V1_ROOT / "cpu.cfs_quota_us").exists():
            group = V1_ROOT / f"scitq-bench-swarm-{pid}"
            group.mkdir(exist_ok=True)
            (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            group = V2_ROOT / f"scitq-bench-swarm-{pid}"
            group.mkdir(exist_ok=True)
            (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        self.groups.append(group)
        (group / "cgroup.procs").write_text(str(pid))

    def release(self) -> None:
        """Remove the groups (their processes have ended, or go back to the root)."""
        for group in self.groups:
            root = group.parent
            with contextlib.suppress(OSError):
                for pid in (group / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (root / "cgroup.procs").write_text(pid)
            with contextlib.suppress(OSError):
                group.rmdir()
        self.groups.clear()
