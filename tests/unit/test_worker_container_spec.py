"""What the worker asks the engine for: isolation defaults, slots, limits, GPUs, and
image references; the image-use record behind the cache policy."""

from __future__ import annotations

import os
import time
import types
from pathlib import Path

import pytest

from scitq_bench.client.worker.container import (
    ContainerDefaults,
    SlotDirs,
    build_spec,
    container_name,
    prepare_slots,
)
from scitq_bench.client.worker.engine import ImageUse, split_reference
from scitq_bench.container_options import ContainerOptions, parse_container_options


def slots(tmp_path: Path) -> SlotDirs:
    return SlotDirs(input=tmp_path / "in", output=tmp_path / "out", tmp=tmp_path / "tmp",
                    resource=tmp_path / "res")


def spec_for(tmp_path: Path, options: ContainerOptions | None = None, **overrides):
    arguments = dict(
        image="localhost/x:1", argv=["sh", "-c", "true"], options=options or ContainerOptions(),
        slots=slots(tmp_path), task_env={"CPU": "2", "SCITQ_BENCH_TASK_ID": "7"}, worker="w 1",
        execution_id=12, task_id=7, network_allowed=False, user="65534:65534", mem_gb=0.5,
        cpus=2.0, pids_limit=1024, gpu_ids=[],
    )
    arguments.update(overrides)
    return build_spec(**arguments)


def test_isolated_by_default(tmp_path):
    created = spec_for(tmp_path).create_arguments()
    assert created["network_mode"] == "none"
    assert created["cap_drop"] == ["ALL"]
    assert created["security_opt"] == ["no-new-privileges"]
    assert created["user"] == "65534:65534"
    assert created["mem_limit"] == created["memswap_limit"] == 512 * 1024 * 1024
    assert created["nano_cpus"] == 2_000_000_000
    assert created["pids_limit"] == 1024
    assert "privileged" not in created and "device_requests" not in created
    mounts = {m["Target"]: (m["Source"], m["ReadOnly"]) for m in created["mounts"]}
    assert mounts == {
        "/input": (str(tmp_path / "in"), True), "/resource": (str(tmp_path / "res"), True),
        "/output": (str(tmp_path / "out"), False), "/tmp": (str(tmp_path / "tmp"), False),
    }
    assert created["labels"] == {"scitq_bench.worker": "w 1", "scitq_bench.execution": "12",
                                 "scitq_bench.task": "7"}
    assert created["name"] == container_name("w 1", 12) == "scitq-bench-w-1-12"


def test_environment_points_at_the_slots_and_options_cannot_override_them(tmp_path):
    options = parse_container_options("-e MODE=fast -e OUTPUT=/elsewhere", network_allowed=False)
    env = spec_for(tmp_path, options).environment
    assert env["MODE"] == "fast"
    assert (env["INPUT"], env["OUTPUT"], env["RESOURCE"], env["TEMP"]) == \
        ("/input", "/output", "/resource", "/tmp")
    assert env["CPU"] == "2" and env["SCITQ_BENCH_TASK_ID"] == "7"


def test_network_only_when_allowed(tmp_path):
    options = ContainerOptions(network="lab")
    assert spec_for(tmp_path, options).network == "none"  # the worker checks again
    assert spec_for(tmp_path, options, network_allowed=True).network == "lab"
    assert spec_for(tmp_path, network_allowed=True).network == "bridge"


def test_user_options_and_gpus(tmp_path):
    options = parse_container_options("--shm-size 1g --pids-limit 50 -w /work "
                                      "--entrypoint '/bin/sh -e'", network_allowed=False)
    created = spec_for(tmp_path, options, gpu_ids=["1", "3"], mem_gb=None,
                       cpus=None).create_arguments()
    assert created["shm_size"] == 1 << 30
    assert created["pids_limit"] == 50
    assert created["working_dir"] == "/work"
    assert created["entrypoint"] == ["/bin/sh", "-e"]
    assert "mem_limit" not in created and "nano_cpus" not in created
    [request] = created["device_requests"]
    assert request["DeviceIDs"] == ["1", "3"] and request["Capabilities"] == [["gpu"]]


def test_default_user_is_never_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert ContainerDefaults().resolved_user() == ("65534:65534", 65534, 65534)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    monkeypatch.setattr(os, "getgid", lambda: 100)
    assert ContainerDefaults().resolved_user() == ("1000:100", 1000, 100)
    assert ContainerDefaults(user="2000").resolved_user() == ("2000", 2000, 2000)


def test_prepare_slots_gives_writable_slots_to_the_container_user(tmp_path):
    dirs = slots(tmp_path)
    dirs.input.mkdir()
    (dirs.input / "data").write_text("x")
    (dirs.input / "data").chmod(0o600)
    prepare_slots(dirs, 4242, 4243)
    if os.geteuid() == 0:
        assert (dirs.output.stat().st_uid, dirs.output.stat().st_gid) == (4242, 4243)
        assert dirs.tmp.stat().st_uid == 4242
    assert (dirs.input / "data").stat().st_mode & 0o444 == 0o444


@pytest.mark.parametrize(("reference", "expected"), [
    ("busybox", ("busybox", "latest")),
    ("localhost/x:test", ("localhost/x", "test")),
    ("registry:5000/team/x", ("registry:5000/team/x", "latest")),
    ("registry:5000/team/x:2", ("registry:5000/team/x", "2")),
    ("x@sha256:abc", ("x", "sha256:abc")),
])
def test_split_reference(reference, expected):
    assert split_reference(reference) == expected


def test_image_use_survives_restarts(tmp_path, monkeypatch):
    record = ImageUse(tmp_path / "state" / "images.json")
    clock = iter([100.0, 200.0])
    # the engine module's own clock, not time.time for every thread of this process
    # (another test's thread logging would take the values)
    monkeypatch.setattr("scitq_bench.client.worker.engine.time", types.SimpleNamespace(
        time=lambda: next(clock), monotonic=time.monotonic, sleep=time.sleep))
    record.touch("a")
    record.touch("b")
    again = ImageUse(tmp_path / "state" / "images.json")
    assert again.idle_since(150.0) == ["a"]
    again.forget("a")
    assert ImageUse(tmp_path / "state" / "images.json").idle_since(1e9) == ["b"]
