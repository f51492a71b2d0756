"""The EC2 provider's real boto3 calls against moto's in-process EC2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.parsers import create_parser
from moto import mock_aws

from scitq_bench.exceptions import InvalidInput
from scitq_bench.recruiters.providers import (
    OWNER_TAG,
    CapacityError,
    CredentialsError,
    InstanceSpec,
    ProviderError,
    build_provider,
)
from scitq_bench.recruiters.providers.aws import AwsProvider
from tests.support.aws import REGIONS, SECRET, aws_config

SSH_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBkFz8dj1+6Um8w2w1q8YxQmXgq2P8lMZk8y0iV1+abc "
           "test@example")


@pytest.fixture
def ec2() -> Iterator[None]:
    with mock_aws():
        yield


def refuse(client: Any, operation: str, code: str, status: int = 400) -> None:
    """Make EC2 answer ``operation`` with the error ``code``: the error document, as EC2
    writes it, goes through the SDK's own response parser and error raising; the call
    never reaches moto (a ``before-call`` answer replaces the request)."""
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
            f"<Code>{code}</Code><Message>There is no room for your request now."
            "</Message></Error></Errors><RequestID>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE"
            "</RequestID></Response>").encode()
    headers = {"Content-Type": "text/xml"}

    def answer(model: Any, **_kwargs: Any) -> tuple[AWSResponse, dict]:
        parser = create_parser(model.metadata["protocol"])
        parsed = parser.parse({"status_code": status, "headers": headers, "body": body},
                              model.output_shape)
        return AWSResponse("https://ec2.fake", status, headers, None), parsed

    client.meta.events.register_first(f"before-call.ec2.{operation}", answer,
                                      unique_id=f"refuse-{operation}")


def test_create_state_list_delete(ec2: None, tmp_path: Path) -> None:
    provider = build_provider("aws", aws_config(tmp_path, security_group_ids=[]), "server-a")
    assert SECRET not in repr(provider)
    spot = provider.create(InstanceSpec(name="w-spot", flavor="t3.micro", region="eu-west-1",
                                        spot=True, ssh_public_key=SSH_KEY,
                                        user_data="#!/bin/sh\necho hi\n",
                                        tags={"batch": "b1"}))
    plain = provider.create(InstanceSpec(name="w-plain", flavor="g4dn.xlarge",
                                         region="us-east-1"))
    assert spot.status in ("pending", "running") and spot.region == "eu-west-1"
    assert spot.tags == {"Name": "w-spot", "batch": "b1", OWNER_TAG: "server-a"}

    raw = boto3.client("ec2", region_name="eu-west-1")
    described = raw.describe_instances(InstanceIds=[spot.instance_id])
    data = described["Reservations"][0]["Instances"][0]
    assert data["InstanceLifecycle"] == "spot"
    assert data["KeyName"].startswith(f"{OWNER_TAG}-")
    assert raw.describe_key_pairs(KeyNames=[data["KeyName"]])["KeyPairs"]
    # a second spec with the same key reuses the imported pair
    again = provider.create(InstanceSpec(name="w-spot2", flavor="t3.micro",
                                         region="eu-west-1", ssh_public_key=SSH_KEY))
    assert len(raw.describe_key_pairs()["KeyPairs"]) == 1

    # instances of another server, and untagged ones, are not ours
    foreign = raw.run_instances(
        ImageId=data["ImageId"], InstanceType="t3.micro", MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [{"Key": OWNER_TAG, "Value": "server-b"}]}])
    raw.run_instances(ImageId=data["ImageId"], InstanceType="t3.micro", MinCount=1, MaxCount=1)

    state = provider.state(plain.instance_id, "us-east-1")
    assert state.status == "running" and state.name == "w-plain"
    assert state.flavor == "g4dn.xlarge" and state.address
    owned = {i.instance_id for i in provider.list_owned()}
    assert owned == {spot.instance_id, plain.instance_id, again.instance_id}
    other = build_provider("aws", aws_config(tmp_path), "server-b")
    assert [i.instance_id for i in other.list_owned()] == [
        foreign["Instances"][0]["InstanceId"]]

    for instance in (spot, plain, again):
        provider.delete(instance.instance_id, instance.region)
        assert provider.state(instance.instance_id, instance.region).status == "gone"
    provider.delete(plain.instance_id, "us-east-1")  # idempotent
    provider.delete("i-0123456789abcdef0", "us-east-1")  # never existed
    assert provider.state("i-0123456789abcdef0", "us-east-1").status == "gone"
    assert provider.list_owned() == []
    assert "zones in us-east-1" in provider.check()


def test_offers_with_gpus_metal_nvme_and_prices(ec2: None, tmp_path: Path) -> None:
    provider = build_provider("aws", aws_config(tmp_path), "me")
    offers = provider.offers()
    by_key = {(o.region, o.flavor, o.spot): o for o in offers}
    gpu = by_key[("us-east-1", "g4dn.xlarge", False)]
    assert (gpu.cpu, gpu.ram_gb, gpu.gpu_count, gpu.gpu_mem_gb) == (4, 16.0, 1, 16.0)
    assert "T4" in gpu.gpu_model and gpu.tags == "GN" and gpu.disk_gb == 125
    assert gpu.cost == 0.526 and gpu.eviction is None
    assert by_key[("eu-west-1", "g4dn.xlarge", False)].cost is None  # not in the table
    assert by_key[("eu-west-1", "t3.micro", False)].cost == 0.0104  # the "*" row
    spot = by_key[("us-east-1", "g4dn.xlarge", True)]
    assert spot.cost is not None and spot.cost > 0 and spot.eviction is None
    metal = by_key[("us-east-1", "c5d.metal", False)]
    assert "M" in metal.tags and "N" in metal.tags and metal.cpu == 96
    micro = by_key[("us-east-1", "t3.micro", False)]
    assert micro.tags == "" and micro.gpu_model is None and micro.disk_gb == 0
    assert all(o.provider == "aws" for o in offers)
    assert {o.region for o in offers} == set(REGIONS)


@pytest.mark.parametrize("code", ["InsufficientInstanceCapacity", "InstanceLimitExceeded",
                                  "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded"])
def test_capacity_errors(ec2: None, tmp_path: Path, code: str) -> None:
    provider = build_provider("aws", aws_config(tmp_path), "me")
    assert isinstance(provider, AwsProvider)
    refuse(provider.client("us-east-1"), "RunInstances", code)
    with pytest.raises(CapacityError) as info:
        provider.create(InstanceSpec(name="w", flavor="g4dn.xlarge", region="us-east-1",
                                     spot=code.startswith("MaxSpot")))
    assert code in str(info.value) and SECRET not in str(info.value)
    assert boto3.client("ec2", region_name="us-east-1").describe_instances()[
        "Reservations"] == []


def test_other_errors(ec2: None, tmp_path: Path) -> None:
    provider = build_provider("aws", aws_config(tmp_path), "me")
    refuse(provider.client("us-east-1"), "DescribeAvailabilityZones", "AuthFailure", 401)
    with pytest.raises(CredentialsError) as info:
        provider.check()
    assert SECRET not in str(info.value)
    refuse(provider.client("us-east-1"), "TerminateInstances", "InternalError", 400)
    with pytest.raises(ProviderError):
        provider.delete("i-0123456789abcdef0", "us-east-1")
    with pytest.raises(InvalidInput):
        provider.state("i-0123456789abcdef0", "ap-south-1")  # not configured
    no_image = build_provider("aws", {"regions": REGIONS}, "me")
    with pytest.raises(InvalidInput, match="image_id"):
        no_image.create(InstanceSpec(name="w", flavor="t3.micro", region="us-east-1"))


def test_missing_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="regions"):
        build_provider("aws", {}, "me")
    with pytest.raises(CredentialsError) as info:
        build_provider("aws", {"regions": ["us-east-1"], "aws_access_key_id": "AKIA1"}, "me")
    assert "aws_secret_access_key" in str(info.value)
    with pytest.raises(CredentialsError) as info:
        build_provider("aws", {"regions": ["us-east-1"], "aws_secret_access_key": SECRET},
                       "me")
    assert "aws_access_key_id" in str(info.value) and SECRET not in str(info.value)
    # nothing in boto3's chain either: the first call says which settings to give
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    provider = build_provider("aws", {"regions": ["us-east-1"],
                                      "endpoint_url": "http://127.0.0.1:9"}, "me")
    with pytest.raises(CredentialsError) as info:
        provider.check()
    assert "aws_access_key_id" in str(info.value)


def test_on_demand_prices_from_the_price_list_api(ec2: None, tmp_path: Path) -> None:
    """Without a price table, on-demand prices come from pricing:GetProducts (boto3's
    real request code, signed, paginated, against a local fake of the service)."""
    from tests.support.fake_pricing import FakePricing, product

    pricing = FakePricing([product("us-east-1", "g4dn.xlarge", "0.5260000000"),
                           product("us-east-1", "t3.micro", "0.0104000000"),
                           product("eu-west-1", "t3.micro", "0.0114000000"),
                           product("us-east-1", "c5d.metal", "4.6080000000")])
    try:
        config = aws_config(tmp_path, pricing_endpoint_url=pricing.url)
        del config["price_table"]
        offers = build_provider("aws", config, "server-a").offers()
    finally:
        pricing.stop()
    on_demand = {(o.region, o.flavor): o.cost for o in offers if not o.spot}
    assert on_demand[("us-east-1", "g4dn.xlarge")] == 0.526
    assert on_demand[("eu-west-1", "t3.micro")] == 0.0114
    assert on_demand[("us-east-1", "c5d.metal")] == 4.608
    targets = {r["target"] for r in pricing.requests}
    assert targets == {"AWSPriceListService.GetProducts"}
    assert all(r["signed"] for r in pricing.requests)
    first = pricing.requests[0]["body"]
    assert first["ServiceCode"] == "AmazonEC2"
    assert {f["Field"] for f in first["Filters"]} >= {"regionCode", "operatingSystem", "tenancy"}
    assert any("NextToken" in r["body"] for r in pricing.requests)  # paginated


def test_price_list_failure_keeps_the_offers(ec2: None, tmp_path: Path) -> None:
    config = aws_config(tmp_path, pricing_endpoint_url="http://127.0.0.1:9")
    del config["price_table"]
    offers = build_provider("aws", config, "server-a").offers()
    assert offers and all(o.cost is None for o in offers if not o.spot)
