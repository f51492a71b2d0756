"""A small Azure Resource Manager and Retail Prices API for tests, over HTTPS on
127.0.0.1, answering the calls the ``azure`` provider makes through the real
azure-mgmt-compute / azure-mgmt-network clients and ``requests``.

Why HTTPS: azure-core's bearer-token policy refuses to send a token over plain HTTP.
The fake makes a self-signed certificate for ``127.0.0.1``/``localhost`` at start (with
``cryptography``); clients trust it through ``connection_verify=<fake.ca_file>`` (the
SDK's transport option; ``requests``' ``verify`` for the prices API).

ARM part (any ``api-version`` is accepted, one must be given):

- ``PUT|GET|DELETE`` on ``/subscriptions/{s}/resourceGroups/{rg}/providers/
  {Microsoft.Compute|Microsoft.Network}/{type}/{name}``: resources are stored as sent,
  with ``id``/``name``/``type`` and computed properties added (public IPs get an
  address, NICs a private IP, subnets and IP configurations their ids, VMs an OS disk
  resource); references (NIC -> subnet/public IP, VM -> NIC) must exist;
- long-running operations as ARM does them: a PUT answers 201 with an
  ``Azure-AsyncOperation`` URL (whose status is already final), a DELETE 202 with a
  ``Location`` URL; ``Retry-After: 0`` everywhere; a DELETE of something missing is 204;
- ``GET .../virtualMachines/{name}?$expand=instanceView`` and ``.../instanceView``: the
  power state is ``power[name]`` (default ``running``); deleting a VM deletes the OS
  disk and NICs referenced with ``deleteOption: Delete``;
- ``GET .../providers/Microsoft.Compute/virtualMachines`` (list in a group) and
  ``GET /subscriptions/{s}/providers/Microsoft.Compute/skus?$filter=location eq 'x'``;
- the bearer token must be ``token``, else 401.

Resource Graph part: ``POST /providers/Microsoft.ResourceGraph/resources`` (bearer token
and api-version required) answers the spot eviction rate query with ``EVICTION_RATES``
for the asked subscriptions, ``page_size`` rows a page, paged by ``$skipToken``; a query
about anything else is a 400.

Prices part: ``GET /api/retail/prices?$filter=...`` with an OData filter of ``eq``
clauses joined by ``and`` (applied), paged by ``NextPageLink`` (``page_size`` items).

``fail_next(method, path_end, status, code, message, asynchronous=False)`` makes the
next matching call fail as ARM does; asynchronous failures come from the operation
status (as VM allocation failures do). ``calls`` records ``(method, path)``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import ssl
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

TOKEN = "fake-arm-bearer-token"
SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"
RESOURCE_GROUP = "bench-rg"
REGIONS = ("westeurope", "eastus")

# name, family, vCPUs, MemoryGB, GPUs, temp disk MB, extra capabilities, restricted in
SKUS: tuple[tuple[str, str, int, float, int, int, dict[str, str], tuple[str, ...]], ...] = (
    ("Standard_D2s_v5", "standardDSv5Family", 2, 8, 0, 0, {}, ()),
    ("Standard_NC4as_T4_v3", "standardNCASv3_T4Family", 4, 28, 1, 180 * 1024, {}, ()),
    ("Standard_ND96asr_v4", "standardNDASv4_A100Family", 96, 900, 8, 6000 * 1024, {},
     ("eastus",)),
    ("Standard_L8s_v3", "standardLSv3Family", 8, 64, 0, 80 * 1024,
     {"NvmeDiskSizeInMiB": str(1788 * 1024)}, ()),
)
# armSkuName -> (on-demand, spot) per hour, in USD
PRICES = {
    "Standard_D2s_v5": (0.096, 0.0192),
    "Standard_NC4as_T4_v3": (0.526, 0.1578),
    "Standard_ND96asr_v4": (27.197, None),
    "Standard_L8s_v3": (0.624, 0.0936),
}

# (region, size, Azure's range); northeurope is a region the tests do not configure
EVICTION_RATES = (
    ("westeurope", "Standard_D2s_v5", "0-5"),
    ("westeurope", "Standard_NC4as_T4_v3", "10-15"),
    ("eastus", "standard_d2s_v5", "20+"),  # Resource Graph does not keep the case
    ("eastus", "Standard_L8s_v3", "5-10"),
    ("northeurope", "Standard_D2s_v5", "0-5"),
)


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate (and its key) for 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-azure")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "fake-azure.pem", folder / "fake-azure.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@dataclass
class FakeAzure:
    subscription: str = SUBSCRIPTION
    token: str = TOKEN
    page_size: int = 3
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    power: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self.folder = Path(tempfile.mkdtemp(prefix="fake-azure-"))
        self.ca_file, key_file = make_certificate(self.folder)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key_file)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self._counter = 10

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    @property
    def prices_url(self) -> str:
        return f"{self.url}/api/retail/prices"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, method: str, path_end: str, status: int, code: str, message: str,
                  asynchronous: bool = False) -> None:
        with self.lock:
            self.failures.append({"method": method, "end": path_end.lower(), "status": status,
                                  "code": code, "message": message,
                                  "asynchronous": asynchronous})

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """Stored resources of a type, e.g. ``Microsoft.Network/publicIPAddresses``."""
        with self.lock:
            return [r for r in self.resources.values() if r["type"].lower() == kind.lower()]

    def next_number(self) -> int:
        self._counter += 1
        return self._counter

    # -- catalog --------------------------------------------------------------------------

    def skus(self, location: str | None) -> list[dict[str, Any]]:
        found = []
        for name, family, cpus, memory, gpus, temp, extra, restricted in SKUS:
            for region in REGIONS:
                if location and region != location.lower():
                    continue
                capabilities = {"vCPUs": str(cpus), "MemoryGB": str(memory),
                                "MaxResourceVolumeMB": str(temp), "LowPriorityCapable": "True",
                                "HyperVGenerations": "V1,V2", **extra}
                if gpus:
                    capabilities["GPUs"] = str(gpus)
                restrictions = []
                if region in restricted:
                    restrictions.append({"type": "Location", "values": [region],
                                         "reasonCode": "NotAvailableForSubscription",
                                         "restrictionInfo": {"locations": [region]}})
                found.append({
                    "resourceType": "virtualMachines", "name": name, "tier": "Standard",
                    "size": name.removeprefix("Standard_"), "family": family,
                    "locations": [region], "locationInfo": [{"location": region,
                                                             "zones": ["1", "2", "3"]}],
                    "capabilities": [{"name": k, "value": v} for k, v in capabilities.items()],
                    "restrictions": restrictions})
            # another resource type in the same list, as ARM mixes them
        found.append({"resourceType": "disks", "name": "Premium_LRS", "tier": "Premium",
                      "locations": [location or REGIONS[0]], "capabilities": [],
                      "restrictions": []})
        return found

    def price_items(self) -> list[dict[str, Any]]:
        items = []
        for region in REGIONS:
            for sku, (ondemand, spot) in PRICES.items():
                meter = sku.removeprefix("Standard_").replace("_", " ")
                series = f"Virtual Machines {sku.split('_')[1][:2]} Series"
                rows = [(meter, series, ondemand), (f"{meter} Low Priority", series, ondemand / 5),
                        (meter, f"{series} Windows", ondemand * 2)]
                if spot is not None:
                    rows.append((f"{meter} Spot", series, spot))
                for sku_name, product, price in rows:
                    items.append({
                        "currencyCode": "USD", "tierMinimumUnits": 0.0,
                        "retailPrice": round(price, 4), "unitPrice": round(price, 4),
                        "armRegionName": region, "location": region, "effectiveStartDate":
                        "2024-01-01T00:00:00Z", "meterId": str(uuid.uuid4()),
                        "meterName": sku_name, "productId": "DZH318Z0BQ4L",
                        "skuId": "DZH318Z0BQ4L/00TG", "productName": product,
                        "skuName": sku_name, "serviceName": "Virtual Machines",
                        "serviceId": "DZH313Z7MMC8", "serviceFamily": "Compute",
                        "unitOfMeasure": "1 Hour", "type": "Consumption",
                        "isPrimaryMeterRegion": True, "armSkuName": sku})
            items.append({"currencyCode": "USD", "retailPrice": 0.005, "unitPrice": 0.005,
                          "armRegionName": region, "serviceName": "Virtual Machines",
                          "skuName": "D2s v5", "meterName": "D2s v5", "productName":
                          "Virtual Machines Dsv5 Series", "armSkuName": "Standard_D2s_v5",
                          "type": "Reservation", "reservationTerm": "1 Year",
                          "unitOfMeasure": "1 Hour"})
            items.append({"currencyCode": "USD", "retailPrice": 0.05, "armRegionName": region,
                          "serviceName": "Storage", "skuName": "P10", "meterName": "P10 Disks",
                          "productName": "Premium SSD Managed Disks", "armSkuName": "",
                          "type": "Consumption", "unitOfMeasure": "1/Month"})
        return items


def _odata_filter(text: str) -> list[tuple[str, str]]:
    clauses = []
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        match = re.fullmatch(r"\s*(\w+)\s+eq\s+'([^']*)'\s*", clause)
        if not match:
            raise ValueError(f"unsupported filter clause: {clause!r}")
        clauses.append((match.group(1), match.group(2)))
    return clauses


def _handler(fake: FakeAzure) -> type[BaseHTTPRequestHandler]:
    arm = re.compile(
        r"^/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)/providers/"
        r"(?P<ns>[^/]+)/(?P<type>[^/]+)(?:/(?P<name>[^/]+))?(?P<rest>/.*)?$", re.IGNORECASE)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, payload: Any = None,
                  headers: dict[str, str] | None = None) -> None:
            body = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-ms-request-id", str(uuid.uuid4()))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, code: str, message: str) -> None:
            self._send(status, {"error": {"code": code, "message": message}})

        # -- dispatch -------------------------------------------------------------------

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            with fake.lock:
                fake.calls.append((self.command, parts.path))
            if parts.path == "/api/retail/prices":
                self._prices(query)
                return
            graph = parts.path.lower() == "/providers/microsoft.resourcegraph/resources"
            if self.headers.get("Authorization") != f"Bearer {fake.token}":
                self._send(401, {"error": {"code": "InvalidAuthenticationToken",
                                           "message": "The access token is invalid."}},
                           {"WWW-Authenticate": 'Bearer authorization_uri="https://login.'
                            'fake/", error="invalid_token"'})
                return
            if "api-version" not in query:
                self._error(400, "MissingApiVersionParameter",
                            "The api-version query parameter is required.")
                return
            if graph:
                self._resource_graph(json.loads(body) if body else {})
                return
            with fake.lock:
                self._arm(parts.path, query, json.loads(body) if body else None)

        def _arm(self, path: str, query: dict[str, str], data: Any) -> None:
            prefix = f"/subscriptions/{fake.subscription}"
            if not path.lower().startswith(prefix.lower()):
                self._error(404, "SubscriptionNotFound", "The subscription was not found.")
                return
            for index, failure in enumerate(fake.failures):
                if failure["method"] == self.command and path.lower().endswith(failure["end"]):
                    del fake.failures[index]
                    if failure["asynchronous"]:
                        self._accept_failing(path, data, failure)
                    else:
                        self._error(failure["status"], failure["code"], failure["message"])
                    return
            rest = path[len(prefix):]
            operation = re.fullmatch(r"/providers/[^/]+/locations/[^/]+/operations/([^/]+)",
                                     rest, re.IGNORECASE)
            if operation:
                self._operation(operation.group(1), query)
                return
            if rest.lower() == "/providers/microsoft.compute/skus" and self.command == "GET":
                location = None
                if query.get("$filter"):
                    location = dict(_odata_filter(query["$filter"])).get("location")
                self._send(200, {"value": fake.skus(location)})
                return
            match = arm.match(path)
            if not match:
                self._error(404, "NotFound", f"no route for {path}")
                return
            self._resource(match, path, query, data)

        # -- long-running operations ------------------------------------------------------

        def _operation_url(self, result: dict[str, Any], namespace: str) -> str:
            name = str(uuid.uuid4())
            fake.operations[name] = result
            return (f"{fake.url}/subscriptions/{fake.subscription}/providers/{namespace}/"
                    f"locations/{REGIONS[0]}/operations/{name}?api-version=2024-07-01")

        def _operation(self, name: str, query: dict[str, str]) -> None:
            result = fake.operations.get(name)
            if result is None:
                self._error(404, "NotFound", "no such operation")
            elif result.get("location_done"):
                self._send(204)  # a DELETE's Location URL: done
            else:
                self._send(200, {"name": name, "startTime": "2024-01-01T00:00:00Z",
                                 **result}, {"Retry-After": "0"})

        def _accept_failing(self, path: str, data: Any, failure: dict[str, Any]) -> None:
            """201 with an operation whose final status is Failed (nothing is created)."""
            namespace = "Microsoft.Compute" if "microsoft.compute" in path.lower() \
                else "Microsoft.Network"
            url = self._operation_url({"status": "Failed", "error": {
                "code": failure["code"], "message": failure["message"]}}, namespace)
            body = dict(data or {})
            body.setdefault("properties", {})["provisioningState"] = "Creating"
            self._send(201, body, {"Azure-AsyncOperation": url, "Retry-After": "0"})

        # -- resources --------------------------------------------------------------------

        def _resource(self, match: re.Match, path: str, query: dict[str, str], data: Any) -> None:
            namespace, kind, name, rest = (match.group("ns"), match.group("type"),
                                           match.group("name"), match.group("rest") or "")
            full_type = f"{namespace}/{kind}"
            if name is None:
                if self.command != "GET":
                    self._error(405, "MethodNotAllowed", "collections are read only")
                    return
                group = f"/resourcegroups/{match.group('rg').lower()}/"
                found = [self._view(r, False) for key, r in fake.resources.items()
                         if r["type"].lower() == full_type.lower() and group in key]
                self._send(200, {"value": found})
                return
            resource_id = path[: len(path) - len(rest)] if rest else path
            key = resource_id.lower()
            if rest.lower() == "/instanceview" and self.command == "GET":
                if key not in fake.resources:
                    self._error(404, "ResourceNotFound", f"{name} was not found.")
                else:
                    self._send(200, self._instance_view(fake.resources[key]))
                return
            if rest:
                self._error(404, "NotFound", f"no route for {path}")
                return
            if self.command == "GET":
                if key not in fake.resources:
                    self._error(404, "ResourceNotFound",
                                f"The Resource '{full_type}/{name}' under resource group "
                                f"'{match.group('rg')}' was not found.")
                else:
                    expand = query.get("$expand", "").lower() == "instanceview"
                    self._send(200, self._view(fake.resources[key], expand))
            elif self.command == "PUT":
                self._put(resource_id, full_type, name, data or {})
            elif self.command == "DELETE":
                if key not in fake.resources:
                    self._send(204)
                    return
                self._delete(key)
                url = self._operation_url({"location_done": True}, namespace)
                self._send(202, None, {"Location": url, "Retry-After": "0"})
            else:
                self._error(405, "MethodNotAllowed", self.command)

        def _view(self, resource: dict[str, Any], expand: bool) -> dict[str, Any]:
            view = json.loads(json.dumps(resource))
            if expand and resource["type"] == "Microsoft.Compute/virtualMachines":
                view["properties"]["instanceView"] = self._instance_view(resource)
            return view

        def _instance_view(self, resource: dict[str, Any]) -> dict[str, Any]:
            power = fake.power.get(resource["name"], "running")
            return {"computerName": resource["name"], "statuses": [
                {"code": "ProvisioningState/succeeded", "level": "Info",
                 "displayStatus": "Provisioning succeeded"},
                {"code": f"PowerState/{power}", "level": "Info",
                 "displayStatus": f"VM {power}"}]}

        def _exists(self, resource_id: str | None) -> bool:
            return bool(resource_id) and resource_id.lower() in fake.resources  # type: ignore[union-attr]

        def _put(self, resource_id: str, full_type: str, name: str, data: dict) -> None:
            if not data.get("location"):
                self._error(400, "LocationRequired", "The location property is required.")
                return
            properties = data.setdefault("properties", {})
            kind = full_type.lower()
            number = fake.next_number()
            if kind == "microsoft.network/publicipaddresses":
                properties["ipAddress"] = f"20.0.0.{number}"
            elif kind == "microsoft.network/virtualnetworks":
                for subnet in properties.get("subnets") or []:
                    subnet["id"] = f"{resource_id}/subnets/{subnet['name']}"
                    subnet.setdefault("properties", {})["provisioningState"] = "Succeeded"
            elif kind == "microsoft.network/networkinterfaces":
                for config in properties.get("ipConfigurations") or []:
                    inner = config.setdefault("properties", {})
                    subnet_id = (inner.get("subnet") or {}).get("id", "")
                    vnet_id = subnet_id.split("/subnets/")[0]
                    public_id = (inner.get("publicIPAddress") or {}).get("id")
                    if not self._exists(vnet_id):
                        self._error(400, "InvalidResourceReference",
                                    f"Resource {subnet_id} referenced by resource "
                                    f"{resource_id} was not found.")
                        return
                    if public_id and not self._exists(public_id):
                        self._error(400, "InvalidResourceReference",
                                    f"Resource {public_id} was not found.")
                        return
                    config["id"] = f"{resource_id}/ipConfigurations/{config['name']}"
                    inner["privateIPAddress"] = f"10.42.0.{number}"
            elif kind == "microsoft.compute/virtualmachines":
                nics = (properties.get("networkProfile") or {}).get("networkInterfaces") or []
                if not nics or not all(self._exists(nic.get("id")) for nic in nics):
                    self._error(400, "InvalidParameter",
                                "Network interface references are missing or invalid.")
                    return
                properties["vmId"] = str(uuid.uuid4())
                disk = properties.setdefault("storageProfile", {}).setdefault("osDisk", {})
                disk_name = disk.setdefault("name", f"{name}_OsDisk_1_{uuid.uuid4().hex}")
                disk_id = (f"/subscriptions/{fake.subscription}/resourceGroups/"
                           f"{resource_id.split('/')[4]}/providers/Microsoft.Compute/disks/"
                           f"{disk_name}")
                disk.setdefault("managedDisk", {})["id"] = disk_id
                fake.resources[disk_id.lower()] = {
                    "id": disk_id, "name": disk_name, "type": "Microsoft.Compute/disks",
                    "location": data["location"], "tags": data.get("tags") or {},
                    "properties": {"diskSizeGB": disk.get("diskSizeGB", 30),
                                   "provisioningState": "Succeeded"}}
            properties["provisioningState"] = "Succeeded"
            canonical_type = "/".join(resource_id.split("/")[6:8])
            resource = {**data, "id": resource_id, "name": name, "type": canonical_type}
            created = resource_id.lower() not in fake.resources
            fake.resources[resource_id.lower()] = resource
            namespace = resource_id.split("/")[6]
            url = self._operation_url({"status": "Succeeded"}, namespace)
            answer = json.loads(json.dumps(resource))
            answer["properties"]["provisioningState"] = "Creating" if created else "Updating"
            self._send(201 if created else 200, answer,
                       {"Azure-AsyncOperation": url, "Retry-After": "0"})

        def _delete(self, key: str) -> None:
            resource = fake.resources.pop(key)
            if resource["type"] != "Microsoft.Compute/virtualMachines":
                return
            properties = resource.get("properties") or {}
            disk = (properties.get("storageProfile") or {}).get("osDisk") or {}
            if disk.get("deleteOption") == "Delete":
                fake.resources.pop(((disk.get("managedDisk") or {}).get("id") or "").lower(),
                                   None)
            for nic in (properties.get("networkProfile") or {}).get("networkInterfaces") or []:
                if (nic.get("properties") or {}).get("deleteOption") == "Delete":
                    fake.resources.pop(nic["id"].lower(), None)

        # -- resource graph -------------------------------------------------------------

        def _resource_graph(self, request: dict[str, Any]) -> None:
            query = str(request.get("query") or "")
            if "skuspotevictionrate" not in query or not query.startswith("SpotResources"):
                self._error(400, "BadRequest", "this fake answers the eviction rate query only")
                return
            rows = [{"skuName": size, "location": region, "evictionRate": rate}
                    for region, size, rate in EVICTION_RATES] \
                if fake.subscription in (request.get("subscriptions") or []) else []
            skip = int((request.get("options") or {}).get("$skipToken") or 0)
            page = rows[skip: skip + fake.page_size]
            answer: dict[str, Any] = {"totalRecords": len(rows), "count": len(page),
                                      "data": page, "facets": [], "resultTruncated": "false"}
            if skip + fake.page_size < len(rows):
                answer["$skipToken"] = str(skip + fake.page_size)
            self._send(200, answer)

        # -- retail prices ----------------------------------------------------------------

        def _prices(self, query: dict[str, str]) -> None:
            try:
                clauses = _odata_filter(query["$filter"]) if query.get("$filter") else []
            except ValueError as exc:
                self._send(400, {"Error": {"Code": "BadRequest", "Message": str(exc)}})
                return
            fields = {"priceType": "type"}  # filter names that differ from the item's
            items = [item for item in fake.price_items()
                     if all(str(item.get(fields.get(k, k), "")).lower() == v.lower()
                            for k, v in clauses)]
            skip = int(query.get("$skip", 0))
            page = items[skip: skip + fake.page_size]
            next_link = None
            if skip + fake.page_size < len(items):
                next_link = (f"{fake.prices_url}?$filter={quote(query.get('$filter', ''))}"
                             f"&$skip={skip + fake.page_size}")
            self._send(200, {"BillingCurrency": "USD", "CustomerEntityId": "Default",
                             "CustomerEntityType": "Retail", "Items": page,
                             "NextPageLink": next_link, "Count": len(page)})

        def do_GET(self) -> None:  # noqa: N802
            self._handle()

        def do_PUT(self) -> None:  # noqa: N802
            self._handle()

        def do_DELETE(self) -> None:  # noqa: N802
            self._handle()

        def do_POST(self) -> None:  # noqa: N802
            self._handle()

        def do_PATCH(self) -> None:  # noqa: N802
            self._handle()

    return Handler
