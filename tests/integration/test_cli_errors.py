"""The CLI says what went wrong in one line instead of doing something else: a server
that is down, an option given twice."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.support.postgres import free_port

CLI = [sys.executable, "-m", "scitq_bench.cli.main"]


def run_cli(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """The real CLI in a process of its own, with no config file nor server variable."""
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("SCITQ_BENCH_SERVER", "SCITQ_BENCH_TOKEN",
                                "SCITQ_BENCH_RETRY_SECONDS")}
    environment.update(SCITQ_BENCH_CONFIG=str(tmp_path / "absent.json"), **env)
    began = time.monotonic()
    done = subprocess.run([*CLI, *args], env=environment, capture_output=True, text=True,
                          timeout=60)
    return done, time.monotonic() - began


def test_a_server_that_is_down_fails_within_the_bound_with_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done, took = run_cli(tmp_path, "--server", url, "--retry-seconds", "1", "batch", "list")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[0] == f"cannot reach {url}: connection refused; retrying for up to 1 s"
    assert re.fullmatch(rf"Error: cannot reach {re.escape(url)}: connection refused "
                        r"\(after [2-9] tries in 1\.\d s\)", lines[1]), lines
    assert len(lines) == 2  # no traceback, no urllib3 text
    assert took < 1 + 8  # the bound, plus starting Python on a loaded machine


def test_the_retry_bound_comes_from_the_environment_too(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done, _ = run_cli(tmp_path, "--server", url, "task", "list",
                      SCITQ_BENCH_RETRY_SECONDS="0")
    assert done.returncode == 1
    assert done.stderr.strip() == (f"Error: cannot reach {url}: connection refused "
                                   "(after 1 try in 0.0 s)")


def test_a_bad_retry_bound_in_the_environment_is_named(tmp_path: Path) -> None:
    done, _ = run_cli(tmp_path, "task", "list", SCITQ_BENCH_RETRY_SECONDS="soon")
    assert done.returncode == 1
    assert "SCITQ_BENCH_RETRY_SECONDS" in done.stderr and "'soon'" in done.stderr


def test_an_option_given_twice_is_refused_before_anything_is_done(run, live_server) -> None:
    client = live_server.client()
    for name in ("A", "B"):
        client.batch_create(name)
    result = run("batch", "stop", "-n", "A", "-n", "B")
    assert result.exit_code == 2
    assert "option -n/--name was given twice ('A' and 'B')" in result.output
    assert {b["name"]: b["status"] for b in client.batch_list()} == {"A": "running",
                                                                      "B": "running"}
    assert run("task", "list", "-b", "A", "--batch=B").exit_code == 2
    assert run("batch", "stop", "-n", "A", "--signal", "pause").exit_code == 0
    assert run("task", "list", "-i", "1", "-i", "2").exit_code == 0  # -i takes several
