"""A fake AWS Price List service (``pricing:GetProducts``, JSON 1.1 protocol) on a
loopback port: boto3's own request code talks to it through ``endpoint_url``."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def product(region: str, instance_type: str, usd: str) -> str:
    """One Price List item, as the API returns them: a JSON document in a string."""
    return json.dumps({
        "product": {"productFamily": "Compute Instance", "attributes": {
            "instanceType": instance_type, "regionCode": region, "operatingSystem": "Linux",
            "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used"}},
        "terms": {"OnDemand": {"T1": {"priceDimensions": {"D1": {
            "unit": "Hrs", "pricePerUnit": {"USD": usd}}}}}},
    })


class FakePricing:
    def __init__(self, products: list[str], page_size: int = 2) -> None:
        self.products = products
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                target = self.headers.get("X-Amz-Target", "")
                fake.requests.append({"target": target, "body": body,
                                      "signed": "Signature=" in self.headers.get(
                                          "Authorization", "")})
                if target != "AWSPriceListService.GetProducts":
                    self._send(400, {"__type": "InvalidParameterException",
                                     "message": f"unknown target {target}"})
                    return
                wanted = {f["Field"]: f["Value"] for f in body.get("Filters", [])}
                found = [p for p in fake.products if all(
                    json.loads(p)["product"]["attributes"].get(k) == v
                    for k, v in wanted.items())]
                start = int(body.get("NextToken") or 0)
                page = found[start:start + page_size]
                answer: dict[str, Any] = {"FormatVersion": "aws_v1", "PriceList": page}
                if start + page_size < len(found):
                    answer["NextToken"] = str(start + page_size)
                self._send(200, answer)

            def _send(self, code: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
