"""The deploy form: hire machines now, as ``POST /api/v1/workers/deploy`` does (the same
request model, the same service), with the flavor catalog as autocompletion."""

from __future__ import annotations

import re
from typing import Any

from flask import request, url_for
from sqlalchemy.orm import Session

from scitq_bench.exceptions import InvalidInput
from scitq_bench.recruiters import protofilter
from scitq_bench.server.context import server_context
from scitq_bench.server.gui import model_forms
from scitq_bench.server.gui.web import done, form_int, page, reading, render
from scitq_bench.server.queue import batches
from scitq_bench.server.recruit import catalog
from scitq_bench.server.recruit import service as recruit
from scitq_bench.server.recruit.runtime import NOT_RUNNING
from scitq_bench.server.recruit.schemas import DeployRequest
from scitq_bench.server.web import current_recruitment

TEXT_FIELDS = ("flavor", "provider", "region", "batch", "name")
DEFAULTS = {"flavor": "", "provider": "auto", "region": "auto", "batch": "", "number": "1",
            "concurrency": "", "prefetch": "0", "name": "", "permanent": ""}
SUGGESTIONS = 40
ITEM = re.compile(r"[A-Za-z_]*")  # the item a condition begins with
STARTERS = ["auto:cpu>=2", "auto:cpu>=8:ram>=32", "auto:cpu>=32:ram>=128",
            "auto:gpu>=1", "auto:gpu>=1:gpumem>=24", "auto:tags#N:disk>=500",
            "auto:cost<=0.5", "auto:cpu>=16:eviction<=20"]
# one or two typical conditions per protofilter item, offered after ``auto:``
ITEM_EXAMPLES = {
    "cpu": ["cpu>=2", "cpu>=8", "cpu>=32"], "ram": ["ram>=8", "ram>=32", "ram>=128"],
    "disk": ["disk>=100", "disk>=500"], "tags": ["tags#G", "tags#N", "tags~%"],
    "gpumem": ["gpumem>=24", "gpumem>=80"], "eviction": ["eviction<=5", "eviction<=20"],
    "cost": ["cost<=0.5", "cost<=2"], "gpu": ["gpu>=1", "gpu>=4"],
    "gpumodel": ["gpumodel~%A100%", "gpumodel~%H100%"],
}


@page("/workers/deploy", methods=("GET", "POST"))
def worker_deploy() -> Any:
    if request.method == "GET":
        return _form(dict(DEFAULTS), {})
    values = {key: (request.form.get(key) or "").strip() for key in DEFAULTS}
    errors: dict[str, str] = {}
    number = form_int("number", errors, minimum=1)
    concurrency = form_int("concurrency", errors, minimum=1, required=False)
    prefetch = form_int("prefetch", errors, minimum=0)
    body = None
    if not errors:
        fields = {key: values[key] for key in TEXT_FIELDS if values[key]}
        body = model_forms.validate(DeployRequest, {
            **fields, "number": number, "concurrency": concurrency, "prefetch": prefetch,
            "permanent": bool(values["permanent"])}, errors)
    runtime = current_recruitment()
    if body is not None and runtime is None:
        errors["_form"] = NOT_RUNNING
    if body is None or runtime is None:
        return _form(values, errors, status=400)
    try:
        jobs = recruit.deploy_now(server_context().db, runtime, body)
    except InvalidInput as exc:
        errors[exc.field or "flavor"] = str(exc)
        return _form(values, errors, status=400)
    ids = ", ".join(str(job["id"]) for job in jobs)
    return done(f"{len(jobs)} deploy job(s) started ({ids}): the new workers appear below "
                "and come up as their machines start.", url_for("gui.workers"))


def _form(values: dict[str, str], errors: dict[str, str], status: int = 200) -> Any:
    with reading() as session:
        context = deploy_choices(session)
    return render("workers/deploy.html", values=values, errors=errors, status=status,
                  **context)


def deploy_choices(session: Session) -> dict[str, Any]:
    """What the form offers: providers, regions, batches, flavor suggestions, and
    whether recruitment runs here at all."""
    runtime = current_recruitment()
    providers = runtime.configured_providers() if runtime else sorted(
        catalog.catalog_providers(session))
    regions = catalog.catalog_regions(session, 200)
    names = batches.recent_names(session, 100)
    return {"recruiting": runtime is not None, "not_running": NOT_RUNNING,
            "provider_choices": [("auto", "auto (cheapest)")] + [(p, p) for p in providers],
            "regions": regions, "batches": names,
            "flavor_suggestions": suggest_flavors(session, "")}


@page("/workers/deploy/flavors")
def worker_deploy_flavors() -> Any:
    """Suggestions for what is typed in the flavor field so far."""
    with reading() as session:
        return {"suggestions": suggest_flavors(session, request.args.get("q", "")[:500])}


def suggest_flavors(session: Session, typed: str) -> list[str]:
    """Flavor names of the catalog that begin with ``typed``, or, once it starts as a
    protofilter, the ways to go on: each suggestion begins with what was typed, as a
    datalist shows it."""
    typed = typed.strip()
    if typed.startswith("auto"):
        return _protofilter_steps(session, typed)[:SUGGESTIONS]
    names = catalog.flavor_names(session, typed, SUGGESTIONS)
    starters = [s for s in STARTERS if s.startswith(typed)]
    return (starters + names)[:SUGGESTIONS]


def _protofilter_steps(session: Session, typed: str) -> list[str]:
    if typed in ("auto", "auto:"):
        return STARTERS
    head, _, last = typed.rpartition(":")
    examples = _examples(session)
    used = {ITEM.match(part).group(0) for part in head.split(":")[1:]}  # type: ignore[union-attr]
    if not last:
        return [typed + e for item, found in examples.items() if item not in used
                for e in found[:1]]
    try:
        condition = protofilter.parse_condition(last)
    except InvalidInput:
        return [f"{head}:{e}" for found in examples.values() for e in found
                if e.startswith(last)]
    used.add(condition.item)
    return [typed] + [f"{typed}:{found[0]}" for item, found in examples.items()
                      if found and item not in used]


def _examples(session: Session) -> dict[str, list[str]]:
    """Conditions to offer, with the catalog's own providers and regions."""
    providers = catalog.catalog_providers(session)
    regions = catalog.catalog_regions(session, 20)
    return {**ITEM_EXAMPLES, "provider": [f"provider=={p}" for p in providers],
            "region": [f"region=={r}" for r in regions]}
