"""Process control for worker tasks: argv, environment, start failures, timeouts,
pause/resume, termination and clean-up of the whole process group."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from scitq_bench.client.worker.executor import (
    CommandError,
    Process,
    base_environment,
    build_argv,
    cpu_share,
    exit_code,
    task_environment,
)
from tests.support.processes import group_stopped, process_state
from tests.support.waiting import wait_until


def _start(tmp_path: Path, argv: list[str]) -> tuple[Process, Path]:
    out = tmp_path / "out.log"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        return Process.start(argv, tmp_path, dict(os.environ), fd, fd), out
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_build_argv():
    assert build_argv("echo 'a b' c", shell=False) == ["echo", "a b", "c"]
    assert build_argv("echo $HOME | wc", shell=True) == ["/bin/sh", "-c", "echo $HOME | wc"]
    with pytest.raises(CommandError, match="cannot parse"):
        build_argv("echo 'unbalanced", shell=False)
    with pytest.raises(CommandError, match="empty"):
        build_argv("   ", shell=False)


def test_environment(tmp_path):
    base = base_environment({"PATH": "/bin", "SCITQ_BENCH_TOKEN": "secret"})
    assert base == {"PATH": "/bin"}
    env = task_environment(base, tmp_path / "e", tmp_path / "res", 3, 11, 22)
    assert env["INPUT"] == str(tmp_path / "e" / "input")
    assert env["OUTPUT"] == str(tmp_path / "e" / "output")
    assert env["TEMP"] == str(tmp_path / "e" / "tmp")
    assert env["RESOURCE"] == str(tmp_path / "res")
    assert (env["CPU"], env["SCITQ_BENCH_EXECUTION_ID"], env["SCITQ_BENCH_TASK_ID"]) == \
        ("3", "11", "22")
    assert cpu_share(4, cpus=16) == 4 and cpu_share(32, cpus=16) == 1 and cpu_share(0, cpus=2) == 2


def test_exit_codes():
    assert exit_code(0) == 0 and exit_code(3) == 3 and exit_code(-signal.SIGKILL) == 137


def test_missing_command(tmp_path):
    with pytest.raises(CommandError) as caught:
        _start(tmp_path, ["definitely-not-a-command-xyz"])
    assert caught.value.return_code == 127
    assert str(caught.value) == "command not found: definitely-not-a-command-xyz"
    script = tmp_path / "noexec.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(CommandError) as denied:
        _start(tmp_path, [str(script)])
    assert denied.value.return_code == 126


def test_output_goes_to_file(tmp_path):
    process, out = _start(tmp_path, ["sh", "-c", "echo out; echo err >&2; exit 5"])
    assert process.wait_until_done(None, 1) == (5, False)
    process.cleanup()
    assert out.read_text() == "out\nerr\n"


def test_run_timeout_terminates_group(tmp_path):
    process, out = _start(tmp_path, ["sh", "-c", "sleep 30 & echo $!; wait"])
    began = time.monotonic()
    code, timed_out = process.wait_until_done(0.3, grace=1)
    process.cleanup()
    assert timed_out and code == 128 + signal.SIGTERM
    assert time.monotonic() - began < 2
    child = int(out.read_text().split()[0])
    assert wait_until(lambda: not _alive(child) or _zombie(child), timeout=5,
                      what="the child killed")


def test_stubborn_process_is_killed_after_grace(tmp_path):
    process, out = _start(tmp_path, ["sh", "-c",
                                     "trap '' TERM; echo ready; while true; do sleep 0.05; done"])
    wait_until(lambda: out.read_text() == "ready\n", what="the trap set")
    began = time.monotonic()
    process.terminate(grace=0.3)
    code, _ = process.wait_until_done(None, 0.3)
    process.cleanup()
    assert code == 128 + signal.SIGKILL
    assert 0.25 < time.monotonic() - began < 3


def test_paused_time_does_not_count_against_timeout(tmp_path):
    process, _ = _start(tmp_path, ["sleep", "0.6"])
    process.pause()
    time.sleep(0.5)  # paused time, which must not count
    assert process.active_seconds() < 0.2
    process.resume()
    code, timed_out = process.wait_until_done(0.9, grace=1)
    process.cleanup()
    assert (code, timed_out) == (0, False)


def test_pause_stops_output(tmp_path):
    process, out = _start(tmp_path, ["sh", "-c", "while true; do echo x; sleep 0.02; done"])
    wait_until(lambda: out.stat().st_size, what="some output")
    process.pause()
    wait_until(lambda: group_stopped(process.pid), what="the command stopped")
    frozen = out.stat().st_size
    time.sleep(0.3)  # paused: nothing more for this long
    assert out.stat().st_size == frozen
    process.resume()
    # a loaded machine may take a while to schedule it again
    assert wait_until(lambda: out.stat().st_size > frozen, timeout=5, what="more output")
    process.kill()
    assert process.wait_until_done(None, 1)[0] == 128 + signal.SIGKILL
    process.cleanup()


def test_cleanup_kills_stragglers(tmp_path):
    process, out = _start(tmp_path, ["sh", "-c", "sleep 30 & echo $!"])
    assert process.wait_until_done(None, 1) == (0, False)
    child = int(out.read_text().split()[0])
    assert _alive(child)
    process.cleanup()
    assert wait_until(lambda: not _alive(child) or _zombie(child), timeout=5,
                      what="the straggler killed")


def _zombie(pid: int) -> bool:
    """A zombie, or already reaped."""
    return process_state(pid) in ("Z", "")


def test_plain_commands_see_the_task_variables_expanded_and_nothing_else() -> None:
    from scitq_bench.client.worker.executor import expand_task_variables

    seen = {"INPUT": "/w/in put", "OUTPUT": "/w/out", "RESOURCE": "/r", "TEMP": "/t",
            "CPU": "4", "HOME": "/home/x"}
    argv = ["wc", "-l", "$INPUT/data.csv", "${OUTPUT}/x", "-j$CPU", "$INPUTS", "$HOME",
            "$(rm -rf /)", "'$TEMP'", "*"]
    assert expand_task_variables(argv, seen) == [
        "wc", "-l", "/w/in put/data.csv", "/w/out/x", "-j4", "$INPUTS", "$HOME",
        "$(rm -rf /)", "'/t'", "*"]  # one word stays one word: no split, no glob
