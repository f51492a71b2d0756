"""A small OVHcloud API for tests, over HTTP on 127.0.0.1, answering the calls the
``ovh`` provider makes through python-ovh's real request code:

- ``GET /1.0/auth/time`` (unsigned): the server time, which python-ovh signs with;
- every other call but the public catalog must carry a valid signature
  (``$1$`` + SHA1 of ``secret+consumer_key+METHOD+URL+body+timestamp``), else 403 with
  OVH's error codes (``INVALID_KEY``, ``INVALID_CREDENTIAL``);
- ``GET /1.0/cloud/project/{id}``; ``GET|POST /cloud/project/{id}/instance``
  (``?region=``), ``GET|DELETE /cloud/project/{id}/instance/{instance}`` (a new
  instance is ``BUILD`` once, then ``ACTIVE``); ``GET /cloud/project/{id}/flavor`` and
  ``/image`` (``?region=``, ``&osType=``); ``GET|POST /cloud/project/{id}/sshkey``;
- ``GET /1.0/order/catalog/public/cloud?ovhSubsidiary=`` (unsigned): the catalog's
  ``addons`` with hourly prices (in 1e-8 of the currency) and technical blobs.

``fail_next(method, path_end, status, message)`` makes the next matching call fail as
OVH does (JSON ``{"message": ...}``); ``calls`` records ``(method, path)``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

APP_KEY = "fake-application-key"
APP_SECRET = "fake-application-secret-0123456789"
CONSUMER_KEY = "fake-consumer-key-9876543210"
PROJECT = "0123456789abcdef0123456789abcdef"
REGIONS = ("GRA11", "BHS5")

# name, vcpus, ram MB, disk GB, technical blob of the catalog, hourly price (EUR)
FLAVORS: tuple[tuple[str, int, int, int, dict[str, Any], float], ...] = (
    ("b3-8", 2, 8000, 50, {"storage": {"disks": [{"capacity": 50, "technology": "SSD"}]}},
     0.0464),
    ("t2-45", 15, 45000, 400, {"gpu": {"model": "Tesla V100S", "number": 1,
                                        "memory": {"size": 32}},
                                "storage": {"disks": [{"capacity": 400,
                                                       "technology": "NVMe"}]}}, 2.19),
    ("h100-760", 60, 760000, 400, {"gpu": {"model": "H100", "number": 2,
                                           "memory": {"size": 80}},
                                   "storage": {"disks": [{"capacity": 400,
                                                          "technology": "NVMe"}]}}, 5.98),
    ("bm-s1", 8, 32000, 1000, {"server": {"range": "baremetal"},
                               "storage": {"disks": [{"capacity": 1000, "technology": "SSD"}]}},
     0.24),
    ("win-b3-8", 2, 8000, 50, {}, 0.09),
)


@dataclass
class FakeOvh:
    application_key: str = APP_KEY
    application_secret: str = APP_SECRET
    consumer_key: str = CONSUMER_KEY
    project: str = PROJECT
    regions: tuple[str, ...] = REGIONS
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    sshkeys: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    failures: list[tuple[str, str, int, str]] = field(default_factory=list)
    time_offset: int = 0

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """The API's base URL, as python-ovh's endpoints are written (ending in /1.0)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/1.0"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, method: str, path_end: str, status: int, message: str) -> None:
        with self.lock:
            self.failures.append((method, path_end, status, message))

    # -- data ---------------------------------------------------------------------------

    def flavors(self, region: str) -> list[dict[str, Any]]:
        return [{"id": f"{region.lower()}-{name}-id", "name": name, "region": region,
                 "vcpus": vcpus, "ram": ram, "disk": disk, "type": "ovh.ssd",
                 "osType": "windows" if name.startswith("win-") else "linux",
                 "available": True, "inboundBandwidth": 250, "outboundBandwidth": 250,
                 "planCodes": {"hourly": f"{name}.consumption",
                               "monthly": f"{name}.monthly.postpaid"}}
                for name, vcpus, ram, disk, _tech, _price in FLAVORS]

    def images(self, region: str) -> list[dict[str, Any]]:
        return [{"id": f"{region.lower()}-{slug}", "name": name, "region": region,
                 "type": os_type, "status": "active", "visibility": "public"}
                for slug, name, os_type in (("ubuntu2204", "Ubuntu 22.04", "linux"),
                                            ("debian12", "Debian 12", "linux"),
                                            ("win2022", "Windows Server 2022", "windows"))]

    def catalog(self) -> dict[str, Any]:
        addons = []
        for name, vcpus, ram, _disk, tech, price in FLAVORS:
            blob = {"cpu": {"cores": vcpus}, "memory": {"size": ram // 1000}, **tech}
            addons.append({
                "planCode": f"{name}.consumption", "invoiceName": f"{name} instance",
                "product": f"publiccloud-instance-{name}", "pricingType": "consumption",
                "pricings": [{"capacities": ["consumption"], "mode": "consumption",
                              "phase": 1, "interval": 1, "intervalUnit": "hour",
                              "price": round(price * 1e8), "tax": 0,
                              "type": "consumption", "quantity": {"min": 1}}],
                "blobs": {"technical": blob}})
            addons.append({"planCode": f"{name}.monthly.postpaid", "pricingType": "rental",
                           "pricings": [{"intervalUnit": "month", "interval": 1,
                                         "price": round(price * 1e8 * 360)}],
                           "blobs": {"technical": blob}})
        return {"catalogId": 1, "locale": {"currencyCode": "EUR", "subsidiary": "FR"},
                "plans": [{"planCode": "project.2018"}], "addons": addons}


def _handler(fake: FakeOvh) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, payload: Any) -> None:
            body = b"" if status == 204 else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-OVH-QUERYID", f"FR.fake.{uuid.uuid4().hex[:8]}")
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str, code: str | None = None) -> None:
            payload: dict[str, Any] = {"message": message}
            if code:
                payload["errorCode"] = code
                payload["httpCode"] = f"{status} Forbidden"
            self._send(status, payload)

        def _authorized(self, body: str) -> bool:
            headers = self.headers
            if headers.get("X-Ovh-Application") != fake.application_key:
                self._error(403, "Invalid application key", "INVALID_KEY")
                return False
            consumer = headers.get("X-Ovh-Consumer")
            stamp = headers.get("X-Ovh-Timestamp", "")
            if consumer != fake.consumer_key:
                self._error(403, "This credential does not exist", "INVALID_CREDENTIAL")
                return False
            url = f"http://{headers.get('Host')}{self.path}"
            expected = "$1$" + hashlib.sha1("+".join(
                [fake.application_secret, consumer, self.command, url, body, stamp]
            ).encode()).hexdigest()
            if headers.get("X-Ovh-Signature") != expected or not stamp.isdigit() or abs(
                    int(stamp) - int(time.time()) - fake.time_offset) > 60:
                self._error(400, "Invalid signature")
                return False
            return True

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            path = parts.path.removeprefix("/1.0")
            with fake.lock:
                fake.calls.append((self.command, path))
            if self.command == "GET" and path == "/auth/time":
                self._send(200, int(time.time()) + fake.time_offset)
                return
            if self.command == "GET" and path == "/order/catalog/public/cloud":
                if not query.get("ovhSubsidiary"):
                    self._error(400, "Missing parameter ovhSubsidiary")
                    return
                self._send(200, fake.catalog())
                return
            if not self._authorized(body):
                return
            with fake.lock:
                for index, (method, end, status, message) in enumerate(fake.failures):
                    if method == self.command and path.endswith(end):
                        del fake.failures[index]
                        self._error(status, message)
                        return
            data = json.loads(body) if body else None
            prefix = f"/cloud/project/{fake.project}"
            if not path.startswith(prefix):
                self._error(404, f"The requested object ({path}) does not exist")
                return
            rest = path[len(prefix):]
            with fake.lock:
                self._route(rest, query, data)

        def _route(self, rest: str, query: dict[str, str], data: Any) -> None:
            region = query.get("region")
            if rest == "" and self.command == "GET":
                self._send(200, {"project_id": fake.project, "projectName": "bench",
                                 "description": "bench", "status": "ok"})
            elif rest == "/flavor" and self.command == "GET":
                regions = [region] if region else list(fake.regions)
                self._send(200, [f for r in regions for f in fake.flavors(r)])
            elif rest == "/image" and self.command == "GET":
                regions = [region] if region else list(fake.regions)
                images = [i for r in regions for i in fake.images(r)]
                if query.get("osType"):
                    images = [i for i in images if i["type"] == query["osType"]]
                self._send(200, images)
            elif rest == "/sshkey" and self.command == "GET":
                self._send(200, list(fake.sshkeys.values()))
            elif rest == "/sshkey" and self.command == "POST":
                key = {"id": uuid.uuid4().hex, "name": data["name"],
                       "publicKey": data["publicKey"], "regions": list(fake.regions)}
                fake.sshkeys[key["id"]] = key
                self._send(200, key)
            elif rest == "/instance" and self.command == "GET":
                found = [i for i in fake.instances.values()
                         if not region or i["region"] == region]
                self._send(200, found)
            elif rest == "/instance" and self.command == "POST":
                self._create(data)
            elif rest.startswith("/instance/"):
                instance = fake.instances.get(rest.removeprefix("/instance/"))
                if instance is None:
                    self._error(404, "Instance not found")
                elif self.command == "GET":
                    self._send(200, dict(instance))
                    if instance["status"] == "BUILD":
                        instance["status"] = "ACTIVE"
                elif self.command == "DELETE":
                    del fake.instances[instance["id"]]
                    self._send(200, None)
                else:
                    self._error(405, "Method not allowed")
            else:
                self._error(404, "The requested object does not exist")

        def _create(self, data: dict[str, Any]) -> None:
            for key in ("flavorId", "imageId", "name", "region"):
                if not data.get(key):
                    self._error(400, f"Missing parameter {key}")
                    return
            region = data["region"]
            flavors = {f["id"]: f for f in fake.flavors(region)}
            if data["flavorId"] not in flavors:
                self._error(400, f"Flavor {data['flavorId']} does not exist in {region}")
                return
            if data["imageId"] not in {i["id"] for i in fake.images(region)}:
                self._error(400, f"Image {data['imageId']} does not exist in {region}")
                return
            if data.get("sshKeyId") and data["sshKeyId"] not in fake.sshkeys:
                self._error(400, "SSH key does not exist")
                return
            number = len(fake.instances) + 10
            instance = {
                "id": str(uuid.uuid4()), "name": data["name"], "region": region,
                "flavorId": data["flavorId"], "imageId": data["imageId"],
                "sshKeyId": data.get("sshKeyId"), "userData": data.get("userData"),
                "status": "BUILD", "created": "2024-01-01T00:00:00Z",
                "monthlyBilling": None, "planCode": flavors[data["flavorId"]]["planCodes"]["hourly"],
                "ipAddresses": [{"ip": f"51.75.0.{number}", "type": "public", "version": 4},
                                {"ip": f"10.0.0.{number}", "type": "private", "version": 4}],
            }
            fake.instances[instance["id"]] = instance
            self._send(200, dict(instance))

        def do_GET(self) -> None:  # noqa: N802
            self._handle()

        def do_POST(self) -> None:  # noqa: N802
            self._handle()

        def do_DELETE(self) -> None:  # noqa: N802
            self._handle()

        def do_PUT(self) -> None:  # noqa: N802
            self._handle()

    return Handler
