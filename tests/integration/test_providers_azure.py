"""The Azure provider: the real azure-mgmt-compute/-network clients and ``requests``
against a local HTTPS fake of Resource Manager and of the Retail Prices API."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from scitq_bench.exceptions import InvalidInput
from scitq_bench.recruiters.providers import (
    OWNER_TAG,
    CapacityError,
    CredentialsError,
    InstanceSpec,
    ProviderError,
    build_provider,
)
from tests.support.fake_azure import RESOURCE_GROUP, SUBSCRIPTION, TOKEN, FakeAzure

SECRET = "azure-client-secret-value-0123"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeAzureKeyFakeAzureKeyFakeAzureKey01 t@x"
VM = "Microsoft.Compute/virtualMachines"
NIC = "Microsoft.Network/networkInterfaces"
IP = "Microsoft.Network/publicIPAddresses"
DISK = "Microsoft.Compute/disks"


class StaticToken:
    """A token credential that always hands out the same bearer token."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAzure]:
    server = FakeAzure()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def clean(fake: FakeAzure) -> None:
    with fake.lock:
        fake.resources.clear()
        fake.failures.clear()
        fake.power.clear()
        fake.calls.clear()


def _config(fake: FakeAzure, **extra: Any) -> dict[str, Any]:
    return {"subscription_id": SUBSCRIPTION, "resource_group": RESOURCE_GROUP,
            "regions": ["westeurope", "eastus"], "credential": StaticToken(),
            "base_url": fake.url, "connection_verify": str(fake.ca_file),
            "prices_url": fake.prices_url, "ssh_public_key": SSH_KEY, **extra}


def test_create_state_list_delete(fake: FakeAzure) -> None:
    credential = StaticToken()
    provider = build_provider("azure", _config(fake, credential=credential), "server-a")
    created = provider.create(InstanceSpec(name="vm1", flavor="Standard_D2s_v5",
                                           region="westeurope", spot=True,
                                           user_data="#!/bin/sh\necho hi\n",
                                           tags={"batch": "b1"}))
    assert credential.scopes and credential.scopes[0] == ("https://management.azure.com/.default",)
    assert created.instance_id == "vm1" and created.status == "running"
    assert created.flavor == "Standard_D2s_v5" and created.region == "westeurope"
    assert created.tags == {"batch": "b1", OWNER_TAG: "server-a"}
    (ip,) = fake.of_type(IP)
    assert created.address == ip["properties"]["ipAddress"]

    (vm,) = fake.of_type(VM)
    properties = vm["properties"]
    assert properties["priority"] == "Spot" and properties["evictionPolicy"] == "Delete"
    assert properties["billingProfile"]["maxPrice"] == -1
    assert properties["hardwareProfile"]["vmSize"] == "Standard_D2s_v5"
    assert base64.b64decode(properties["osProfile"]["customData"]) == b"#!/bin/sh\necho hi\n"
    keys = properties["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"]
    assert keys[0]["keyData"] == SSH_KEY
    assert vm["tags"][OWNER_TAG] == "server-a"
    (nic,) = fake.of_type(NIC)
    assert nic["tags"][OWNER_TAG] == "server-a"
    subnet = nic["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"]
    assert subnet.endswith("/virtualNetworks/scitq-bench-westeurope/subnets/default")
    assert len(fake.of_type(DISK)) == 1

    plain = provider.create(InstanceSpec(name="vm2", flavor="Standard_NC4as_T4_v3",
                                         region="eastus"))
    assert fake.of_type(VM)[1]["properties"].get("priority") is None
    other = build_provider("azure", _config(fake), "server-b")
    theirs = other.create(InstanceSpec(name="vm3", flavor="Standard_D2s_v5",
                                       region="westeurope"))
    assert len(fake.of_type("Microsoft.Network/virtualNetworks")) == 2  # made once per region

    assert {i.instance_id for i in provider.list_owned()} == {"vm1", "vm2"}
    assert [i.instance_id for i in other.list_owned()] == [theirs.instance_id]
    fake.power["vm2"] = "deallocated"
    assert provider.state("vm2", "eastus").status == "stopped"
    fake.power["vm2"] = "starting"
    assert provider.state("vm2", "eastus").status == "pending"

    provider.delete("vm1", "westeurope")
    assert provider.state("vm1", "westeurope").status == "gone"
    provider.delete("vm1", "westeurope")  # idempotent
    left = {r["name"] for r in fake.resources.values()}
    assert not {"vm1", "vm1-nic", "vm1-ip", "vm1-osdisk"} & left
    assert {"vm2", "vm2-nic", "vm2-ip", "vm2-osdisk"} <= left
    provider.delete(plain.instance_id, "eastus")
    other.delete(theirs.instance_id, "westeurope")
    assert fake.of_type(VM) == fake.of_type(NIC) == fake.of_type(IP) == fake.of_type(DISK) == []
    assert provider.list_owned() == []
    assert "0 VMs in resource group bench-rg" in provider.check()


def test_offers_with_gpus_nvme_and_prices(fake: FakeAzure) -> None:
    offers = build_provider("azure", _config(fake), "me").offers()
    by_key = {(o.region, o.flavor, o.spot): o for o in offers}
    plain = by_key[("westeurope", "Standard_D2s_v5", False)]
    assert (plain.cpu, plain.ram_gb, plain.gpu_count, plain.tags) == (2, 8.0, 0, "")
    assert plain.cost == 0.096 and plain.eviction is None  # not Windows, not Low Priority
    spot = by_key[("westeurope", "Standard_D2s_v5", True)]
    assert spot.cost == 0.0192 and spot.eviction == 5.0  # Azure's "0-5", upper bound
    # eviction rates from Resource Graph, two pages, matched without case, per region
    assert by_key[("eastus", "Standard_D2s_v5", True)].eviction == 100.0  # "20+"
    assert by_key[("westeurope", "Standard_NC4as_T4_v3", True)].eviction == 15.0
    assert by_key[("eastus", "Standard_L8s_v3", True)].eviction == 10.0
    assert by_key[("eastus", "Standard_NC4as_T4_v3", True)].eviction is None  # no rate
    assert all(o.eviction is None for o in offers if not o.spot)
    graph = [c for c in fake.calls if c[1].endswith("/Microsoft.ResourceGraph/resources")]
    assert graph == [("POST", "/providers/Microsoft.ResourceGraph/resources")] * 2
    gpu = by_key[("eastus", "Standard_NC4as_T4_v3", False)]
    assert (gpu.gpu_count, gpu.gpu_model, gpu.gpu_mem_gb, gpu.tags) == (1, "NVIDIA T4", 16.0, "G")
    assert gpu.disk_gb == 180.0 and gpu.cost == 0.526
    a100 = by_key[("westeurope", "Standard_ND96asr_v4", False)]
    assert (a100.gpu_count, a100.gpu_mem_gb) == (8, 320.0)
    assert ("westeurope", "Standard_ND96asr_v4", True) not in by_key  # no spot price
    assert ("eastus", "Standard_ND96asr_v4", False) not in by_key  # restricted there
    assert by_key[("westeurope", "Standard_L8s_v3", False)].tags == "N"
    assert {o.region for o in offers} == {"westeurope", "eastus"}
    # the prices came page by page, filtered by region on the server side
    price_calls = [c for c in fake.calls if c[1] == "/api/retail/prices"]
    assert len(price_calls) > 2
    limited = build_provider("azure", _config(fake, flavors=["Standard_D*"]), "me").offers()
    assert {o.flavor for o in limited} == {"Standard_D2s_v5"}


def test_eviction_rates_that_cannot_be_read_stop_the_update(fake: FakeAzure) -> None:
    provider = build_provider("azure", _config(fake, credential=StaticToken("wrong")), "me")
    with pytest.raises(ProviderError, match="spot eviction rates.*401"):
        provider.offers()


@pytest.mark.parametrize("asynchronous", [False, True])
@pytest.mark.parametrize(("code", "message"), [
    ("SkuNotAvailable", "The requested size is not available in location westeurope."),
    ("AllocationFailed", "Allocation failed. We do not have sufficient capacity."),
    ("OperationNotAllowed", "Operation could not be completed as it results in exceeding "
                            "approved standardDSv5Family Cores quota."),
])
def test_capacity_errors_leave_nothing_behind(fake: FakeAzure, code: str, message: str,
                                              asynchronous: bool) -> None:
    provider = build_provider("azure", _config(fake), "me")
    fake.fail_next("PUT", "/virtualMachines/vm9", 409, code, message, asynchronous)
    with pytest.raises(CapacityError) as info:
        provider.create(InstanceSpec(name="vm9", flavor="Standard_D2s_v5",
                                     region="westeurope"))
    assert code in str(info.value)
    assert fake.of_type(VM) == fake.of_type(NIC) == fake.of_type(IP) == []


def test_other_errors(fake: FakeAzure) -> None:
    provider = build_provider("azure", _config(fake), "me")
    fake.fail_next("DELETE", "/virtualMachines/vm8", 409, "Conflict", "another operation runs")
    with pytest.raises(ProviderError) as info:
        provider.delete("vm8", "westeurope")
    assert not isinstance(info.value, CapacityError | CredentialsError)
    with pytest.raises(InvalidInput):
        provider.create(InstanceSpec(name="vm", flavor="Standard_D2s_v5", region="northpole"))
    no_key = build_provider("azure", {**_config(fake), "ssh_public_key": None}, "me")
    with pytest.raises(InvalidInput, match="SSH"):
        no_key.create(InstanceSpec(name="vm", flavor="Standard_D2s_v5", region="westeurope"))


def test_credentials(fake: FakeAzure) -> None:
    base = {k: v for k, v in _config(fake).items() if k != "credential"}
    with pytest.raises(CredentialsError) as info:
        build_provider("azure", base, "me")
    for key in ("tenant_id", "client_id", "client_secret"):
        assert key in str(info.value)
    with pytest.raises(CredentialsError) as info:
        build_provider("azure", {**base, "tenant_id": "t", "client_id": "c"}, "me")
    assert "client_secret" in str(info.value) and "tenant_id" not in str(info.value)
    with pytest.raises(CredentialsError, match="resource_group"):
        build_provider("azure", {"subscription_id": SUBSCRIPTION, "regions": ["x"]}, "me")
    # a service principal is built (azure-identity), and holds its secret to itself
    principal = build_provider("azure", {**base, "tenant_id": "t", "client_id": "c",
                                         "client_secret": SECRET}, "me")
    assert SECRET not in repr(principal)
    refused = build_provider("azure", _config(fake, credential=StaticToken("wrong")), "me")
    with pytest.raises(CredentialsError) as info:
        refused.check()
    assert "wrong" not in str(info.value) and SECRET not in str(info.value)
    fake.fail_next("GET", "/providers/Microsoft.Compute/virtualMachines", 403,
                   "AuthorizationFailed", "The client does not have authorization.")
    with pytest.raises(CredentialsError):
        build_provider("azure", _config(fake), "me").list_owned()
