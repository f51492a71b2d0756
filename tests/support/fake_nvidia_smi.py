"""A stand-in ``nvidia-smi`` so GPU detection can be tested on machines without GPUs.

Put ``directory`` first on PATH and set ``SCITQ_BENCH_GPU_DETECTION=smi`` so a real NVML,
if the test machine has one, is not asked first.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import Path

QUERY_ARGS = ("--query-gpu=index,name,memory.total,uuid", "--format=csv,noheader,nounits")
DRIVER_FAILURE = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running."
)


def _heredoc(lines: Sequence[str]) -> str:
    for line in lines:
        if line.strip() == "FAKE_NVIDIA_SMI_END":
            raise ValueError("a line equal to the heredoc marker cannot be emitted")
    text = "".join(f"{line}\n" for line in lines)
    return f"cat <<'FAKE_NVIDIA_SMI_END'\n{text}FAKE_NVIDIA_SMI_END\n"


def install_fake_nvidia_smi(
    directory: Path,
    gpus: list[tuple[str, int]],
    *,
    exit_code: int = 0,
    query_lines: Sequence[str] | None = None,
) -> Path:
    """Write an executable ``directory/nvidia-smi`` describing ``gpus`` as (name, MiB) pairs.

    The exact detection query gets CSV rows ``index, name, memory, GPU-fake-N``; any other
    arguments get an ``nvidia-smi -L`` style listing. ``query_lines`` replaces the CSV rows
    verbatim (malformed output); a non-zero ``exit_code`` makes every call print the driver
    failure message and exit with that status, as the real tool does without a driver.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if query_lines is None:
        query_lines = [
            f"{index}, {name}, {memory_mib}, GPU-fake-{index}"
            for index, (name, memory_mib) in enumerate(gpus)
        ]
    listing = [
        f"GPU {index}: {name} (UUID: GPU-fake-{index})" for index, (name, _) in enumerate(gpus)
    ] or ["No devices found."]
    if exit_code:
        body = _heredoc([DRIVER_FAILURE]) + f"exit {int(exit_code)}\n"
    else:
        exact_query = (
            f'[ "$#" -eq 2 ] && [ "$1" = "{QUERY_ARGS[0]}" ] && [ "$2" = "{QUERY_ARGS[1]}" ]'
        )
        body = f"if {exact_query}; then\n{_heredoc(query_lines)}exit 0\nfi\n"
        body += f"{_heredoc(listing)}exit 0\n"
    script = directory / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script
