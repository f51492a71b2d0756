"""The storage settings file: per-store endpoints, credentials and transfer tuning.

Each SDK's own configuration comes first and is often all that is needed (boto3's
environment, ``~/.aws`` and instance role; ``AZURE_STORAGE_CONNECTION_STRING`` or
DefaultAzureCredential; ``~/.netrc`` for FTP). The file adds what they cannot say per
store, an S3-compatible endpoint for one bucket say::

    s3:
      "*": {endpoint_url: https://s3.gra.io.cloud.ovh.net, region: gra}
      reference-data: {endpoint_url: https://minio.lab:9000, profile: minio}
    azure:
      mylabdata: {connection_string: "DefaultEndpointsProtocol=https;..."}
    ftp:
      ftp.example.org: {user: alice, password: "...", cafile: /etc/ssl/lab-ca.pem}
    transfer: {concurrency: 8, chunk_mb: 16, attempts: 4}

It lives at ``$SCITQ_BENCH_STORAGE_CONFIG`` or ``~/.config/scitq_bench/storage.yaml``
and may hold secrets, so it must be readable by its owner only (as ssh insists for
its keys). Only the worker and the CLI read it: it never reaches the server, a task
or a log.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scitq_bench.exceptions import InvalidInput

CONFIG_VARIABLE = "SCITQ_BENCH_STORAGE_CONFIG"
DEFAULT_KEY = "*"
KNOWN = {
    "s3": {"endpoint_url", "region", "profile", "addressing_style", "access_key_id",
           "secret_access_key", "session_token"},
    "azure": {"connection_string", "account_key", "sas_token", "endpoint"},
    "ftp": {"user", "password", "passive", "cafile"},
}
TRANSFER_KEYS = {"concurrency", "chunk_mb", "attempts"}


@dataclass(frozen=True)
class TransferTuning:
    """How large transfers are cut and run: parts of ``chunk_mb``, ``concurrency`` at
    a time, each failed operation tried ``attempts`` times in all."""

    concurrency: int = 8
    chunk_mb: int = 16
    attempts: int = 4

    @property
    def chunk_bytes(self) -> int:
        return self.chunk_mb << 20


@dataclass(frozen=True)
class StorageConfig:
    sections: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    transfer: TransferTuning = TransferTuning()
    source: Path | None = None

    def settings_for(self, scheme: str, root: str) -> dict[str, Any]:
        """The settings of one store: its own entry over the section's "*" entry.
        ``ftps`` shares ``ftp``'s section; an Azure root is "account/container", its
        entry is the account's."""
        section = self.sections.get("ftp" if scheme == "ftps" else scheme, {})
        name = root.split("/", 1)[0] if scheme == "azure" else root
        return {**section.get(DEFAULT_KEY, {}), **section.get(name, {})}

    @classmethod
    def load(cls, path: Path | None = None) -> StorageConfig:
        """The file at ``path``, ``$SCITQ_BENCH_STORAGE_CONFIG`` or the default place;
        empty settings when there is none."""
        explicit = path or (Path(os.environ[CONFIG_VARIABLE]) if os.environ.get(CONFIG_VARIABLE)
                            else None)
        path = explicit or default_path()
        if not path.exists():
            if explicit is not None:
                raise InvalidInput(f"storage settings file {path} does not exist")
            return cls()
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise InvalidInput(f"storage settings file {path} may hold secrets but is readable "
                               f"by others (mode {mode:04o}): chmod 600 {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InvalidInput(f"storage settings file {path} is not valid YAML: {exc}") from None
        return cls.from_mapping(data, path)

    @classmethod
    def from_mapping(cls, data: Any, source: Path | None = None) -> StorageConfig:
        where = str(source or "storage settings")
        if not isinstance(data, dict):
            raise InvalidInput(f"{where}: must hold a mapping (s3, azure, ftp, transfer)")
        sections: dict[str, dict[str, dict[str, Any]]] = {}
        for name, value in data.items():
            if name == "transfer":
                continue
            if name not in KNOWN:
                raise InvalidInput(f"{where}: unknown section {name!r}; use "
                                   f"{', '.join(sorted([*KNOWN, 'transfer']))}")
            sections[name] = _stores(where, name, value)
        return cls(sections, _tuning(where, data.get("transfer")), source)


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "scitq_bench" / "storage.yaml"


def _stores(where: str, section: str, value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: {section} must map store names to settings")
    stores: dict[str, dict[str, Any]] = {}
    for store, settings in value.items():
        if not isinstance(settings, dict):
            raise InvalidInput(f"{where}: {section}.{store} must be a mapping of settings")
        unknown = set(settings) - KNOWN[section]
        if unknown:
            raise InvalidInput(f"{where}: {section}.{store}: unknown setting "
                               f"{sorted(unknown)[0]!r}; known: {', '.join(sorted(KNOWN[section]))}")
        stores[str(store)] = dict(settings)
    return stores


def _tuning(where: str, value: Any) -> TransferTuning:
    if value is None:
        return TransferTuning()
    if not isinstance(value, dict) or set(value) - TRANSFER_KEYS:
        raise InvalidInput(f"{where}: transfer takes {', '.join(sorted(TRANSFER_KEYS))}")
    for key, number in value.items():
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise InvalidInput(f"{where}: transfer.{key} must be a whole number, 1 or more")
    return TransferTuning(**value)
