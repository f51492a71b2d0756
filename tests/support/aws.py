"""The EC2 provider's configuration for tests against moto's in-process EC2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SECRET = "wJalrXUtnFEMI-this-is-the-secret-key"
REGIONS = ["us-east-1", "eu-west-1"]


def aws_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """A complete ``aws`` provider configuration (its price table under ``tmp_path``)."""
    images = {"us-east-1": "ami-0a1b2c3d4e5f60001", "*": "ami-0a1b2c3d4e5f60002"}
    table = tmp_path / "prices.json"
    table.write_text(json.dumps({"us-east-1": {"g4dn.xlarge": 0.526}, "*": {"t3.micro": 0.0104}}))
    return {"regions": REGIONS, "aws_access_key_id": "AKIAEXAMPLEKEY",
            "aws_secret_access_key": SECRET, "image_id": images, "price_table": str(table),
            "flavors": ["g4dn.*", "c5d.metal", "t3.micro"], **extra}
