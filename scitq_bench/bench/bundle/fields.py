"""Reading the values of ``competition.yaml`` (and of a program's metadata): the YAML
itself, then each field checked and converted, a refusal naming the field.

A field is named as in ``competition.yaml``, with the position of an item in its list
(``phases[1].start`` is the second phase written in the file). Dates are read as
Codabench reads them, with dateutil's parser (month first: ``1/2/2026`` is January 2nd),
and kept as naive UTC datetimes: an offset is converted, a date without one is UTC.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Any

import yaml
from dateutil import parser as date_parser  # type: ignore[import-untyped]

from scitq_bench.bench.bundle.model import COMPETITION_YAML, BundleError

# -- YAML --------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, except that a timestamp that is not a real date (say
    ``2024-13-01``) stays a string, so that it is refused naming its field."""


def _timestamp(loader: _Loader, node: yaml.ScalarNode) -> Any:
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


def parse_yaml(text: str, label: str) -> Any:
    """YAML read safely; a syntax error is a ``BundleError`` naming ``label`` and the line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if mark is None:
            raise BundleError(f"{label}: {problem}") from None
        raise BundleError(f"{label} line {mark.line + 1}: {problem}") from None
    except yaml.YAMLError as exc:
        raise BundleError(f"{label}: {exc}") from None
    except RecursionError:
        raise BundleError(f"{label}: nested too deeply") from None


# -- field checks --------------------------------------------------------------------------


def fail(where: str, message: str) -> BundleError:
    """The error for the field ``where`` of ``competition.yaml``."""
    return BundleError(f"{COMPETITION_YAML}: {where}: {message}")


def as_mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise fail(where, "must be a mapping (key: value lines)")
    return value


def as_list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise fail(where, "must be a list")
    return value


def as_text(value: Any, where: str, default: str | None = None) -> str | None:
    """Text without surrounding blanks; absent or blank is ``default``."""
    if value is None:
        return default
    if isinstance(value, (dict, list)):
        raise fail(where, "must be text")
    text = str(value).strip()
    return text or default


def required_text(value: Any, where: str) -> str:
    text = as_text(value, where)
    if text is None:
        raise fail(where, "is missing")
    return text


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def as_bool(value: Any, where: str, default: bool = False) -> bool:
    """A YAML boolean, or its usual spellings as text (yes/no, on/off, 1/0)."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise fail(where, f"{value!r} is not true or false")


def as_int(value: Any, where: str, minimum: int | None = None) -> int:
    """A whole number, or text holding one (never a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            value = int(value)
        else:
            raise fail(where, f"{value!r} is not a whole number")
    if minimum is not None and value < minimum:
        raise fail(where, f"{value} is less than {minimum}")
    return value


def int_list(value: Any, where: str) -> tuple[int, ...]:
    """Whole numbers, each once, in their order; one number alone is a list of one."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    items = as_list(value, where)
    result: list[int] = []
    for position, item in enumerate(items):
        number = as_int(item, f"{where}[{position}]")
        if number not in result:
            result.append(number)
    return tuple(result)


_DATE_HINT = "is not a date (use YYYY-MM-DD or YYYY-MM-DD HH:MM:SS, UTC)"


def as_datetime(value: Any, where: str) -> datetime:
    """A naive UTC datetime, from what YAML read or from text ``dateutil`` parses (as
    Codabench does: month first, a missing time is midnight)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = date_parser.parse(text) if text else None
        except (ValueError, OverflowError):
            parsed = None
        if parsed is None:
            raise fail(where, f"{value!r} {_DATE_HINT}")
        value = parsed
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    raise fail(where, f"{value!r} {_DATE_HINT}")


def indexed(items: list, where: str) -> list[tuple[int, int, dict]]:
    """(index, position, item) for a list whose items all give an ``index``, or none does
    (then the index is the position)."""
    entries = [as_mapping(item, f"{where}[{position}]") for position, item in enumerate(items)]
    given = ["index" in item and item["index"] is not None for item in entries]
    if any(given) and not all(given):
        missing = given.index(False)
        raise fail(f"{where}[{missing}].index",
                    f"is missing (give every item of {where} an index, or none)")
    result: list[tuple[int, int, dict]] = []
    seen: dict[int, int] = {}
    for position, item in enumerate(entries):
        index = as_int(item["index"], f"{where}[{position}].index") if all(given) else position
        if index in seen:
            raise fail(f"{where}[{position}].index",
                        f"{index} is already the index of {where}[{seen[index]}]")
        seen[index] = position
        result.append((index, position, item))
    return result


__all__ = [
    "as_bool",
    "as_datetime",
    "as_int",
    "as_list",
    "as_mapping",
    "as_text",
    "fail",
    "indexed",
    "int_list",
    "parse_yaml",
    "required_text",
]
