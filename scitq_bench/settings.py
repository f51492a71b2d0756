"""Settings, built once from the environment and optional files; no hidden globals.

Environment variables (stable, users rely on them):
``SCITQ_BENCH_DATA_DIR``, ``SCITQ_BENCH_DATABASE_URL``, ``SCITQ_BENCH_SERVER``,
``SCITQ_BENCH_TOKEN``, ``SCITQ_BENCH_LEASE_SECONDS``, ``SCITQ_BENCH_CONFIG``,
``SCITQ_BENCH_PUBLIC_URL``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scitq_bench.exceptions import InvalidInput

DEFAULT_PORT = 5000


def default_data_dir() -> Path:
    return Path(os.environ.get("SCITQ_BENCH_DATA_DIR") or Path.home() / ".scitq_bench")


def client_config_path() -> Path:
    """Where ``server init`` writes the CLI's server URL and token (mode 0600)."""
    explicit = os.environ.get("SCITQ_BENCH_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "scitq_bench" / "client.json"


@dataclass(frozen=True)
class ServerSettings:
    """Everything the server process needs; passed explicitly to the app factory."""

    data_dir: Path
    database_url: str
    lease_seconds: float = 30.0
    reaper_interval: float = 2.0
    run_reaper: bool = True
    claim_max_wait: float = 30.0
    # the URL workers reach this server at (recruited machines are given it)
    public_url: str | None = None
    # ``recruitment:`` in settings.yaml: providers' configuration (credentials included:
    # keep the file private), timeouts, caps; see docs/recruitment.md
    recruitment: dict[str, Any] = field(default_factory=dict)
    run_recruiter: bool = True

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"

    @classmethod
    def from_env(cls, data_dir: Path | str | None = None, **overrides: Any) -> ServerSettings:
        """Environment first, then ``<data_dir>/settings.yaml``, then defaults."""
        root = Path(data_dir) if data_dir else default_data_dir()
        file_values = _read_settings_file(root / "settings.yaml")
        url = (
            os.environ.get("SCITQ_BENCH_DATABASE_URL")
            or file_values.get("database_url")
            or f"sqlite:///{root / 'scitq_bench.db'}"
        )
        lease = os.environ.get("SCITQ_BENCH_LEASE_SECONDS") or file_values.get("lease_seconds", 30)
        recruitment = file_values.get("recruitment") or {}
        if not isinstance(recruitment, dict):
            raise InvalidInput(f"{root / 'settings.yaml'}: recruitment must be a mapping")
        values: dict[str, Any] = {
            "data_dir": root,
            "database_url": url,
            "lease_seconds": _positive_float("lease_seconds", lease),
            "public_url": os.environ.get("SCITQ_BENCH_PUBLIC_URL") or file_values.get("public_url"),
            "recruitment": recruitment,
        }
        values.update(overrides)
        return cls(**values)


def _positive_float(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"setting {name} must be a number, got {value!r}") from None
    if number <= 0:
        raise InvalidInput(f"setting {name} must be positive, got {value!r}")
    return number


def _read_settings_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} must hold a mapping of settings")
    return data


@dataclass(frozen=True)
class ClientSettings:
    server: str
    token: str | None


def load_client_settings(server: str | None = None, token: str | None = None) -> ClientSettings:
    """Arguments first, then environment, then the config file ``server init`` wrote."""
    stored: dict[str, Any] = {}
    path = client_config_path()
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"client config {path} is not valid JSON: {exc}") from None
    url = (
        server
        or os.environ.get("SCITQ_BENCH_SERVER")
        or stored.get("server")
        or f"http://127.0.0.1:{DEFAULT_PORT}"
    )
    return ClientSettings(
        server=url.rstrip("/"),
        token=token or os.environ.get("SCITQ_BENCH_TOKEN") or stored.get("token"),
    )


def write_client_config(server: str, token: str) -> Path:
    """Store the URL and token readable by the owner only (0600)."""
    path = client_config_path()
    write_private(path, json.dumps({"server": server, "token": token}))
    return path


def write_private(path: Path, text: str) -> None:
    """Write a secret readable by the owner only (0600, also when the file existed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
