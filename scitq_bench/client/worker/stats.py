"""Load figures sent with each heartbeat, so admins see how busy a worker is."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psutil

from scitq_bench.hostprobe import GB


def collect(work_dir: Path) -> dict[str, Any]:
    """Cheap, non-blocking readings (no sampling interval: heartbeats must stay fast)."""
    stats: dict[str, Any] = {"cpu_percent": psutil.cpu_percent(interval=None)}
    try:
        stats["load1"], stats["load5"], stats["load15"] = (round(v, 2) for v in os.getloadavg())
    except OSError:
        pass
    memory = psutil.virtual_memory()
    stats["mem_percent"] = memory.percent
    stats["mem_available_gb"] = round(memory.available / GB, 2)
    try:
        disk = psutil.disk_usage(str(work_dir))
        stats["disk_percent"] = disk.percent
        stats["disk_free_gb"] = round(disk.free / GB, 2)
    except OSError:
        pass
    return stats
