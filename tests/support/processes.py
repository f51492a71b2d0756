"""What /proc says of processes: tests wait for a command to be stopped or gone instead
of sleeping."""

from __future__ import annotations

from pathlib import Path


def _stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp...)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_state(pid: int) -> str:
    """The process's state letter (R, S, T when stopped, Z for a zombie); "" once gone."""
    try:
        return _stat(pid)[0]
    except (FileNotFoundError, ProcessLookupError):
        return ""


def group_stopped(pgid: int) -> bool:
    """Every process of the group is stopped (SIGSTOP reached them all): in state T, a
    zombie, or blocked (D) on a child that is stopped, as a shell that vforked a child
    the stop caught before it ran its program stays. A process in D for another reason
    (finishing a write) does not count: it may still write once."""
    members: dict[int, tuple[str, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat(entry.name)
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid:
            members[int(entry.name)] = (fields[0], int(fields[1]))
    stopped_parents = {ppid for state, ppid in members.values() if state == "T"}
    return bool(members) and all(
        state in ("T", "Z") or (state == "D" and pid in stopped_parents)
        for pid, (state, _) in members.items())
