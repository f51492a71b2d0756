"""/api/v1/flavors and /api/v1/quotas: the catalog of machines that recruitment hires
from, its updaters, and the quotas per provider and region."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from pydantic import Field

from scitq_bench.recruiters.protofilter import parse
from scitq_bench.server.api.registry import QueryParam, endpoint
from scitq_bench.server.context import server_context
from scitq_bench.server.recruit import catalog, updaters
from scitq_bench.server.schemas import DbInt, Strict
from scitq_bench.server.web import current_recruitment, float_arg, int_arg

bp = Blueprint("flavors", __name__)


class QuotaSet(Strict):
    """Fields left out keep their value; null removes a limit."""

    max_cpus: DbInt | None = Field(default=None, ge=0, description="cpus of live recruited "
                                 "workers at most (null: no limit)")
    max_instances: DbInt | None = Field(default=None, ge=0, description="live recruited "
                                      "workers at most (null: no limit)")
    preferred: bool | None = Field(default=None, description="offers of preferred regions "
                                   "come first among offers of the same cost")


@endpoint(bp, "/flavors", "GET",
          summary="Offers (a flavor in a region) that may be hired now, cheapest first, "
          "then preferred regions; quotas and exclusions respected",
          query=(QueryParam("protofilters", "filters separated by ':', e.g. cpu>=8:ram>=32 "
                            "(an 'auto:' prefix is allowed)"),
                 QueryParam("provider", "only this provider (auto: any)"),
                 QueryParam("region", "only this region (auto: any)"),
                 QueryParam("min_cpu", "at least this many cpus", "number"),
                 QueryParam("min_ram", "at least this much memory (GB)", "number"),
                 QueryParam("min_disk", "at least this much disk (GB)", "number"),
                 QueryParam("max_eviction", "at most this eviction rate (% per hour; "
                            "default 5 unless protofilters mention eviction)", "number"),
                 QueryParam("limit", "at most this many offers", "integer")))
def list_flavors() -> Any:
    text = request.args.get("protofilters", "").strip()
    protofilter = parse(text) if text else None
    with server_context().db.read() as session:
        offers = catalog.find_offers(
            session, protofilter=protofilter, provider=request.args.get("provider") or None,
            region=request.args.get("region") or None, min_cpu=float_arg("min_cpu", None),
            min_ram=float_arg("min_ram", None), min_disk=float_arg("min_disk", None),
            max_eviction=float_arg("max_eviction", None), limit=int_arg("limit"))
    return {"flavors": [o.to_dict() for o in offers]}


@endpoint(bp, "/flavors/update", "POST",
          summary="Refresh the catalog of one provider (or of every provider with an "
          "updater) from its updater",
          query=(QueryParam("provider", "the provider to update (default: all)"),))
def update_flavors() -> Any:
    ctx = server_context()
    return updaters.update_catalog(ctx.db, request.args.get("provider") or None,
                                   data_dir=ctx.settings.data_dir,
                                   recruitment=current_recruitment())


@endpoint(bp, "/quotas", "GET",
          summary="Quotas per provider and region, with what live recruited workers use")
def list_quotas() -> Any:
    with server_context().db.read() as session:
        return {"quotas": catalog.list_quotas(session)}


@endpoint(bp, "/quotas/<provider>/<region>", "PUT", body=QuotaSet,
          summary="Create or change the quota of a provider in a region")
def set_quota(provider: str, region: str, body: QuotaSet) -> Any:
    fields = {name: getattr(body, name) for name in body.model_fields_set}
    with server_context().db.write() as session:
        return catalog.set_quota(session, provider, region, **fields)
