"""The flavor catalog, quotas and protofilters on both databases: choosing offers, the
API and the CLI."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from scitq_bench.exceptions import InvalidInput
from scitq_bench.recruiters.protofilter import Offer, parse
from scitq_bench.server.db import Database
from scitq_bench.server.queue.models import Worker, utcnow
from scitq_bench.server.recruit import catalog, updaters
from scitq_bench.server.recruit.models import Flavor, FlavorMetric
from tests.support.cli import Invoke, as_json, fails, ok


def offer(provider: str, region: str, flavor: str, cpu: int = 4, ram: float = 16.0,
          **fields: Any) -> Offer:
    return Offer(provider=provider, region=region, flavor=flavor, cpu=cpu, ram_gb=ram,
                 **fields)


def names(offers: list[Offer]) -> list[str]:
    return [f"{o.provider}/{o.region}/{o.flavor}" for o in offers]


def find(db: Database, **kwargs: Any) -> list[Offer]:
    with db.read() as session:
        return catalog.find_offers(session, **kwargs)


def add_worker(db: Database, name: str, provider: str, region: str, cpus: int,
               status: str = "running", released: bool = False) -> None:
    with db.write() as session:
        session.add(Worker(name=name, provider=provider, region=region, cpus=cpus,
                           status=status, released_at=utcnow() if released else None))


@pytest.fixture
def stocked(db: Database) -> Database:
    """Two providers, several regions, a spot offer, a metal one, one without a price."""
    with db.write() as session:
        catalog.upsert_offers(session, "ovh", [
            offer("ovh", "GRA11", "b2-7", cpu=2, ram=7, disk_gb=50, cost=0.07),
            offer("ovh", "GRA11", "b2-15", cpu=4, ram=15, disk_gb=100, cost=0.12),
            offer("ovh", "BHS5", "b2-15", cpu=4, ram=15, disk_gb=100, cost=0.12),
            offer("ovh", "GRA11", "t1-45", cpu=8, ram=45, disk_gb=400, gpu_count=1,
                  gpu_model="Tesla-V100", gpu_mem_gb=16, tags="G", cost=1.9),
            offer("ovh", "GRA11", "metal-64", cpu=64, ram=256, tags="M", cost=0.5),
            offer("ovh", "SBG5", "mystery", cpu=4, ram=15, cost=None),
        ])
        catalog.upsert_offers(session, "azure", [
            offer("azure", "northeurope", "D4", cpu=4, ram=16, cost=0.12, eviction=2.0),
            offer("azure", "westeurope", "D4", cpu=4, ram=16, cost=0.12, eviction=None),
            offer("azure", "northeurope", "D2spot", cpu=2, ram=8, cost=0.01, eviction=15.0),
        ])
    return db


# -- choosing offers -------------------------------------------------------------------


def test_cheapest_first_unpriced_last_ties_by_provider_region_flavor(stocked: Database) -> None:
    assert names(find(stocked)) == [
        "ovh/GRA11/b2-7",
        "azure/northeurope/D4", "azure/westeurope/D4", "ovh/BHS5/b2-15", "ovh/GRA11/b2-15",
        "ovh/GRA11/t1-45",
        "ovh/SBG5/mystery",
    ]  # no metal, no eviction above 5%


def test_preferred_regions_come_first_among_equal_costs(stocked: Database) -> None:
    with stocked.write() as session:
        catalog.set_quota(session, "ovh", "BHS5", preferred=True)
        catalog.set_quota(session, "azure", "westeurope", preferred=True)
    assert names(find(stocked, limit=5)) == [
        "ovh/GRA11/b2-7",  # cheaper still wins
        "azure/westeurope/D4", "ovh/BHS5/b2-15", "azure/northeurope/D4", "ovh/GRA11/b2-15",
    ]


def test_offers_are_whole_descriptions(stocked: Database) -> None:
    gpu = find(stocked, protofilter=parse("gpu>=1"))
    assert gpu == [Offer(provider="ovh", region="GRA11", flavor="t1-45", cpu=8, ram_gb=45.0,
                         disk_gb=400.0, gpu_count=1, gpu_model="Tesla-V100", gpu_mem_gb=16.0,
                         tags="G", cost=1.9, eviction=None)]


def test_filters_provider_region_and_minimums(stocked: Database) -> None:
    assert names(find(stocked, provider="azure")) == ["azure/northeurope/D4",
                                                      "azure/westeurope/D4"]
    assert find(stocked, provider="auto", region="auto") == find(stocked)
    assert names(find(stocked, region="BHS5")) == ["ovh/BHS5/b2-15"]
    assert names(find(stocked, min_cpu=8)) == ["ovh/GRA11/t1-45"]
    assert names(find(stocked, min_ram=16, provider="ovh")) == ["ovh/GRA11/t1-45"]
    assert names(find(stocked, min_disk=100)) == [
        "ovh/BHS5/b2-15", "ovh/GRA11/b2-15", "ovh/GRA11/t1-45"]
    assert names(find(stocked, max_eviction=0, provider="azure")) == ["azure/westeurope/D4"]
    assert names(find(stocked, limit=2)) == ["ovh/GRA11/b2-7", "azure/northeurope/D4"]
    assert find(stocked, limit=0) == []
    with pytest.raises(InvalidInput):
        find(stocked, limit=-1)


def test_eviction_and_metal_defaults_are_lifted_by_mentioning_them(stocked: Database) -> None:
    assert "azure/northeurope/D2spot" not in names(find(stocked))
    assert names(find(stocked, max_eviction=20))[0] == "azure/northeurope/D2spot"
    assert names(find(stocked, protofilter=parse("eviction>=0")))[0] == "azure/northeurope/D2spot"
    assert names(find(stocked, protofilter=parse("eviction>=1"))) == [
        "azure/northeurope/D2spot", "azure/northeurope/D4"]
    assert names(find(stocked, protofilter=parse("tags#M"))) == ["ovh/GRA11/metal-64"]
    assert "ovh/GRA11/metal-64" in names(find(stocked, protofilter=parse("tags~%")))


def test_protofilters_pick_offers(stocked: Database) -> None:
    def picked(text: str) -> list[str]:
        return names(find(stocked, protofilter=parse(text)))

    assert picked("auto:cpu>=4:ram>=15:region~GRA%") == ["ovh/GRA11/b2-15", "ovh/GRA11/t1-45"]
    assert picked("cpu==4:provider==azure") == ["azure/northeurope/D4", "azure/westeurope/D4"]
    assert picked("region!~%europe:cost<1") == ["ovh/GRA11/b2-7", "ovh/BHS5/b2-15",
                                                "ovh/GRA11/b2-15"]
    assert picked("gpumem>=16:gpumodel~%V100") == ["ovh/GRA11/t1-45"]
    assert picked("tags!#G:cpu>=4:cost<=0.12:provider!=azure") == ["ovh/BHS5/b2-15",
                                                                   "ovh/GRA11/b2-15"]
    assert picked("cost>=0") == names(find(stocked))[:-1]  # an unknown cost is no match
    assert picked("cpu>=1000") == []


# -- quotas ------------------------------------------------------------------------------


def test_quota_max_cpus_fills_with_live_recruited_workers(stocked: Database) -> None:
    with stocked.write() as session:
        catalog.set_quota(session, "ovh", "GRA11", max_cpus=10)
    gra = {"provider": "ovh", "region": "GRA11"}
    assert names(find(stocked, **gra)) == ["ovh/GRA11/b2-7", "ovh/GRA11/b2-15",
                                           "ovh/GRA11/t1-45"]
    add_worker(stocked, "w1", "ovh", "GRA11", cpus=4)
    assert names(find(stocked, **gra)) == ["ovh/GRA11/b2-7", "ovh/GRA11/b2-15"]  # 4+8 > 10
    add_worker(stocked, "w2", "ovh", "GRA11", cpus=4)
    assert names(find(stocked, **gra)) == ["ovh/GRA11/b2-7"]  # 8+4 > 10, 8+2 fits
    # gone machines no longer count; other regions and providers are not concerned
    add_worker(stocked, "gone1", "ovh", "GRA11", cpus=32, status="failed")
    add_worker(stocked, "gone2", "ovh", "GRA11", cpus=32, status="evicted")
    add_worker(stocked, "gone3", "ovh", "GRA11", cpus=32, released=True)
    add_worker(stocked, "elsewhere", "ovh", "BHS5", cpus=32)
    add_worker(stocked, "paused", "ovh", "GRA11", cpus=2, status="offline")
    assert names(find(stocked, **gra)) == []  # 10 used: nothing fits
    assert "ovh/BHS5/b2-15" in names(find(stocked))
    with stocked.read() as session:
        assert catalog.list_quotas(session) == [
            {"provider": "ovh", "region": "GRA11", "max_cpus": 10, "max_instances": None,
             "preferred": False, "cpus_used": 10, "instances_used": 3}]
    with stocked.write() as session:  # None removes the limit, the rest is kept
        catalog.set_quota(session, "ovh", "GRA11", max_cpus=None)
    assert len(find(stocked, **gra)) == 3


def test_quota_max_instances(stocked: Database) -> None:
    with stocked.write() as session:
        quota = catalog.set_quota(session, "azure", "northeurope", max_instances=1,
                                  preferred=True)
    assert quota == {"provider": "azure", "region": "northeurope", "max_cpus": None,
                     "max_instances": 1, "preferred": True, "cpus_used": 0,
                     "instances_used": 0}
    assert "azure/northeurope/D4" in names(find(stocked))
    add_worker(stocked, "a1", "azure", "northeurope", cpus=4)
    assert not any("northeurope" in n for n in names(find(stocked, max_eviction=100)))
    with stocked.write() as session:
        kept = catalog.set_quota(session, "azure", "northeurope", max_cpus=100)
    assert (kept["max_instances"], kept["preferred"], kept["instances_used"]) == (1, True, 1)
    with stocked.write() as session:
        catalog.set_quota(session, "azure", "northeurope", max_instances=0, preferred=False)
        with pytest.raises(InvalidInput, match="max_cpus"):
            catalog.set_quota(session, "azure", "northeurope", max_cpus=-1)
        with pytest.raises(InvalidInput, match="provider and a region"):
            catalog.set_quota(session, "auto", "northeurope", max_cpus=1)


# -- exclusions and updates ------------------------------------------------------------


def test_exclusion_keeps_an_offer_out_until_a_time(stocked: Database) -> None:
    until = utcnow() + timedelta(minutes=30)
    with stocked.write() as session:
        assert catalog.exclude(session, "ovh", "GRA11", "b2-7", until) is True
        assert catalog.exclude(session, "ovh", "GRA11", "nope", until) is False
    assert "ovh/GRA11/b2-7" not in names(find(stocked))
    later = until + timedelta(seconds=1)
    assert names(find(stocked, now=later))[0] == "ovh/GRA11/b2-7"
    aware = datetime.now(timezone.utc) + timedelta(hours=2)  # aware datetimes are UTC
    with stocked.write() as session:
        catalog.exclude(session, "ovh", "BHS5", "b2-15", aware)
    assert "ovh/BHS5/b2-15" not in names(find(stocked, now=later))
    assert "ovh/BHS5/b2-15" in names(find(stocked, now=aware + timedelta(seconds=1)))


def test_upsert_updates_and_marks_vanished_offers_unavailable(stocked: Database) -> None:
    with stocked.write() as session:
        catalog.exclude(session, "ovh", "BHS5", "b2-15", utcnow() + timedelta(hours=1))
        counts = catalog.upsert_offers(session, "ovh", [
            offer("ovh", "GRA11", "b2-7", cpu=2, ram=7, cost=0.08),
            offer("ovh", "BHS5", "b2-15", cpu=4, ram=15, cost=0.11),
            offer("ovh", "GRA7", "b2-7", cpu=2, ram=7, cost=0.06),
            offer("ovh", "GRA11", "c2-30", cpu=8, ram=30, cost=0.3, tags="n"),
        ])
    assert counts == {"flavors_created": 1, "flavors_updated": 2, "offers_created": 2,
                      "offers_updated": 2, "offers_unavailable": 4}
    assert names(find(stocked, provider="ovh")) == [
        "ovh/GRA7/b2-7", "ovh/GRA11/b2-7", "ovh/GRA11/c2-30"]  # BHS5 still excluded
    assert find(stocked, provider="ovh", protofilter=parse("tags#N"))[0].tags == "N"
    assert len(find(stocked, provider="azure")) == 2  # another provider: untouched
    with stocked.read() as session:
        rows = session.query(Flavor.name, FlavorMetric.region, FlavorMetric.available,
                             FlavorMetric.excluded_until).join(
            FlavorMetric, FlavorMetric.flavor_id == Flavor.id).filter(
            Flavor.provider == "ovh").all()
    state = {(n, r): (a, e is not None) for n, r, a, e in rows}
    assert state[("b2-15", "GRA11")] == (False, False)
    assert state[("b2-15", "BHS5")] == (True, True)  # the exclusion is kept
    assert state[("metal-64", "GRA11")] == (False, False)
    # an offer coming back is available again; nothing vanishes twice
    with stocked.write() as session:
        again = catalog.upsert_offers(session, "ovh", [
            offer("ovh", "GRA11", "b2-15", cpu=4, ram=15, cost=0.12)])
    assert again["offers_updated"] == 1 and again["offers_unavailable"] == 4
    assert names(find(stocked, provider="ovh")) == ["ovh/GRA11/b2-15"]


def test_upsert_refuses_offers_of_another_provider(db: Database) -> None:
    with db.write() as session, pytest.raises(InvalidInput, match="its provider is not ovh"):
        catalog.upsert_offers(session, "ovh", [offer("aws", "us-east-1", "m5.large")])
    with db.write() as session, pytest.raises(InvalidInput, match="region must have"):
        catalog.upsert_offers(session, "ovh", [offer("ovh", "", "b2-7")])


def test_local_flavor_is_this_machine(db: Database, settings: Any) -> None:
    with db.write() as session:
        assert catalog.ensure_local_flavor(session, settings.data_dir) is True
        assert catalog.ensure_local_flavor(session, settings.data_dir) is False
    (local,) = find(db, provider="local")
    assert (local.region, local.flavor, local.cpu, local.cost, local.eviction) == (
        "local", "local", os.cpu_count(), 0.0, None)
    assert local.ram_gb > 0 and local.disk_gb > 0
    with db.write() as session:
        counts = updaters.UPDATERS["local"](session)
    assert counts["offers_updated"] == 1 and counts["offers_created"] == 0


# -- the API ----------------------------------------------------------------------------


def test_api_lists_offers_with_filters(api: Any, app: Any) -> None:
    db = app.extensions["scitq_bench"].db
    with db.write() as session:
        catalog.upsert_offers(session, "ovh", [
            offer("ovh", "GRA11", "b2-7", cpu=2, ram=7, cost=0.07),
            offer("ovh", "GRA11", "b2-15", cpu=4, ram=15, disk_gb=100, cost=0.12),
            offer("ovh", "BHS5", "spot", cpu=8, ram=30, cost=0.01, eviction=30.0),
        ])
    listed = api.get("/flavors").json["flavors"]
    assert [o["flavor"] for o in listed] == ["b2-7", "b2-15"]
    assert listed[1] == {"provider": "ovh", "region": "GRA11", "flavor": "b2-15", "cpu": 4,
                         "ram_gb": 15.0, "disk_gb": 100.0, "gpu_count": 0, "gpu_model": None,
                         "gpu_mem_gb": 0.0, "tags": "", "cost": 0.12, "eviction": None,
                         "spot": False}

    def flavors(query: str) -> list[str]:
        answer = api.get(f"/flavors?{query}")
        assert answer.status_code == 200, answer.json
        return [o["flavor"] for o in answer.json["flavors"]]

    assert flavors("protofilters=auto:cpu>=4") == ["b2-15"]
    assert flavors("protofilters=cpu<=4:region~GRA%25") == ["b2-7", "b2-15"]
    assert flavors("min_cpu=3") == ["b2-15"]
    assert flavors("min_ram=8&min_disk=50") == ["b2-15"]
    assert flavors("max_eviction=50") == ["spot", "b2-7", "b2-15"]
    assert flavors("provider=auto&region=BHS5&max_eviction=50") == ["spot"]
    assert flavors("provider=aws") == []
    assert flavors("limit=1") == ["b2-7"]
    bad = api.get("/flavors?protofilters=cpu>=ten")
    assert bad.status_code == 400
    assert bad.json["message"] == "protofilter 'cpu>=ten': cpu needs a number"
    assert api.get("/flavors?min_cpu=x").status_code == 400
    assert api.get("/flavors?limit=-1").status_code == 400


def test_api_needs_an_admin_token(api: Any) -> None:
    worker = api.post("/workers", json={"name": "w"}).json["token"]
    assert api.get("/flavors", token=worker).status_code == 403
    assert api.get("/quotas", token=worker).status_code == 403
    assert api.post("/flavors/update?provider=local", token=worker).status_code == 403
    assert api.put("/quotas/ovh/GRA11", json={}, token=worker).status_code == 403
    assert api.get("/flavors", token=None).status_code == 401


def test_api_updates_the_catalog(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    answer = api.post("/flavors/update?provider=local")
    assert answer.status_code == 200, answer.json
    assert answer.json["updated"]["local"]["offers_created"] == 1
    assert answer.json["errors"] == {}
    (local,) = api.get("/flavors?provider=local").json["flavors"]
    assert (local["flavor"], local["cpu"], local["cost"]) == ("local", os.cpu_count(), 0.0)
    unknown = api.post("/flavors/update?provider=nebula")
    assert unknown.status_code == 400
    assert unknown.json["message"] == ("no catalog updater for provider 'nebula' "
                                       "(known: local)")

    def broken(session: Any) -> dict[str, Any]:
        raise RuntimeError("no credentials")

    def tiny(session: Any) -> dict[str, Any]:
        return catalog.upsert_offers(session, "tiny", [offer("tiny", "here", "t1", cost=0.5)])

    monkeypatch.setitem(updaters.UPDATERS, "broken", broken)
    monkeypatch.setitem(updaters.UPDATERS, "tiny", tiny)
    everything = api.post("/flavors/update").json
    assert sorted(everything["updated"]) == ["local", "tiny"]
    assert everything["updated"]["local"]["offers_updated"] == 1
    assert everything["errors"] == {"broken": "no credentials"}
    assert [o["provider"] for o in api.get("/flavors").json["flavors"]] == ["local", "tiny"]


def test_api_quotas(api: Any) -> None:
    assert api.get("/quotas").json == {"quotas": []}
    answer = api.put("/quotas/ovh/GRA11", json={"max_cpus": 16, "preferred": True})
    assert answer.status_code == 200, answer.json
    assert answer.json == {"provider": "ovh", "region": "GRA11", "max_cpus": 16,
                           "max_instances": None, "preferred": True, "cpus_used": 0,
                           "instances_used": 0}
    changed = api.put("/quotas/ovh/GRA11", json={"max_instances": 2}).json
    assert (changed["max_cpus"], changed["max_instances"], changed["preferred"]) == (16, 2, True)
    cleared = api.put("/quotas/ovh/GRA11", json={"max_cpus": None}).json
    assert (cleared["max_cpus"], cleared["max_instances"]) == (None, 2)
    api.put("/quotas/aws/eu-west-1", json={})
    assert [(q["provider"], q["region"]) for q in api.get("/quotas").json["quotas"]] == [
        ("aws", "eu-west-1"), ("ovh", "GRA11")]
    negative = api.put("/quotas/ovh/GRA11", json={"max_cpus": -1})
    assert negative.status_code == 400 and "max_cpus" in negative.json["message"]
    assert api.put("/quotas/ovh/GRA11", json={"colour": 1}).status_code == 400
    assert api.put("/quotas/auto/GRA11", json={"max_cpus": 1}).status_code == 400


# -- the CLI ----------------------------------------------------------------------------


def test_cli_flavor_update_and_list(run: Invoke, live_server: Any) -> None:
    assert "local updated (flavors created: 1" in ok(run("flavor", "update", "-P", "local")).stdout
    db = live_server.app.extensions["scitq_bench"].db
    with db.write() as session:
        catalog.upsert_offers(session, "ovh", [
            offer("ovh", "GRA11", "b2-15", cpu=4, ram=15, cost=0.12),
            offer("ovh", "GRA11", "t1-45", cpu=8, ram=45, gpu_count=1, gpu_model="V100",
                  gpu_mem_gb=16, tags="G", cost=1.9),
            offer("ovh", "GRA11", "metal", cpu=64, ram=256, tags="M", cost=0.2),
        ])
    listed = as_json(run("flavor", "list", "--json"))
    assert [o["flavor"] for o in listed] == ["local", "b2-15", "t1-45"]
    table = ok(run("flavor", "list", "-P", "ovh")).stdout
    assert "provider" in table and "t1-45" in table and "V100" in table
    assert "metal" not in table
    assert [o["flavor"] for o in as_json(run("flavor", "list", "--json", "--protofilters",
                                             "tags#M"))] == ["metal"]
    assert [o["flavor"] for o in as_json(run("flavor", "list", "--json", "-P", "ovh",
                                             "--min-cpu", 8))] == ["t1-45"]
    assert [o["flavor"] for o in as_json(run("flavor", "list", "--json", "-P", "auto", "-r",
                                             "GRA11", "--limit", 1))] == ["b2-15"]
    assert [o["flavor"] for o in as_json(run(
        "flavor", "list", "--json", "--min-ram", 10, "--min-disk", 0, "--max-eviction", 0,
        "--protofilters", "auto:gpumodel~%V1%"))] == ["t1-45"]
    fails(run("flavor", "list", "--protofilters", "cpu>=ten"),
          "protofilter 'cpu>=ten': cpu needs a number")
    fails(run("flavor", "update", "-P", "nebula"), "no catalog updater", "known: local")
    assert "local updated" in ok(run("flavor", "update")).stdout
    updated = as_json(run("flavor", "update", "-P", "local", "--json"))
    assert updated["updated"]["local"]["offers_updated"] == 1


def test_cli_quota_set_and_list(run: Invoke, live_server: Any) -> None:
    assert ok(run("quota", "set", "ovh", "GRA11", "--max-cpus", 16, "--preferred")).stdout \
        .strip() == "quota of ovh in GRA11: cpus 0/16, instances 0/-, preferred"
    changed = as_json(run("quota", "set", "ovh", "GRA11", "--max-instances", 3, "--json"))
    assert (changed["max_cpus"], changed["max_instances"], changed["preferred"]) == (16, 3, True)
    cleared = as_json(run("quota", "set", "ovh", "GRA11", "--max-cpus", "none",
                          "--not-preferred", "--json"))
    assert (cleared["max_cpus"], cleared["max_instances"], cleared["preferred"]) == (
        None, 3, False)
    live_server.client().worker_register(name="hired", provider="ovh", region="GRA11", cpus=4)
    (listed,) = as_json(run("quota", "list", "--json"))
    assert (listed["cpus_used"], listed["instances_used"]) == (4, 1)
    table = ok(run("quota", "list")).stdout
    assert "GRA11" in table and "4/-" in table and "1/3" in table
    fails(run("quota", "set", "ovh", "GRA11", "--max-cpus", "lots"), "--max-cpus", code=2)
    fails(run("quota", "set", "auto", "GRA11"), "provider and a region")
    assert live_server.client().quota_list() == [listed]


def test_spot_and_on_demand_offers_of_a_flavor_live_side_by_side(db: Database) -> None:
    from scitq_bench.recruiters.protofilter import Offer as CatalogOffer

    with db.write() as session:
        counts = catalog.upsert_offers(session, "aws", [
            CatalogOffer("aws", "eu-west-3", "m5.large", cpu=2, ram_gb=8, cost=0.10),
            CatalogOffer("aws", "eu-west-3", "m5.large", cpu=2, ram_gb=8, cost=0.03,
                         spot=True),
        ])
    assert counts["offers_created"] == 2
    cheapest, second = find(db, provider="aws")
    assert (cheapest.cost, cheapest.spot) == (0.03, True)  # no rate known: not excluded
    assert (second.cost, second.spot) == (0.10, False)
