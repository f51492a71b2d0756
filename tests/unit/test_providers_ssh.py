"""The static-hosts provider: take, free, list, offers."""

from __future__ import annotations

from pathlib import Path

import pytest

from scitq_bench.exceptions import InvalidInput
from scitq_bench.recruiters.providers import (
    OWNER_TAG,
    CapacityError,
    CredentialsError,
    InstanceSpec,
    build_provider,
)

HOSTS = {
    "gpu1": {"address": "10.0.0.1", "cpu": 32, "ram_gb": 256, "disk_gb": 2000,
             "gpu_count": 2, "gpu_model": "A100", "gpu_mem_gb": 160, "flavor": "gpu",
             "tags": "N"},
    "gpu2": {"address": "10.0.0.2", "cpu": 32, "ram_gb": 256, "disk_gb": 2000,
             "gpu_count": 2, "gpu_model": "A100", "gpu_mem_gb": 160, "flavor": "gpu",
             "tags": "N"},
    "metal": {"address": "10.0.0.3", "cpu": 64, "ram_gb": 512, "disk_gb": 4000, "tags": "M"},
}


def _spec(name: str, flavor: str = "gpu", **kwargs) -> InstanceSpec:  # noqa: ANN003
    return InstanceSpec(name=name, flavor=flavor, region="static", **kwargs)


@pytest.mark.parametrize("persistent", [False, True])
def test_take_state_list_free(tmp_path: Path, persistent: bool) -> None:
    config = {"hosts": HOSTS}
    if persistent:
        config["state_file"] = str(tmp_path / "ssh.json")
    provider = build_provider("ssh", config, "server-a")
    first = provider.create(_spec("w1", tags={"batch": "b"}))
    second = provider.create(_spec("w2"))
    assert {first.instance_id, second.instance_id} == {"gpu1", "gpu2"}
    assert first.status == "running" and first.address == "10.0.0.1" and first.flavor == "gpu"
    assert first.tags == {"batch": "b", OWNER_TAG: "server-a"}
    with pytest.raises(CapacityError):
        provider.create(_spec("w3"))
    assert provider.state("gpu1", "static").name == "w1"
    assert provider.state("metal", "static").status == "gone"
    assert [i.instance_id for i in provider.list_owned()] == ["gpu1", "gpu2"]
    if persistent:  # a restarted server (same file) knows what is taken
        again = build_provider("ssh", config, "server-a")
        assert [i.name for i in again.list_owned()] == ["w1", "w2"]
        assert build_provider("ssh", config, "server-b").list_owned() == []
    provider.delete("gpu1", "static")
    provider.delete("gpu1", "static")  # idempotent
    assert provider.state("gpu1", "static").status == "gone"
    assert provider.create(_spec("w4")).instance_id == "gpu1"
    assert "3 hosts, 1 free" in provider.check()


def test_offers_from_hosts() -> None:
    offers = {o.flavor: o for o in build_provider("ssh", {"hosts": HOSTS}, "me").offers()}
    assert set(offers) == {"gpu", "metal"}
    gpu = offers["gpu"]
    assert (gpu.region, gpu.cpu, gpu.gpu_count, gpu.gpu_mem_gb, gpu.tags, gpu.cost) == (
        "static", 32, 2, 160.0, "GN", 0.0)
    assert offers["metal"].tags == "M" and offers["metal"].gpu_count == 0


def test_bad_settings() -> None:
    with pytest.raises(CredentialsError, match="hosts"):
        build_provider("ssh", {}, "me")
    with pytest.raises(InvalidInput, match="h1"):
        build_provider("ssh", {"hosts": {"h1": {"cpu": 2}}}, "me")
    provider = build_provider("ssh", {"hosts": HOSTS}, "me")
    with pytest.raises(InvalidInput):
        provider.create(_spec("w", flavor="nope"))
    with pytest.raises(InvalidInput):
        provider.create(InstanceSpec(name="w", flavor="gpu", region="elsewhere"))
