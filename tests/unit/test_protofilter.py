"""Protofilters: the grammar, every item and comparator, the defaults, the refusals."""

from __future__ import annotations

import dataclasses

import pytest

from scitq_bench.exceptions import InvalidInput
from scitq_bench.recruiters.protofilter import (
    DEFAULT_MAX_EVICTION,
    ITEMS,
    Condition,
    Offer,
    Protofilter,
    like,
    parse,
)

BASE = Offer(provider="ovh", region="GRA11", flavor="b2-15", cpu=4, ram_gb=15.0,
             disk_gb=100.0, gpu_count=0, gpu_model=None, gpu_mem_gb=0.0, tags="",
             cost=0.12, eviction=None)
GPU = dataclasses.replace(BASE, flavor="t1-45", gpu_count=2, gpu_model="Tesla-V100",
                          gpu_mem_gb=32.0, tags="GN", cost=1.5)
METAL = dataclasses.replace(BASE, flavor="metal-1", cpu=64, tags="M", cost=2.0)
SPOT = dataclasses.replace(BASE, provider="azure", region="northeurope", flavor="D4",
                           eviction=12.0, cost=0.05)


def ok(text: str, offer: Offer = BASE) -> bool:
    return parse(text).matches(offer)


# -- the grammar -----------------------------------------------------------------------


def test_parse_gives_conditions_in_order_and_the_defaults_in_force() -> None:
    found = parse("cpu>=4:ram>=8.5:region~GRA%")
    assert found.conditions == (Condition("cpu", ">=", 4.0), Condition("ram", ">=", 8.5),
                                Condition("region", "~", "GRA%"))
    assert found.defaults == (Condition("eviction", "<=", DEFAULT_MAX_EVICTION),
                              Condition("tags", "!#", "M"))
    assert found.effective == found.conditions + found.defaults
    assert str(found) == "cpu>=4:ram>=8.5:region~GRA%"
    assert isinstance(found, Protofilter)
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.conditions = ()  # type: ignore[misc]


def test_auto_prefix_is_optional_unless_required() -> None:
    assert parse("auto:cpu>=4") == parse("cpu>=4")
    assert parse("auto:cpu>=4", require_auto=True).conditions == (Condition("cpu", ">=", 4.0),)
    with pytest.raises(InvalidInput, match=r"protofilters 'cpu>=4': they must start with 'auto:'"):
        parse("cpu>=4", require_auto=True)
    with pytest.raises(InvalidInput, match="no filter given"):
        parse("auto:", require_auto=True)


def test_spaces_around_filters_and_tokens_are_tolerated() -> None:
    assert parse(" cpu >= 4 : ram<=8 ").conditions == (Condition("cpu", ">=", 4.0),
                                                       Condition("ram", "<=", 8.0))


@pytest.mark.parametrize("value", ["4", "4.", "4.5", ".5", "0"])
def test_number_forms(value: str) -> None:
    assert parse(f"ram>={value}").conditions[0].value == float(value)


def test_mentions() -> None:
    found = parse("cpu>=4:region==GRA11")
    assert found.mentions("cpu") and found.mentions("region")
    assert not found.mentions("eviction") and not found.mentions("tags")


def test_extended_adds_conditions_and_recomputes_the_defaults() -> None:
    more = parse("cpu>=4").extended(Condition("eviction", "<=", 20.0))
    assert more.conditions[-1] == Condition("eviction", "<=", 20.0)
    assert more.defaults == (Condition("tags", "!#", "M"),)
    assert Protofilter().defaults == parse("cpu>=0").defaults


# -- items and comparators ------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("cpu==4", True), ("cpu!=4", False), ("cpu>=4", True), ("cpu>4", False),
    ("cpu<5", True), ("cpu<=3", False),
    ("ram>=15", True), ("ram>15", False), ("ram==15.0", True),
    ("disk>=100", True), ("disk<100", False),
    ("cost<=0.12", True), ("cost<0.12", False), ("cost>0.1", True),
    ("gpumem>=0", True), ("gpumem>0", False),
    ("gpu==0", True), ("gpu>=1", False),
    ("eviction<=0", True), ("eviction>0", False),
])
def test_number_items_on_a_cpu_offer(text: str, expected: bool) -> None:
    assert ok(text) is expected


@pytest.mark.parametrize(("text", "expected"), [
    ("gpu==2", True), ("gpu>=3", False),
    ("gpumem>=32", True), ("gpumem>32", False),  # all the GPUs' memory together
    ("gpumodel==Tesla-V100", True), ("gpumodel!=Tesla-V100", False),
    ("gpumodel~%V100", True), ("gpumodel~V100", False), ("gpumodel!~%A100%", True),
    ("tags#G", True), ("tags#GN", True), ("tags#NG", True), ("tags#GM", False),
    ("tags!#M", True), ("tags!#MN", False), ("tags==GN", True), ("tags==NG", True),
    ("tags==G", False), ("tags!=G", True), ("tags~%N", True), ("tags!~G", True),
])
def test_gpu_items_and_tags(text: str, expected: bool) -> None:
    assert parse(text).matches(GPU) is expected


def test_a_cpu_offer_has_no_gpu_model_and_no_tags() -> None:
    assert ok("gpumodel~%")  # '' is like '%'
    assert ok("gpumodel!~%A100%") and not ok("gpumodel==A100") and ok("gpumodel!=A100")
    assert not ok("tags#G") and ok("tags!#GMN") and ok("tags~%")


@pytest.mark.parametrize(("text", "expected"), [
    ("region==GRA11", True), ("region!=GRA11", False), ("region==gra11", False),
    ("region~GRA%", True), ("region~%11", True), ("region~%RA1%", True),
    ("region~GRA", False), ("region~BHS%", False), ("region!~BHS%", True),
    ("region!~GRA%", False), ("region~%", True),
    ("provider==ovh", True), ("provider!=ovh", False), ("provider~o%", True),
    ("provider!~az%", True),
])
def test_text_items(text: str, expected: bool) -> None:
    assert ok(text) is expected


def test_like_is_a_whole_text_match_with_percent_only() -> None:
    assert like("GRA11", "GRA%") and like("GRA11", "%") and like("", "%")
    assert not like("GRA11", "RA%") and not like("GRA11", "GRA1")
    assert not like("eu-west", "eu_west")  # _ is an ordinary character
    assert like("eu_west", "eu_west") and like("a.b", "a.b") and not like("axb", "a.b")


def test_an_unknown_cost_meets_no_cost_condition() -> None:
    unpriced = dataclasses.replace(BASE, cost=None)
    assert not parse("cost<=1").matches(unpriced)
    assert not parse("cost>=0").matches(unpriced)
    assert not parse("cost!=1").matches(unpriced)
    assert parse("cpu>=1").matches(unpriced)


def test_all_conditions_must_hold() -> None:
    assert ok("cpu>=4:ram>=15:region~GRA%:provider==ovh")
    assert not ok("cpu>=4:ram>=16")
    assert ok("cpu>=2:cpu<=8") and not ok("cpu>=5:cpu<=8")


# -- defaults ----------------------------------------------------------------------------


def test_eviction_above_five_is_left_out_unless_eviction_is_mentioned() -> None:
    assert not parse("cpu>=1").matches(SPOT)
    assert parse("eviction>=0").matches(SPOT)  # lifts the default
    assert parse("eviction<=20").matches(SPOT)
    assert not parse("eviction<=10").matches(SPOT)
    low = dataclasses.replace(SPOT, eviction=5.0)
    assert parse("cpu>=1").matches(low)
    assert Protofilter().matches(BASE) and not Protofilter().matches(SPOT)


def test_metal_is_left_out_unless_tags_are_mentioned() -> None:
    assert not parse("cpu>=1").matches(METAL)
    assert parse("tags#M").matches(METAL)
    assert parse("tags~%").matches(METAL)  # lifts the default without constraining
    assert parse("tags~%").matches(BASE)
    assert not parse("tags!#G").matches(dataclasses.replace(METAL, tags="GM"))
    assert parse("tags!#G").matches(METAL)


# -- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ("cpu>=ten", "protofilter 'cpu>=ten': cpu needs a number"),
    ("ram>=1.2.3", "protofilter 'ram>=1.2.3': ram needs a number"),
    ("cost<-1", "protofilter 'cost<-1': cost needs a number"),
    ("disk>=1e3", "protofilter 'disk>=1e3': disk needs a number"),
    ("colour==red", "protofilter 'colour==red': unknown item colour (items: cpu, ram, disk, "
                    "tags, gpumem, eviction, region, cost, provider, gpu, gpumodel)"),
    ("CPU>=4", "protofilter 'CPU>=4': unknown item CPU"),
    ("cpu=4", "protofilter 'cpu=4': unknown comparator = (comparators: ==, !=, >=, >, <, "
              "<=, ~, #, !~, !#)"),
    ("cpu=>4", "protofilter 'cpu=>4': unknown comparator =>"),
    ("cpu<>4", "protofilter 'cpu<>4': unknown comparator <>"),
    ("cpu4", "protofilter 'cpu4': no comparator after cpu"),
    ("cpu", "protofilter 'cpu': no comparator after cpu"),
    (">=4", "protofilter '>=4': no item before the comparator (items: cpu,"),
    ("4>=cpu", "protofilter '4>=cpu': no item before the comparator"),
    ("cpu>=", "protofilter 'cpu>=': no value after cpu>="),
    ("cpu#4", "protofilter 'cpu#4': cpu is a number: its comparators are ==, !=, >=, >, <, <="),
    ("gpumem!#4", "protofilter 'gpumem!#4': gpumem is a number"),
    ("ram~1%", "protofilter 'ram~1%': ram is a number"),
    ("eviction!~5", "protofilter 'eviction!~5': eviction is a number"),
    ("region>GRA", "protofilter 'region>GRA': region is a text: its comparators are "
                   "==, !=, ~, !~"),
    ("provider#ovh", "protofilter 'provider#ovh': provider is a text"),
    ("gpumodel<=A100", "protofilter 'gpumodel<=A100': gpumodel is a text"),
    ("tags>=G", "protofilter 'tags>=G': tags are letters: their comparators are #, !#, ==, "
                "!=, ~, !~"),
    ("tags#X", "protofilter 'tags#X': unknown tag X (tags: G (GPU), M (metal), N (NVMe))"),
    ("region==GRA%", "protofilter 'region==GRA%': % is a wildcard only with ~ and !~"),
    ("tags#%", "protofilter 'tags#%': % is a wildcard only with ~ and !~"),
    ("region==eu west", "protofilter 'region==eu west': value 'eu west' is not a plain value"),
    ("region~eu*", "protofilter 'region~eu*': value 'eu*' is not a plain value"),
    ("provider=='ovh'", "protofilter 'provider=='ovh'': value ''ovh'' is not a plain value"),
    ("cpu>=4:ram>=x", "protofilter 'ram>=x': ram needs a number"),
    ("cpu>=4::ram>=8", "protofilters 'cpu>=4::ram>=8': an empty filter"),
    ("cpu>=4:", "protofilters 'cpu>=4:': an empty filter"),
    (":cpu>=4", "protofilters ':cpu>=4': an empty filter"),
    ("", "protofilters '': no filter given"),
    ("   ", "protofilters '': no filter given"),
    ("auto:", "protofilters 'auto:': no filter given"),
    ("auto", "protofilters 'auto': no filter given"),
])
def test_refusals_quote_the_filter_and_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(text)
    assert str(caught.value).startswith(message), str(caught.value)


def test_tag_letters_are_read_in_upper_case() -> None:
    assert parse("tags#gn").conditions == (Condition("tags", "#", "GN"),)
    assert parse("tags#g").matches(GPU)


def test_every_item_parses_with_a_comparator_of_its_kind() -> None:
    samples = {"cpu": "cpu>=1", "ram": "ram>=1", "disk": "disk>=1", "tags": "tags#G",
               "gpumem": "gpumem>=1", "eviction": "eviction<=5", "region": "region~eu%",
               "cost": "cost<1", "provider": "provider==aws", "gpu": "gpu>=1",
               "gpumodel": "gpumodel~%A100%"}
    assert set(samples) == set(ITEMS)
    for item, text in samples.items():
        assert parse(text).mentions(item)


def test_offer_as_a_dict() -> None:
    assert GPU.to_dict()["gpu_mem_gb"] == 32.0
    assert list(BASE.to_dict()) == ["provider", "region", "flavor", "cpu", "ram_gb", "disk_gb",
                                    "gpu_count", "gpu_model", "gpu_mem_gb", "tags", "cost",
                                    "eviction", "spot"]
