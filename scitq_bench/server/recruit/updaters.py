"""Catalog updaters, one per provider: each refreshes its provider's flavors and offers
(``catalog.upsert_offers``) within the session it is given and returns what changed.

``POST /flavors/update?provider=NAME`` (``scitq-bench flavor update -P NAME``) runs
``UPDATERS[NAME]`` (``local``), or the updater of a configured cloud provider: its
``offers()`` (instance types, sizes, flavors, with prices) fetched first, outside any
transaction, then stored. The recruitment loop also refreshes every configured
provider on a schedule.

The caller hands over what the catalog needs of the server: its data directory (whose
disk is the local offer's disk) and its recruitment (the configured cloud providers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session

from scitq_bench.exceptions import InvalidInput
from scitq_bench.recruiters.providers.base import Provider
from scitq_bench.server.db import Database
from scitq_bench.server.recruit.catalog import LOCAL, refresh_local_flavor, upsert_offers

log = logging.getLogger("scitq_bench.recruit")

Updater = Callable[[Session], dict[str, Any]]


class CloudProviders(Protocol):
    """What the catalog needs of the recruitment (``runtime.Recruitment``): the names of
    the configured providers, and each provider."""

    providers_config: dict[str, Any]

    def provider(self, name: str) -> Provider: ...


def update_local(session: Session, data_dir: Path | None = None) -> dict[str, Any]:
    """This machine, measured again: cpus, memory, free disk (of ``data_dir``, the
    server's; the default data directory without it), GPUs."""
    return refresh_local_flavor(session, data_dir)


UPDATERS: dict[str, Updater] = {LOCAL: update_local}


class ProviderUpdater:
    """A cloud provider's catalog: ``fetch()`` asks the provider (slow: call it before
    opening the write transaction), calling it stores what was fetched."""

    def __init__(self, name: str, provider: Provider) -> None:
        self.name, self.provider = name, provider
        self.offers: list[Any] | None = None

    def fetch(self) -> None:
        self.offers = self.provider.offers()

    def __call__(self, session: Session) -> dict[str, Any]:
        if self.offers is None:
            self.fetch()
        return upsert_offers(session, self.name, self.offers or [])


def refresh(db: Database, updater: Updater) -> dict[str, Any]:
    """Run one updater: the provider's API first (``fetch``, when it has one), outside
    the write transaction, then the catalog's rows."""
    fetch = getattr(updater, "fetch", None)
    if fetch is not None:
        fetch()
    with db.write() as session:
        return updater(session)


def refresh_all(db: Database, updaters: dict[str, Updater]) -> tuple[dict[str, Any],
                                                                     dict[str, str]]:
    """Every updater, each on its own: (what changed, per provider; errors, per
    provider). One provider failing must not keep the others stale."""
    updated: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, updater in sorted(updaters.items()):
        try:
            updated[name] = refresh(db, updater)
        except Exception as exc:  # noqa: BLE001 - reported, the others go on
            log.warning("catalog update of %s failed: %s", name, exc)
            errors[name] = str(exc) or type(exc).__name__
    return updated, errors


def configured_updaters(data_dir: Path | None = None,
                        recruitment: CloudProviders | None = None) -> dict[str, Updater]:
    """The registered updaters, plus one per cloud provider ``recruitment`` is configured
    for (where recruitment runs in this process)."""
    found: dict[str, Updater] = {name: _measuring(updater, data_dir)
                                 for name, updater in UPDATERS.items()}
    if recruitment is not None:
        for name in recruitment.providers_config:
            if name not in found:
                found[name] = ProviderUpdater(name, recruitment.provider(name))
    return found


def get_updater(provider: str, data_dir: Path | None = None,
                recruitment: CloudProviders | None = None) -> Updater:
    known = UPDATERS if provider in UPDATERS else configured_updaters(data_dir, recruitment)
    updater = known.get(provider)
    if updater is None:
        raise InvalidInput(f"no catalog updater for provider {provider!r} (known: "
                           f"{', '.join(sorted(known))})")
    return _measuring(updater, data_dir)


def _measuring(updater: Updater, data_dir: Path | None) -> Updater:
    """The local updater, set to measure the disk of ``data_dir``; others as they are."""
    if updater is update_local and data_dir is not None:
        return partial(update_local, data_dir=data_dir)
    return updater


def update_catalog(db: Database, provider: str | None, *, data_dir: Path | None = None,
                   recruitment: CloudProviders | None = None) -> dict[str, Any]:
    """Refresh one provider's catalog, or every provider's (each on its own):
    ``{"updated": {provider: counts}, "errors": {provider: message}}``."""
    if provider is not None:
        updater = get_updater(provider, data_dir, recruitment)
        return {"updated": {provider: refresh(db, updater)}, "errors": {}}
    updated, errors = refresh_all(db, configured_updaters(data_dir, recruitment))
    return {"updated": updated, "errors": errors}
