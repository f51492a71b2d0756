"""``azure``: Azure virtual machines through azure-mgmt-compute and azure-mgmt-network.

Settings (a mapping):

- ``subscription_id``, ``resource_group`` (required): where the VMs and their network
  pieces live (the group must exist);
- ``regions`` (required): a list (or a comma-separated string) of locations
  (``westeurope``, ``eastus``...);
- credentials: ``tenant_id``, ``client_id`` and ``client_secret`` (secret) of a service
  principal (azure-identity's ``ClientSecretCredential``); or ``use_default_credential:
  true`` for azure-identity's ``DefaultAzureCredential`` chain (environment, managed
  identity, Azure CLI...); or ``credential``: a ready azure-core token credential object
  (for programs embedding the provider);
- ``base_url``: the Resource Manager endpoint (default: the public cloud's);
- ``connection_verify``: a CA bundle file trusted for HTTPS (ARM and prices);
- ``prices_url``: the Retail Prices API (default ``https://prices.azure.com/api/retail/
  prices``), ``currency`` (``USD``);
- ``image``: ``publisher:offer:sku:version`` (default Ubuntu 22.04 LTS gen2) or
  ``image_id``: the resource id of a custom or gallery image;
- ``admin_username`` (``scitq``); ``ssh_public_key``: used when the instance spec has none
  (one of the two is required: password logins are disabled);
- ``os_disk_gb`` (64), ``os_disk_type`` (``StandardSSD_LRS``);
- ``subnet_id`` (one, or ``{region: id}``); without it, a virtual network
  ``scitq-bench-<region>`` (10.42.0.0/16, subnet ``default``) is made in the group when
  first needed; ``network_security_group_id`` (one or per region) for the NICs;
  ``public_ip`` (true): give each VM a static public IP (Standard SKU);
- ``flavors``: shell patterns limiting the offered sizes (``["Standard_D*s_v5"]``);
- ``gpu_models``: more ``{size pattern (regex): [model, memory GB per GPU]}`` for offers;
- ``polling_interval``: seconds between polls of long operations (the SDK's default).

An instance is a VM named after the spec, with ``<name>-nic``, ``<name>-ip`` and the OS
disk ``<name>-osdisk``; the instance id is the VM name. All carry the tags (``scitq-bench``
= identity, plus the spec's). A spot VM has ``priority: Spot``, ``evictionPolicy:
Delete`` and ``maxPrice: -1`` (up to the on-demand price). Deleting removes the VM, then
its NIC, public IP and disk (404 is fine: the NIC and disk are also marked
``deleteOption: Delete``). ``state`` reads the power state from the instance view;
``list_owned`` lists the group's VMs with our tag (status from the provisioning state,
no address: ask ``state`` for it).

Offers: ``resource_skus.list(filter="location eq '<region>'")`` (virtual machine sizes
not restricted for the subscription: vCPUs, MemoryGB, GPUs, temporary disk; tag N for
sizes with local NVMe disks), GPU models from the size name (a small table, extended by
``gpu_models``); prices from the Retail Prices API (``$filter`` on service, region and
consumption price type; Linux meters; ``Spot`` meters make the spot offers); spot
eviction rates from Azure Resource Graph (``SpotResources``, type
``microsoft.compute/skuspotevictionrate/location``, one query for all regions, paged by
``$skipToken``). Azure publishes a range (``0-5``, ``5-10``... ``20+``); the offer takes
its upper bound (``20+``: 100), so ``eviction<=5`` keeps exactly the ``0-5`` sizes. A spot
size Azure gives no rate for keeps None (unknown).

Tests talk to a local HTTPS fake of ARM and of the prices API (azure-core sends bearer
tokens only over TLS): ``base_url``, ``prices_url`` and ``connection_verify`` point the
real SDK clients and ``requests`` at it; ``credential`` is a static token credential.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

import requests
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute import models as cm
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network import models as nm

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

# The SDK models are built with their properties as flattened keyword arguments
# (``address_space=``, ``hardware_profile=``...), which every supported SDK version
# accepts at run time (the older ones take nothing else); the typed overloads of the
# recent ones list only ``properties=``, hence their ``call-overload`` ignores.

SECRETS = ("client_secret",)
PRICES_URL = "https://prices.azure.com/api/retail/prices"
ARM_URL = "https://management.azure.com"
ARM_SCOPE = "https://management.azure.com/.default"
RESOURCE_GRAPH = "/providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01"
# a constant query: the regions are filtered here, not spliced into the query text
EVICTION_QUERY = (
    "SpotResources | where type =~ 'microsoft.compute/skuspotevictionrate/location' "
    "| project skuName = tostring(sku.name), location = tostring(location), "
    "evictionRate = tostring(properties.evictionRate)")
DEFAULT_IMAGE = "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest"
CAPACITY_CODES = {
    "AllocationFailed", "ZonalAllocationFailed", "OverconstrainedAllocationRequest",
    "OverconstrainedZonalAllocationRequest", "SkuNotAvailable", "QuotaExceeded",
    "SpotVMCapacityNotAvailable", "InsufficientCapacity",
    "AllocationFailedDueToSpotCapacity",
}
CREDENTIAL_CODES = {"AuthorizationFailed", "InvalidAuthenticationToken",
                    "AuthenticationFailed", "InvalidAuthenticationTokenTenant",
                    "ExpiredAuthenticationToken", "LinkedAuthorizationFailed"}
POWER = {  # a PowerState/ code -> the status
    "running": InstanceStatus.RUNNING.value, "starting": InstanceStatus.PENDING.value,
    "stopped": InstanceStatus.STOPPED.value, "stopping": InstanceStatus.STOPPED.value,
    "deallocated": InstanceStatus.STOPPED.value, "deallocating": InstanceStatus.STOPPED.value,
}
PROVISIONING = {  # a provisioning state -> the status
    "succeeded": InstanceStatus.RUNNING.value, "creating": InstanceStatus.PENDING.value,
    "updating": InstanceStatus.PENDING.value, "migrating": InstanceStatus.PENDING.value,
    "failed": InstanceStatus.STOPPED.value, "canceled": InstanceStatus.STOPPED.value,
    "deleting": InstanceStatus.GONE.value,
}
# size name pattern -> (GPU model, memory per GPU in GB)
GPU_MODELS: dict[str, tuple[str, float]] = {
    r"^Standard_NC\d+s?_v3$": ("NVIDIA V100", 16),
    r"^Standard_NC\d+as_T4_v3$": ("NVIDIA T4", 16),
    r"^Standard_ND\d+asr_v4$": ("NVIDIA A100", 40),
    r"^Standard_ND\d+amsr_A100_v4$": ("NVIDIA A100", 80),
    r"^Standard_NC\d+ads_A100_v4$": ("NVIDIA A100", 80),
    r"^Standard_ND\d+isr_H100_v5$": ("NVIDIA H100", 80),
    r"^Standard_NC\d+ads_H100_v5$": ("NVIDIA H100 NVL", 94),
    r"^Standard_NV\d+ads_A10_v5$": ("NVIDIA A10", 24),
}


class AzureProvider(Provider):
    name = "azure"

    def __init__(self, config: Mapping[str, Any], identity: str) -> None:
        super().__init__(config, identity)
        require(self.name, config, "subscription_id", "resource_group")
        self.regions = regions_of(self.name, config)
        self._config = dict(config)
        self.subscription_id = str(config["subscription_id"])
        self.resource_group = str(config["resource_group"])
        self._credential = self._make_credential(config)
        options: dict[str, Any] = {}
        if config.get("base_url"):
            options["base_url"] = str(config["base_url"]).rstrip("/")
        if config.get("connection_verify") not in (None, ""):
            options["connection_verify"] = config["connection_verify"]
        if config.get("polling_interval") is not None:
            options["polling_interval"] = float(config["polling_interval"])
        self.compute = ComputeManagementClient(self._credential, self.subscription_id,
                                               **options)
        self.network = NetworkManagementClient(self._credential, self.subscription_id,
                                               **options)
        self._verify = config.get("connection_verify", True)
        self._subnets: dict[str, str] = {}
        self._lock = threading.Lock()
        self._gpu_models = {**GPU_MODELS, **{str(k): (str(v[0]), float(v[1])) for k, v in
                                             dict(config.get("gpu_models") or {}).items()}}

    def _make_credential(self, config: Mapping[str, Any]) -> Any:
        if config.get("credential") is not None:
            return config["credential"]
        keys = ("tenant_id", "client_id", "client_secret")
        if any(config.get(key) for key in keys) or not config.get("use_default_credential"):
            missing = [key for key in keys if not config.get(key)]
            if missing:
                raise CredentialsError(
                    f"azure: missing setting(s): {', '.join(missing)} (a service principal; "
                    "or set use_default_credential to use azure-identity's default chain)")
            from azure.identity import ClientSecretCredential

            return ClientSecretCredential(str(config["tenant_id"]), str(config["client_id"]),
                                          str(config["client_secret"]))
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()

    # -- errors -------------------------------------------------------------------------

    def _error(self, exc: Exception, what: str) -> ProviderError:
        """The ProviderError (subclass) for an azure-core error; never a secret in it."""
        code = ""
        if isinstance(exc, HttpResponseError):
            code = str(getattr(exc.error, "code", "") or "") if exc.error else ""
            message = getattr(exc.error, "message", None) if exc.error else None
            text = f"azure: {what}: {code or exc.status_code}: {message or exc.reason or ''}"
        else:
            text = f"azure: {what}: {type(exc).__name__}: {exc}"
        text = scrub(text, self._config, SECRETS)
        if isinstance(exc, ClientAuthenticationError) or code in CREDENTIAL_CODES or (
                isinstance(exc, HttpResponseError) and exc.status_code in (401, 403)):
            return CredentialsError(text, details={"code": code})
        if code in CAPACITY_CODES or "quota" in text.lower():
            return CapacityError(text, details={"code": code})
        return ProviderError(text, details={"code": code})

    def _call(self, what: str, function: Callable[[], Any]) -> Any:
        try:
            return function()
        except (HttpResponseError, ServiceRequestError, ClientAuthenticationError) as exc:
            raise self._error(exc, what) from None
        except Exception as exc:  # azure-identity errors (CredentialUnavailableError...)
            if type(exc).__module__.startswith("azure.identity"):
                raise CredentialsError(f"azure: {what}: {type(exc).__name__}") from None
            raise

    def _ignore_missing(self, what: str, function: Callable[[], Any]) -> None:
        try:
            function()
        except ResourceNotFoundError:
            return
        except (HttpResponseError, ServiceRequestError) as exc:
            raise self._error(exc, what) from None

    # -- network pieces -------------------------------------------------------------------

    def _subnet_id(self, region: str, tags: Mapping[str, str]) -> str:
        explicit = per_region(self._config.get("subnet_id"), region)
        if explicit:
            return str(explicit)
        with self._lock:
            if region in self._subnets:
                return self._subnets[region]
            name = f"{OWNER_TAG}-{region}"
            try:
                vnet = self.network.virtual_networks.get(self.resource_group, name)
            except ResourceNotFoundError:
                vnet = self._call(f"virtual network {name}", lambda: self.network
                                  .virtual_networks.begin_create_or_update(
                                      self.resource_group, name, nm.VirtualNetwork(  # type: ignore[call-overload]  # flattened fields
                                          location=region, tags=dict(tags),
                                          address_space=nm.AddressSpace(
                                              address_prefixes=["10.42.0.0/16"]),
                                          subnets=[nm.Subnet(name="default",  # type: ignore[call-overload]  # flattened fields
                                                             address_prefix="10.42.0.0/20")]))
                                  .result())
            except (HttpResponseError, ServiceRequestError) as exc:
                raise self._error(exc, f"virtual network {name}") from None
            subnets = [s for s in vnet.subnets or [] if s.name == "default"] or vnet.subnets
            if not subnets:
                raise ProviderError(f"azure: virtual network {name} has no subnet")
            self._subnets[region] = subnets[0].id
            return subnets[0].id

    def _image_reference(self) -> Any:
        if self._config.get("image_id"):
            return cm.ImageReference(id=str(self._config["image_id"]))
        parts = str(self._config.get("image") or DEFAULT_IMAGE).split(":")
        if len(parts) != 4:
            raise InvalidInput("azure: image must be publisher:offer:sku:version")
        publisher, offer, sku, version = parts
        return cm.ImageReference(publisher=publisher, offer=offer, sku=sku, version=version)

    # -- interface ----------------------------------------------------------------------

    def create(self, spec: InstanceSpec) -> Instance:
        if spec.region not in self.regions:
            raise InvalidInput(f"azure: region {spec.region!r} is not configured "
                               f"({', '.join(self.regions)})")
        key = spec.ssh_public_key or self._config.get("ssh_public_key")
        if not key:
            raise InvalidInput("azure: an SSH public key is needed (the instance spec's, "
                               "or the ssh_public_key setting)")
        tags = self.owner_tags(spec)
        group, name, region = self.resource_group, spec.name, spec.region
        user = str(self._config.get("admin_username") or "scitq")
        subnet_id = self._subnet_id(region, tags)
        made: list[tuple[str, Callable[[], Any]]] = []
        try:
            public_ip = None
            if self._config.get("public_ip", True):
                public_ip = self._call(f"public IP of {name}", lambda: self.network
                                       .public_ip_addresses.begin_create_or_update(
                                           group, f"{name}-ip", nm.PublicIPAddress(  # type: ignore[call-overload]  # flattened fields
                                               location=region, tags=tags,
                                               sku=nm.PublicIPAddressSku(name="Standard"),
                                               public_ip_allocation_method="Static"))
                                       .result())
                made.append(("public IP", lambda: self.network.public_ip_addresses
                             .begin_delete(group, f"{name}-ip").result()))
            nsg = per_region(self._config.get("network_security_group_id"), region)
            nic = self._call(f"network interface of {name}", lambda: self.network
                             .network_interfaces.begin_create_or_update(
                                 group, f"{name}-nic", nm.NetworkInterface(  # type: ignore[call-overload]  # flattened fields
                                     location=region, tags=tags,
                                     network_security_group=(nm.NetworkSecurityGroup(id=nsg)
                                                             if nsg else None),
                                     ip_configurations=[nm.NetworkInterfaceIPConfiguration(  # type: ignore[call-overload]  # flattened fields
                                         name="ipconfig1", subnet=nm.Subnet(id=subnet_id),
                                         private_ip_allocation_method="Dynamic",
                                         public_ip_address=(nm.PublicIPAddress(id=public_ip.id)
                                                            if public_ip else None))]))
                             .result())
            made.append(("network interface", lambda: self.network.network_interfaces
                         .begin_delete(group, f"{name}-nic").result()))
            spot = {"priority": "Spot", "eviction_policy": "Delete",
                    "billing_profile": cm.BillingProfile(max_price=-1)} if spec.spot else {}
            vm = cm.VirtualMachine(  # type: ignore[call-overload]  # flattened fields
                location=region, tags=tags, **spot,
                hardware_profile=cm.HardwareProfile(vm_size=spec.flavor),
                storage_profile=cm.StorageProfile(
                    image_reference=self._image_reference(),
                    os_disk=cm.OSDisk(
                        name=f"{name}-osdisk", create_option="FromImage", delete_option="Delete",
                        disk_size_gb=int(self._config.get("os_disk_gb") or 64),
                        managed_disk=cm.ManagedDiskParameters(storage_account_type=str(
                            self._config.get("os_disk_type") or "StandardSSD_LRS")))),
                os_profile=cm.OSProfile(
                    computer_name=name[:64], admin_username=user,
                    custom_data=(base64.b64encode(spec.user_data.encode()).decode()
                                 if spec.user_data else None),
                    linux_configuration=cm.LinuxConfiguration(
                        disable_password_authentication=True,
                        ssh=cm.SshConfiguration(public_keys=[cm.SshPublicKey(
                            path=f"/home/{user}/.ssh/authorized_keys", key_data=key.strip())]))),
                network_profile=cm.NetworkProfile(network_interfaces=[
                    cm.NetworkInterfaceReference(id=nic.id, primary=True,  # type: ignore[call-overload]  # flattened fields
                                                 delete_option="Delete")]),
            )
            made.append(("disk", lambda: self.compute.disks
                         .begin_delete(group, f"{name}-osdisk").result()))
            self._call(f"create {name} ({spec.flavor}) in {region}", lambda: self.compute
                       .virtual_machines.begin_create_or_update(group, name, vm).result())
        except ProviderError:
            for what, undo in reversed(made):  # leave nothing behind a failed create
                try:
                    self._ignore_missing(f"delete {what} of {name}", undo)
                except ProviderError:
                    pass
            raise
        return self.state(name, region)

    def _address(self, vm: Any) -> str | None:
        nics = (vm.network_profile.network_interfaces or []) if vm.network_profile else []
        if not nics:
            return None
        nic_name = nics[0].id.rstrip("/").split("/")[-1]
        try:
            nic = self.network.network_interfaces.get(self.resource_group, nic_name)
            configs = nic.ip_configurations or []
            if not configs:
                return None
            public = configs[0].public_ip_address
            if public is not None and public.id:
                ip = self.network.public_ip_addresses.get(
                    self.resource_group, public.id.rstrip("/").split("/")[-1])
                if ip.ip_address:
                    return ip.ip_address
            return configs[0].private_ip_address
        except ResourceNotFoundError:
            return None
        except (HttpResponseError, ServiceRequestError) as exc:
            raise self._error(exc, "network interface") from None

    def state(self, instance_id: str, region: str) -> Instance:
        try:
            vm = self.compute.virtual_machines.get(self.resource_group, instance_id,
                                                   expand="instanceView")
        except ResourceNotFoundError:
            return Instance(self.name, instance_id, instance_id, region, InstanceStatus.GONE.value)
        except (HttpResponseError, ServiceRequestError, ClientAuthenticationError) as exc:
            raise self._error(exc, f"virtual machine {instance_id}") from None
        status = PROVISIONING.get(_text(vm.provisioning_state).lower(),
                                  InstanceStatus.PENDING.value)
        view = vm.instance_view
        codes = [str(s.code or "") for s in (view.statuses or [])] if view else []
        power = [c.split("/", 1)[1] for c in codes if c.startswith("PowerState/")]
        if status != InstanceStatus.GONE.value and power:
            status = POWER.get(power[0].lower(), InstanceStatus.PENDING.value)
        live = status in (InstanceStatus.RUNNING.value, InstanceStatus.PENDING.value)
        address = self._address(vm) if live else None
        return self._vm_instance(vm, status, address, region)

    def _vm_instance(self, vm: Any, status: str, address: str | None,
                     region: str | None = None) -> Instance:
        size = vm.hardware_profile.vm_size if vm.hardware_profile else None
        return Instance(self.name, vm.name, vm.name, vm.location or region or "", status,
                        address=address, flavor=size, tags=dict(vm.tags or {}))

    def delete(self, instance_id: str, region: str) -> None:
        group, name = self.resource_group, instance_id
        nics, disk = [f"{name}-nic"], f"{name}-osdisk"
        try:
            vm = self.compute.virtual_machines.get(group, name)
            if vm.network_profile:
                nics = [n.id.rstrip("/").split("/")[-1]
                        for n in vm.network_profile.network_interfaces or []] or nics
            if vm.storage_profile and vm.storage_profile.os_disk and \
                    vm.storage_profile.os_disk.name:
                disk = vm.storage_profile.os_disk.name
        except ResourceNotFoundError:
            pass
        except (HttpResponseError, ServiceRequestError, ClientAuthenticationError) as exc:
            raise self._error(exc, f"virtual machine {name}") from None
        self._ignore_missing(f"delete {name}", lambda: self.compute.virtual_machines
                             .begin_delete(group, name).result())
        for nic in nics:
            def delete_nic(nic: str = nic) -> Any:
                return self.network.network_interfaces.begin_delete(group, nic).result()

            self._ignore_missing(f"delete {nic}", delete_nic)
        self._ignore_missing(f"delete {name}-ip", lambda: self.network.public_ip_addresses
                             .begin_delete(group, f"{name}-ip").result())
        self._ignore_missing(f"delete {disk}", lambda: self.compute.disks
                             .begin_delete(group, disk).result())

    def list_owned(self) -> list[Instance]:
        regions = {region.lower() for region in self.regions}
        vms = self._call("list virtual machines", lambda: list(
            self.compute.virtual_machines.list(self.resource_group)))
        found = []
        for vm in vms:
            if not self.owns(vm.tags) or (vm.location or "").lower() not in regions:
                continue
            status = PROVISIONING.get(_text(vm.provisioning_state).lower(),
                                      InstanceStatus.PENDING.value)
            if status != InstanceStatus.GONE.value:
                found.append(self._vm_instance(vm, status, None))
        return found

    def offers(self) -> list[Offer]:
        patterns = as_list(self._config.get("flavors"))
        offers: list[Offer] = []
        rates = self._eviction_rates()
        for region in self.regions:
            def list_skus(region: str = region) -> list[Any]:
                return list(self.compute.resource_skus.list(filter=f"location eq '{region}'"))

            skus = self._call(f"resource SKUs of {region}", list_skus)
            prices = self._prices(region)
            evictions = rates.get(region.lower(), {})
            for sku in skus:
                if _text(sku.resource_type).lower() != "virtualmachines" or not sku.name \
                        or not matches_any(sku.name, patterns) or self._restricted(sku, region):
                    continue
                if region.lower() not in [loc.lower() for loc in sku.locations or []]:
                    continue
                base = self._offer(region, sku)
                ondemand, spot = prices.get(sku.name, (None, None))
                offers.append(Offer(**base, cost=ondemand))
                capabilities = {c.name: c.value for c in sku.capabilities or []}
                if spot is not None and capabilities.get("LowPriorityCapable", "True") == "True":
                    offers.append(Offer(**base, cost=spot, spot=True,
                                        eviction=evictions.get(sku.name.lower())))
        return offers

    @staticmethod
    def _restricted(sku: Any, region: str) -> bool:
        for restriction in sku.restrictions or []:
            if _text(restriction.type).lower() != "location":
                continue
            # "values" is ``values_property`` in the newer SDK models (they are mappings)
            values = getattr(restriction, "values_property", None)
            if not isinstance(values, list):
                values = getattr(restriction, "values", None)
            if not isinstance(values, list):
                info = restriction.restriction_info
                values = (info.locations if info is not None else None) or []
            if region.lower() in [str(v).lower() for v in values]:
                return True
        return False

    def _offer(self, region: str, sku: Any) -> dict[str, Any]:
        capabilities = {c.name: c.value for c in sku.capabilities or []}

        def number(key: str) -> float:
            try:
                return float(capabilities.get(key) or 0)
            except ValueError:
                return 0.0

        gpus = int(round(number("GPUs")))
        model, memory = None, 0.0
        if gpus:
            for pattern, (name, per_gpu) in self._gpu_models.items():
                if re.match(pattern, sku.name):
                    model, memory = name, per_gpu * gpus
                    break
        nvme = any(key.lower().startswith("nvme") and number(key) > 0 for key in capabilities)
        return {
            "provider": self.name, "region": region, "flavor": sku.name,
            "cpu": int(number("vCPUs")), "ram_gb": number("MemoryGB"),
            "disk_gb": round(number("MaxResourceVolumeMB") / 1024, 2), "gpu_count": gpus,
            "gpu_model": model, "gpu_mem_gb": memory,
            "tags": ("G" if gpus else "") + ("N" if nvme else ""),
        }

    def _prices(self, region: str) -> dict[str, tuple[float | None, float | None]]:
        """armSkuName -> (on-demand, spot) per hour, Linux, from the Retail Prices API."""
        url: str | None = str(self._config.get("prices_url") or PRICES_URL)
        query = {
            "$filter": f"serviceName eq 'Virtual Machines' and armRegionName eq '{region}' "
                       "and priceType eq 'Consumption'"}
        if self._config.get("currency"):
            query["currencyCode"] = str(self._config["currency"])
        params: dict[str, str] | None = query  # the first page only: the next links hold it
        ondemand: dict[str, float] = {}
        spot: dict[str, float] = {}
        pages = 0
        while url and pages < 500:
            payload = self._json(f"retail prices of {region}", "GET", url, params=params)
            for item in payload.get("Items") or []:
                sku = item.get("armSkuName")
                text = f"{item.get('skuName', '')} {item.get('meterName', '')}"
                if not sku or item.get("type", "Consumption") != "Consumption" \
                        or "Windows" in str(item.get("productName", "")) \
                        or "Low Priority" in text or item.get("retailPrice") is None:
                    continue
                table = spot if "Spot" in text else ondemand
                table[sku] = min(float(item["retailPrice"]), table.get(sku, float("inf")))
            url, params, pages = payload.get("NextPageLink"), None, pages + 1
        return {sku: (ondemand.get(sku), spot.get(sku)) for sku in set(ondemand) | set(spot)}

    def _eviction_rates(self) -> dict[str, dict[str, float]]:
        """region -> size -> spot eviction rate (%; upper bound of Azure's range), both
        lower-case, from Resource Graph."""
        url = str(self._config.get("base_url") or ARM_URL).rstrip("/") + RESOURCE_GRAPH
        token = self._call("a token for Resource Graph",
                           lambda: self._credential.get_token(ARM_SCOPE).token)
        wanted = {region.lower() for region in self.regions}
        rates: dict[str, dict[str, float]] = {}
        request: dict[str, Any] = {"subscriptions": [self.subscription_id],
                                   "query": EVICTION_QUERY}
        for _page in range(500):
            payload = self._json("spot eviction rates (Resource Graph)", "POST", url,
                                 json=request, headers={"Authorization": f"Bearer {token}"})
            for row in payload.get("data") or []:
                region = str(row.get("location") or "").lower()
                rate = _eviction_bound(str(row.get("evictionRate") or ""))
                if region in wanted and row.get("skuName") and rate is not None:
                    rates.setdefault(region, {})[str(row["skuName"]).lower()] = rate
            if not payload.get("$skipToken"):
                break
            request = {**request, "options": {"$skipToken": payload["$skipToken"]}}
        return rates

    def _json(self, what: str, method: str, url: str, **options: Any) -> dict[str, Any]:
        """One page of a plain-HTTPS Azure API (the SDKs do not cover these), as JSON;
        any failure becomes a ProviderError naming ``what``."""
        try:
            answer = requests.request(method, url, timeout=60, verify=self._verify, **options)
            answer.raise_for_status()
            return dict(answer.json())
        except (requests.RequestException, ValueError, TypeError) as exc:
            raise ProviderError(f"azure: {what}: {type(exc).__name__}: {exc}") from None

    def check(self) -> str:
        vms = self._call("list virtual machines", lambda: list(
            self.compute.virtual_machines.list(self.resource_group)))
        return (f"azure: {len(vms)} VMs in resource group {self.resource_group}; regions "
                f"{', '.join(self.regions)}")


def _eviction_bound(text: str) -> float | None:
    """The upper bound of an Azure eviction range: ``0-5`` -> 5, ``20+`` -> 100."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:-\s*(\d+(?:\.\d+)?)|(\+))\s*", text)
    if not match:
        return None
    return 100.0 if match.group(3) else float(match.group(2))


def _text(value: Any) -> str:
    """An SDK enum's (or a string's) text: ``str()`` of a str-enum is its class path."""
    return str(getattr(value, "value", value) or "")
