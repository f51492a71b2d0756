"""The flavor catalog page (admins): the offers recruitment may hire now, best first,
filtered by protofilters, provider and region, as ``GET /api/v1/flavors`` lists them
(the same ``catalog.find_offers``)."""

from __future__ import annotations

from typing import Any

from flask import request

from scitq_bench.exceptions import InvalidInput
from scitq_bench.recruiters.protofilter import Protofilter, parse
from scitq_bench.server.gui.web import page, reading, render
from scitq_bench.server.recruit import catalog

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
FIELDS = ("protofilters", "provider", "region", "limit")


@page("/flavors")
def flavors() -> Any:
    """A bad protofilter or limit is shown next to its box (400), never as a crash."""
    values = {key: (request.args.get(key) or "").strip()[:500] for key in FIELDS}
    errors: dict[str, str] = {}
    wanted = _protofilter(values["protofilters"], errors)
    limit = _limit(values["limit"], errors)
    offers: list[dict[str, Any]] = []
    with reading() as session:
        if not errors:
            try:
                found = catalog.find_offers(
                    session, protofilter=wanted, provider=values["provider"] or None,
                    region=values["region"] or None, limit=limit)
            except InvalidInput as exc:
                errors[exc.field or "protofilters"] = str(exc)
            else:
                offers = [offer.to_dict() for offer in found]
        providers = catalog.catalog_providers(session)
        regions = catalog.catalog_regions(session, 200)
    return render("flavors/list.html", status=400 if errors else 200, offers=offers,
                  values=values, errors=errors, limit=limit,
                  provider_choices=[("", "any provider")] + [(p, p) for p in providers],
                  regions=regions)


def _protofilter(text: str, errors: dict[str, str]) -> Protofilter | None:
    if not text:
        return None
    try:
        return parse(text)
    except InvalidInput as exc:
        errors["protofilters"] = str(exc)
        return None


def _limit(text: str, errors: dict[str, str]) -> int:
    if not text:
        return DEFAULT_LIMIT
    try:
        value = int(text)
    except ValueError:
        errors["limit"] = f"limit must be a whole number, not {text!r}"
        return DEFAULT_LIMIT
    if not 1 <= value <= MAX_LIMIT:
        errors["limit"] = f"limit must be between 1 and {MAX_LIMIT}"
        return DEFAULT_LIMIT
    return value


__all__ = ["flavors"]
