"""GPU assignment on a fake two-GPU machine (a fake ``nvidia-smi`` on PATH): tasks get
exactly the GPUs they asked for, never one another's, and wait when too few are free."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.fake_nvidia_smi import install_fake_nvidia_smi
from tests.support.workers import finish, running_worker, stdout_of

STAMP = 'echo "$CUDA_VISIBLE_DEVICES"; date +%s.%N; sleep {sleep}; date +%s.%N'


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def two_gpus(tmp_path, monkeypatch):
    directory = tmp_path / "fakebin"
    directory.mkdir()
    install_fake_nvidia_smi(directory, [("NVIDIA H100 80GB HBM3", 81559)] * 2)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SCITQ_BENCH_GPU_DETECTION", "smi")


def run_of(client, task):
    lines = stdout_of(client, task).decode().splitlines()
    return lines[0], float(lines[1]), float(lines[2])


def test_gpus_are_given_exclusively_and_big_tasks_wait(live_server, tmp_path, two_gpus):
    client = live_server.client()
    with running_worker(live_server, tmp_path, concurrency=3, engine=None) as agent:
        worker = client.worker_get(agent.worker_id)
        first, second, both = client.tasks_create([
            {"command": STAMP.format(sleep=3), "shell": True, "gpu": 1},
            {"command": STAMP.format(sleep=3), "shell": True, "gpu": 1},
            {"command": STAMP.format(sleep=0.1), "shell": True, "gpu": 2},
        ])
        everything = client.task_create(STAMP.format(sleep=0), shell=True, gpu="all")
        none = client.task_create(STAMP.format(sleep=0), shell=True)
        done = finish(client, [first, second, both, everything, none], timeout=30)
    assert {t["status"] for t in done} == {"succeeded"}
    assert (worker["gpus"], worker["gpu_model"], worker["gpu_mem_gb"]) == \
        (2, "NVIDIA H100 80GB HBM3", 79.6)
    gpu_a, start_a, end_a = run_of(client, first)
    gpu_b, start_b, end_b = run_of(client, second)
    assert {gpu_a, gpu_b} == {"0", "1"}  # one each, never shared
    assert start_a < end_b and start_b < end_a  # side by side
    gpu_c, start_c, _ = run_of(client, both)
    assert gpu_c == "0,1"
    assert start_c >= max(end_a, end_b)  # waited for both GPUs
    assert run_of(client, everything)[0] == "0,1"
    assert run_of(client, none)[0] == ""  # a task that asked for none sees none


def test_worker_without_gpus_is_not_sent_gpu_tasks(live_server, tmp_path, monkeypatch):
    monkeypatch.setenv("SCITQ_BENCH_GPU_DETECTION", "off")
    client = live_server.client()
    with running_worker(live_server, tmp_path, concurrency=1, engine=None) as agent:
        gpu_task = client.task_create("true", gpu=1)
        plain = client.task_create("true")
        assert finish(client, [plain])[0]["status"] == "succeeded"
        assert client.task_get(gpu_task["id"])["status"] == "pending"
        assert client.worker_get(agent.worker_id)["gpus"] == 0
