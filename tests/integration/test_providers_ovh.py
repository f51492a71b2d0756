"""The OVH provider: python-ovh's real (signed) requests against a local fake API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from scitq_bench.exceptions import InvalidInput
from scitq_bench.recruiters.providers import (
    OWNER_TAG,
    CapacityError,
    CredentialsError,
    InstanceSpec,
    ProviderError,
    build_provider,
)
from tests.support.fake_ovh import APP_KEY, APP_SECRET, CONSUMER_KEY, PROJECT, FakeOvh

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFake test@x"


@pytest.fixture
def fake() -> Iterator[FakeOvh]:
    server = FakeOvh(time_offset=-7)  # python-ovh must sign with the server's time
    yield server
    server.stop()


def _config(fake: FakeOvh, **extra: Any) -> dict[str, Any]:
    return {"endpoint": fake.url, "application_key": APP_KEY,
            "application_secret": APP_SECRET, "consumer_key": CONSUMER_KEY,
            "project_id": PROJECT, "regions": ["GRA11", "BHS5"], **extra}


def _no_secret(text: str) -> None:
    assert APP_SECRET not in text and CONSUMER_KEY not in text


def test_create_state_list_delete(fake: FakeOvh) -> None:
    provider = build_provider("ovh", _config(fake), "server-a")
    _no_secret(repr(provider))
    created = provider.create(InstanceSpec(name="w1", flavor="b3-8", region="GRA11",
                                           ssh_public_key=SSH_KEY, user_data="#cloud-config\n",
                                           tags={"batch": "b1"}))
    assert created.status == "pending" and created.name == "w1" and created.region == "GRA11"
    assert created.tags == {OWNER_TAG: "server-a"} and created.flavor == "b3-8"
    assert created.address == "51.75.0.10"
    stored = fake.instances[created.instance_id]
    assert stored["name"] == "scitq-bench.server-a.w1"
    assert stored["flavorId"] == "gra11-b3-8-id" and stored["imageId"] == "gra11-ubuntu2204"
    assert stored["userData"] == "#cloud-config\n"
    assert fake.sshkeys[stored["sshKeyId"]]["publicKey"] == SSH_KEY
    assert ("GET", "/auth/time") in fake.calls

    again = provider.create(InstanceSpec(name="w2", flavor="t2-45", region="BHS5",
                                         ssh_public_key=SSH_KEY))
    assert len(fake.sshkeys) == 1  # the key is registered once
    other = build_provider("ovh", _config(fake), "server-b")
    theirs = other.create(InstanceSpec(name="w1", flavor="b3-8", region="GRA11"))

    assert provider.state(created.instance_id, "GRA11").status == "pending"  # BUILD
    state = provider.state(created.instance_id, "GRA11")
    assert state.status == "running" and state.name == "w1" and state.flavor == "b3-8"
    assert {i.instance_id for i in provider.list_owned()} == {created.instance_id,
                                                               again.instance_id}
    assert [i.instance_id for i in other.list_owned()] == [theirs.instance_id]

    provider.delete(created.instance_id, "GRA11")
    assert provider.state(created.instance_id, "GRA11").status == "gone"
    provider.delete(created.instance_id, "GRA11")  # idempotent
    assert [i.instance_id for i in provider.list_owned()] == [again.instance_id]
    assert "project bench (ok)" in provider.check()


def test_offers_with_gpus_metal_nvme_and_prices(fake: FakeOvh) -> None:
    offers = build_provider("ovh", _config(fake), "me").offers()
    by_key = {(o.region, o.flavor): o for o in offers}
    assert ("GRA11", "win-b3-8") not in by_key  # Linux flavors only
    plain = by_key[("GRA11", "b3-8")]
    assert (plain.cpu, plain.ram_gb, plain.disk_gb, plain.tags) == (2, 8.0, 50.0, "")
    assert plain.cost == 0.0464 and plain.eviction is None and not plain.spot
    gpu = by_key[("BHS5", "h100-760")]
    assert (gpu.gpu_count, gpu.gpu_model, gpu.gpu_mem_gb, gpu.tags) == (2, "H100", 160.0, "GN")
    assert gpu.cost == 5.98
    assert by_key[("GRA11", "t2-45")].tags == "GN"
    assert by_key[("GRA11", "bm-s1")].tags == "M"
    limited = build_provider("ovh", _config(fake, flavors=["t2-*"]), "me").offers()
    assert {o.flavor for o in limited} == {"t2-45"}


def test_capacity_and_other_errors(fake: FakeOvh) -> None:
    provider = build_provider("ovh", _config(fake), "me")
    spec = InstanceSpec(name="w", flavor="t2-45", region="GRA11")
    fake.fail_next("POST", "/instance", 400,
                   "Quota exceeded: the maximum number of instances is reached")
    with pytest.raises(CapacityError) as info:
        provider.create(spec)
    assert "Quota" in str(info.value)
    fake.fail_next("POST", "/instance", 500, "There is not enough resources for this flavor")
    with pytest.raises(CapacityError):
        provider.create(spec)
    with pytest.raises(CapacityError):  # a flavor this region does not sell
        provider.create(InstanceSpec(name="w", flavor="x9-999", region="GRA11"))
    with pytest.raises(CapacityError):
        provider.create(InstanceSpec(name="w", flavor="b3-8", region="GRA11", spot=True))
    fake.fail_next("DELETE", "/instance/abc", 500, "Internal server error")
    with pytest.raises(ProviderError) as failed:
        provider.delete("abc", "GRA11")
    assert not isinstance(failed.value, CapacityError)
    with pytest.raises(InvalidInput):
        provider.create(InstanceSpec(name="w", flavor="b3-8", region="SBG5"))
    with pytest.raises(InvalidInput, match="Arch"):
        build_provider("ovh", _config(fake, image="Arch"), "me").create(
            InstanceSpec(name="w", flavor="b3-8", region="GRA11"))
    assert fake.instances == {}


def test_credentials(fake: FakeOvh) -> None:
    with pytest.raises(CredentialsError) as info:
        build_provider("ovh", {"application_key": APP_KEY, "regions": ["GRA11"]}, "me")
    for key in ("application_secret", "consumer_key", "project_id"):
        assert key in str(info.value)
    with pytest.raises(CredentialsError, match="regions"):
        build_provider("ovh", {k: v for k, v in _config(fake).items() if k != "regions"}, "me")
    refused = build_provider("ovh", _config(fake, consumer_key="revoked-consumer-key"), "me")
    with pytest.raises(CredentialsError) as info:
        refused.check()
    assert "revoked-consumer-key" not in str(info.value)
    _no_secret(str(info.value))
    wrong_app = build_provider("ovh", _config(fake, application_key="other-app"), "me")
    with pytest.raises(CredentialsError):
        wrong_app.list_owned()
    with pytest.raises(InvalidInput, match="ovh-eu"):
        build_provider("ovh", _config(fake, endpoint="mars-1"), "me")
