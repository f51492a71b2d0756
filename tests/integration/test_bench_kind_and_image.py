"""A submission's kind detected from its archive (as Codabench does), the image every
step of a benchmark runs in, and the environment a benchmark run on the workers' hosts
uses there: against a live server (both databases), through the client and the CLI,
with ``FakeWorker`` claiming what the queue hands out; the worker side of the host
environment in a real bubblewrap sandbox."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scitq_bench.client import Client
from scitq_bench.client.worker import sandbox
from scitq_bench.client.worker.host_env import HostEnvironmentMissing, apply, host_environment
from scitq_bench.exceptions import Forbidden, InvalidInput
from tests.support.api import FakeWorker
from tests.support.bundles import make_bundle, write_zip
from tests.support.cli import as_json, fails, ok

CODE = {"metadata.yaml": "command: python3 $program/run.py $input $output\n",
        "run.py": "print('hello')\n"}
RESULTS = {"prediction.txt": "42\n"}


def participant(live_server: Any, name: str) -> Client:
    answer = live_server.client().account_create(name)
    return Client(live_server.url, answer["token"], retry_for=0)


def prediction_task(submission: dict[str, Any]) -> Any:
    return submission["attempts_detail"][-1]["runs"][0]["prediction_task"]


def code_phase(live_server: Any, root: Path, **options: Any) -> tuple[int, dict[str, Any]]:
    bench = live_server.client().bench_import(make_bundle(root, kind="code", **options))
    return bench["phases"][0]["id"], bench


# -- the kind, detected ------------------------------------------------------------------


def test_a_code_zip_sent_without_a_kind_runs_as_code(live_server, tmp_path: Path) -> None:
    phase, _ = code_phase(live_server, tmp_path / "bundle")
    alice = participant(live_server, "alice")
    code = alice.submission_submit(phase, write_zip(tmp_path / "code.zip", CODE))
    assert (code["kind"], code["kind_note"]) == (
        "code", "detected: code (metadata with a command)")
    assert prediction_task(code) is not None  # a prediction step runs the program

    nested = {f"mine/{name}": content for name, content in CODE.items()}
    nested["mine/metadata"] = nested.pop("mine/metadata.yaml")
    folder = alice.submission_submit(phase, write_zip(tmp_path / "nested.zip", nested))
    assert (folder["kind"], folder["kind_note"]) == (
        "code", "detected: code (metadata with a command in mine/)")

    results = alice.submission_submit(phase, write_zip(tmp_path / "res.zip", RESULTS))
    assert (results["kind"], results["kind_note"]) == (
        "result", "detected: results (no metadata file)")
    assert prediction_task(results) is None  # scored as it is

    no_command = alice.submission_submit(phase, write_zip(
        tmp_path / "meta.zip", {"metadata.yaml": "description: mine\n", **RESULTS}))
    assert (no_command["kind"], no_command["kind_note"]) == (
        "result", "detected: results (metadata has no command)")
    assert alice.submission_get(code["id"])["kind_note"] == code["kind_note"]


def test_an_explicit_kind_wins_over_detection(live_server, tmp_path: Path) -> None:
    phase, _ = code_phase(live_server, tmp_path / "bundle")
    alice = participant(live_server, "alice")
    as_results = alice.submission_submit(phase, write_zip(tmp_path / "code.zip", CODE),
                                         kind="result")
    assert (as_results["kind"], as_results["kind_note"]) == ("result", None)
    assert prediction_task(as_results) is None
    as_code = alice.submission_submit(phase, write_zip(tmp_path / "res.zip", RESULTS),
                                      kind="code")
    assert (as_code["kind"], as_code["kind_note"]) == ("code", None)


def test_detection_refusals_say_what_was_detected(live_server, tmp_path: Path) -> None:
    bench = live_server.client().bench_import(make_bundle(tmp_path / "bundle"))
    phase = bench["phases"][0]["id"]  # accepts only results
    alice = participant(live_server, "alice")
    with pytest.raises(InvalidInput, match=r"only result submissions, not code \(detected: "
                       r"code \(metadata with a command\); submit it with kind result"):
        alice.submission_submit(phase, write_zip(tmp_path / "code.zip", CODE))
    (tmp_path / "plain.zip").write_bytes(b"not a zip at all")
    with pytest.raises(InvalidInput, match="not a zip file"):
        alice.submission_submit(phase, tmp_path / "plain.zip")
    with pytest.raises(InvalidInput, match=r"metadata\.yaml: not valid YAML"):
        alice.submission_submit(phase, write_zip(tmp_path / "bad.zip",
                                                 {"metadata.yaml": "command: [x\n"}))
    assert alice.submission_list() == []


def test_the_cli_detects_the_kind_unless_told(run, live_server, tmp_path: Path) -> None:
    phase, _ = code_phase(live_server, tmp_path / "bundle")
    alice = live_server.client().account_create("alice")["token"]
    detected = as_json(run("submission", "submit", phase, write_zip(tmp_path / "c.zip", CODE),
                           "--json", token=alice))
    assert (detected["kind"], detected["kind_note"]) == (
        "code", "detected: code (metadata with a command)")
    folder = tmp_path / "folder"
    folder.mkdir()
    for name, content in CODE.items():
        (folder / name).write_text(content)
    shown = as_json(run("submission", "submit", phase, folder, "--json", token=alice))
    assert shown["kind"] == "code"
    told = as_json(run("submission", "submit", phase, folder, "--kind", "result", "--json",
                       token=alice))
    assert (told["kind"], told["kind_note"]) == ("result", None)
    fails(run("submission", "submit", phase, token=alice), "submission needs its PATH",
          code=2)


# -- the benchmark's image ----------------------------------------------------------------


def test_the_benchmark_image_is_used_by_every_step_without_its_own(
        run, live_server, api, tmp_path: Path) -> None:
    phase, bench = code_phase(live_server, tmp_path / "bundle", tasks=2,
                              task_extra=[{}, {}])
    admin = live_server.client()
    admin.bench_task_update(bench["id"], 1, image="own/image:2")
    updated = as_json(run("bench", "update", bench["id"], "--image", "org/bench:1", "--json"))
    assert updated["docker_image"] == "org/bench:1"
    assert "org/bench:1" in ok(run("bench", "show", bench["id"])).stdout

    alice = participant(live_server, "alice")
    alice.submission_submit(phase, write_zip(tmp_path / "code.zip", CODE))
    claimed = FakeWorker(api).claim()  # the prediction steps (scoring waits on them)
    assert sorted(e["container"] for e in claimed) == ["org/bench:1", "own/image:2"]

    reset = admin.bench_update(bench["id"], docker_image="")
    assert reset["docker_image"] == "codalab/codalab-legacy:py37"
    with pytest.raises(InvalidInput, match="docker_image"):
        admin.bench_update(bench["id"], docker_image="bad image name")
    with pytest.raises(Forbidden):
        alice.bench_update(bench["id"], docker_image="org/bench:2")
    fails(run("bench", "update", bench["id"]), "give --image, --host-environment and/or --priority",
          code=2)


# -- the environment on the workers' hosts --------------------------------------------------


def test_a_host_benchmark_names_its_environment(run, live_server, tmp_path: Path) -> None:
    admin = live_server.client()
    host = admin.bench_import(make_bundle(tmp_path / "host"), key="host", run_on_host=True)
    assert host["host_environment"] is None
    shown = as_json(run("bench", "update", host["id"], "--host-environment",
                        "/opt/envs/bench1", "--json"))
    assert shown["host_environment"] == "/opt/envs/bench1"
    assert "/opt/envs/bench1" in ok(run("bench", "show", host["id"])).stdout
    with pytest.raises(InvalidInput, match="not an absolute path"):
        admin.bench_update(host["id"], host_environment="envs/bench1")
    with pytest.raises(InvalidInput, match="runs its programs on the workers' hosts"):
        admin.bench_update(host["id"], docker_image="org/bench:1")
    assert admin.bench_update(host["id"], host_environment="")["host_environment"] is None

    image = admin.bench_import(make_bundle(tmp_path / "image"), key="image")
    with pytest.raises(InvalidInput, match="runs its programs in images"):
        admin.bench_update(image["id"], host_environment="/opt/envs/bench1")


def test_a_missing_host_environment_is_refused_naming_it(tmp_path: Path) -> None:
    absent = str(tmp_path / "absent")
    with pytest.raises(HostEnvironmentMissing, match=f"{absent}: no such folder"):
        host_environment(absent, sandbox.SANDBOX_PATH)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HostEnvironmentMissing, match="has no bin/ folder"):
        host_environment(str(tmp_path / "empty"), sandbox.SANDBOX_PATH)
    with pytest.raises(HostEnvironmentMissing, match="not an absolute path"):
        host_environment("relative/env", sandbox.SANDBOX_PATH)
    assert host_environment(None, sandbox.SANDBOX_PATH).mounts == []
    conda = tmp_path / "conda"
    (conda / "bin").mkdir(parents=True)
    (conda / "conda-meta").mkdir()
    found = host_environment(str(conda), sandbox.SANDBOX_PATH)
    assert found.mounts == [(str(conda), str(conda), True)]
    assert found.variables == {"PATH": f"{conda}/bin:{sandbox.SANDBOX_PATH}",
                               "CONDA_PREFIX": str(conda)}
    args = found.bwrap_args()
    assert args[-3:] == ["--ro-bind", str(conda), str(conda)]
    assert args[:4] == ["--perms", "0755", "--dir", str(conda.parents[len(conda.parents) - 2])]
    assert host_environment("/usr", sandbox.SANDBOX_PATH).mounts == []  # seen already


def test_a_virtualenv_runs_first_on_path_in_the_sandbox(tmp_path: Path) -> None:
    """A real virtualenv, its interpreter found first on PATH in a real sandbox."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    try:
        tools = sandbox.check(None if os.geteuid() != 0 else (65534, 65534))
    except sandbox.SandboxUnavailable as exc:
        pytest.skip(f"no sandbox here: {exc}")
    env_dir = tmp_path / "envs" / "bench1"
    base = getattr(sys, "_base_executable", sys.executable)  # not this virtualenv's
    subprocess.run([base, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    found = host_environment(str(env_dir), sandbox.SANDBOX_PATH)
    inside = apply({"PATH": sandbox.SANDBOX_PATH, "HOME": "/tmp"}, found)
    argv = sandbox.build_argv(
        tools, ["sh", "-c", "command -v python; python -c 'import sys; print(sys.prefix)'; "
                "touch \"$VIRTUAL_ENV/written\" 2>/dev/null || echo read-only"],
        mounts=[], env=inside, workdir="/",
        user=None if os.geteuid() != 0 else (65534, 65534))
    at = argv.index("--clearenv")  # after the execution's own mounts, as the runner does
    argv[at:at] = found.bwrap_args()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{env_dir}/bin/python", str(env_dir), "read-only"]
