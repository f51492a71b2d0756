"""GPU detection (NVML, then nvidia-smi) and the per-task GPU allocator."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from scitq_bench import hostprobe as gpus_module
from scitq_bench.client.worker.gpus import GpuPool, cuda_visible_devices, device_request_ids
from scitq_bench.hostprobe import DETECTION_ENV, Gpu, detect_gpus, summarize
from tests.support.fake_nvidia_smi import install_fake_nvidia_smi

TWO_GPUS = [("NVIDIA Fake A100-SXM4-40GB", 40960), ("NVIDIA Fake A100-SXM4-40GB", 40960)]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv(DETECTION_ENV, raising=False)


@pytest.fixture
def bin_dir(tmp_path, monkeypatch) -> Path:
    """A folder first on PATH, where tests put their nvidia-smi."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", f"{directory}:/usr/bin:/bin")
    return directory


@pytest.fixture
def smi_only(monkeypatch):
    monkeypatch.setenv(DETECTION_ENV, "smi")


class FakeNVMLError(Exception):
    pass


def fake_pynvml(monkeypatch, devices, *, init_fails=False, handle_fails=False):
    """A stand-in ``pynvml`` module that records its calls; devices are (name, bytes, uuid)."""
    calls: list[str] = []
    module = types.ModuleType("pynvml")
    module.NVMLError = FakeNVMLError

    def init():
        calls.append("init")
        if init_fails:
            raise FakeNVMLError("NVML Shared Library Not Found")

    def handle(index):
        calls.append(f"handle{index}")
        if handle_fails:
            raise FakeNVMLError("GPU is lost")
        return devices[index]

    module.nvmlInit = init
    module.nvmlShutdown = lambda: calls.append("shutdown")
    module.nvmlDeviceGetCount = lambda: len(devices)
    module.nvmlDeviceGetHandleByIndex = handle
    module.nvmlDeviceGetName = lambda device: device[0]
    module.nvmlDeviceGetMemoryInfo = lambda device: types.SimpleNamespace(
        total=device[1], free=device[1], used=0
    )
    module.nvmlDeviceGetUUID = lambda device: device[2]
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return calls


# --- nvidia-smi ---------------------------------------------------------------------------


def test_detect_through_fake_nvidia_smi(bin_dir, smi_only):
    install_fake_nvidia_smi(bin_dir, TWO_GPUS)
    assert detect_gpus() == [
        Gpu(0, "NVIDIA Fake A100-SXM4-40GB", 40960, "GPU-fake-0"),
        Gpu(1, "NVIDIA Fake A100-SXM4-40GB", 40960, "GPU-fake-1"),
    ]


def test_fake_answers_other_arguments_with_a_listing(bin_dir):
    script = install_fake_nvidia_smi(bin_dir, TWO_GPUS)
    listing = subprocess.run([script, "-L"], capture_output=True, text=True, check=True).stdout
    assert listing.splitlines() == [
        "GPU 0: NVIDIA Fake A100-SXM4-40GB (UUID: GPU-fake-0)",
        "GPU 1: NVIDIA Fake A100-SXM4-40GB (UUID: GPU-fake-1)",
    ]


def test_no_nvidia_smi_on_path_means_no_gpus(tmp_path, monkeypatch, smi_only):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert detect_gpus() == []
    assert detect_gpus(str(tmp_path / "missing" / "nvidia-smi")) == []


def test_failing_nvidia_smi_means_no_gpus(bin_dir, smi_only, caplog):
    install_fake_nvidia_smi(bin_dir, TWO_GPUS, exit_code=9)
    with caplog.at_level("INFO", logger="scitq_bench.worker"):
        assert detect_gpus() == []
    assert "exited 9" in caplog.text and "couldn't communicate" in caplog.text


def test_hanging_nvidia_smi_times_out(bin_dir, smi_only, monkeypatch):
    monkeypatch.setattr(gpus_module, "SMI_TIMEOUT_S", 0.5)
    script = bin_dir / "nvidia-smi"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(0o755)
    started = time.monotonic()
    assert detect_gpus() == []
    assert time.monotonic() - started < 10


def test_malformed_lines_are_skipped(bin_dir, smi_only, caplog):
    install_fake_nvidia_smi(
        bin_dir,
        [],
        query_lines=[
            "0, NVIDIA H100 80GB HBM3, 81559, GPU-aaaa",
            "garbage",
            "x, NVIDIA H100, 81559, GPU-bbbb",
            "2, NVIDIA H100, [N/A], GPU-cccc",
            "",
            "  3 ,  NVIDIA L4 ,  23034 ,  [N/A]  ",
            "0, NVIDIA H100 duplicate, 81559, GPU-dddd",
            "4, , 100, GPU-eeee",
        ],
    )
    with caplog.at_level("WARNING", logger="scitq_bench.worker"):
        found = detect_gpus()
    assert found == [
        Gpu(0, "NVIDIA H100 80GB HBM3", 81559, "GPU-aaaa"),
        Gpu(3, "NVIDIA L4", 23034, None),
    ]
    assert caplog.text.count("Skipping") == 5


def test_a_comma_in_a_name_does_not_shift_columns():
    assert gpus_module.parse_smi_csv("1, Odd, Model, 1024, GPU-x\n") == [
        Gpu(1, "Odd, Model", 1024, "GPU-x")
    ]


@pytest.mark.parametrize("value", ["off", "OFF", " off "])
def test_detection_off(bin_dir, monkeypatch, value):
    install_fake_nvidia_smi(bin_dir, TWO_GPUS)
    calls = fake_pynvml(monkeypatch, [("GPU", 1 << 30, "GPU-1")])
    monkeypatch.setenv(DETECTION_ENV, value)
    assert detect_gpus() == []
    assert calls == []


# --- NVML ---------------------------------------------------------------------------------


def test_nvml_is_preferred_when_it_works(bin_dir, monkeypatch):
    install_fake_nvidia_smi(bin_dir, TWO_GPUS)
    calls = fake_pynvml(
        monkeypatch,
        [
            (b"NVIDIA H100 80GB HBM3", 81559 * 1024 * 1024, b"GPU-1111"),  # older pynvml: bytes
            ("NVIDIA H100 80GB HBM3", 81559 * 1024 * 1024, "GPU-2222"),
        ],
    )
    assert detect_gpus() == [
        Gpu(0, "NVIDIA H100 80GB HBM3", 81559, "GPU-1111"),
        Gpu(1, "NVIDIA H100 80GB HBM3", 81559, "GPU-2222"),
    ]
    assert calls[0] == "init" and calls[-1] == "shutdown" and calls.count("shutdown") == 1


def test_nvml_with_no_gpus_is_final(bin_dir, monkeypatch):
    install_fake_nvidia_smi(bin_dir, TWO_GPUS)
    calls = fake_pynvml(monkeypatch, [])
    assert detect_gpus() == []
    assert calls == ["init", "shutdown"]


def test_nvml_missing_library_falls_back_to_smi(bin_dir, monkeypatch):
    install_fake_nvidia_smi(bin_dir, TWO_GPUS)
    calls = fake_pynvml(monkeypatch, [], init_fails=True)
    assert [gpu.uuid for gpu in detect_gpus()] == ["GPU-fake-0", "GPU-fake-1"]
    assert calls == ["init"]  # nothing to shut down when init failed


def test_nvml_failing_midway_is_shut_down_then_falls_back(bin_dir, monkeypatch):
    install_fake_nvidia_smi(bin_dir, TWO_GPUS)
    calls = fake_pynvml(monkeypatch, [("GPU", 1 << 30, "GPU-1")], handle_fails=True)
    assert len(detect_gpus()) == 2
    assert calls == ["init", "handle0", "shutdown"]


def test_pynvml_not_installed_falls_back_to_smi(bin_dir, monkeypatch):
    install_fake_nvidia_smi(bin_dir, TWO_GPUS)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    assert len(detect_gpus()) == 2


def test_smi_mode_leaves_nvml_alone(bin_dir, monkeypatch, smi_only):
    install_fake_nvidia_smi(bin_dir, TWO_GPUS)
    calls = fake_pynvml(monkeypatch, [("GPU", 1 << 30, "GPU-1")])
    assert len(detect_gpus()) == 2
    assert calls == []


# --- summary and task environment ---------------------------------------------------------


def test_summarize():
    assert summarize([]) == (0, None, None)
    same = [Gpu(0, "NVIDIA L4", 23034, None), Gpu(1, "NVIDIA L4", 23034, None)]
    assert summarize(same) == (2, "NVIDIA L4", 22.5)
    mixed = [
        Gpu(0, "NVIDIA H100 80GB HBM3", 81559, None),
        Gpu(1, "NVIDIA L4", 23034, None),
        Gpu(2, "NVIDIA H100 80GB HBM3", 81559, None),
    ]
    assert summarize(mixed) == (3, "NVIDIA H100 80GB HBM3, NVIDIA L4", 22.5)


def test_cuda_visible_devices_and_device_ids():
    chosen = [Gpu(1, "A", 1024, None), Gpu(3, "A", 1024, None)]
    assert cuda_visible_devices(chosen) == "1,3"
    assert cuda_visible_devices([]) == ""
    assert device_request_ids(chosen) == ["1", "3"]
    assert device_request_ids([]) == []


# --- pool ---------------------------------------------------------------------------------


def make_pool(count: int) -> GpuPool:
    return GpuPool([Gpu(i, "Fake", 1024, f"GPU-fake-{i}") for i in reversed(range(count))])


def test_take_and_give_back():
    pool = make_pool(4)
    assert (pool.total, pool.free) == (4, 4)
    assert pool.take(0) == []
    first = pool.take(2)
    assert [gpu.index for gpu in first] == [0, 1]
    second = pool.take(1)
    assert [gpu.index for gpu in second] == [2]
    assert pool.free == 1
    assert pool.take(2) is None  # not now, maybe later
    pool.give_back(first)
    pool.give_back(first)  # idempotent
    assert pool.free == 3
    assert [gpu.index for gpu in pool.take(2)] == [0, 1]  # lowest free first


def test_take_all():
    pool = make_pool(3)
    some = pool.take(1)
    assert pool.take(-1) is None  # needs every GPU free
    pool.give_back(some)
    assert [gpu.index for gpu in pool.take(-1)] == [0, 1, 2]
    assert pool.free == 0
    assert make_pool(0).take(-1) == []


def test_impossible_requests_raise():
    pool = make_pool(2)
    with pytest.raises(ValueError, match="3 GPUs requested but this worker has only 2"):
        pool.take(3)
    with pytest.raises(ValueError, match=">= 0 or -1"):
        pool.take(-2)
    assert pool.free == 2
    assert pool.fits(2) and pool.fits(0) and pool.fits(-1)
    assert not pool.fits(3) and not pool.fits(-2)


def test_foreign_gpus_and_duplicates_are_refused():
    pool = make_pool(2)
    with pytest.raises(ValueError, match="do not belong"):
        pool.give_back([Gpu(7, "Fake", 1024, None)])
    with pytest.raises(ValueError, match="duplicate"):
        GpuPool([Gpu(0, "A", 1, None), Gpu(0, "B", 1, None)])


def test_concurrent_takers_never_share_a_gpu():
    pool = make_pool(8)
    holders: dict[int, int] = {}  # GPU index -> thread id, checked under its own lock
    holders_lock = threading.Lock()
    errors: list[str] = []
    grants = [0]
    start = threading.Barrier(16)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for _ in range(300):
            count = rng.choice([1, 1, 2, 3, -1])
            taken = pool.take(count)
            if taken is None:
                continue
            with holders_lock:
                grants[0] += 1
                if len(taken) != (8 if count == -1 else count):
                    errors.append(f"asked {count}, got {len(taken)}")
                for gpu in taken:
                    if gpu.index in holders:
                        errors.append(f"GPU {gpu.index} given to {seed} and {holders[gpu.index]}")
                    holders[gpu.index] = seed
            time.sleep(rng.random() / 5000)
            with holders_lock:
                for gpu in taken:
                    holders.pop(gpu.index, None)
            pool.give_back(taken)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert grants[0] > 100
    assert pool.free == 8
