"""The bubblewrap sandbox of host runs: the argv it is given, and, with a real bwrap,
what the command inside sees and that pause, stop and kill reach all of it."""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from pathlib import Path

import pytest

from scitq_bench.client.worker import sandbox
from scitq_bench.client.worker.container import CODABENCH, SlotDirs, build_spec, prepare_slots
from scitq_bench.client.worker.sandbox import (
    ROOT_NAMESPACES,
    SandboxedProcess,
    SandboxUnavailable,
    Tools,
    build_argv,
    system_entries,
)
from scitq_bench.container_options import ContainerOptions
from tests.support.waiting import wait_until

SYSTEM = [("/usr", None), ("/bin", "usr/bin"), ("/etc", None)]
MOUNTS = [("/w/1/input", "/app", False), ("/w/1/output", "/app/output", False),
          ("/w/res", "/resource", True)]


def test_argv_of_a_worker_that_is_not_root():
    argv = build_argv(Tools("/usr/bin/bwrap"), ["python3", "score.py", "a b"], mounts=MOUNTS,
                      env={"PATH": "/usr/bin", "CPU": "2"}, workdir="/app/program",
                      system=SYSTEM)
    assert argv == [
        "/usr/bin/bwrap", "--unshare-all", "--die-with-parent", "--new-session",
        "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--ro-bind", "/etc", "/etc",
        "--proc", "/proc", "--dev", "/dev",
        "--bind", "/w/1/input", "/app", "--bind", "/w/1/output", "/app/output",
        "--ro-bind", "/w/res", "/resource",
        "--clearenv", "--setenv", "CPU", "2", "--setenv", "PATH", "/usr/bin",
        "--chdir", "/app/program", "--", "python3", "score.py", "a b",
    ]


def test_argv_of_a_root_worker_drops_to_the_user():
    """Root: every namespace but the user one (a root bwrap could only map root in a
    user namespace), then setpriv to the user, without any capability."""
    argv = build_argv(Tools("/usr/bin/bwrap", "/usr/bin/setpriv"), ["sh", "-c", "id"],
                      mounts=MOUNTS[:1], env={"PATH": "/usr/bin"}, workdir="/app",
                      user=(65534, 65533), system=[], devices=["/dev/nvidia0"])
    assert "--unshare-all" not in argv
    assert argv[1:1 + len(ROOT_NAMESPACES)] == list(ROOT_NAMESPACES)
    assert "--unshare-net" in argv and "--unshare-pid" in argv
    assert argv[argv.index("--dev-bind"):argv.index("--dev-bind") + 3] == \
        ["--dev-bind", "/dev/nvidia0", "/dev/nvidia0"]
    tail = argv[argv.index("--chdir"):]
    assert tail == ["--chdir", "/app", "--", "/usr/bin/setpriv", "--reuid=65534",
                    "--regid=65533", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
                    "--", "sh", "-c", "id"]
    with pytest.raises(SandboxUnavailable):
        build_argv(Tools("/usr/bin/bwrap"), ["id"], mounts=[], env={}, workdir="/",
                   user=(65534, 65534), system=[])


def test_system_entries_recreate_links(tmp_path):
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "bin").symlink_to("usr/bin")
    (tmp_path / "abs").symlink_to("/usr/lib")
    names = [str(tmp_path / n) for n in ("usr", "bin", "abs", "missing")]
    assert system_entries(names) == [(names[0], None), (names[1], "usr/bin"),
                                     (names[2], "/usr/lib")]


def test_missing_bwrap_is_said_clearly(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(SandboxUnavailable, match="bubblewrap \\(bwrap\\) is not installed"):
        sandbox.check(None)
    monkeypatch.setattr(shutil, "which",
                        lambda name, **k: "/usr/bin/bwrap" if name == "bwrap" else None)
    with pytest.raises(SandboxUnavailable, match="setpriv"):
        sandbox.check((65534, 65534))
    with pytest.raises(SandboxUnavailable, match="never runs tasks as root"):
        sandbox.check((0, 0))


# -- the codabench layout, shared by the sandbox and containers ------------------------


def test_codabench_slots(tmp_path):
    directory = tmp_path / "e"
    (directory / "input" / "program").mkdir(parents=True)
    (directory / "input" / "program" / "run.sh").write_text("echo\n")
    (directory / "input" / "shared").symlink_to("/etc")  # must not move the mount
    (directory / "input" / "output").write_text("a file in the way")
    slots = SlotDirs.for_execution(directory, tmp_path / "res", CODABENCH)
    prepare_slots(slots, os.getuid(), os.getgid())
    assert slots.mounts() == [
        (str(directory / "input"), "/app", False),
        (str(directory / "output"), "/app/output", False),
        (str(directory / "shared"), "/app/shared", False),
        (str(directory / "tmp"), "/tmp", False),
        (str(tmp_path / "res"), "/resource", True),
    ]
    for name in ("output", "shared"):
        point = directory / "input" / name
        assert point.is_dir() and not point.is_symlink() and not any(point.iterdir())
    assert (directory / "shared").is_dir()
    assert os.stat(directory / "input" / "program" / "run.sh").st_mode & 0o660 == 0o660
    assert slots.environment() == {"INPUT": "/app/input", "OUTPUT": "/app/output",
                                   "RESOURCE": "/resource", "TEMP": "/tmp"}
    assert slots.workdir() == "/app/program"
    (directory / "input" / "input_data").mkdir()
    shutil.rmtree(directory / "input" / "program")
    assert slots.environment()["INPUT"] == "/app/input_data"
    assert slots.workdir() == "/app"
    with pytest.raises(ValueError):
        SlotDirs.for_execution(directory, tmp_path / "res", "other")


def test_container_spec_with_codabench_layout(tmp_path):
    slots = SlotDirs.for_execution(tmp_path / "e", tmp_path / "res", CODABENCH)
    spec = build_spec(image="localhost/x:1", argv=["sh"], options=ContainerOptions(),
                      slots=slots, task_env={"CPU": "1"}, worker="w", execution_id=3,
                      task_id=2, network_allowed=False, user="65534:65534", mem_gb=None,
                      cpus=None, pids_limit=1024, gpu_ids=[])
    created = spec.create_arguments()
    mounts = {m["Target"]: (m["Source"], m["ReadOnly"]) for m in created["mounts"]}
    assert mounts == {
        "/app": (str(tmp_path / "e" / "input"), False),
        "/app/output": (str(tmp_path / "e" / "output"), False),
        "/app/shared": (str(tmp_path / "e" / "shared"), False),
        "/tmp": (str(tmp_path / "e" / "tmp"), False),
        "/resource": (str(tmp_path / "res"), True),
    }
    assert created["working_dir"] == "/app"
    assert created["environment"]["INPUT"] == "/app/input"
    assert created["environment"]["OUTPUT"] == "/app/output"
    assert created["network_mode"] == "none" and created["cap_drop"] == ["ALL"]
    assert created["security_opt"] == ["no-new-privileges"] and created["user"] == "65534:65534"


# -- with a real bwrap ---------------------------------------------------------------

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap is not installed")
ROOT = os.geteuid() == 0
USER = (65534, 65534) if ROOT else None


def start(tmp_path: Path, command: list[str],
          files: dict[str, str] | None = None) -> tuple[SandboxedProcess, Path]:
    """A command in the sandbox with the codabench slots, as the agent starts it."""
    directory = tmp_path / "e"
    for name in ("input", "output", "tmp"):
        (directory / name).mkdir(parents=True, exist_ok=True)
    for name, text in (files or {}).items():
        path = directory / "input" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    slots = SlotDirs.for_execution(directory, tmp_path / "res", CODABENCH)
    prepare_slots(slots, *(USER or (os.getuid(), os.getgid())))
    tools = sandbox.check(USER)
    env = dict(slots.environment(), PATH=sandbox.SANDBOX_PATH, HOME="/tmp", CPU="1")
    workdir = slots.workdir()
    assert workdir is not None
    argv = build_argv(tools, command, mounts=slots.mounts(), env=env, workdir=workdir,
                      user=USER)
    log = tmp_path / "log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        return SandboxedProcess.start(argv, Path("/"), {"PATH": sandbox.SANDBOX_PATH},
                                      fd, fd), log
    finally:
        os.close(fd)


def sleeping(duration: str) -> list[int]:
    """Host pids of the ``sleep <duration>`` processes (not of the shells or bwraps whose
    command lines mention it), zombies aside."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                if argv[:2] == [b"sleep", duration.encode()] and state(int(entry)) != "Z":
                    found.append(int(entry))
            except (OSError, IndexError):
                continue
    return found


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def sleeper() -> str:
    """A sleep duration unique to this test, to find its processes from the host."""
    return f"{100000 + uuid.uuid4().int % 100000}.{os.getpid()}"


@needs_bwrap
def test_inside_the_sandbox(tmp_path):
    process, log = start(tmp_path, ["sh", "-c", (
        "id -u; pwd; env | sort; ls /app | sort | tr '\\n' ' '; echo;"
        "cat /app/program/score.sh; echo out > /app/output/o; echo sh > /app/shared/s;"
        "echo t > /tmp/t; echo app > /app/new;"
        "touch /usr/x 2>/dev/null || echo usr-read-only; touch /etc/x 2>/dev/null || "
        "echo etc-read-only; touch /resource/x 2>/dev/null || echo resource-read-only;"
        "grep -c . /proc/net/dev; grep CapEff /proc/self/status")],
        files={"program/score.sh": "echo scoring\n", "input/ref/truth": "1\n"})
    assert process.wait(30) == 0
    process.cleanup()
    lines = log.read_text().splitlines()
    assert lines[0] == ("65534" if ROOT else str(os.getuid()))
    assert lines[1] == "/app/program"
    env = dict(line.split("=", 1) for line in lines if "=" in line)
    env.pop("SHLVL", None)  # some shells add it
    assert env == {"CPU": "1", "HOME": "/tmp", "INPUT": "/app/input", "OUTPUT": "/app/output",
                   "PATH": sandbox.SANDBOX_PATH, "PWD": "/app/program", "RESOURCE": "/resource",
                   "TEMP": "/tmp"}
    assert "input output program shared " in lines  # what the inputs placed, and mounts
    assert "echo scoring" in lines
    assert {"usr-read-only", "etc-read-only", "resource-read-only"} <= set(lines)
    assert "3" in lines  # /proc/net/dev: two header lines and lo, nothing else
    assert "CapEff:\t0000000000000000" in lines
    base = tmp_path / "e"
    assert (base / "output" / "o").read_text() == "out\n"
    assert (base / "shared" / "s").read_text() == "sh\n"
    assert (base / "tmp" / "t").read_text() == "t\n"
    assert (base / "input" / "new").read_text() == "app\n"


@needs_bwrap
def test_sigkill_of_the_group_ends_everything(tmp_path):
    """--new-session gives the sandbox its own session; --die-with-parent still ends it
    all when bwrap is killed, background processes and their own sessions included."""
    duration = sleeper()
    process, _ = start(tmp_path, ["sh", "-c", f"sleep {duration} & setsid sleep {duration} &"
                                  f" sleep {duration}"])
    wait_until(lambda: len(sleeping(duration)) == 3)
    os.killpg(process.pid, signal.SIGKILL)  # bwrap's group alone, as a plain Process would
    assert process.wait(10) == 137
    process.cleanup()
    wait_until(lambda: not sleeping(duration))


@needs_bwrap
def test_kill_pause_resume_and_terminate(tmp_path):
    duration = sleeper()
    process, log = start(tmp_path, ["sh", "-c", "trap 'echo terminated; exit 3' TERM;"
                                    f" sleep {duration} & wait"])
    pid = wait_until(lambda: sleeping(duration))[0]  # the trap is set by now
    shell = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    process.pause()
    wait_until(lambda: state(pid) == "T" and state(shell) == "T")
    process.resume()
    wait_until(lambda: state(pid) in "SR" and state(shell) in "SR")
    process.terminate(grace=10)  # the command's own SIGTERM handler runs
    assert process.wait(10) == 3
    process.cleanup()
    assert "terminated" in log.read_text()

    duration = sleeper()
    process, _ = start(tmp_path / "k", ["sh", "-c", f"trap '' TERM; sleep {duration}"])
    wait_until(lambda: sleeping(duration))
    process.kill()
    assert process.wait(10) == 137
    process.cleanup()
    wait_until(lambda: not sleeping(duration))
