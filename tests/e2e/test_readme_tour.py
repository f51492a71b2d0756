"""README.md's CLI tour, run as written: every command of its ``bash`` block, in order,
against a real server process and a real worker, must exit 0. A command the README
shows that does not work fails here with its line of the README."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scitq_bench.client import Client
from scitq_bench.settings import write_private
from tests.support.stack import Stack, wait_until

README = Path(__file__).resolve().parents[2] / "README.md"
TOUR_HEADING = "## A five-minute tour of the CLI"
COMMAND_TIMEOUT = 20.0


@dataclass(frozen=True)
class Command:
    line: int  # where it starts in README.md (1-based)
    text: str  # continuation lines joined


def tour_commands(heading: str = TOUR_HEADING) -> list[Command]:
    """The commands of the first ``bash`` block after ``heading``: comments and blank
    lines dropped, backslash continuations joined."""
    lines = README.read_text().splitlines()
    start = lines.index(heading)
    opening = next(i for i in range(start, len(lines)) if lines[i].strip() == "```bash")
    commands: list[Command] = []
    pending: tuple[int, str] | None = None
    for number in range(opening + 1, len(lines)):
        text = lines[number]
        if text.strip() == "```":
            break
        if pending is None:
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            pending = (number + 1, "")
        joined = pending[1] + text
        if joined.endswith("\\"):
            pending = (pending[0], joined[:-1])
            continue
        commands.append(Command(pending[0], joined.strip()))
        pending = None
    assert commands, f"no commands under {heading!r} in {README}"
    return commands


class Tour:
    """One shell session's state across separate commands: each runs in ``bash`` with
    the variables the previous ones set (``NAP=$(...)``), in one working directory."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.cwd = root / "tour"
        self.cwd.mkdir()
        self.env = env
        self.env_file = root / "tour.env"

    def run(self, command: Command) -> subprocess.CompletedProcess[str]:
        script = (f"set -a\n{command.text}\n__rc=$?\n"
                  f"env -0 > {shlex.quote(str(self.env_file))}\nexit $__rc\n")
        done = subprocess.run(["bash", "-c", script], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        if self.env_file.exists():
            entries = self.env_file.read_text().split("\0")
            self.env = dict(e.split("=", 1) for e in entries if "=" in e)
            self.env.pop("__rc", None)
        return done


def cli_wrapper(directory: Path) -> Path:
    """``scitq-bench`` on PATH: this interpreter's CLI, as the venv's script is."""
    directory.mkdir()
    script = directory / "scitq-bench"
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} '
                      '-m scitq_bench.cli.main "$@"\n')
    script.chmod(0o755)
    return directory


def running(client: Client, variable: str, tour: Tour) -> Callable[[], bool]:
    """The task whose id the tour stored in ``variable`` has started."""
    return lambda: client.task_get(int(tour.env[variable]))["status"] == "running"


def test_every_command_of_the_readme_tour_works(stack: Stack) -> None:
    began = time.monotonic()
    commands = tour_commands()
    worker = socket.gethostname()  # ./scripts/run names its worker after the host
    stack.start_worker(worker, concurrency=2)
    client = stack.client()
    wait_until(lambda: client.worker_list(name=worker), 15, what="the worker registers")
    env = stack.env()
    config = Path(env["SCITQ_BENCH_CONFIG"])  # what ./scripts/run writes
    write_private(config, json.dumps({"server": stack.url, "token": stack.token}))
    env["PATH"] = f"{cli_wrapper(stack.root / 'bin')}{os.pathsep}{env.get('PATH', '')}"
    tour = Tour(stack.root, env)
    # where the README's reader would wait before typing the next command
    waits: dict[str, Callable[[], bool]] = {
        'task signal -i "$NAP"': running(client, "NAP", tour),
        "files cat server://results/demo/": lambda: bool(client.file_list("results/demo/")),
    }
    for command in commands:
        text = command.text
        if "$(hostname)" in text and shutil.which("hostname") is None:
            text = text.replace("$(hostname)", worker)
        for prefix, ready in waits.items():
            if prefix in text:
                wait_until(ready, 15, what=f"README line {command.line} can run")
        done = tour.run(Command(command.line, text))
        assert done.returncode == 0, (
            f"README.md line {command.line}: {command.text!r} exited {done.returncode}\n"
            f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-2000:]}")
        if 'task output -i "$COUNT"' in text:
            assert done.stdout.split() == ["1", "2", "3"], done.stdout
        if 'task output -i "$LINES"' in text:  # $INPUT replaced in a plain command
            count, path = done.stdout.split()
            assert count == "3" and path.endswith("/input/data.csv"), done.stdout
        if "files cat" in text:
            assert done.stdout.strip() == "3", done.stdout  # wc -l of the 3-line file
    assert {"launch", "task output", "worker update"} <= {
        word for c in commands for word in ("launch", "task output", "worker update")
        if word in c.text}
    updated = client.worker_list(name=worker)
    assert updated and updated[0]["concurrency"] == 8
    assert re.fullmatch(r"\d+", tour.env["NAP"])
    assert time.monotonic() - began < 60
