"""The provider interface: what the recruitment engine asks of a cloud (or of this
machine, or of a list of static hosts), and the data it gets back.

A provider creates, watches and deletes *instances* (machines that will run a worker),
lists the instances it owns, and describes what it sells (*offers*: flavors per region
with their price). Every instance we create carries the tag ``OWNER_TAG`` whose value is
the server's identity, so that several servers may share one account and each only ever
lists (and reaps) its own machines.

Errors are ``ProviderError``; ``CapacityError`` says "no room there, try elsewhere" (the
engine then keeps that flavor and region out for a while), ``CredentialsError`` says
which setting is missing or that the provider refused them. No message, log line or
``repr`` ever holds a secret: providers keep their settings to themselves and errors
name settings, never their values.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scitq_bench.exceptions import ScitqBenchError

# A flavor in a region as a provider sells it is the catalog's own type: ``gpu_mem_gb``
# is the total over the GPUs; ``cost`` per hour, on-demand or the spot price for a
# ``spot`` offer; ``eviction`` the spot rate in % per hour when the provider tells it.
from scitq_bench.recruiters.protofilter import Offer  # noqa: E402, F401 - re-exported

OWNER_TAG = "scitq-bench"
"""Tag key on every instance we create; its value is the server's identity."""


@dataclass(frozen=True)
class InstanceSpec:
    """What to create: the provider adds ``OWNER_TAG`` to ``tags`` itself."""

    name: str
    flavor: str
    region: str
    spot: bool = False
    ssh_public_key: str | None = None
    user_data: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Instance:
    """An instance as the provider sees it; ``status`` is an ``InstanceStatus`` value."""

    provider: str
    instance_id: str
    name: str
    region: str
    status: str
    address: str | None = None
    flavor: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


class ProviderError(ScitqBenchError):
    """The provider failed."""

    http_status = 502
    code = "provider_error"


class CapacityError(ProviderError):
    """No capacity, or a quota exceeded, at the provider: try another flavor or region."""

    http_status = 503
    code = "provider_capacity"


class CredentialsError(ProviderError):
    """Credentials are missing or were refused by the provider."""

    http_status = 502
    code = "provider_credentials"


class Provider(ABC):
    """One account at one provider. Instances are addressed by ``(instance_id,
    region)``; ``identity`` is the server's identity, the value of ``OWNER_TAG``."""

    name: str = ""
    # True when an instance is a worker already (no deploy playbook to run on it)
    starts_worker: bool = False

    def __init__(self, config: Mapping[str, Any], identity: str) -> None:
        if not identity:
            raise CredentialsError(f"{self.name}: the server identity (OWNER_TAG value) "
                                   "is empty")
        self.identity = identity

    def __repr__(self) -> str:  # settings may hold secrets: never show them
        return f"<{type(self).__name__} identity={self.identity!r}>"

    @abstractmethod
    def create(self, spec: InstanceSpec) -> Instance:
        """Start an instance; raises CapacityError when the provider has no room."""

    @abstractmethod
    def state(self, instance_id: str, region: str) -> Instance:
        """The instance now; status ``gone`` when it no longer exists."""

    @abstractmethod
    def delete(self, instance_id: str, region: str) -> None:
        """Delete the instance (and what was created with it); a missing one is fine."""

    @abstractmethod
    def list_owned(self) -> list[Instance]:
        """Instances tagged ``OWNER_TAG=identity``, in all configured regions."""

    @abstractmethod
    def offers(self) -> list[Offer]:
        """The flavor catalog with prices, in the configured regions."""

    @abstractmethod
    def check(self) -> str:
        """A cheap authenticated call: a short description, or CredentialsError."""

    def owner_tags(self, spec: InstanceSpec) -> dict[str, str]:
        """``spec.tags`` plus ``OWNER_TAG`` (which the spec cannot override)."""
        tags = {str(k): str(v) for k, v in spec.tags.items()}
        tags[OWNER_TAG] = self.identity
        return tags

    def owns(self, tags: Mapping[str, str] | None) -> bool:
        return bool(tags) and tags.get(OWNER_TAG) == self.identity  # type: ignore[union-attr]


# -- configuration helpers ----------------------------------------------------------------


def require(provider: str, config: Mapping[str, Any], *keys: str) -> None:
    """CredentialsError naming every key of ``keys`` that is missing or empty."""
    missing = [key for key in keys if config.get(key) in (None, "", [], {})]
    if missing:
        raise CredentialsError(f"{provider}: missing setting(s): {', '.join(missing)}")


def regions_of(provider: str, config: Mapping[str, Any], key: str = "regions") -> list[str]:
    """The configured regions: a list, or a comma-separated string."""
    value = config.get(key)
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    regions = [str(region) for region in value or [] if str(region)]
    if not regions:
        raise CredentialsError(f"{provider}: missing setting(s): {key}")
    return regions


def per_region(value: Any, region: str) -> Any:
    """A setting that may be one value for all regions or a mapping region -> value
    (``"*"`` as a fallback key)."""
    if isinstance(value, Mapping):
        return value.get(region, value.get("*"))
    return value


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(item) for item in value]


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    """Whether ``name`` matches one of the shell patterns (all names when none)."""
    from fnmatch import fnmatchcase

    patterns = list(patterns)
    return not patterns or any(fnmatchcase(name, pattern) for pattern in patterns)


def scrub(text: str, config: Mapping[str, Any], secret_keys: Iterable[str]) -> str:
    """``text`` with the values of the secret settings replaced by ``***``: provider
    messages are passed on, and some echo what they were sent."""
    for key in secret_keys:
        value = config.get(key)
        if isinstance(value, str) and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def env_or_config(config: Mapping[str, Any], key: str, env: str) -> Any:
    value = config.get(key)
    return value if value not in (None, "") else os.environ.get(env) or None


# -- registry ------------------------------------------------------------------------------

_PROVIDERS: dict[str, tuple[str, str]] = {
    "local": ("scitq_bench.recruiters.providers.local", "LocalProvider"),
    "ssh": ("scitq_bench.recruiters.providers.ssh", "SshProvider"),
    "aws": ("scitq_bench.recruiters.providers.aws", "AwsProvider"),
    "azure": ("scitq_bench.recruiters.providers.azure", "AzureProvider"),
    "ovh": ("scitq_bench.recruiters.providers.ovh", "OvhProvider"),
}


def known_providers() -> list[str]:
    return sorted(_PROVIDERS)


def provider_class(name: str) -> type[Provider]:
    from importlib import import_module

    from scitq_bench.exceptions import InvalidInput

    try:
        module, attribute = _PROVIDERS[name]
    except KeyError:
        raise InvalidInput(f"unknown provider {name!r}: known providers are "
                           f"{', '.join(known_providers())}") from None
    return getattr(import_module(module), attribute)


def build_provider(name: str, config: Mapping[str, Any], identity: str) -> Provider:
    """The provider ``name`` set up from ``config`` (its keys are in each provider
    module's docstring); ``identity`` is the value of ``OWNER_TAG`` on our instances.
    InvalidInput for an unknown name, CredentialsError naming missing settings."""
    return provider_class(name)(config or {}, identity)
