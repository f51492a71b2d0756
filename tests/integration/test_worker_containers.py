"""Tasks in containers, for real: the worker against the real server over HTTP and a
real engine (Podman's Docker-compatible service in CI). Slots, isolation, limits,
timeouts, signals, images, orphans and outputs.

The database plays no part in what is tested here, so these run on SQLite only."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.containers import containers_of, engine_for
from tests.support.engine import TEST_IMAGE
from tests.support.waiting import wait_until
from tests.support.workers import executions, finish, running_worker, stdout_of

pytestmark = pytest.mark.engine


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def name() -> str:
    """A worker name of its own: tests run in parallel on one engine, and a worker
    removes every container labelled with its name when it starts."""
    return f"w-{uuid.uuid4().hex[:10]}"


def last_execution(client: Any, task: dict[str, Any]) -> dict[str, Any]:
    return executions(client, task["id"])[-1]


def test_slots_environment_and_user(live_server, tmp_path, docker_client, name):
    data = tmp_path / "src"
    data.mkdir()
    (data / "in.txt").write_text("input data\n")
    (data / "res.txt").write_text("resource data\n")
    out = tmp_path / "out"
    script = (
        "id -u; cat /input/in.txt /resource/res.txt; echo result > /output/r.txt;"
        "touch /input/x 2>/dev/null || echo input-read-only;"
        "touch /resource/x 2>/dev/null || echo resource-read-only;"
        "echo scratch > /tmp/s && cat /tmp/s;"
        'echo "$INPUT $OUTPUT $RESOURCE $TEMP cpu=$CPU task=$SCITQ_BENCH_TASK_ID"'
    )
    client = live_server.client()
    with running_worker(live_server, tmp_path, name, engine=engine_for(docker_client, tmp_path, name)) as agent:
        task = client.task_create(script, shell=True, container=TEST_IMAGE,
                                  inputs=[f"file://{data / 'in.txt'}"],
                                  resources=[f"file://{data / 'res.txt'}"],
                                  output=f"file://{out}", cpu=1)
        # a plain command: the task's variables are the container's paths, no shell
        plain = client.task_create("echo $INPUT ${OUTPUT}/x cpu=$CPU '$HOME'",
                                   container=TEST_IMAGE, cpu=1)
        done, plain_done = finish(client, [task, plain], timeout=30)
        executions_dir = agent.executions_dir
    assert plain_done["status"] == "succeeded", last_execution(client, plain)
    assert stdout_of(client, plain).decode() == "/input /output/x cpu=1 $HOME\n"
    assert done["status"] == "succeeded", last_execution(client, task)
    lines = stdout_of(client, task).decode().splitlines()
    assert lines[0] == "65534"  # not root
    assert lines[1:3] == ["input data", "resource data"]
    assert "input-read-only" in lines and "resource-read-only" in lines
    assert "scratch" in lines
    assert lines[-1] == f"/input /output /resource /tmp cpu=1 task={task['id']}"
    assert (out / "r.txt").read_text() == "result\n"
    assert last_execution(client, task)["output_files"] == ["r.txt"]
    assert list(executions_dir.iterdir()) == []  # work dir cleaned after upload
    assert containers_of(docker_client, name) == []  # container removed


def test_isolation_defaults(live_server, tmp_path, docker_client, name):
    """No network, no capabilities, no new privileges, and a pids limit."""
    client = live_server.client()
    with running_worker(live_server, tmp_path, name, engine=engine_for(docker_client, tmp_path, name)):
        closed = client.task_create("cat /proc/net/dev; grep -E 'CapEff|NoNewPrivs' "
                                    "/proc/self/status; cat /sys/fs/cgroup/pids/pids.max "
                                    "2>/dev/null || cat /sys/fs/cgroup/pids.max",
                                    shell=True, container=TEST_IMAGE)
        opened = client.task_create("cat /proc/net/dev", shell=True, container=TEST_IMAGE,
                                    network=True)
        done = finish(client, [closed, opened], timeout=30)
    assert [t["status"] for t in done] == ["succeeded", "succeeded"]
    text = stdout_of(client, closed).decode()
    interfaces = [line.split(":")[0].strip() for line in text.splitlines() if ":" in line
                  and "|" not in line and not line.startswith(("Cap", "NoNew"))]
    assert interfaces == ["lo"], text
    assert "CapEff:\t0000000000000000" in text
    assert "NoNewPrivs:\t1" in text
    assert "1024" in text.splitlines()[-1]
    assert "eth0" in stdout_of(client, opened).decode()


def test_memory_limit_fails_with_out_of_memory(live_server, tmp_path, docker_client, name):
    client = live_server.client()
    with running_worker(live_server, tmp_path, name, engine=engine_for(docker_client, tmp_path, name)):
        hog = client.task_create("exec tail /dev/zero", shell=True, container=TEST_IMAGE,
                                 mem=0.0625)  # 64 MB
        modest = client.task_create("head -c 10000000 /dev/zero | tail -c 5 | wc -c",
                                    shell=True, container=TEST_IMAGE, mem=0.0625)
        done = finish(client, [hog, modest], timeout=60)
    assert [t["status"] for t in done] == ["failed", "succeeded"]
    execution = last_execution(client, hog)
    assert execution["reason"] == "out_of_memory"
    assert "out of memory" in execution["error"]


def test_timeout_kills_the_container(live_server, tmp_path, docker_client, name):
    client = live_server.client()
    with running_worker(live_server, tmp_path, name, engine=engine_for(docker_client, tmp_path, name),
                        kill_grace=1.0):
        task = client.task_create("sleep 60", container=TEST_IMAGE, run_timeout=1.0)
        began = time.monotonic()
        finish(client, [task], timeout=30)
        elapsed = time.monotonic() - began
    execution = last_execution(client, task)
    assert execution["status"] == "timeout"
    assert elapsed < 15, elapsed
    assert containers_of(docker_client, name) == []


def test_live_logs_pause_resume_and_kill(live_server, tmp_path, docker_client, name):
    client = live_server.client()
    with running_worker(live_server, tmp_path, name, engine=engine_for(docker_client, tmp_path, name)):
        # long enough to be paused mid-sleep even when podman is slow to answer
        task = client.task_create("echo started; sleep 6; echo ended; echo oops >&2",
                                  shell=True, container=TEST_IMAGE)
        execution = wait_until(lambda: (executions(client, task["id"]) or [None])[-1],
                               timeout=20)
        assert wait_until(lambda: client.execution_log(execution["id"])[0],
                          timeout=30) == b"started\n"
        wait_until(lambda: client.task_get(task["id"])["status"] == "running", timeout=30)
        client.task_signal(task["id"], "pause")
        wait_until(lambda: _state(docker_client, name) == "paused", timeout=30,
                   what="container paused")
        time.sleep(3)  # paused: it cannot finish its sleep
        assert client.task_get(task["id"])["status"] == "paused"
        assert _state(docker_client, name) == "paused"
        client.task_signal(task["id"], "resume")
        done = finish(client, [task], timeout=30)[0]
        assert done["status"] == "succeeded"
        assert stdout_of(client, task) == b"started\nended\n"
        assert client.execution_log(execution["id"], "stderr")[0] == b"oops\n"

        victim = client.task_create("sleep 60", container=TEST_IMAGE)
        wait_until(lambda: _state(docker_client, name) == "running", timeout=30)
        client.task_signal(victim["id"], "kill")
        wait_until(lambda: client.task_get(victim["id"])["status"] != "running", timeout=30)
    assert containers_of(docker_client, name) == []


def _state(docker_client: Any, worker: str) -> str | None:
    found = containers_of(docker_client, worker)
    return found[0].status if found else None


def test_unknown_image_fails_with_image_pull_failed(live_server, tmp_path, docker_client, name):
    client = live_server.client()
    with running_worker(live_server, tmp_path, name, engine=engine_for(docker_client, tmp_path, name)):
        task = client.task_create("true", container="localhost/no-such-image:never")
        done = finish(client, [task], timeout=60)[0]
    assert done["status"] == "failed"
    execution = last_execution(client, task)
    assert execution["reason"] == "image_pull_failed"
    assert execution["error"].startswith("image_pull_failed: ")
    assert "localhost/no-such-image" in execution["error"]  # the engine's own words
    assert execution["started_at"] is None or execution["duration"] is None


def test_missing_executable_in_image(live_server, tmp_path, docker_client, name):
    client = live_server.client()
    with running_worker(live_server, tmp_path, name, engine=engine_for(docker_client, tmp_path, name)):
        task = client.task_create("no-such-program --flag", container=TEST_IMAGE)
        done = finish(client, [task], timeout=30)[0]
    assert done["status"] == "failed"
    execution = last_execution(client, task)
    assert execution["return_code"] in (126, 127), execution
    assert "no-such-program" in (execution["error"] or "") + stdout_of(client, task).decode() \
        + client.execution_log(execution["id"], "stderr")[0].decode()


def test_outputs_never_follow_symlinks_and_host_is_untouched(live_server, tmp_path,
                                                               docker_client, name):
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret\n")
    data = tmp_path / "src"
    data.mkdir()
    (data / "in.txt").write_text("keep me\n")
    out = tmp_path / "out"
    script = (
        f"ln -s {secret} /output/leak; ln -s / /output/root; ln -s /input /output/in;"
        "echo real > /output/real.txt; echo overwritten > /input/in.txt;"
        "rm -rf /input/* /resource/* 2>/dev/null; echo x > /etc/passwd; true"
    )
    client = live_server.client()
    with running_worker(live_server, tmp_path, name, engine=engine_for(docker_client, tmp_path, name)):
        task = client.task_create(script, shell=True, container=TEST_IMAGE,
                                  inputs=[f"file://{data / 'in.txt'}"], output=f"file://{out}")
        assert finish(client, [task], timeout=30)[0]["status"] == "succeeded"
    assert sorted(p.name for p in out.iterdir()) == ["real.txt"]
    assert last_execution(client, task)["output_files"] == ["real.txt"]
    assert (data / "in.txt").read_text() == "keep me\n"
    assert secret.read_text() == "host secret\n"
    assert "x" != Path("/etc/passwd").read_text().strip()


def test_idle_images_are_pruned_when_the_disk_is_full(live_server, tmp_path, docker_client, name):
    image = docker_client.images.get(TEST_IMAGE)
    image.tag("localhost/scitq-bench-prune", "test")
    engine = engine_for(docker_client, tmp_path, name, prune_threshold=0.0, image_max_idle=0.0,
                        prune_every=0.0)
    client = live_server.client()
    with running_worker(live_server, tmp_path, name, engine=engine):
        task = client.task_create("true", container="localhost/scitq-bench-prune:test")
        assert finish(client, [task], timeout=30)[0]["status"] == "succeeded"
        wait_until(lambda: "localhost/scitq-bench-prune:test" not in _tags(docker_client),
                   timeout=15, what="the idle image pruned")
    assert TEST_IMAGE in _tags(docker_client)  # only the idle image went


def _tags(docker_client: Any) -> set[str]:
    return {tag for image in docker_client.images.list() for tag in image.tags}


def test_worker_without_engine_does_not_take_container_tasks(live_server, tmp_path, name):
    client = live_server.client()
    with running_worker(live_server, tmp_path, name, engine=None) as agent:
        boxed = client.task_create("true", container=TEST_IMAGE)
        plain = client.task_create("true")
        assert finish(client, [plain])[0]["status"] == "succeeded"
        time.sleep(1.0)  # time to claim it, if the worker wrongly did
        assert client.task_get(boxed["id"])["status"] == "pending"
        assert client.worker_get(agent.worker_id)["containers"] is False


def test_stop_signal_terminates_the_container_gracefully(live_server, tmp_path, docker_client,
                                                         name):
    client = live_server.client()
    # a long grace: a loaded machine must not turn the SIGTERM into a SIGKILL
    with running_worker(live_server, tmp_path, name, kill_grace=10.0,
                        engine=engine_for(docker_client, tmp_path, name)):
        task = client.task_create("trap 'echo stopping; exit 0' TERM; echo up; "
                                  "while true; do sleep 0.2; done", shell=True,
                                  container=TEST_IMAGE)
        execution = wait_until(lambda: (executions(client, task["id"]) or [None])[-1],
                               timeout=30)
        wait_until(lambda: client.execution_log(execution["id"])[0] == b"up\n", timeout=30)
        wait_until(lambda: client.task_get(task["id"])["status"] == "running", timeout=30)
        client.task_signal(task["id"], "stop")
        wait_until(lambda: last_execution(client, task)["status"] == "cancelled", timeout=30)
        assert stdout_of(client, task) == b"up\nstopping\n"  # it had its SIGTERM
    assert containers_of(docker_client, name) == []
