"""The bounds every stored value keeps: ids fit a 64-bit key, integers fit the column they
go to, no text holds a NUL character (PostgreSQL refuses it in text columns) and no
number is NaN or infinite. Plain checks, no web framework: the request hooks in
``bounds`` and the schemas both use them."""

from __future__ import annotations

import math
import re
from typing import Any

from scitq_bench.exceptions import InvalidInput

ID_MAX = 2**63 - 1  # the largest 64-bit key; also the cap of offsets and limits
INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # what an Integer column holds (PostgreSQL)
BIG_MIN = -(2**63)  # the smallest number a JSON body may carry anywhere
NUL = "\x00"
ID_DIGITS = len(str(ID_MAX))



def check_text(value: str, field: str) -> str:
    """``value`` unless it holds a NUL character."""
    if NUL in value:
        raise InvalidInput(f"{field}: NUL characters are not allowed", field=field)
    return value


def whole_number(raw: str) -> int:
    """A query value as a count or id, 0 to ``ID_MAX``; ValueError otherwise (usable
    as werkzeug's ``args.get(type=...)``, which then falls back to the default)."""
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > ID_DIGITS:
        raise ValueError(f"not a whole number up to {ID_MAX}: {raw!r}")
    value = int(text)
    if value > ID_MAX:
        raise ValueError(f"not a whole number up to {ID_MAX}: {raw!r}")
    return value


# What a JSON text must hold for ``payload_problem`` to find anything: a NUL (JSON
# writes it only as an escape; a NUL byte means UTF-16 or UTF-32, which the parser
# takes too, and then the walk decides), a number of ID_DIGITS digits or more (a
# shorter one always fits), an exponent of three digits (no float overflows with
# fewer) or the non-standard NaN and Infinity that Python's parser takes. Text that
# merely looks so ("NaN" in a log line) costs the full walk, nothing more.
_SUSPECT = re.compile(rb"\x00|\\u0000|[0-9]{%d}|[eE][+-]?[0-9]{3}|NaN|Infinity" % ID_DIGITS)


def may_hold_a_problem(raw: bytes) -> bool:
    """Whether ``payload_problem`` could find anything in the JSON text ``raw``: a
    scan in C, where the walk is Python for every value of the document."""
    return _SUSPECT.search(raw) is not None


def payload_problem(data: Any) -> tuple[str, str] | None:
    """The first value of a JSON document that no column could take: (field path,
    problem), or None. Text with NUL, NaN or infinity, integers past 64 bits. Runs on
    every body (a worker's report carries hundreds of events): the path is put together
    only once a problem is found."""
    found = _problem(data)
    if found is None:
        return None
    reversed_path, message = found
    return ".".join(reversed(reversed_path)), message


def _problem(data: Any) -> tuple[list[str], str] | None:
    """(path from the value up, innermost first; problem), or None."""
    if isinstance(data, str):
        return ([], "NUL characters are not allowed") if NUL in data else None
    if isinstance(data, bool):
        return None
    if isinstance(data, int):
        return None if BIG_MIN <= data <= ID_MAX else ([], f"must be between {BIG_MIN} and {ID_MAX}")
    if isinstance(data, float):
        return None if math.isfinite(data) else ([], "must be a finite number")
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and NUL in key:
                return [key.replace(NUL, "\\x00")], "NUL characters are not allowed in names"
            if (found := _problem(value)) is not None:
                found[0].append(str(key))
                return found
    elif isinstance(data, (list, tuple)):
        for index, value in enumerate(data):
            if (found := _problem(value)) is not None:
                found[0].append(str(index))
                return found
    return None
