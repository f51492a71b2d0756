"""What this machine has: CPUs, memory, GPUs.

Both sides probe with it: a worker registers its capacity, the server offers its own
machine as the ``local`` provider's flavor. Detection never raises: a machine without
GPUs, drivers or tools is an ordinary CPU machine.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass

import psutil

log = logging.getLogger("scitq_bench.worker")

GB = 1024**3

DETECTION_ENV = "SCITQ_BENCH_GPU_DETECTION"
SMI_QUERY = ["--query-gpu=index,name,memory.total,uuid", "--format=csv,noheader,nounits"]
SMI_TIMEOUT_S = 10.0
_MIB = 1024 * 1024


@dataclass(frozen=True)
class Gpu:
    """One GPU as the driver numbers it (NVML / nvidia-smi index, PCI bus order)."""

    index: int
    name: str
    memory_mb: int
    uuid: str | None = None


def detect_gpus(nvidia_smi: str = "nvidia-smi") -> list[Gpu]:
    """The machine's NVIDIA GPUs, sorted by index; [] when there are none or none can be seen.

    Precedence, decided by ``SCITQ_BENCH_GPU_DETECTION`` (read at each call):

    - ``off``: no detection at all, [] (a machine whose GPUs must not be offered).
    - ``smi``: nvidia-smi only, NVML is not touched (tests that fake nvidia-smi on PATH).
    - unset, empty or ``auto`` (unknown values too, with a warning): NVML through ``pynvml``
      first; its answer is final when it initialises, even with 0 GPUs. Only when NVML is
      unusable (library missing, driver not loaded, any error) is nvidia-smi asked.

    NVML comes first because it needs no process and no PATH; nvidia-smi is the fallback for
    bindings that fail to load the library while the tool still works.
    """
    mode = os.environ.get(DETECTION_ENV, "").strip().lower()
    if mode == "off":
        log.info("GPU detection disabled (%s=off)", DETECTION_ENV)
        return []
    if mode not in ("", "auto", "smi"):
        log.warning("%s=%r not understood (off, smi, auto): using auto", DETECTION_ENV, mode)
    if mode != "smi":
        gpus = _detect_nvml()
        if gpus is not None:
            return gpus
    return _detect_smi(nvidia_smi)


def _text(value: bytes | str) -> str:
    """pynvml returns bytes before 11.x and str after."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _detect_nvml() -> list[Gpu] | None:
    """GPUs seen by NVML, or None when NVML cannot answer (so the caller falls back)."""
    try:
        import pynvml
    except ImportError:
        log.debug("pynvml not installed: no NVML detection")
        return None
    try:
        pynvml.nvmlInit()
    except Exception as error:  # NVMLError, OSError from ctypes, anything odd: fall back
        log.debug("NVML unavailable (%s): trying nvidia-smi", error)
        return None
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                uuid: str | None = _text(pynvml.nvmlDeviceGetUUID(handle)) or None
            except Exception:  # a GPU without a readable UUID is still usable
                uuid = None
            gpus.append(
                Gpu(
                    index=index,
                    name=_text(pynvml.nvmlDeviceGetName(handle)).strip(),
                    memory_mb=int(memory.total) // _MIB,
                    uuid=uuid,
                )
            )
        return gpus
    except Exception as error:
        log.info("NVML failed while listing GPUs (%s): trying nvidia-smi", error)
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception as error:
            log.debug("nvmlShutdown failed: %s", error)


def _detect_smi(nvidia_smi: str) -> list[Gpu]:
    """GPUs listed by ``nvidia-smi --query-gpu``; [] when the tool is absent or fails."""
    executable = shutil.which(nvidia_smi)
    if executable is None:
        log.debug("%s not found: no GPUs", nvidia_smi)
        return []
    try:
        result = subprocess.run(
            [executable, *SMI_QUERY],
            capture_output=True,
            text=True,
            timeout=SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as error:
        log.info("%s could not run (%s): no GPUs", executable, error)
        return []
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        log.info(
            "%s exited %d (%s): no GPUs",
            executable,
            result.returncode,
            detail[-1] if detail else "no message",
        )
        return []
    return parse_smi_csv(result.stdout)


def parse_smi_csv(output: str) -> list[Gpu]:
    """Rows of ``index, name, memory.total (MiB), uuid``; malformed rows are skipped, logged.

    The name is everything between the first and the last two fields, so a comma in a model
    name would not shift the other columns.
    """
    gpus: dict[int, Gpu] = {}
    for line in output.splitlines():
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        try:
            if len(fields) < 4:
                raise ValueError(f"{len(fields)} fields, 4 expected")
            index, memory_mb = int(fields[0]), int(fields[-2])
            name = ", ".join(fields[1:-2])
            if index < 0 or memory_mb < 0 or not name:
                raise ValueError("negative number or empty name")
        except ValueError as error:
            log.warning("Skipping unreadable nvidia-smi line %r: %s", line, error)
            continue
        if index in gpus:
            log.warning("Skipping nvidia-smi line %r: GPU %d listed twice", line, index)
            continue
        uuid = fields[-1] if fields[-1] and fields[-1] != "[N/A]" else None
        gpus[index] = Gpu(index=index, name=name, memory_mb=memory_mb, uuid=uuid)
    return [gpus[index] for index in sorted(gpus)]


def summarize(gpus: list[Gpu]) -> tuple[int, str | None, float | None]:
    """``(gpus, gpu_model, gpu_mem_gb)`` for registration.

    The memory is the smallest GPU's, in GiB rounded to 0.1: a task asking for N GPUs of
    at least X GB must fit on any N of them. Mixed models are listed, first seen first.
    """
    if not gpus:
        return 0, None, None
    names = list(dict.fromkeys(gpu.name for gpu in gpus))
    memory_gb = round(min(gpu.memory_mb for gpu in gpus) / 1024, 1)
    return len(gpus), ", ".join(names), memory_gb


@functools.cache
def cpu_count() -> int:
    """Logical CPUs (at least one); asked once: ``os.cpu_count`` reads /sys at every call."""
    return os.cpu_count() or 1


def memory_gb(digits: int = 2) -> float:
    """Total memory in GiB."""
    return round(psutil.virtual_memory().total / GB, digits)
