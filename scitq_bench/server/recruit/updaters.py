"""Catalog updaters, one per provider: each refreshes its provider's flavors and offers
(``catalog.upsert_offers``) within the session it is given and returns what changed.

``POST /flavors/update?provider=NAME`` (``scitq-bench flavor update -P NAME``) runs
``UPDATERS[NAME]``; a provider module registers its updater here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from scitq_bench.exceptions import InvalidInput
from scitq_bench.server.recruit.catalog import LOCAL, refresh_local_flavor

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


def get_updater(provider: str) -> Updater:
    updater = UPDATERS.get(provider)
    if updater is None:
        raise InvalidInput(f"no catalog updater for provider {provider!r} (known: "
                           f"{', '.join(sorted(UPDATERS))})")
    return updater
