"""``ssh``: a fixed list of hosts (machines that exist already). Creating an instance
*takes* a free host of the asked flavor (nothing is provisioned: the deploy step installs
the worker over SSH with Ansible), deleting it frees the host.

Settings (a mapping):

- ``hosts`` (required): ``{name: {address, cpu, ram_gb, disk_gb, gpu_count, gpu_model,
  gpu_mem_gb (total), tags ("M", "N"...), flavor, user}}``; ``address`` is required,
  ``flavor`` defaults to the host's name (hosts with one flavor are interchangeable);
- ``state_file``: a JSON file keeping which host is taken by whom (written atomically),
  so that a restarted server still knows; without it this is kept in memory.

The region is ``static``; the instance id is the host's name; offers cost 0.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scitq_bench.exceptions import InvalidInput
from scitq_bench.recruiters.providers.base import (
    CapacityError,
    Instance,
    InstanceSpec,
    Offer,
    Provider,
    ProviderError,
    require,
)
from scitq_bench.states import InstanceStatus

REGION = "static"


class SshProvider(Provider):
    name = "ssh"

    def __init__(self, config: Mapping[str, Any], identity: str) -> None:
        super().__init__(config, identity)
        require(self.name, config, "hosts")
        self.hosts: dict[str, dict[str, Any]] = {}
        for host, values in dict(config["hosts"]).items():
            values = dict(values or {})
            if not values.get("address"):
                raise InvalidInput(f"ssh: host {host!r} has no address")
            values.setdefault("flavor", str(host))
            self.hosts[str(host)] = values
        self._state_file = Path(config["state_file"]) if config.get("state_file") else None
        self._taken: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    # -- taken hosts ----------------------------------------------------------------------

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._state_file is None:
            return self._taken
        if not self._state_file.exists():
            return {}
        try:
            return json.loads(self._state_file.read_text())
        except json.JSONDecodeError as exc:
            raise ProviderError(f"ssh: {self._state_file} is not valid JSON: {exc}") from None

    def _save(self, taken: dict[str, dict[str, Any]]) -> None:
        if self._state_file is None:
            self._taken = taken
            return
        self._state_file.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self._state_file.parent, prefix=".ssh-state")
        with os.fdopen(handle, "w") as out:
            json.dump(taken, out, indent=1, sort_keys=True)
        os.replace(temporary, self._state_file)

    def _instance(self, host: str, entry: Mapping[str, Any] | None) -> Instance:
        if entry is None or host not in self.hosts:
            return Instance(self.name, host, "", REGION, InstanceStatus.GONE.value)
        values = self.hosts[host]
        return Instance(self.name, host, entry.get("name", ""), REGION,
                        InstanceStatus.RUNNING.value,
                        address=str(values["address"]), flavor=str(values["flavor"]),
                        tags=dict(entry.get("tags") or {}))

    # -- interface --------------------------------------------------------------------

    def create(self, spec: InstanceSpec) -> Instance:
        if spec.region != REGION:
            raise InvalidInput(f"ssh: the only region is {REGION!r}, not {spec.region!r}")
        candidates = [host for host, values in self.hosts.items()
                      if values["flavor"] == spec.flavor]
        if not candidates:
            raise InvalidInput(f"ssh: no host of flavor {spec.flavor!r}")
        with self._lock:
            taken = self._load()
            free = [host for host in candidates if host not in taken]
            if not free:
                raise CapacityError(f"ssh: every host of flavor {spec.flavor!r} is taken")
            host = free[0]
            taken[host] = {"name": spec.name, "tags": self.owner_tags(spec)}
            self._save(taken)
            return self._instance(host, taken[host])

    def state(self, instance_id: str, region: str) -> Instance:
        with self._lock:
            return self._instance(instance_id, self._load().get(instance_id))

    def delete(self, instance_id: str, region: str) -> None:
        with self._lock:
            taken = self._load()
            if taken.pop(instance_id, None) is not None:
                self._save(taken)

    def list_owned(self) -> list[Instance]:
        with self._lock:
            taken = self._load()
        return [self._instance(host, entry) for host, entry in sorted(taken.items())
                if host in self.hosts and self.owns(entry.get("tags"))]

    def offers(self) -> list[Offer]:
        found: dict[str, Offer] = {}
        for values in self.hosts.values():
            flavor = str(values["flavor"])
            if flavor in found:
                continue
            gpus = int(values.get("gpu_count") or 0)
            tags = "".join(sorted(set(("G" if gpus else "") + str(values.get("tags") or ""))))
            found[flavor] = Offer(
                self.name, REGION, flavor, cpu=int(values.get("cpu") or 1),
                ram_gb=float(values.get("ram_gb") or 0), disk_gb=float(values.get("disk_gb") or 0),
                gpu_count=gpus, gpu_model=values.get("gpu_model"),
                gpu_mem_gb=float(values.get("gpu_mem_gb") or 0), tags=tags, cost=0.0)
        return list(found.values())

    def check(self) -> str:
        with self._lock:
            taken = self._load()
        return f"ssh: {len(self.hosts)} hosts, {len(self.hosts) - len(taken)} free"
