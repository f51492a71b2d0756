"""Catalog updaters, one per provider: each refreshes its provider's flavors and offers
(``catalog.upsert_offers``) within the session it is given and returns what changed.

``POST /flavors/update?provider=NAME`` (``scitq-bench flavor update -P NAME``) runs
``UPDATERS[NAME]`` (``local``), or the updater of a configured cloud provider: its
``offers()`` (instance types, sizes, flavors, with prices) fetched first, outside any
transaction, then stored. The recruitment loop also refreshes every configured
provider on a schedule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from scitq_bench.exceptions import InvalidInput
from scitq_bench.recruit.providers.base import Provider
from scitq_bench.server.db import Database
from scitq_bench.server.recruit.catalog import LOCAL, refresh_local_flavor, upsert_offers

log = logging.getLogger("scitq_bench.recruit")

Updater = Callable[[Session], dict[str, Any]]


def _server_data_dir() -> Path | None:
    """The running server's data directory (its disk is the local offer's disk); None
    outside a request, where the default data directory is used."""
    from flask import has_app_context

    if not has_app_context():
        return None
    from scitq_bench.server.context import server_context

    return server_context().settings.data_dir


def update_local(session: Session) -> dict[str, Any]:
    """This machine, measured again: cpus, memory, free disk, GPUs."""
    return refresh_local_flavor(session, _server_data_dir())


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


def configured_updaters() -> dict[str, Updater]:
    """The registered updaters, plus one per cloud provider the server is configured
    for (when recruitment runs in this process)."""
    found: dict[str, Updater] = dict(UPDATERS)
    runtime = _recruitment()
    if runtime is not None:
        for name in runtime.providers_config:
            if name not in found:
                found[name] = ProviderUpdater(name, runtime.runner.providers(name))
    return found


def get_updater(provider: str) -> Updater:
    known = UPDATERS if provider in UPDATERS else configured_updaters()
    updater = known.get(provider)
    if updater is None:
        raise InvalidInput(f"no catalog updater for provider {provider!r} (known: "
                           f"{', '.join(sorted(known))})")
    return updater


def _recruitment() -> Any:
    from flask import current_app, has_app_context

    from scitq_bench.server.recruit.runtime import EXTENSION

    return current_app.extensions.get(EXTENSION) if has_app_context() else None
