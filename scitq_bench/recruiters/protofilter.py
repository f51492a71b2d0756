"""Protofilters: ``:``-separated conditions that pick machine offers, as in
``auto:cpu>=10:ram>=100:disk>=200``.

Grammar (one filter): ``ITEM COMPARATOR VALUE``.

- items: ``cpu``, ``ram`` (GB), ``disk`` (GB), ``tags``, ``gpumem`` (GB, all the GPUs
  together), ``eviction`` (% per hour), ``region``, ``cost`` (per hour), ``provider``,
  and two extensions: ``gpu`` (number of GPUs) and ``gpumodel``;
- comparators: ``==``, ``!=``, ``>=``, ``>``, ``<``, ``<=`` (numbers); ``==``, ``!=``,
  ``~`` (like), ``!~`` (not like) (texts); tags take ``#`` (has every letter), ``!#`` (has
  none of the letters), ``==``, ``!=``, ``~``, ``!~``;
- values: a number (``[0-9.]+``) or a plain word (``[A-Za-z0-9_%-]+``); ``%`` is a
  wildcard for ``~`` and ``!~`` (as in SQL LIKE, matched against the whole text; ``_`` is
  an ordinary character).

Defaults: ``eviction<=5`` unless a filter mentions eviction; metal machines are left out
(``tags!#M``) unless a filter mentions tags (``tags~%`` lifts it without constraining).

Everything here is pure: no database, no server. ``Offer`` describes a machine offer
(a flavor in a region) both for matching and for the catalog.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from scitq_bench.exceptions import InvalidInput

AUTO_PREFIX = "auto:"
DEFAULT_MAX_EVICTION = 5.0

NUMBER_ITEMS = ("cpu", "ram", "disk", "gpumem", "eviction", "cost", "gpu")
TEXT_ITEMS = ("region", "provider", "gpumodel")
TAGS = "tags"

TAG_LETTERS = {"G": "GPU", "M": "metal", "N": "NVMe"}

NUMBER_COMPARATORS = ("==", "!=", ">=", ">", "<", "<=")
TEXT_COMPARATORS = ("==", "!=", "~", "!~")
TAGS_COMPARATORS = ("#", "!#", "==", "!=", "~", "!~")
COMPARATORS = ("==", "!=", ">=", ">", "<", "<=", "~", "#", "!~", "!#")

_NUMBER_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, ">=": operator.ge, ">": operator.gt,
    "<": operator.lt, "<=": operator.le,
}

_SPLIT = re.compile(r"\s*([A-Za-z_]*)\s*([=!<>~#]*)\s*(.*?)\s*", re.DOTALL)
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_PLAIN = re.compile(r"[0-9.]+|[A-Za-z0-9_%-]+")


@dataclass(frozen=True)
class Offer:
    """A flavor offered in one region: what a machine there has and costs.

    ``gpu_mem_gb`` is the memory of all the GPUs together; ``eviction`` is None for a
    machine that is not spot (it counts as 0); ``cost`` is per hour, None when unknown."""

    provider: str
    region: str
    flavor: str
    cpu: int
    ram_gb: float
    disk_gb: float = 0.0
    gpu_count: int = 0
    gpu_model: str | None = None
    gpu_mem_gb: float = 0.0
    tags: str = ""
    cost: float | None = None
    eviction: float | None = None
    spot: bool = False  # a spot (preemptible) machine, whether its eviction rate is known

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# how each item reads an offer; the keys are also the items the grammar accepts
_ITEM_VALUES: dict[str, Callable[[Offer], Any]] = {
    "cpu": lambda offer: offer.cpu,
    "ram": lambda offer: offer.ram_gb,
    "disk": lambda offer: offer.disk_gb,
    "tags": lambda offer: offer.tags or "",
    "gpumem": lambda offer: offer.gpu_mem_gb,
    "eviction": lambda offer: offer.eviction or 0.0,  # not spot: never claimed back
    "region": lambda offer: offer.region,
    "cost": lambda offer: offer.cost,
    "provider": lambda offer: offer.provider,
    "gpu": lambda offer: offer.gpu_count,
    "gpumodel": lambda offer: offer.gpu_model or "",
}
# the order of the documentation: the original items, then the extensions
ITEMS = tuple(_ITEM_VALUES)


def _item_value(offer: Offer, item: str) -> Any:
    return _ITEM_VALUES[item](offer)


def like(text: str, pattern: str) -> bool:
    """SQL LIKE with ``%`` as the only wildcard, over the whole text, case-sensitive."""
    regex = "".join(".*" if c == "%" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.DOTALL) is not None


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class Condition:
    """One filter: ``item comparator value``; numbers are floats, the rest text (tags in
    upper case)."""

    item: str
    comparator: str
    value: float | str

    def matches(self, offer: Offer) -> bool:
        actual = _item_value(offer, self.item)
        if self.item in NUMBER_ITEMS:
            if actual is None:  # unknown (a cost not published): no comparison holds
                return False
            return _NUMBER_OPS[self.comparator](float(actual), self.value)
        text, value = str(actual), str(self.value)
        if self.item == TAGS:
            letters = set(text)
            if self.comparator == "#":
                return set(value) <= letters
            if self.comparator == "!#":
                return not set(value) & letters
            if self.comparator == "==":
                return set(value) == letters
            if self.comparator == "!=":
                return set(value) != letters
        if self.comparator == "==":
            return text == value
        if self.comparator == "!=":
            return text != value
        if self.comparator == "~":
            return like(text, value)
        return not like(text, value)  # !~

    def __str__(self) -> str:
        value = _number_text(self.value) if isinstance(self.value, float) else self.value
        return f"{self.item}{self.comparator}{value}"


def _defaults(conditions: Iterable[Condition]) -> tuple[Condition, ...]:
    mentioned = {c.item for c in conditions}
    implicit = []
    if "eviction" not in mentioned:
        implicit.append(Condition("eviction", "<=", DEFAULT_MAX_EVICTION))
    if TAGS not in mentioned:
        implicit.append(Condition(TAGS, "!#", "M"))
    return tuple(implicit)


@dataclass(frozen=True)
class Protofilter:
    """Conditions given, plus the defaults they leave in force (``defaults``)."""

    conditions: tuple[Condition, ...] = ()
    defaults: tuple[Condition, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", tuple(self.conditions))
        object.__setattr__(self, "defaults", _defaults(self.conditions))

    @property
    def effective(self) -> tuple[Condition, ...]:
        """Every condition an offer must meet: the given ones and the defaults."""
        return self.conditions + self.defaults

    def mentions(self, item: str) -> bool:
        return any(c.item == item for c in self.conditions)

    def matches(self, offer: Offer) -> bool:
        return all(c.matches(offer) for c in self.effective)

    def extended(self, *conditions: Condition) -> Protofilter:
        """These conditions and more (the defaults recomputed: mentioning eviction or
        tags lifts theirs)."""
        return Protofilter(self.conditions + tuple(conditions))

    def __str__(self) -> str:
        """The canonical text, without the ``auto:`` prefix."""
        return ":".join(str(c) for c in self.conditions)


def parse(text: str, *, require_auto: bool = False) -> Protofilter:
    """Read ``[auto:]filter[:filter...]``; ``require_auto``: the prefix must be there
    (a flavor given as protofilters when deploying). Refusals are ``InvalidInput``
    naming the filter and what is wrong with it."""
    source = (text or "").strip()
    body = "" if source == AUTO_PREFIX[:-1] else source
    if body.startswith(AUTO_PREFIX):
        body = body[len(AUTO_PREFIX):]
    elif require_auto and body:
        raise InvalidInput(f"protofilters '{source}': they must start with 'auto:', as in "
                           "auto:cpu>=4:ram>=16")
    if not body.strip():
        raise InvalidInput(f"protofilters '{source}': no filter given, e.g. "
                           "auto:cpu>=4:ram>=16")
    parts = body.split(":")
    if any(not p.strip() for p in parts):
        raise InvalidInput(f"protofilters '{source}': an empty filter (a ':' at an end or "
                           "two in a row)")
    return Protofilter(tuple(parse_condition(p) for p in parts))


def parse_condition(text: str) -> Condition:
    """One filter, e.g. ``cpu>=8``, ``region~GRA%``, ``tags#G``."""
    source = text.strip()

    def refuse(reason: str) -> InvalidInput:
        return InvalidInput(f"protofilter '{source}': {reason}")

    match = _SPLIT.fullmatch(text)
    assert match is not None  # every part of the pattern may be empty
    item, comparator, value = match.groups()
    if not source:
        raise refuse("empty filter")
    if not item:
        raise refuse(f"no item before the comparator (items: {', '.join(ITEMS)})")
    if item not in ITEMS:
        raise refuse(f"unknown item {item} (items: {', '.join(ITEMS)})")
    if not comparator:
        raise refuse(f"no comparator after {item} (comparators: {', '.join(COMPARATORS)})")
    if comparator not in COMPARATORS:
        raise refuse(f"unknown comparator {comparator} (comparators: "
                     f"{', '.join(COMPARATORS)})")
    if not value:
        raise refuse(f"no value after {item}{comparator}")
    if item in NUMBER_ITEMS:
        if comparator not in NUMBER_COMPARATORS:
            raise refuse(f"{item} is a number: its comparators are "
                         f"{', '.join(NUMBER_COMPARATORS)}")
        if not _NUMBER.fullmatch(value):
            raise refuse(f"{item} needs a number")
        return Condition(item, comparator, float(value))
    if not _PLAIN.fullmatch(value):
        raise refuse(f"value '{value}' is not a plain value (letters, digits, _ and -, with % as "
                     "a wildcard for ~ and !~)")
    if "%" in value and comparator not in ("~", "!~"):
        raise refuse("% is a wildcard only with ~ and !~")
    if item == TAGS:
        if comparator not in TAGS_COMPARATORS:
            raise refuse(f"tags are letters: their comparators are "
                         f"{', '.join(TAGS_COMPARATORS)}")
        letters = value.upper()
        unknown = sorted({c for c in letters if c != "%" and c not in TAG_LETTERS})
        if unknown:
            known = ", ".join(f"{k} ({v})" for k, v in TAG_LETTERS.items())
            raise refuse(f"unknown tag {''.join(unknown)} (tags: {known})")
        return Condition(item, comparator, letters)
    if comparator not in TEXT_COMPARATORS:
        raise refuse(f"{item} is a text: its comparators are {', '.join(TEXT_COMPARATORS)}")
    return Condition(item, comparator, value)
