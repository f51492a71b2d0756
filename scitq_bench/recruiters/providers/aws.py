"""``aws``: EC2 instances through boto3.

Settings (a mapping):

- ``regions`` (required): a list (or a comma-separated string) of regions;
- ``aws_access_key_id`` / ``aws_secret_access_key`` (secret) / ``aws_session_token``
  (secret): explicit credentials (both of the first two, or neither); without them,
  boto3's usual chain (environment, shared files, ``profile``, instance role);
- ``profile``: a named profile of the shared AWS files;
- ``endpoint_url``: another EC2 endpoint (a VPC endpoint, a local fake);
- ``image_id`` (needed to create): the AMI, one for all regions or ``{region: ami}``;
- ``key_name``: an existing key pair (one, or per region); without it, an instance spec
  that has an SSH public key gets that key imported once as ``scitq-bench-<hash>``;
- ``security_group_ids``: a list (or per region); ``subnet_id``: one (or per region);
- ``spot_max_price``: the most to pay per hour for a spot instance (default: AWS's
  default, the on-demand price);
- ``price_table``: on-demand prices per hour, ``{region: {instance_type: price}}``
  (``"*"`` for every region), inline or as the path of a JSON file; without it, the
  on-demand prices come from the Price List API (``pricing:GetProducts``, Linux, shared
  tenancy, no pre-installed software), through ``pricing_region`` (default
  ``us-east-1``) and ``pricing_endpoint_url`` (another endpoint, a local fake);
- ``flavors``: shell patterns limiting the offered instance types (``["c6i.*", "g5.*"]``).

Instances are tagged ``Name`` (the spec's name), ``scitq-bench`` (the server identity)
and the spec's tags, on the instance and its volumes; ``list_owned`` filters on that tag.

Offers: ``describe_instance_type_offerings`` (what a region sells) and
``describe_instance_types`` (vCPUs, memory, GPUs and their memory, instance storage:
tag N when it is NVMe, bare metal: tag M). Each type is offered on-demand, priced from
``price_table`` or the Price List API (None when neither knows it; a Price List failure
is logged, not fatal: the spot offers still come), and, when it supports spot, as a
spot offer priced from ``describe_spot_price_history`` (the cheapest zone's latest
price; eviction None: EC2 publishes no eviction rate through its API).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from scitq_bench.exceptions import InvalidInput
from scitq_bench.recruiters.providers.base import (
    OWNER_TAG,
    CapacityError,
    CredentialsError,
    Instance,
    InstanceSpec,
    Offer,
    Provider,
    ProviderError,
    as_list,
    matches_any,
    per_region,
    regions_of,
    scrub,
)
from scitq_bench.states import InstanceStatus

SECRETS = ("aws_secret_access_key", "aws_session_token")
CAPACITY_CODES = {
    "InsufficientInstanceCapacity", "InstanceLimitExceeded", "VcpuLimitExceeded",
    "MaxSpotInstanceCountExceeded", "InsufficientHostCapacity", "InsufficientCapacity",
    "SpotMaxPriceTooLow", "InsufficientFreeAddressesInSubnet",
}
CREDENTIAL_CODES = {
    "AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch",
    "ExpiredToken", "RequestExpired", "OptInRequired", "UnrecognizedClientException",
}
NOT_FOUND_CODES = {"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"}
STATUS = {  # an instance's state name -> its status
    "pending": InstanceStatus.PENDING.value, "running": InstanceStatus.RUNNING.value,
    "stopping": InstanceStatus.STOPPED.value, "stopped": InstanceStatus.STOPPED.value,
    "shutting-down": InstanceStatus.GONE.value, "terminated": InstanceStatus.GONE.value,
}
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
log = logging.getLogger("scitq_bench.recruit")
SPOT_PRODUCTS = ["Linux/UNIX", "Linux/UNIX (Amazon VPC)"]


class AwsProvider(Provider):
    name = "aws"

    def __init__(self, config: Mapping[str, Any], identity: str) -> None:
        super().__init__(config, identity)
        self.regions = regions_of(self.name, config)
        key, secret = config.get("aws_access_key_id"), config.get("aws_secret_access_key")
        if bool(key) != bool(secret):
            missing = "aws_secret_access_key" if key else "aws_access_key_id"
            raise CredentialsError(f"aws: missing setting(s): {missing} (give both "
                                   "aws_access_key_id and aws_secret_access_key, or neither "
                                   "to use boto3's credential chain)")
        self._config = dict(config)
        self._session = boto3.session.Session(
            aws_access_key_id=key or None, aws_secret_access_key=secret or None,
            aws_session_token=config.get("aws_session_token") or None,
            profile_name=config.get("profile") or None)
        self._endpoint_url = config.get("endpoint_url") or None
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._prices = self._load_prices(config.get("price_table"))

    @staticmethod
    def _load_prices(table: Any) -> dict[str, dict[str, float]]:
        if not table:
            return {}
        if isinstance(table, (str, Path)):
            try:
                table = json.loads(Path(table).read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise InvalidInput(f"aws: price_table {table}: {exc}") from None
        return {str(region): {str(k): float(v) for k, v in prices.items()}
                for region, prices in dict(table).items()}

    def client(self, region: str) -> Any:
        """The boto3 EC2 client of a region (one per region, kept)."""
        if region not in self.regions:
            raise InvalidInput(f"aws: region {region!r} is not configured "
                               f"({', '.join(self.regions)})")
        with self._lock:
            if region not in self._clients:
                self._clients[region] = self._session.client(
                    "ec2", region_name=region, endpoint_url=self._endpoint_url,
                    config=Config(retries={"max_attempts": 4, "mode": "standard"}))
            return self._clients[region]

    def _call(self, region: str, operation: str, **kwargs: Any) -> Any:
        """``client.operation(**kwargs)`` with errors as ProviderError subclasses."""
        return self._guard(lambda: getattr(self.client(region), operation)(**kwargs),
                           f"{operation} in {region}")

    def _pages(self, region: str, operation: str, key: str, **kwargs: Any) -> list[Any]:
        def run() -> list[Any]:
            paginator = self.client(region).get_paginator(operation)
            return [item for page in paginator.paginate(**kwargs) for item in page.get(key, [])]

        return self._guard(run, f"{operation} in {region}")

    def _guard(self, function: Callable[[], Any], what: str) -> Any:
        try:
            return function()
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, what) from None

    def _error(self, exc: Exception, what: str) -> ProviderError:
        """The ProviderError (subclass) for a boto3 error; never a secret in it."""
        if isinstance(exc, NoCredentialsError):
            return CredentialsError(
                "aws: no credentials: set aws_access_key_id and aws_secret_access_key, or "
                "configure boto3's chain (environment, profile, instance role)")
        if not isinstance(exc, ClientError):
            return ProviderError(scrub(f"aws: {what}: {exc}", self._config, SECRETS))
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = scrub(f"aws: {what}: {code}: {error.get('Message', '')}",
                        self._config, SECRETS)
        if code in CAPACITY_CODES:
            return CapacityError(message, details={"code": code})
        if code in CREDENTIAL_CODES:
            return CredentialsError(message, details={"code": code})
        return ProviderError(message, details={"code": code})

    @staticmethod
    def _code(exc: ClientError) -> str:
        return str(exc.response.get("Error", {}).get("Code", ""))

    # -- helpers ----------------------------------------------------------------------

    def _instance(self, region: str, data: Mapping[str, Any]) -> Instance:
        tags = {t["Key"]: t["Value"] for t in data.get("Tags") or []}
        status = STATUS.get(data.get("State", {}).get("Name", ""), InstanceStatus.PENDING.value)
        address = data.get("PublicIpAddress") or data.get("PrivateIpAddress")
        return Instance(self.name, data["InstanceId"], tags.get("Name", ""), region, status,
                        address=None if status == InstanceStatus.GONE.value else address,
                        flavor=data.get("InstanceType"), tags=tags)

    def _key_name(self, spec: InstanceSpec) -> str | None:
        key_name = per_region(self._config.get("key_name"), spec.region)
        if key_name or not spec.ssh_public_key:
            return key_name or None
        material = spec.ssh_public_key.strip()
        name = f"{OWNER_TAG}-{hashlib.sha256(material.encode()).hexdigest()[:16]}"
        try:
            self.client(spec.region).describe_key_pairs(KeyNames=[name])
        except ClientError as exc:
            if self._code(exc) != "InvalidKeyPair.NotFound":
                raise self._error(exc, "describe_key_pairs") from None
            self._call(spec.region, "import_key_pair", KeyName=name,
                       PublicKeyMaterial=material.encode(),
                       TagSpecifications=[{"ResourceType": "key-pair",
                                           "Tags": [{"Key": OWNER_TAG,
                                                     "Value": self.identity}]}])
        except BotoCoreError as exc:
            raise self._error(exc, "describe_key_pairs") from None
        return name

    # -- interface --------------------------------------------------------------------

    def create(self, spec: InstanceSpec) -> Instance:
        image_id = per_region(self._config.get("image_id"), spec.region)
        if not image_id:
            raise InvalidInput(f"aws: no image_id for region {spec.region}")
        tags = {"Name": spec.name, **self.owner_tags(spec)}
        tag_list = [{"Key": key, "Value": value} for key, value in tags.items()]
        params: dict[str, Any] = {
            "ImageId": image_id, "InstanceType": spec.flavor, "MinCount": 1, "MaxCount": 1,
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tag_list},
                                  {"ResourceType": "volume", "Tags": tag_list}],
        }
        if spec.spot:
            options: dict[str, Any] = {"SpotInstanceType": "one-time",
                                       "InstanceInterruptionBehavior": "terminate"}
            if self._config.get("spot_max_price"):
                options["MaxPrice"] = str(self._config["spot_max_price"])
            params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": options}
        key_name = self._key_name(spec)
        if key_name:
            params["KeyName"] = key_name
        groups = as_list(per_region(self._config.get("security_group_ids"), spec.region))
        if groups:
            params["SecurityGroupIds"] = groups
        subnet = per_region(self._config.get("subnet_id"), spec.region)
        if subnet:
            params["SubnetId"] = subnet
        if spec.user_data:
            params["UserData"] = spec.user_data  # boto3 base64-encodes it
        answer = self._call(spec.region, "run_instances", **params)
        return self._instance(spec.region, answer["Instances"][0])

    def state(self, instance_id: str, region: str) -> Instance:
        try:
            answer = self.client(region).describe_instances(InstanceIds=[instance_id])
        except ClientError as exc:
            if self._code(exc) in NOT_FOUND_CODES:
                return Instance(self.name, instance_id, "", region, InstanceStatus.GONE.value)
            raise self._error(exc, "describe_instances") from None
        except BotoCoreError as exc:
            raise self._error(exc, "describe_instances") from None
        found = [i for r in answer.get("Reservations", []) for i in r.get("Instances", [])]
        if not found:
            return Instance(self.name, instance_id, "", region, InstanceStatus.GONE.value)
        return self._instance(region, found[0])

    def delete(self, instance_id: str, region: str) -> None:
        try:
            self.client(region).terminate_instances(InstanceIds=[instance_id])
        except ClientError as exc:
            if self._code(exc) not in NOT_FOUND_CODES:
                raise self._error(exc, "terminate_instances") from None
        except BotoCoreError as exc:
            raise self._error(exc, "terminate_instances") from None

    def list_owned(self) -> list[Instance]:
        found = []
        for region in self.regions:
            reservations = self._pages(
                region, "describe_instances", "Reservations",
                Filters=[{"Name": f"tag:{OWNER_TAG}", "Values": [self.identity]},
                         {"Name": "instance-state-name", "Values": LIVE_STATES}])
            for reservation in reservations:
                for data in reservation.get("Instances", []):
                    instance = self._instance(region, data)
                    if self.owns(instance.tags) and instance.status != InstanceStatus.GONE.value:
                        found.append(instance)
        return found

    def offers(self) -> list[Offer]:
        patterns = as_list(self._config.get("flavors"))
        types: dict[str, Mapping[str, Any]] | None = None
        offers: list[Offer] = []
        for region in self.regions:
            sold = {o["InstanceType"] for o in self._pages(
                region, "describe_instance_type_offerings", "InstanceTypeOfferings",
                LocationType="region", Filters=[{"Name": "location", "Values": [region]}])}
            sold = {name for name in sold if matches_any(name, patterns)}
            if types is None:  # the same everywhere: asked once
                types = {t["InstanceType"]: t for t in self._pages(
                    region, "describe_instance_types", "InstanceTypes")}
            spot = self._spot_prices(region, sold)
            prices = {**self._prices.get("*", {}), **self._prices.get(region, {})} \
                if self._prices else self._listed_prices(region)
            for name in sorted(sold):
                data = types.get(name)
                if data is None:
                    continue
                base = self._offer(region, data)
                usage = data.get("SupportedUsageClasses") or ["on-demand", "spot"]
                if "on-demand" in usage:
                    offers.append(Offer(**{**base, "cost": prices.get(name)}))
                if "spot" in usage and name in spot:
                    offers.append(Offer(**{**base, "cost": spot[name], "spot": True}))
        return offers

    def _listed_prices(self, region: str) -> dict[str, float]:
        """On-demand prices of a region from the Price List API (USD per hour)."""
        filters = [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in (
            ("regionCode", region), ("operatingSystem", "Linux"), ("tenancy", "Shared"),
            ("preInstalledSw", "NA"), ("capacitystatus", "Used"))]
        prices: dict[str, float] = {}
        try:
            client = self._session.client(
                "pricing", region_name=self._config.get("pricing_region") or "us-east-1",
                endpoint_url=self._config.get("pricing_endpoint_url") or None)
            for page in client.get_paginator("get_products").paginate(
                    ServiceCode="AmazonEC2", Filters=filters):
                for item in page.get("PriceList") or []:
                    name, price = _on_demand_price(json.loads(item) if isinstance(item, str)
                                                   else item)
                    if name and price is not None:
                        prices[name] = min(price, prices.get(name, price))
        except (BotoCoreError, ClientError, ValueError) as exc:
            log.warning("aws: no on-demand prices for %s from the Price List API: %s",
                        region, exc)
        return prices

    def _spot_prices(self, region: str, types: set[str]) -> dict[str, float]:
        """The latest spot price per type (the cheapest zone)."""
        import datetime as dt

        latest: dict[tuple[str, str], tuple[Any, float]] = {}
        for item in self._pages(region, "describe_spot_price_history", "SpotPriceHistory",
                                ProductDescriptions=SPOT_PRODUCTS,
                                StartTime=dt.datetime.now(dt.timezone.utc)):
            name = item.get("InstanceType")
            if name not in types or item.get("ProductDescription") not in SPOT_PRODUCTS:
                continue
            key = (name, item.get("AvailabilityZone", ""))
            stamp = item.get("Timestamp")
            if key not in latest or (stamp and latest[key][0] and stamp > latest[key][0]):
                latest[key] = (stamp, float(item["SpotPrice"]))
        prices: dict[str, float] = {}
        for (name, _zone), (_stamp, price) in latest.items():
            prices[name] = min(price, prices.get(name, price))
        return prices

    def _offer(self, region: str, data: Mapping[str, Any]) -> dict[str, Any]:
        gpus = (data.get("GpuInfo") or {}).get("Gpus") or []
        gpu_count = sum(int(g.get("Count", 0)) for g in gpus)
        gpu_mem = (data.get("GpuInfo") or {}).get("TotalGpuMemoryInMiB")
        if gpu_mem is None:
            gpu_mem = sum(int(g.get("Count", 0)) * int((g.get("MemoryInfo") or {})
                                                       .get("SizeInMiB", 0)) for g in gpus)
        storage = data.get("InstanceStorageInfo") or {}
        tags = ("G" if gpu_count else "") + ("M" if data.get("BareMetal") else "")
        if storage.get("NvmeSupport") in ("required", "supported"):
            tags += "N"
        return {
            "provider": self.name, "region": region, "flavor": data["InstanceType"],
            "cpu": int((data.get("VCpuInfo") or {}).get("DefaultVCpus", 0)),
            "ram_gb": round(int((data.get("MemoryInfo") or {}).get("SizeInMiB", 0)) / 1024, 2),
            "disk_gb": float(storage.get("TotalSizeInGB") or 0),
            "gpu_count": gpu_count,
            "gpu_model": " ".join(filter(None, (gpus[0].get("Manufacturer"),
                                                gpus[0].get("Name")))) if gpus else None,
            "gpu_mem_gb": round(int(gpu_mem) / 1024, 2), "tags": tags,
        }

    def check(self) -> str:
        region = self.regions[0]
        zones = self._call(region, "describe_availability_zones").get("AvailabilityZones", [])
        return f"aws: {len(zones)} zones in {region}; regions {', '.join(self.regions)}"


def _on_demand_price(product: Mapping[str, Any]) -> tuple[str | None, float | None]:
    """(instance type, USD per hour) of one Price List product, or Nones."""
    name = ((product.get("product") or {}).get("attributes") or {}).get("instanceType")
    for term in ((product.get("terms") or {}).get("OnDemand") or {}).values():
        for dimension in (term.get("priceDimensions") or {}).values():
            usd = (dimension.get("pricePerUnit") or {}).get("USD")
            if usd not in (None, "") and dimension.get("unit", "Hrs") in ("Hrs", "Hours"):
                return name, float(usd)
    return name, None
