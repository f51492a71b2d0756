"""Who uses which of the worker's GPUs, per task (detection is in ``hostprobe``)."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from scitq_bench.hostprobe import Gpu


class GpuPool:
    """Hands out whole GPUs to concurrent tasks so that no two tasks share one."""

    ALL = -1

    def __init__(self, gpus: Iterable[Gpu]) -> None:
        self._gpus = sorted(gpus, key=lambda gpu: gpu.index)
        indices = [gpu.index for gpu in self._gpus]
        if len(set(indices)) != len(indices):
            raise ValueError(f"duplicate GPU indices in {indices}")
        self._by_index = {gpu.index: gpu for gpu in self._gpus}
        self._busy: set[int] = set()
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return len(self._gpus)

    @property
    def free(self) -> int:
        with self._lock:
            return len(self._gpus) - len(self._busy)

    def fits(self, count: int) -> bool:
        """Whether ``take(count)`` could ever succeed here (all GPUs free), without raising."""
        return count == self.ALL or 0 <= count <= self.total

    def _wanted(self, count: int) -> int:
        if count == self.ALL:
            return self.total
        if count < 0:
            raise ValueError(f"GPU count must be >= 0 or -1 (all), not {count}")
        if count > self.total:
            raise ValueError(f"{count} GPUs requested but this worker has only {self.total}")
        return count

    def take(self, count: int) -> list[Gpu] | None:
        """Reserve ``count`` GPUs (-1: every GPU), lowest indices first.

        Returns None when not enough are free right now (the caller retries later), and
        raises ValueError when the request can never be met here, so it is not retried forever.
        -1 on a worker without GPUs gives [].
        """
        wanted = self._wanted(count)
        if wanted == 0:
            return []
        with self._lock:
            available = [gpu for gpu in self._gpus if gpu.index not in self._busy]
            if len(available) < wanted:
                return None
            chosen = available[:wanted]
            self._busy.update(gpu.index for gpu in chosen)
            return chosen

    def give_back(self, gpus: Iterable[Gpu]) -> None:
        """Free GPUs after a task; giving back a free GPU again is harmless."""
        gpus = list(gpus)
        unknown = [gpu.index for gpu in gpus if self._by_index.get(gpu.index) != gpu]
        if unknown:
            raise ValueError(f"GPUs {unknown} do not belong to this pool")
        with self._lock:
            self._busy.difference_update(gpu.index for gpu in gpus)


def cuda_visible_devices(gpus: list[Gpu]) -> str:
    """``CUDA_VISIBLE_DEVICES`` value: the indices, comma-joined; "" hides every GPU.

    The indices are NVML's (PCI bus order); set ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` alongside
    so CUDA numbers the devices the same way on machines with mixed models.
    """
    return ",".join(str(gpu.index) for gpu in gpus)


def device_request_ids(gpus: list[Gpu]) -> list[str]:
    """``device_ids`` for a Docker ``DeviceRequest`` (the NVIDIA runtime takes NVML indices)."""
    return [str(gpu.index) for gpu in gpus]
