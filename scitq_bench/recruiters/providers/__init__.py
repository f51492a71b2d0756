"""Providers: where workers' machines come from, behind one small interface
(``base.Provider``). ``build_provider(name, config, identity)`` sets one up:

- ``local``: worker processes on this machine (``local.py``);
- ``ssh``: a fixed list of hosts, taken and freed (``ssh.py``);
- ``aws``: EC2 through boto3 (``aws.py``);
- ``azure``: Azure VMs through azure-mgmt-compute/-network (``azure.py``);
- ``ovh``: OVHcloud public cloud through python-ovh (``ovh.py``).

The cloud SDKs are imported only when their provider is built.
"""

from scitq_bench.recruiters.providers.base import (
    OWNER_TAG,
    CapacityError,
    CredentialsError,
    Instance,
    InstanceSpec,
    Offer,
    Provider,
    ProviderError,
    build_provider,
    known_providers,
)

__all__ = [
    "OWNER_TAG",
    "CapacityError",
    "CredentialsError",
    "Instance",
    "InstanceSpec",
    "Offer",
    "Provider",
    "ProviderError",
    "build_provider",
    "known_providers",
]
