"""The flavor catalog: which machines can be hired where, at what price, within which
quotas. No Flask: the API, the recruiters and the updaters call these functions with a
session.

``find_offers`` is the one place offers are chosen, for ``flavor list`` as for
recruitment with protofilters: available offers only (not excluded after a capacity
failure), filtered, within quotas, cheapest first, then preferred regions, then by
provider, region and flavor name.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, String, and_, func, or_, select
from sqlalchemy.orm import Session

from scitq_bench import hostprobe
from scitq_bench.exceptions import InvalidInput
from scitq_bench.recruiters.protofilter import Condition, Offer, Protofilter
from scitq_bench.server.queue.models import Worker, utcnow
from scitq_bench.server.recruit.models import Flavor, FlavorMetric, Quota
from scitq_bench.settings import default_data_dir
from scitq_bench.states import WorkerStatus

ANY = "auto"
LOCAL = "local"
# workers in these statuses no longer hold their machine's share of a quota
GONE_STATUSES = (WorkerStatus.FAILED.value, WorkerStatus.EVICTED.value)


class _Keep:
    """``set_quota``'s default: leave the field as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()


def naive_utc(moment: datetime) -> datetime:
    """Datetimes are stored as naive UTC; an aware one is converted."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


# -- finding offers ------------------------------------------------------------------


def find_offers(
    session: Session,
    *,
    protofilter: Protofilter | None = None,
    provider: str | None = None,
    region: str | None = None,
    min_cpu: float | None = None,
    min_ram: float | None = None,
    min_disk: float | None = None,
    max_eviction: float | None = None,
    limit: int | None = None,
    now: datetime | None = None,
) -> list[Offer]:
    """Offers that may be hired now, best first.

    ``provider``/``region``: None or ``auto`` for any. ``min_*`` and ``max_eviction`` add
    ``cpu>=``, ``ram>=``, ``disk>=`` and ``eviction<=`` conditions (``max_eviction``
    replaces the default ``eviction<=5``). An offer is left out when hiring it would
    exceed its provider and region's quota (``max_cpus`` counting the live recruited
    workers' cpus plus this flavor's, or ``max_instances``)."""
    if limit is not None and limit < 0:
        raise InvalidInput(f"limit must be 0 or more, got {limit}")
    extra = [Condition(item, op, float(value)) for item, op, value in (
        ("cpu", ">=", min_cpu), ("ram", ">=", min_ram), ("disk", ">=", min_disk),
        ("eviction", "<=", max_eviction)) if value is not None]
    wanted = (protofilter or Protofilter()).extended(*extra)
    moment = naive_utc(now) if now else utcnow()

    stmt = (
        select(Flavor, FlavorMetric)
        .join(FlavorMetric, FlavorMetric.flavor_id == Flavor.id)
        .where(FlavorMetric.available.is_(True),
               or_(FlavorMetric.excluded_until.is_(None),
                   FlavorMetric.excluded_until <= moment))
    )
    if provider and provider != ANY:
        stmt = stmt.where(Flavor.provider == provider)
    if region and region != ANY:
        stmt = stmt.where(FlavorMetric.region == region)
    pushed = [clause for c in wanted.effective if (clause := _sql(c)) is not None]
    if pushed:
        stmt = stmt.where(and_(*pushed))

    offers = [o for o in (offer_from(f, m) for f, m in session.execute(stmt))
              if wanted.matches(o)]
    quotas = {(q.provider, q.region): q for q in session.scalars(select(Quota))}
    usage = live_usage(session)
    offers = [o for o in offers if _within_quota(o, quotas, usage)]

    def rank(offer: Offer) -> tuple[Any, ...]:
        quota = quotas.get((offer.provider, offer.region))
        return (offer.cost is None, offer.cost or 0.0, not (quota and quota.preferred),
                offer.provider, offer.region, offer.flavor)

    offers.sort(key=rank)
    return offers if limit is None else offers[:limit]


def _sql(condition: Condition) -> ColumnElement[bool] | None:
    """The condition in SQL when it means exactly the same there (numbers, exact texts);
    None leaves it to ``Protofilter.matches``, which checks every offer anyway."""
    columns: dict[str, Any] = {
        "cpu": Flavor.cpu, "ram": Flavor.ram_gb, "disk": Flavor.disk_gb,
        "gpu": Flavor.gpu_count, "cost": FlavorMetric.cost,
        "eviction": func.coalesce(FlavorMetric.eviction, 0.0),
    }
    op, value = condition.comparator, condition.value
    if condition.item in columns and isinstance(value, float):
        column = columns[condition.item]
        return {"==": column == value, "!=": column != value, ">=": column >= value,
                ">": column > value, "<": column < value, "<=": column <= value}[op]
    texts = {"provider": Flavor.provider, "region": FlavorMetric.region}
    if condition.item in texts and op == "==":
        return texts[condition.item] == value
    return None


def offer_from(flavor: Flavor, metric: FlavorMetric) -> Offer:
    """A catalog row (a flavor and one of its regions) as an offer."""
    count = flavor.gpu_count or 0
    return Offer(
        provider=flavor.provider, region=metric.region, flavor=flavor.name, cpu=flavor.cpu,
        ram_gb=flavor.ram_gb, disk_gb=flavor.disk_gb or 0.0, gpu_count=count,
        gpu_model=flavor.gpu_model, gpu_mem_gb=round(count * (flavor.gpu_mem_gb or 0.0), 3),
        tags=flavor.tags or "", cost=metric.cost, eviction=metric.eviction,
        spot=bool(metric.spot),
    )


def live_usage(session: Session) -> dict[tuple[str, str], tuple[int, int]]:
    """(instances, cpus) of the live recruited workers per provider and region: not
    released, neither failed nor evicted."""
    rows = session.execute(
        select(Worker.provider, Worker.region, func.count(Worker.id),
               func.coalesce(func.sum(Worker.cpus), 0))
        .where(Worker.provider.is_not(None), Worker.region.is_not(None),
               Worker.released_at.is_(None), Worker.status.not_in(GONE_STATUSES))
        .group_by(Worker.provider, Worker.region)
    )
    # the query leaves out a worker without a provider or a region
    return {(p, r): (int(n), int(c or 0)) for p, r, n, c in rows
            if p is not None and r is not None}


def _within_quota(offer: Offer, quotas: dict[tuple[str, str], Quota],
                  usage: dict[tuple[str, str], tuple[int, int]]) -> bool:
    quota = quotas.get((offer.provider, offer.region))
    if quota is None:
        return True
    instances, cpus = usage.get((offer.provider, offer.region), (0, 0))
    if quota.max_instances is not None and instances + 1 > quota.max_instances:
        return False
    return quota.max_cpus is None or cpus + offer.cpu <= quota.max_cpus


# -- writing the catalog -------------------------------------------------------------


def upsert_offers(session: Session, provider: str, offers: Iterable[Offer]) -> dict[str, int]:
    """Make the catalog of ``provider`` what ``offers`` say: flavors created or updated,
    their regional metrics created or updated (available again), and the provider's
    other metrics marked unavailable. Exclusions after capacity failures are kept."""
    offers = list(offers)
    for offer in offers:
        _check_offer(provider, offer)
    now = utcnow()
    flavors = {f.name: f for f in session.scalars(select(Flavor).where(Flavor.provider == provider))}
    metrics = {(f.name, m.region, m.spot): m for f, m in session.execute(
        select(Flavor, FlavorMetric).join(FlavorMetric, FlavorMetric.flavor_id == Flavor.id)
        .where(Flavor.provider == provider))}
    counts = {"flavors_created": 0, "flavors_updated": 0, "offers_created": 0,
              "offers_updated": 0, "offers_unavailable": 0}
    seen_flavors: set[str] = set()
    for offer in offers:
        flavor = flavors.get(offer.flavor)
        if flavor is None:
            flavor = flavors[offer.flavor] = Flavor(provider=provider, name=offer.flavor)
            session.add(flavor)
            counts["flavors_created"] += 1
        elif offer.flavor not in seen_flavors:
            counts["flavors_updated"] += 1
        seen_flavors.add(offer.flavor)
        flavor.cpu = offer.cpu
        flavor.ram_gb = offer.ram_gb
        flavor.disk_gb = offer.disk_gb
        flavor.gpu_count = offer.gpu_count
        flavor.gpu_model = offer.gpu_model
        flavor.gpu_mem_gb = offer.gpu_mem_gb / offer.gpu_count if offer.gpu_count else 0.0
        flavor.tags = "".join(sorted(set(offer.tags.upper())))
        flavor.updated_at = now
    session.flush()  # ids of the new flavors
    seen_offers: set[tuple[str, str, bool]] = set()
    for offer in offers:
        key = (offer.flavor, offer.region, bool(offer.spot))
        metric = metrics.get(key)
        if metric is None:
            metric = metrics[key] = FlavorMetric(flavor_id=flavors[offer.flavor].id,
                                                 region=offer.region, spot=bool(offer.spot))
            session.add(metric)
            counts["offers_created"] += 1
        elif key not in seen_offers:
            counts["offers_updated"] += 1
        seen_offers.add(key)
        metric.cost = offer.cost
        metric.eviction = offer.eviction
        metric.available = True
        metric.updated_at = now
    for key, metric in metrics.items():
        if key not in seen_offers and metric.available:
            metric.available = False
            metric.updated_at = now
            counts["offers_unavailable"] += 1
    session.flush()
    return counts


def _check_offer(provider: str, offer: Offer) -> None:
    where = f"offer {offer.provider}/{offer.region}/{offer.flavor}"
    if offer.provider != provider:
        raise InvalidInput(f"{where}: its provider is not {provider}")
    for name, value, size in (("provider", offer.provider, 50), ("region", offer.region, 100),
                              ("flavor", offer.flavor, 100), ("tags", offer.tags, 20)):
        if (not value and name != "tags") or len(value) > size:
            raise InvalidInput(f"{where}: {name} must have 1 to {size} characters")
    if offer.cpu < 0 or offer.ram_gb < 0 or offer.disk_gb < 0 or offer.gpu_count < 0:
        raise InvalidInput(f"{where}: negative cpu, ram, disk or GPU count")


def exclude(session: Session, provider: str, region: str, flavor: str,
            until: datetime) -> bool:
    """Keep an offer out of ``find_offers`` until ``until`` (naive UTC), e.g. after the
    provider had no capacity for it. False when the catalog does not have this offer."""
    metric = session.scalar(
        select(FlavorMetric).join(Flavor, Flavor.id == FlavorMetric.flavor_id)
        .where(Flavor.provider == provider, Flavor.name == flavor,
               FlavorMetric.region == region))
    if metric is None:
        return False
    metric.excluded_until = naive_utc(until)
    session.flush()
    return True


# -- quotas --------------------------------------------------------------------------


def set_quota(session: Session, provider: str, region: str, max_cpus: Any = KEEP,
              max_instances: Any = KEEP, preferred: Any = KEEP) -> dict[str, Any]:
    """Create or change the quota of a provider in a region. A field left out keeps its
    value (a new quota: no limit, not preferred); ``None`` removes a limit."""
    if not provider or not region or provider == ANY or region == ANY:
        raise InvalidInput("a quota needs a provider and a region (not auto)")
    for name, text in (("provider", provider), ("region", region)):
        column_type = Quota.__table__.c[name].type
        longest = column_type.length if isinstance(column_type, String) else None
        if longest is not None and len(text) > longest:
            raise InvalidInput(f"{name}: at most {longest} characters", field=name)
    for name, value in (("max_cpus", max_cpus), ("max_instances", max_instances)):
        if value is not KEEP and value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidInput(f"{name} must be a whole number, 0 or more, or None "
                               f"(no limit); got {value!r}")
    quota = session.scalar(select(Quota).where(Quota.provider == provider,
                                               Quota.region == region))
    if quota is None:
        quota = Quota(provider=provider, region=region, preferred=False)
        session.add(quota)
    if max_cpus is not KEEP:
        quota.max_cpus = max_cpus
    if max_instances is not KEEP:
        quota.max_instances = max_instances
    if preferred is not KEEP and preferred is not None:
        quota.preferred = bool(preferred)
    session.flush()
    return _quota_dict(quota, live_usage(session))


def list_quotas(session: Session) -> list[dict[str, Any]]:
    """Every quota with what the live recruited workers use of it."""
    usage = live_usage(session)
    quotas = session.scalars(select(Quota).order_by(Quota.provider, Quota.region))
    return [_quota_dict(q, usage) for q in quotas]


def _quota_dict(quota: Quota, usage: dict[tuple[str, str], tuple[int, int]]) -> dict[str, Any]:
    instances, cpus = usage.get((quota.provider, quota.region), (0, 0))
    return {"provider": quota.provider, "region": quota.region, "max_cpus": quota.max_cpus,
            "max_instances": quota.max_instances, "preferred": bool(quota.preferred),
            "cpus_used": cpus, "instances_used": instances}


# -- this machine --------------------------------------------------------------------


def local_offer(data_dir: Path | None = None) -> Offer:
    """This machine as an offer of the ``local`` provider: its cpus, memory, the free
    space where the data directory is, its GPUs; no cost, never evicted."""
    count, model, per_gpu = hostprobe.summarize(hostprobe.detect_gpus())
    return Offer(
        provider=LOCAL, region=LOCAL, flavor=LOCAL, cpu=hostprobe.cpu_count(),
        ram_gb=hostprobe.memory_gb(digits=1),
        disk_gb=_free_gb(Path(data_dir) if data_dir else default_data_dir()),
        gpu_count=count, gpu_model=model, gpu_mem_gb=round(count * (per_gpu or 0.0), 1),
        tags="G" if count else "", cost=0.0, eviction=None,
    )


def _free_gb(directory: Path) -> float:
    import psutil

    path = directory.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return round(psutil.disk_usage(str(path)).free / hostprobe.GB, 1)
    except OSError:
        return 0.0


def refresh_local_flavor(session: Session, data_dir: Path | None = None) -> dict[str, int]:
    """Measure this machine again and write it as the ``local`` provider's one offer."""
    return upsert_offers(session, LOCAL, [local_offer(data_dir)])


def ensure_local_flavor(session: Session, data_dir: Path | None = None) -> bool:
    """Put this machine in the catalog if it is not there yet (cheap when it is); True
    when it was added."""
    present = session.scalar(
        select(FlavorMetric.id).join(Flavor, Flavor.id == FlavorMetric.flavor_id)
        .where(Flavor.provider == LOCAL, Flavor.name == LOCAL, FlavorMetric.region == LOCAL,
               FlavorMetric.available.is_(True)))
    if present is not None:
        return False
    refresh_local_flavor(session, data_dir)
    return True


# -- what forms offer -------------------------------------------------------------------


def catalog_providers(session: Session) -> list[str]:
    """The providers with flavors in the catalog, by name."""
    return list(session.scalars(select(Flavor.provider).distinct().order_by(Flavor.provider)))


def catalog_regions(session: Session, limit: int) -> list[str]:
    """The first ``limit`` regions of the catalog, by name."""
    return list(session.scalars(select(FlavorMetric.region).distinct()
                                .order_by(FlavorMetric.region).limit(limit)))


def flavor_names(session: Session, prefix: str, limit: int) -> list[str]:
    """The first ``limit`` flavor names of the catalog that begin with ``prefix`` (taken
    literally), by name."""
    return list(session.scalars(
        select(Flavor.name).distinct().where(Flavor.name.startswith(prefix, autoescape=True))
        .order_by(Flavor.name).limit(limit)))
