"""``ovh``: OVHcloud Public Cloud instances through python-ovh (signed API calls).

Settings (a mapping):

- ``application_key``, ``application_secret`` (secret), ``consumer_key`` (secret)
  (required): the API keys (https://api.ovh.com/createToken/ with GET/POST/DELETE on
  ``/cloud/project/*``);
- ``project_id`` (required): the Public Cloud project (its "service name");
- ``regions`` (required): a list (or a comma-separated string), e.g. ``GRA11, BHS5``;
- ``endpoint``: one of python-ovh's endpoint names (``ovh-eu``, the default,
  ``ovh-ca``, ``ovh-us``...) or a base URL ending in ``/1.0`` (python-ovh 1.2 only knows
  its names, so a URL goes through a small subclass that only changes where requests
  go: the signing is python-ovh's own);
- ``image``: the image name to boot (default ``Ubuntu 22.04``), looked up per region;
  or ``image_id``: one id, or ``{region: id}``;
- ``ssh_key_id``: an existing key of the project; without it, an instance spec that
  has an SSH public key gets that key registered once as ``scitq-bench-<hash>``;
- ``subsidiary``: the OVH subsidiary whose public catalog prices the offers (``FR``);
- ``flavors``: shell patterns limiting the offered flavors (``["b3-*", "t2-*"]``);
- ``timeout``: seconds per API call (60).

OVH's instance API has no tags: ownership lives in the instance name,
``scitq-bench.<identity>.<name>``; ``list_owned`` keeps the instances whose name starts
with our prefix, and an instance's ``tags`` are only ``{scitq-bench: identity}``.
Status: ``ACTIVE`` is running, ``BUILD`` (and other transitions) pending, ``SHUTOFF``,
``ERROR`` and the like stopped, ``DELETING``/``DELETED`` (or a 404) gone.

Offers: ``GET /cloud/project/{id}/flavor?region=`` (Linux flavors: vCPUs, RAM in MB,
disk) priced from the public catalog ``GET /order/catalog/public/cloud?ovhSubsidiary=``
(the addon named by the flavor's hourly plan code; prices are in 1e-8 of the currency);
the catalog's technical blob gives GPUs (model, number, memory each) and disks (tag N
for NVMe); ``bm-`` flavors (metal instances) are tagged M. All on-demand (no spot).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import ovh
from ovh import exceptions as ovh_errors

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
    require,
    scrub,
)
from scitq_bench.states import InstanceStatus

SECRETS = ("application_secret", "consumer_key")
STATUS = {  # an instance's status word -> its status
    "ACTIVE": InstanceStatus.RUNNING.value,
    "SHUTOFF": InstanceStatus.STOPPED.value, "STOPPED": InstanceStatus.STOPPED.value,
    "SUSPENDED": InstanceStatus.STOPPED.value, "PAUSED": InstanceStatus.STOPPED.value,
    "SHELVED": InstanceStatus.STOPPED.value, "SHELVED_OFFLOADED": InstanceStatus.STOPPED.value,
    "ERROR": InstanceStatus.STOPPED.value, "RESCUE": InstanceStatus.STOPPED.value,
    "DELETING": InstanceStatus.GONE.value, "DELETED": InstanceStatus.GONE.value,
    "SOFT_DELETED": InstanceStatus.GONE.value,
}
CAPACITY_WORDS = ("quota", "not enough", "insufficient", "capacity", "no valid host",
                  "exceeded", "not available", "unavailable", "out of stock")
CREDENTIAL_ERRORS = (ovh_errors.InvalidKey, ovh_errors.InvalidCredential,
                     ovh_errors.NotCredential, ovh_errors.NotGrantedCall,
                     ovh_errors.Forbidden, ovh_errors.InvalidConfiguration)


class _UrlClient(ovh.Client):
    """python-ovh's client, sending to a base URL of our choosing instead of one of its
    named endpoints (everything else, signing included, is the library's)."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(endpoint="ovh-eu", **kwargs)
        self._base_url = base_url.rstrip("/")

    def _get_target(self, path: str) -> str:
        return self._base_url + path


class OvhProvider(Provider):
    name = "ovh"

    def __init__(self, config: Mapping[str, Any], identity: str) -> None:
        super().__init__(config, identity)
        require(self.name, config, "application_key", "application_secret", "consumer_key",
                "project_id")
        self.regions = regions_of(self.name, config)
        self._config = dict(config)
        self.project = str(config["project_id"])
        self.prefix = f"{OWNER_TAG}.{identity}."
        endpoint = str(config.get("endpoint") or "ovh-eu")
        keys = {"application_key": str(config["application_key"]),
                "application_secret": str(config["application_secret"]),
                "consumer_key": str(config["consumer_key"]),
                "timeout": float(config.get("timeout", 60))}
        try:
            if endpoint.startswith(("https://", "http://")):
                self.client = _UrlClient(endpoint, **keys)
            else:
                self.client = ovh.Client(endpoint=endpoint, **keys)
        except ovh_errors.InvalidRegion:
            raise InvalidInput(f"ovh: unknown endpoint {endpoint!r}: one of "
                               f"{', '.join(ovh.client.ENDPOINTS)}, or a URL") from None
        except ovh_errors.APIError as exc:
            raise CredentialsError(self._scrub(f"ovh: {exc}")) from None

    def _scrub(self, text: str) -> str:
        return scrub(text, self._config, SECRETS)

    def _call(self, what: str, function: Callable[[], Any]) -> Any:
        try:
            return function()
        except ovh_errors.APIError as exc:
            raise self._error(exc, what) from None

    def _error(self, exc: Exception, what: str) -> ProviderError:
        """The ProviderError (subclass) for a python-ovh error; never a secret in it."""
        if isinstance(exc, CREDENTIAL_ERRORS):
            return CredentialsError(self._scrub(f"ovh: {what}: credentials refused: "
                                                f"{_message(exc)}"))
        message = self._scrub(f"ovh: {what}: {_message(exc)}")
        if any(word in message.lower() for word in CAPACITY_WORDS):
            return CapacityError(message)
        return ProviderError(message)

    def _path(self, rest: str = "") -> str:
        return f"/cloud/project/{self.project}{rest}"

    # -- lookups ------------------------------------------------------------------------

    def _flavors(self, region: str) -> list[dict[str, Any]]:
        return self._call(f"flavors of {region}",
                          lambda: self.client.get(self._path("/flavor"), region=region))

    def _flavor_id(self, region: str, flavor: str) -> str:
        for item in self._flavors(region):
            if item.get("name") == flavor and item.get("osType", "linux") == "linux":
                return item["id"]
        raise CapacityError(f"ovh: no flavor {flavor!r} in {region}")

    def _image_id(self, region: str) -> str:
        explicit = per_region(self._config.get("image_id"), region)
        if explicit:
            return str(explicit)
        wanted = str(self._config.get("image") or "Ubuntu 22.04")
        images = self._call(f"images of {region}", lambda: self.client.get(
            self._path("/image"), region=region, osType="linux"))
        for image in images:
            if image.get("name") == wanted:
                return image["id"]
        raise InvalidInput(f"ovh: no image named {wanted!r} in {region}")

    def _ssh_key_id(self, spec: InstanceSpec) -> str | None:
        if self._config.get("ssh_key_id"):
            return str(self._config["ssh_key_id"])
        if not spec.ssh_public_key:
            return None
        material = spec.ssh_public_key.strip()
        keys = self._call("ssh keys", lambda: self.client.get(self._path("/sshkey")))
        for key in keys:
            if (key.get("publicKey") or "").strip() == material:
                return key["id"]
        name = f"{OWNER_TAG}-{hashlib.sha256(material.encode()).hexdigest()[:16]}"
        created = self._call("ssh key", lambda: self.client.post(
            self._path("/sshkey"), name=name, publicKey=material))
        return created["id"]

    def _instance(self, data: Mapping[str, Any], region: str | None = None) -> Instance:
        full = str(data.get("name") or "")
        ours = full.startswith(self.prefix)
        addresses = data.get("ipAddresses") or []
        public = [a["ip"] for a in addresses if a.get("type") == "public"
                  and a.get("version", 4) == 4]
        address = (public or [a.get("ip") for a in addresses] or [None])[0]
        status = STATUS.get(str(data.get("status", "")).upper(), InstanceStatus.PENDING.value)
        return Instance(self.name, str(data["id"]), full[len(self.prefix):] if ours else full,
                        str(data.get("region") or region or ""), status,
                        address=None if status == InstanceStatus.GONE.value else address,
                        flavor=_flavor_name(data), tags={OWNER_TAG: self.identity} if ours else {})

    # -- interface ----------------------------------------------------------------------

    def create(self, spec: InstanceSpec) -> Instance:
        if spec.region not in self.regions:
            raise InvalidInput(f"ovh: region {spec.region!r} is not configured "
                               f"({', '.join(self.regions)})")
        if spec.spot:
            raise CapacityError("ovh: no spot instances at OVHcloud")
        body: dict[str, Any] = {
            "flavorId": self._flavor_id(spec.region, spec.flavor),
            "imageId": self._image_id(spec.region), "region": spec.region,
            "name": self.prefix + spec.name, "monthlyBilling": False,
        }
        key_id = self._ssh_key_id(spec)
        if key_id:
            body["sshKeyId"] = key_id
        if spec.user_data:
            body["userData"] = spec.user_data
        created = self._call(f"create {spec.name} in {spec.region}",
                             lambda: self.client.post(self._path("/instance"), **body))
        return self._instance({**created, "flavor": {"name": spec.flavor}}, spec.region)

    def state(self, instance_id: str, region: str) -> Instance:
        try:
            data = self.client.get(self._path(f"/instance/{instance_id}"))
        except ovh_errors.ResourceNotFoundError:
            return Instance(self.name, instance_id, "", region, InstanceStatus.GONE.value)
        except ovh_errors.APIError as exc:
            raise self._error(exc, f"instance {instance_id}") from None
        return self._instance(data, region)

    def delete(self, instance_id: str, region: str) -> None:
        try:
            self.client.delete(self._path(f"/instance/{instance_id}"))
        except ovh_errors.ResourceNotFoundError:
            return
        except ovh_errors.APIError as exc:
            raise self._error(exc, f"delete instance {instance_id}") from None

    def list_owned(self) -> list[Instance]:
        found = []
        for region in self.regions:
            def list_region(region: str = region) -> Any:
                return self.client.get(self._path("/instance"), region=region)

            listed = self._call(f"instances in {region}", list_region)
            for data in listed:
                if str(data.get("name") or "").startswith(self.prefix):
                    instance = self._instance(data, region)
                    if instance.status != InstanceStatus.GONE.value:
                        found.append(instance)
        return found

    def offers(self) -> list[Offer]:
        patterns = as_list(self._config.get("flavors"))
        subsidiary = str(self._config.get("subsidiary") or "FR")
        catalog = self._call("public catalog", lambda: self.client.get(
            "/order/catalog/public/cloud", _need_auth=False, ovhSubsidiary=subsidiary))
        addons = {a.get("planCode"): a for a in catalog.get("addons") or []}
        offers = []
        for region in self.regions:
            for flavor in self._flavors(region):
                name = str(flavor.get("name"))
                if flavor.get("osType", "linux") != "linux" or flavor.get("available") is False \
                        or not matches_any(name, patterns):
                    continue
                addon = addons.get((flavor.get("planCodes") or {}).get("hourly")) or {}
                offers.append(self._offer(region, flavor, addon))
        return offers

    def _offer(self, region: str, flavor: Mapping[str, Any], addon: Mapping[str, Any]) -> Offer:
        technical = (addon.get("blobs") or {}).get("technical") or {}
        gpu = technical.get("gpu") or {}
        gpu_count = int(gpu.get("number") or 0)
        disks = (technical.get("storage") or {}).get("disks") or []
        name = str(flavor["name"])
        tags = ("G" if gpu_count else "") + ("M" if name.startswith("bm-") else "")
        if any(str(d.get("technology", "")).lower() == "nvme" for d in disks):
            tags += "N"
        hourly = [p for p in addon.get("pricings") or [] if p.get("intervalUnit") == "hour"
                  and p.get("price") is not None]
        cost = min(p["price"] / (p.get("interval") or 1) for p in hourly) / 1e8 if hourly else None
        return Offer(self.name, region, name, cpu=int(flavor.get("vcpus") or 0),
                     ram_gb=round(float(flavor.get("ram") or 0) / 1000, 2),
                     disk_gb=float(flavor.get("disk") or 0), gpu_count=gpu_count,
                     gpu_model=gpu.get("model") or None,
                     gpu_mem_gb=float(gpu_count * float((gpu.get("memory") or {}).get("size")
                                                        or 0)),
                     tags=tags, cost=None if cost is None else round(cost, 6))

    def check(self) -> str:
        project = self._call("project", lambda: self.client.get(self._path()))
        return (f"ovh: project {project.get('description') or self.project} "
                f"({project.get('status', '?')}), regions {', '.join(self.regions)}")


def _message(exc: Exception) -> str:
    """The API's message without python-ovh's query-id line."""
    return str(exc.args[0]) if exc.args else type(exc).__name__


def _flavor_name(data: Mapping[str, Any]) -> str | None:
    flavor = data.get("flavor")
    if isinstance(flavor, Mapping) and flavor.get("name"):
        return str(flavor["name"])
    plan = data.get("planCode")
    return str(plan).split(".")[0] if plan else None
